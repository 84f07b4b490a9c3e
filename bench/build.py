"""End-to-end throughput and peak memory of the demo pipeline, scaled up.

The bundled sample (8 real PMC articles) is repeated with new ids (PMCID, PMID, DOI rewritten in
each copy: ``PMC90000001``…) into a folder of N files, then ``pmcurate build`` runs the demo
pipeline over it — harvest, student training on the bundled labels, labelling every paragraph, the
educational subset (exact and near dedup) and the Biomed-Enriched export — once per worker count,
each time into a fresh build folder, as a separate process.

Reported per run: wall time, articles/s end to end, time per step (from the build summary), and
peak memory: the peak sum of resident memory over the build's whole process tree and the
largest resident set of any one of its processes (both sampled from /proc every 0.1 s). Running
two sizes (``--sizes``) shows whether memory stays flat as the number of articles grows.

With several ``--executors`` (``local``; ``ray``: a local Ray instance with ``--workers`` worker
processes; ``ray-url``: the same, the build behind a ``file://`` URL, each worker process on its
own working copy), each run after the first says whether its subset and exported shards are
byte-identical to the first executor's.

Each build has its own ``$PMCURATE_CACHE``: the working copies of ``ray-url`` are removed before
each run, the packed language model (``filters.language``, built once per machine, ~1.3 CPU-s) is
kept, as on a machine that has built before; the first run of a size and worker count builds it.
The students trained on the bundled labels (``annotate.student_cache``, ~2.6 CPU-s) are removed
before each run unless ``--keep-students``: with it, every run after the first reuses them, as a
rebuild of the manifest over more articles does.

The manifest is ``manifests/demo.toml`` with two changes: its source is the generated folder, and
``pretrain = false``: with pretraining the word vectors are learnt from every paragraph of the
build, a cost that grows with the corpus and, on copies of eight articles, learns nothing more.

    .venv/bin/python bench/build.py                              # 20,000 articles, 1 and 2 workers
    .venv/bin/python bench/build.py --sizes 5000 20000 --workers 2
    .venv/bin/python bench/build.py --sizes 2000 --workers 2 --executors local ray ray-url
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "pmcurate" / "data" / "sample"
DEMO = ROOT / "manifests" / "demo.toml"
PAGE = os.sysconf("SC_PAGE_SIZE")
IDS = re.compile(rb'(<article-id pub-id-type="(pmc|pmid|doi|publisher-id)">)([^<]*)(</article-id>)')


def make_corpus(folder: Path, n: int) -> Path:
    """``n`` copies of the sample with new ids; reused when the folder already holds them."""
    marker = folder / f".complete-{n}"
    if marker.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    originals = [path.read_bytes() for path in sorted(SAMPLE.glob("*.nxml"))]
    for i in range(n):
        serial = 90_000_000 + i

        def new_id(match: re.Match[bytes], serial: int = serial) -> bytes:
            kind, old = match.group(2), match.group(3)
            value = {b"pmc": b"%d" % serial, b"pmid": b"%d" % (50_000_000 + serial)}.get(
                kind, old + b".r%d" % serial
            )
            return match.group(1) + value + match.group(4)

        data = IDS.sub(new_id, originals[i % len(originals)])
        (folder / f"{i // 1000:03d}").mkdir(exist_ok=True)
        (folder / f"{i // 1000:03d}" / f"PMC{serial}.nxml").write_bytes(data)
    marker.touch()
    return folder


def write_manifest(path: Path, corpus: Path) -> Path:
    text = DEMO.read_text()
    text = text.replace('paths = ["package:data/sample"]', f'paths = ["{corpus}"]')
    text = text.replace("pretrain = true", "pretrain = false")
    assert str(corpus) in text and "pretrain = false" in text, "demo manifest changed: update bench/build.py"
    path.write_text(text)
    return path


def tree_rss(root: int) -> tuple[int, int]:
    """Resident bytes of ``root`` and all its descendants, from /proc: (sum, largest process)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        rss[pid] = int(fields[21]) * PAGE
    total, largest, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        largest = max(largest, rss.get(pid, 0))
        stack.extend(children.get(pid, []))
    return total, largest


def run_measuring_memory(
    command: list[str], *, stderr: int, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str, str, int, int]:
    """Run ``command`` with progress bars off (and ``env`` added), sampling its process tree's
    resident memory every 0.1 s: (the finished process, stdout, stderr, peak of the tree, peak of
    its largest process)."""
    env = {**os.environ, "TQDM_DISABLE": "1", **(env or {})}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    peak = largest = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, largest
        while not done.wait(0.1):
            total, one = tree_rss(process.pid)
            peak, largest = max(peak, total), max(largest, one)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, errors = process.communicate()
    done.set()
    sampler.join()
    return process, output, errors or "", peak, largest


def run(
    manifest: Path, build: Path, workers: int, executor: str = "local", *, keep_students: bool = False
) -> dict[str, object]:
    """One build into ``build`` (for ``ray-url``: the folder behind the ``file://`` URL); the
    students trained by an earlier run are reused when ``keep_students``."""
    cache = build.with_name(build.name + "-cache")  # $PMCURATE_CACHE of the build
    removed = [build, cache / "builds", cache / "workers"]  # ray-url's working copies
    if not keep_students:
        removed.append(cache / "students")
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    out = build.as_uri() if executor == "ray-url" else str(build)
    command = [sys.executable, "-m", "pmcurate.cli", "build", str(manifest), "--out", out,
               "--workers", str(workers), "--executor", executor.removesuffix("-url")]  # fmt: skip
    started = time.perf_counter()
    process, output, _, peak, largest = run_measuring_memory(
        command, stderr=subprocess.STDOUT, env={"PMCURATE_CACHE": str(cache)}
    )
    seconds = time.perf_counter() - started
    if process.returncode:
        raise SystemExit(f"build failed ({process.returncode}):\n{output[-4000:]}")
    provenance = json.loads((build / "provenance.json").read_text())
    return {
        "workers": workers,
        "seconds": seconds,
        "articles": provenance["tables"]["articles"]["rows"],
        "paragraphs": provenance["tables"]["paragraphs"]["rows"],
        "steps": {name: step["seconds"] for name, step in provenance["steps"].items()},
        "peak_tree_mb": peak / 2**20,
        "peak_process_mb": largest / 2**20,
    }


HEADER = (
    f"{'articles':>8} {'workers':>7} {'executor':>8} {'seconds':>8} {'articles/s':>10} {'tree MB':>8} "
    f"{'proc MB':>8}  steps (s)"
)


def compile_package() -> None:
    """Write pmcurate's bytecode, as pip does for a regular install. An editable install under
    ``PYTHONDONTWRITEBYTECODE`` (set on some machines, CI's among them) would otherwise compile
    every pmcurate module from source in each process of each build (~0.2 CPU-s a process), which
    the libraries measured beside it, compiled by pip, never pay."""
    compileall.compile_dir(ROOT / "pmcurate", quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000], help="articles per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "bench-build", help="scratch folder")
    parser.add_argument(
        "--executors",
        nargs="+",
        choices=("local", "ray", "ray-url"),
        default=["local"],
        help="each run on each",
    )
    parser.add_argument(
        "--keep-students",
        action="store_true",
        help="reuse the students an earlier run trained (default: each run trains them)",
    )
    args = parser.parse_args()
    compile_package()
    print(HEADER)
    for size in args.sizes:
        corpus = make_corpus(args.work / f"corpus-{size}", size)
        manifest = write_manifest(args.work / f"bench-{size}.toml", corpus)
        for workers in args.workers:
            first = args.work / f"build-{size}-{workers}-{args.executors[0]}"
            for executor in args.executors:
                build = args.work / f"build-{size}-{workers}-{executor}"
                r = run(manifest, build, workers, executor, keep_students=args.keep_students)
                steps = ", ".join(f"{k} {v:.1f}" for k, v in r["steps"].items())  # type: ignore[union-attr]
                rate = r["articles"] / r["seconds"]  # type: ignore[operator]
                same = ""
                if build != first:
                    identical = outputs(build) == outputs(first)
                    same = f"; subset and export byte-identical to {args.executors[0]}'s: " + (
                        "yes" if identical else "NO"
                    )
                print(
                    f"{r['articles']:>8,} {workers:>7} {executor:>8} {r['seconds']:>8.1f} {rate:>10.1f} "
                    f"{r['peak_tree_mb']:>8.0f} {r['peak_process_mb']:>8.0f}  {steps}{same}",
                    flush=True,
                )


def outputs(build: Path) -> dict[str, bytes]:
    """The files of the build's subsets and exported shards, by their name in the build."""
    found = [p for folder in ("subsets", "dataset/data") for p in sorted((build / folder).rglob("*"))]
    return {str(p.relative_to(build)): p.read_bytes() for p in found if p.is_file()}


if __name__ == "__main__":
    main()
