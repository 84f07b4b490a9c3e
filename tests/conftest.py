"""Shared test helpers: the real fixtures under ``tests/data`` and a cached parse of each JATS file.

JATS fixtures are parsed once per session (``parsed_fixture``) so the golden and text tests, which
ask many small questions of the same articles, stay fast. ``source_articles`` gives the very same
articles as plain lxml elements, read independently of the parser, and ``resolve_path`` walks a
paragraph/figure ``path`` (``body/sec[2]/p[3]``: steps by local name, 1-based among same-named
siblings, ``p`` meaning ``p[1]``) from an article element back to the element it names.
``built`` is one clean build of ``tests/builds.py``'s manifest, shared by the build tests.

Every test has a ``$PMCURATE_CACHE`` of its own (``test_cache``), so students one test trained are
never another's; the packed language model in it is the session's (``session_cache``), built
once, and nothing is written to the user's ``~/.cache``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from lxml import etree

from pmcurate.harvest import jats

if TYPE_CHECKING:
    from pmcurate.pipeline import BuildResult

DATA_DIR = Path(__file__).parent / "data"

_STEP = re.compile(r"^(?P<name>[A-Za-z][\w.-]*)(?:\[(?P<index>\d+)\])?$")


def data_path(name: str) -> Path:
    """A file under ``tests/data`` (``jats/mds526.nxml``), failing loudly when it is missing."""
    path = DATA_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"test data file {path} does not exist")
    return path


def jats_path(name: str) -> Path:
    """A JATS fixture by file name (``mds526.nxml``)."""
    return data_path(f"jats/{name}")


@cache
def parse_jats_fixture(name: str) -> list[jats.ParsedArticle]:
    return jats.parse(jats_path(name).read_bytes(), source_uri=str(jats_path(name)))


def local_name(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


@cache
def read_source_articles(name: str) -> tuple[etree._Element, ...]:
    """The ``<article>`` elements of a fixture, read with plain lxml (no DTD, no network)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)
    root = etree.parse(str(jats_path(name)), parser).getroot()
    if local_name(root) == "article":
        return (root,)
    return tuple(el for el in root.iter() if local_name(el) == "article")


def resolve(article: etree._Element, path: str) -> etree._Element:
    """The element a parser ``path`` names, relative to its ``<article>``; KeyError if none."""
    node = article
    for step in path.strip("/").split("/"):
        match = _STEP.match(step)
        if match is None:
            raise KeyError(f"bad path step {step!r} in {path!r}")
        same = [child for child in node if local_name(child) == match["name"]]
        index = int(match["index"] or 1)
        if not 1 <= index <= len(same):
            raise KeyError(f"{path!r}: no {match['name']}[{index}] under {local_name(node)}")
        node = same[index - 1]
    return node


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's ``$PMCURATE_CACHE`` (what session-scoped fixtures build with)."""
    root = tmp_path_factory.mktemp("cache")
    (root / "language").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PMCURATE_CACHE", str(root))
        yield root


def own_cache(root: Path, session_cache: Path) -> Path:
    """A new ``$PMCURATE_CACHE`` at ``root`` whose ``language`` is the session's: it holds no
    students another build trained."""
    root.mkdir(parents=True)
    (root / "language").symlink_to(session_cache / "language")
    return root


@pytest.fixture(autouse=True)
def test_cache(
    session_cache: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The test's own ``$PMCURATE_CACHE`` (``own_cache``)."""
    root = own_cache(tmp_path_factory.mktemp("test-cache") / "cache", session_cache)
    monkeypatch.setenv("PMCURATE_CACHE", str(root))
    return root


@pytest.fixture
def fixture_path() -> Callable[[str], Path]:
    """``fixture_path("jats/mds526.nxml")``: the path of a file under ``tests/data``."""
    return data_path


def parsed_copy(name: str) -> list[jats.ParsedArticle]:
    """A private copy of the cached parse, so a test that fills or edits rows cannot leak into others."""
    return copy.deepcopy(parse_jats_fixture(name))


@pytest.fixture(scope="session")
def parsed_fixture() -> Callable[[str], list[jats.ParsedArticle]]:
    """``parsed_fixture("mds526.nxml")``: the parser's articles for a JATS fixture (parsed once)."""
    return parsed_copy


@pytest.fixture(scope="session")
def source_articles() -> Callable[[str], tuple[etree._Element, ...]]:
    """``source_articles("mds526.nxml")``: the fixture's ``<article>`` elements, read with lxml."""
    return read_source_articles


@pytest.fixture(scope="session")
def resolve_path() -> Callable[[etree._Element, str], etree._Element]:
    """``resolve_path(article_el, "body/sec[2]/p[3]")``: the element a row's path names."""
    return resolve


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, BuildResult]:
    """(manifest, build, result) of one clean build; tests that change inputs use their own copy."""
    from pmcurate.manifest import load_manifest
    from pmcurate.pipeline import run_build
    from tests import builds

    root = tmp_path_factory.mktemp("pipeline")
    manifest = builds.write_manifest(root / "test.toml", builds.make_inputs(root / "inputs"))
    build = root / "build"
    return manifest, build, run_build(load_manifest(manifest), build, workers=1, progress=False)
