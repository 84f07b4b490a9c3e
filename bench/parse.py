"""Extraction throughput on one core: raw lxml parse vs pmcurate's full extraction vs pubmed_parser.

The real JATS fixtures are read once into memory and processed ``--repeat`` times per run, by three
contenders measured side by side (interleaved, so machine noise hits them alike):

- ``raw lxml``: ``lxml.etree.fromstring`` of the bytes with the same safe parser options as ours;
  the floor any extractor built on lxml pays.
- ``pmcurate``: ``pmcurate.harvest.jats.parse(data)``, i.e. metadata, license, paragraphs, figures
  and tables, every row built.
- ``pubmed_parser``: its four functions ``parse_pubmed_xml``, ``parse_pubmed_paragraph``
  (``all_paragraph=True``), ``parse_pubmed_references``, ``parse_pubmed_caption``, each given the
  file path as its documentation shows; each reparses the document, which is how it is used.

- ``pmcurate (baseline)``, with ``--baseline FILE``: the ``parse`` of another version of
  ``pmcurate/harvest/jats.py`` (e.g. ``git show main:pmcurate/harvest/jats.py > /tmp/jats_main.py``),
  loaded as a module of its own, so that a change is measured against what it replaces in the
  same process, interleaved, on the same data.

Each contender gets a warm-up pass, then the best of ``--runs`` timed runs is kept. The clock is the
process's CPU time by default (``--clock cpu``: on a machine shared with other work, time spent
waiting for a core is not the parser's; the figures are per core), or wall time (``--clock wall``).
Garbage collection stays on (real extraction allocates), with a collection before each timed run.
Output: articles/s, MB/s, ratio to raw lxml, and the time the whole of PMC-OA (~7M articles) would
take on 2 cores at that rate, assuming the fixtures' mix of sizes.

    .venv/bin/python bench/parse.py                 # ~10 s
    .venv/bin/python bench/parse.py --repeat 50 --runs 5
    .venv/bin/python bench/parse.py --baseline /tmp/jats_main.py --no-pubmed-parser
    .venv/bin/python bench/parse.py --profile       # cProfile of pmcurate's parse, top 25
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import io
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from pmcurate.harvest import jats

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_DIRS = (ROOT / "tests" / "data" / "jats", Path("/work/shared/fixtures/jats"))
PMC_OA_ARTICLES = 7_000_000
CORES = 2
TARGET_RATIO = 1.5  # issue 15: pmcurate's extraction within 1.5x the time of lxml's bare parse
CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}
SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


@dataclass(frozen=True)
class Fixture:
    path: str
    data: bytes
    articles: int


@dataclass(frozen=True)
class Contender:
    name: str
    run_once: Callable[[Fixture], object]


@dataclass
class Result:
    name: str
    best_s: float
    runs_s: list[float]


def local_name(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def count_articles(data: bytes) -> int:
    """Articles in a document: the root ``article``, or the ``article`` children of a wrapper."""
    root = etree.fromstring(data, SAFE_PARSER)
    if local_name(root.tag) == "article":
        return 1
    return sum(1 for child in root if local_name(child.tag) == "article")


def fixture_dir(explicit: Path | None) -> Path:
    candidates = (explicit,) if explicit else FIXTURE_DIRS
    for folder in candidates:
        if folder and folder.is_dir():
            return folder
    raise SystemExit(f"no fixture folder found among: {', '.join(str(c) for c in candidates)}")


def load_fixtures(folder: Path) -> list[Fixture]:
    paths = sorted(p for p in folder.iterdir() if p.suffix in {".xml", ".nxml"})
    if not paths:
        raise SystemExit(f"{folder}: no .xml or .nxml files")
    fixtures = []
    for path in paths:
        data = path.read_bytes()
        fixtures.append(Fixture(str(path), data, count_articles(data)))
    return fixtures


def raw_lxml(fixture: Fixture) -> object:
    return etree.fromstring(fixture.data, SAFE_PARSER)


def pmcurate_parse(fixture: Fixture) -> object:
    return jats.parse(fixture.data, source_uri=fixture.path)


def baseline_contender(path: Path) -> Contender:
    """``parse`` of another version of jats.py, imported from ``path`` under a name of its own."""
    if not path.is_file():
        raise SystemExit(f"{path}: no such file (the jats.py to compare with)")
    spec = importlib.util.spec_from_file_location("jats_baseline", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)

    def baseline(fixture: Fixture) -> object:
        return module.parse(fixture.data, source_uri=fixture.path)

    return Contender("pmcurate (baseline)", baseline)


def pubmed_parser_contender() -> Contender | None:
    try:
        import pubmed_parser as pp
    except ImportError:
        return None

    def four_functions(fixture: Fixture) -> object:
        return (
            pp.parse_pubmed_xml(fixture.path),
            pp.parse_pubmed_paragraph(fixture.path, all_paragraph=True),
            pp.parse_pubmed_references(fixture.path),
            pp.parse_pubmed_caption(fixture.path),
        )

    return Contender("pubmed_parser (4 functions)", four_functions)


def one_pass(
    contender: Contender, fixtures: list[Fixture], repeat: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    """Seconds for ``repeat`` passes over all fixtures."""
    run = contender.run_once
    gc.collect()
    start = clock()
    for _ in range(repeat):
        for fixture in fixtures:
            run(fixture)
    return clock() - start


def auto_repeat(contenders: list[Contender], fixtures: list[Fixture], runs: int, seconds: float) -> int:
    """Repeat count so that all timed runs of all contenders take about ``seconds``; doubles as warm-up."""
    per_pass = sum(one_pass(c, fixtures, 1) for c in contenders)
    return max(1, round(seconds / (runs * per_pass)))


def measure(
    contenders: list[Contender],
    fixtures: list[Fixture],
    repeat: int,
    runs: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[Result]:
    """Best of ``runs`` for each contender, the contenders taking turns within each run."""
    results = [Result(c.name, float("inf"), []) for c in contenders]
    for _ in range(runs):
        for contender, result in zip(contenders, results, strict=True):
            elapsed = one_pass(contender, fixtures, repeat, clock)
            result.runs_s.append(elapsed)
            result.best_s = min(result.best_s, elapsed)
    return results


def report(results: list[Result], fixtures: list[Fixture], repeat: int, clock: str = "wall") -> str:
    articles = sum(f.articles for f in fixtures) * repeat
    megabytes = sum(len(f.data) for f in fixtures) * repeat / 1e6
    raw = results[0].best_s
    lines = [
        f"{len(fixtures)} files, {articles // repeat} articles, {megabytes / repeat:.2f} MB "
        f"(mean {megabytes / articles * 1000:.0f} kB/article), repeated {repeat}x; "
        f"best of {len(results[0].runs_s)} interleaved runs, {clock} clock, one process, one thread",
        "",
        f"{'contender':<30} {'best s':>8} {'articles/s':>11} {'MB/s':>8} {'x raw lxml':>11} "
        f"{'7M articles on 2 cores':>23}",
    ]
    for r in results:
        rate = articles / r.best_s
        hours = PMC_OA_ARTICLES / (rate * CORES) / 3600
        lines.append(
            f"{r.name:<30} {r.best_s:>8.3f} {rate:>11.1f} {megabytes / r.best_s:>8.1f} "
            f"{r.best_s / raw:>10.2f}x {hours:>21.2f} h"
        )
    ours = next((r for r in results if r.name == "pmcurate"), None)
    if ours:
        ratio = ours.best_s / raw
        verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
        lines += ["", f"pmcurate {verdict} the target: {ratio:.2f}x raw lxml (target <= {TARGET_RATIO:.1f}x)"]
    baseline = next((r for r in results if r.name == "pmcurate (baseline)"), None)
    if ours and baseline:
        lines.append(
            f"pmcurate takes {ours.best_s / baseline.best_s:.2f}x the baseline's time "
            f"({baseline.best_s / raw:.2f}x -> {ours.best_s / raw:.2f}x raw lxml)"
        )
    return "\n".join(lines)


def profile(fixtures: list[Fixture], repeat: int, top: int, sort: str) -> str:
    contender = Contender("pmcurate", pmcurate_parse)
    one_pass(contender, fixtures, 1)
    profiler = cProfile.Profile()
    profiler.enable()
    one_pass(contender, fixtures, repeat)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
    return out.getvalue()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixtures", type=Path, help="folder of .xml/.nxml files (default: tests/data/jats)")
    ap.add_argument(
        "--repeat", type=int, help="passes over the fixtures per timed run (default: ~10 s total)"
    )
    ap.add_argument("--seconds", type=float, default=10.0, help="total time the default --repeat aims at")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per contender; the best is kept")
    ap.add_argument("--no-pubmed-parser", action="store_true", help="leave pubmed_parser out")
    ap.add_argument(
        "--baseline", type=Path, help="another version of pmcurate/harvest/jats.py to measure side by side"
    )
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="cpu",
        help="CPU time of this process (default) or wall time",
    )
    ap.add_argument(
        "--profile", action="store_true", help="cProfile pmcurate's parse instead of the benchmark"
    )
    ap.add_argument("--top", type=int, default=25, help="functions shown by --profile")
    ap.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"], help="--profile order")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fixtures = load_fixtures(fixture_dir(args.fixtures))
    if args.profile:
        print(profile(fixtures, args.repeat or 5, args.top, args.sort))
        return 0
    contenders = [Contender("raw lxml", raw_lxml), Contender("pmcurate", pmcurate_parse)]
    if args.baseline:
        contenders.append(baseline_contender(args.baseline))
    pp = None if args.no_pubmed_parser else pubmed_parser_contender()
    if pp:
        contenders.append(pp)
    elif not args.no_pubmed_parser:
        print(
            "pubmed_parser is not installed (pip install -e '.[dev]'); measuring without it", file=sys.stderr
        )
    repeat = args.repeat or auto_repeat(contenders, fixtures, args.runs, args.seconds)
    if args.repeat:
        for contender in contenders:  # warm-up
            one_pass(contender, fixtures, 1)
    results = measure(contenders, fixtures, repeat, args.runs, CLOCKS[args.clock])
    print(report(results, fixtures, repeat, args.clock))
    return 0


if __name__ == "__main__":
    sys.exit(main())
