"""``harvest local`` on the real fixtures: every input shape, images, resumability, bad inputs."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from pmcurate.harvest import HarvestInputError, jats, store
from pmcurate.harvest.local import HarvestSummary, harvest_local, plan_tasks
from tests.harvest.tarballs import gif, jpeg, link_member, png, write_gzip, write_tar

JATS_DIR = Path(__file__).parents[1] / "data" / "jats"
JATS_FILES = tuple(sorted(p.name for p in JATS_DIR.iterdir() if p.suffix in {".xml", ".nxml"}))

FIXTURE_ARTICLES = 15  # 12 files; the pmc-articleset file holds 4 articles
GOOD = "pone.0046493.nxml"  # PMC3460867, figures pone.0046493.g001 … g004


def harvest(paths: list[Path], out: Path, **kwargs: int | str) -> HarvestSummary:
    options = {"workers": 1, "progress": False, **kwargs}
    return harvest_local(paths, out, **options)  # type: ignore[arg-type]


def read(build: Path, table: str) -> pl.DataFrame:
    return pl.read_parquet(build / "tables" / table / "*.parquet")


def fixture_bytes(name: str) -> bytes:
    return (JATS_DIR / name).read_bytes()


def files_state(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (inode, mtime_ns), to prove nothing was rewritten."""
    return {
        str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file()
    }


# --- input shapes ----------------------------------------------------------------------------------


def test_folder_of_fixtures_gives_every_article(tmp_path: Path) -> None:
    summary = harvest([JATS_DIR], tmp_path / "build")
    articles = read(tmp_path / "build", "articles")
    assert (summary.documents, summary.articles, summary.quarantined) == (
        len(JATS_FILES),
        FIXTURE_ARTICLES,
        0,
    )
    assert articles.height == FIXTURE_ARTICLES
    assert articles["source"].unique().to_list() == ["local"]


def test_rows_of_every_table_match_the_summary(tmp_path: Path) -> None:
    summary = harvest([JATS_DIR], tmp_path / "build")
    build = tmp_path / "build"
    assert (
        read(build, "paragraphs").height,
        read(build, "figures").height,
        read(build, "tables").height,
    ) == (
        summary.paragraphs,
        summary.figures,
        summary.tables,
    )


def test_gzipped_files_give_the_same_articles(tmp_path: Path) -> None:
    folder = tmp_path / "gz"
    folder.mkdir()
    for name in JATS_FILES:
        write_gzip(folder / f"{name}.gz", fixture_bytes(name))
    harvest([folder], tmp_path / "build")
    assert sorted(read(tmp_path / "build", "articles")["article_id"]) == sorted(
        read_fixture_build(tmp_path)["article_id"]
    )


def read_fixture_build(tmp_path: Path) -> pl.DataFrame:
    harvest([JATS_DIR], tmp_path / "reference")
    return read(tmp_path / "reference", "articles")


def test_bulk_package_gives_every_article_with_its_member_uri(tmp_path: Path) -> None:
    bulk = write_tar(
        tmp_path / "oa_comm_xml.PMC003xxxxxx.baseline.2024-06-18.tar.gz",
        [(f"PMC003xxxxxx/{name}", fixture_bytes(name)) for name in JATS_FILES],
    )
    summary = harvest([bulk], tmp_path / "build")
    articles = read(tmp_path / "build", "articles")
    assert summary.articles == FIXTURE_ARTICLES
    uri = articles.filter(pl.col("article_id") == "PMC3460867")["source_uri"].item()
    assert uri == f"{bulk.resolve().as_uri()}#PMC003xxxxxx/{GOOD}"


def per_article_package(tmp_path: Path) -> Path:
    return write_tar(
        tmp_path / "PMC3460867.tar.gz",
        [
            ("PMC3460867/pone.0046493.g001.gif", gif(80, 60)),
            ("PMC3460867/pone.0046493.g001.jpg", jpeg(800, 600)),
            ("PMC3460867/pone.0046493.nxml", fixture_bytes(GOOD)),
            ("PMC3460867/pone.0046493.g002.png", png(5, 4)),
            ("PMC3460867/pone.0046493.pdf", b"%PDF-1.4"),
        ],
    )


def test_per_article_package_attaches_images_to_figures_by_stem(tmp_path: Path) -> None:
    summary = harvest([per_article_package(tmp_path)], tmp_path / "build")
    figures = read(tmp_path / "build", "figures").sort("figure_id")
    with_image = figures.filter(pl.col("image").is_not_null())
    assert summary.images == 2
    assert with_image.select("format", "width", "height").rows() == [("jpeg", 800, 600), ("png", 5, 4)]
    assert with_image["image"].struct.field("path").to_list() == [
        "PMC3460867/pone.0046493.g001.jpg",
        "PMC3460867/pone.0046493.g002.png",
    ]
    assert with_image["image"].struct.field("bytes").to_list()[1] == png(5, 4)


def test_figures_without_a_packaged_image_keep_a_null_image(tmp_path: Path) -> None:
    harvest([per_article_package(tmp_path)], tmp_path / "build")
    figures = read(tmp_path / "build", "figures")
    assert figures.filter(pl.col("image").is_null()).height == figures.height - 2


# --- shards, resume, parallelism -------------------------------------------------------------------


def test_documents_are_cut_into_shards_of_batch_size(tmp_path: Path) -> None:
    bulk = write_tar(tmp_path / "bulk.tar.gz", [(f"d/{name}", fixture_bytes(name)) for name in JATS_FILES])
    summary = harvest([bulk], tmp_path / "build", batch_size=5)
    names = sorted(p.stem.split("-", 2)[2] for p in (tmp_path / "build/tables/articles").glob("*.parquet"))
    assert names == ["00000", "00001", "00002-end"]
    assert summary.articles == FIXTURE_ARTICLES


def test_rerun_skips_completed_shards_without_rewriting_them(tmp_path: Path) -> None:
    build = tmp_path / "build"
    harvest([JATS_DIR], build, batch_size=4)
    before = files_state(build)
    summary = harvest([JATS_DIR], build, batch_size=4)
    assert files_state(build) == before
    assert (summary.tasks_skipped, summary.tasks, summary.shards_written) == (3, 3, 0)


def test_rerun_redoes_only_the_unfinished_shard(tmp_path: Path) -> None:
    build = tmp_path / "build"
    harvest([JATS_DIR], build, batch_size=4)
    unfinished = sorted((build / "tables" / "articles").glob("*.parquet"))[1]
    unfinished.unlink()
    before = files_state(build)
    summary = harvest([JATS_DIR], build, batch_size=4)
    after = files_state(build)
    changed = sorted(name for name in after if before.get(name) != after[name])
    assert changed == [".pmcurate/state.json"] + [
        f"tables/{table}/{unfinished.name}" for table in ("articles", "figures", "paragraphs", "tables")
    ]
    assert summary.shards_written == 1
    assert read(build, "articles").height == FIXTURE_ARTICLES


def test_files_of_an_unfinished_shard_from_other_inputs_are_removed(tmp_path: Path) -> None:
    build = tmp_path / "build"
    harvest([JATS_DIR / GOOD], build)
    [orphan] = (build / "tables" / "articles").glob("*.parquet")
    orphan.unlink()  # as if killed before the articles shard: paragraphs etc. are left behind
    harvest([JATS_DIR / "mds526.nxml"], build)
    assert read(build, "paragraphs")["article_id"].unique().to_list() == ["PMC3574550"]


def test_resumed_shards_inside_a_task_are_not_parsed_again(tmp_path: Path) -> None:
    bulk = write_tar(tmp_path / "bulk.tar.gz", [(f"d/{name}", fixture_bytes(name)) for name in JATS_FILES])
    build = tmp_path / "build"
    harvest([bulk], build, batch_size=5)
    last = next((build / "tables" / "articles").glob("*-end.parquet"))
    last.unlink()
    summary = harvest([bulk], build, batch_size=5)
    assert (summary.shards_skipped, summary.shards_written) == (2, 1)
    assert read(build, "articles").height == FIXTURE_ARTICLES


def test_parallel_workers_give_the_same_rows_as_one(tmp_path: Path) -> None:
    harvest([JATS_DIR], tmp_path / "one", batch_size=4)
    summary = harvest([JATS_DIR], tmp_path / "two", batch_size=4, workers=2)
    one = read(tmp_path / "one", "paragraphs").sort("paragraph_id")
    two = read(tmp_path / "two", "paragraphs").sort("paragraph_id")
    assert summary.articles == FIXTURE_ARTICLES
    assert one.equals(two)


# --- duplicates ------------------------------------------------------------------------------------


def test_an_article_read_twice_is_kept_once_from_the_later_input(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.nxml").write_bytes(fixture_bytes(GOOD))
    (folder / "b.nxml").write_bytes(fixture_bytes(GOOD))
    summary = harvest([folder], tmp_path / "build", batch_size=1)
    articles = read(tmp_path / "build", "articles")
    paragraphs = read(tmp_path / "build", "paragraphs")
    assert (articles.height, summary.duplicates, summary.articles) == (1, 1, 1)
    assert articles["source_uri"].item().endswith("/b.nxml")
    assert paragraphs["paragraph_id"].is_unique().all()


def test_the_highest_version_wins_over_a_later_lower_one(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    pmc_id = b'<article-id pub-id-type="pmc">3460867</article-id>'
    version = b'<article-id pub-id-type="pmcid-ver">PMC3460867.2</article-id>'
    versioned = fixture_bytes(GOOD).replace(pmc_id, pmc_id + version)
    assert versioned != fixture_bytes(GOOD)
    (folder / "a.nxml").write_bytes(versioned)
    (folder / "b.nxml").write_bytes(fixture_bytes(GOOD))
    harvest([folder], tmp_path / "build", batch_size=1)
    articles = read(tmp_path / "build", "articles")
    assert articles.select("article_id", "version").rows() == [("PMC3460867", 2)]


def test_duplicates_inside_one_shard_are_dropped_before_writing(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.nxml").write_bytes(fixture_bytes(GOOD))
    (folder / "b.nxml").write_bytes(fixture_bytes(GOOD))
    summary = harvest([folder], tmp_path / "build")
    assert (read(tmp_path / "build", "articles").height, summary.duplicates) == (1, 1)


# --- bad inputs ------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><article><body><p>&lol9;</p></body></article>"
)
XXE = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><article><body><p>&e;</p></body></article>'


def gzip_bomb(path: Path) -> Path:
    with gzip.open(path, "wb", compresslevel=1) as sink:
        for _ in range(16):
            sink.write(b"\0" * 2**20)
    return path


BadInput = Callable[[Path], Path]
BAD_INPUTS: dict[str, tuple[BadInput, str]] = {
    "truncated-xml": (lambda d: _write(d / "truncated.nxml", fixture_bytes(GOOD)[:4000]), "not well-formed"),
    "non-utf8": (
        lambda d: _write(
            d / "latin1.xml", b'<?xml version="1.0" encoding="UTF-8"?><article><p>caf\xe9</p></article>'
        ),
        "Invalid bytes in character encoding",
    ),
    "xxe": (lambda d: _write(d / "xxe.xml", XXE), "declares entities"),
    "billion-laughs": (lambda d: _write(d / "lol.xml", BILLION_LAUGHS), "declares entities"),
    "empty-file": (lambda d: _write(d / "empty.xml", b""), "is empty"),
    "not-an-article": (lambda d: _write(d / "page.xml", b"<html><body/></html>"), "no <article> element"),
    "dotdot-member": (
        lambda d: write_tar(d / "evil.tar.gz", [("../../etc/x", b"<article/>")]),
        "leaves the archive",
    ),
    "absolute-member": (
        lambda d: write_tar(d / "abs.tar.gz", [("/etc/x.xml", b"<article/>")]),
        "absolute path",
    ),
    "symlink-member": (
        lambda d: write_tar(d / "link.tar.gz", [link_member("PMC1/a.nxml", "/etc/passwd")]),
        "symbolic link",
    ),
    "gzip-bomb": (lambda d: gzip_bomb(d / "bomb.xml.gz"), "byte cap"),
    "corrupt-archive": (
        lambda d: _write(d / "broken.tar.gz", b"\x1f\x8b\x08\x00garbage"),
        "archive unreadable",
    ),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_quarantined_and_the_run_completes(tmp_path: Path, case: str) -> None:
    make, expected = BAD_INPUTS[case]
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(JATS_DIR / GOOD, inputs / GOOD)
    bad = make(inputs)
    before = files_state(tmp_path)
    summary = harvest([inputs], tmp_path / "build", max_member_bytes=2**20)
    quarantine = read(tmp_path / "build", "quarantine")
    assert quarantine.height == summary.quarantined == 1
    record = quarantine.row(0, named=True)
    assert record["source"] == str(bad)
    assert re.fullmatch(r"[a-z0-9_]+", record["reason"]), "reason: a short code (schema.QUARANTINE)"
    assert expected in record["error"]
    assert bad.name in record["error"]
    assert read(tmp_path / "build", "articles")["article_id"].to_list() == ["PMC3460867"]
    after = {name: state for name, state in files_state(tmp_path).items() if not name.startswith("build/")}
    assert after == before


def test_a_failing_document_in_a_bulk_package_names_its_member(tmp_path: Path) -> None:
    bulk = write_tar(
        tmp_path / "bulk.tar.gz",
        [("PMC003xxxxxx/bad.xml", b"<article><p>unclosed"), (f"PMC003xxxxxx/{GOOD}", fixture_bytes(GOOD))],
    )
    harvest([bulk], tmp_path / "build")
    record = read(tmp_path / "build", "quarantine").row(0, named=True)
    assert (record["member"], record["stage"], record["reason"]) == (
        "PMC003xxxxxx/bad.xml",
        "parse",
        "parse_error",
    )
    assert "bulk.tar.gz#PMC003xxxxxx/bad.xml" in record["error"] and "JatsError" in record["error"]


def test_quarantine_of_a_completed_shard_is_not_written_twice(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write(inputs / "empty.xml", b"")
    harvest([inputs, JATS_DIR / GOOD], tmp_path / "build")
    harvest([inputs, JATS_DIR / GOOD], tmp_path / "build")
    assert read(tmp_path / "build", "quarantine").height == 1
    assert store.completed_shards(tmp_path / "build")


def test_no_inputs_found_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(HarvestInputError, match="no input files"):
        harvest([tmp_path], tmp_path / "build")


# --- parser options ----------------------------------------------------------------------------------


def test_citations_drop_reaches_the_parser(tmp_path: Path) -> None:
    harvest([JATS_DIR / GOOD], tmp_path / "drop", citations="drop")
    harvest([JATS_DIR / GOOD], tmp_path / "marker")
    dropped, marked = read(tmp_path / "drop", "paragraphs"), read(tmp_path / "marker", "paragraphs")
    expected = [p["text"] for p in jats.parse(fixture_bytes(GOOD), citations="drop")[0].paragraphs]
    assert dropped.sort("ordinal")["text"].to_list() == expected
    assert any("[1]" in text for text in marked["text"]) and not any(
        "[1]" in text for text in dropped["text"]
    )


def test_a_task_of_the_other_citation_mode_is_another_task() -> None:
    files = [JATS_DIR / GOOD]
    marker = plan_tasks(files, batch_size=10, shard_bytes=2**30)
    drop = plan_tasks(files, batch_size=10, shard_bytes=2**30, citations="drop")
    assert marker[0].key != drop[0].key
    assert marker == plan_tasks(files, batch_size=10, shard_bytes=2**30, citations="marker")


def test_an_unknown_citation_mode_is_refused_before_reading(tmp_path: Path) -> None:
    with pytest.raises(HarvestInputError, match="citations must be one of marker, drop, not 'keep'"):
        harvest([JATS_DIR / GOOD], tmp_path / "b", citations="keep")
    assert not (tmp_path / "b").exists()


# --- images beside a plain XML file (an extracted package) -----------------------------------------


def extracted_package(tmp_path: Path) -> Path:
    """The layout of a PMC package unpacked on disk: the XML and its images in one folder."""
    folder = tmp_path / "PMC3460867"
    folder.mkdir()
    shutil.copy2(JATS_DIR / GOOD, folder / GOOD)
    (folder / "pone.0046493.g001.jpg").write_bytes(jpeg(800, 600))
    (folder / "pone.0046493.g002.png").write_bytes(png(5, 4))
    (folder / "pone.0046493.g002.gif").write_bytes(gif(5, 4))  # the preview: the PNG wins
    (folder / "pone.0046493.pdf").write_bytes(b"%PDF-1.4 not an image")
    return folder


def test_extracted_package_attaches_the_images_beside_the_xml(tmp_path: Path) -> None:
    summary = harvest([extracted_package(tmp_path)], tmp_path / "build")
    figures = read(tmp_path / "build", "figures").sort("figure_id")
    with_image = figures.filter(pl.col("image").is_not_null())
    assert summary.images == 2
    assert with_image.select("format", "width", "height").rows() == [("jpeg", 800, 600), ("png", 5, 4)]
    assert with_image["image"].struct.field("path").to_list() == [
        "pone.0046493.g001.jpg",
        "pone.0046493.g002.png",
    ]
    assert with_image["image"].struct.field("bytes").to_list()[1] == png(5, 4)


def test_summary_says_how_many_figures_have_no_image(tmp_path: Path) -> None:
    summary = harvest([extracted_package(tmp_path)], tmp_path / "build")
    assert f"{summary.figures} figures (2 with an image, {summary.figures - 2} without)" in str(summary)


def test_an_unreadable_image_beside_the_xml_is_quarantined_and_the_article_kept(tmp_path: Path) -> None:
    folder = extracted_package(tmp_path)
    (folder / "pone.0046493.g003.png").write_bytes(b"not a png at all")
    summary = harvest([folder], tmp_path / "build")
    quarantine = read(tmp_path / "build", "quarantine")
    assert summary.articles == 1 and summary.images == 2
    assert quarantine["reason"].to_list() == ["not_an_image"]
    assert quarantine["source"].to_list() == [str(folder / "pone.0046493.g003.png")]


def test_images_beside_the_xml_are_not_read_through_links(tmp_path: Path) -> None:
    folder = extracted_package(tmp_path)
    (folder / "pone.0046493.g001.jpg").unlink()
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(jpeg(10, 10))
    (folder / "pone.0046493.g001.jpg").symlink_to(outside)
    summary = harvest([folder], tmp_path / "build")
    assert summary.images == 1


def test_progress_is_the_runners_bar_of_the_step_counting_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = len(plan_tasks([JATS_DIR / name for name in JATS_FILES], batch_size=4, shard_bytes=2**30))
    harvest([JATS_DIR], tmp_path / "build", batch_size=4, progress=True)
    bar = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert bar.startswith("harvest:local: 100%") and f"| {tasks}/{tasks} [" in bar


def test_the_step_is_recorded_in_the_build_state(tmp_path: Path) -> None:
    harvest([JATS_DIR], tmp_path / "build")
    state = json.loads((tmp_path / "build" / ".pmcurate" / "state.json").read_text())
    assert state["steps"]["harvest:local"]["counts"]["articles"] == FIXTURE_ARTICLES
