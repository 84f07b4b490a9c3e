"""Harvest throughput against a local server, and proof that the rate limit holds.

    .venv/bin/python bench/harvest.py [--articles 300] [--concurrency 8] [--latency 0.02] [--rate 20]

1. Throughput: ``harvest europepmc`` of N articles (clones of the real fixtures) from a local
   server speaking Europe PMC REST, each answer delayed by ``--latency`` seconds, at the given
   concurrency with no rate limit: articles/s end to end (search, fetch, parse, Parquet).
2. Rate limit: the same harvest limited to ``--rate`` requests/s; the server's own clock gives the
   mean rate and the most requests seen in any one-second window (must not exceed the limit).
3. E-utilities: one efetch per article without an API key: the most requests the server saw in
   any one-second window must not exceed NCBI's 3 requests/s.
4. The PMC bucket: ``harvest pmc --all`` of ``--bucket-articles`` article versions (clones of the
   real fixtures under new PMCIDs) from a local S3 (moto's server, the bucket's layout:
   ``tests/servers/s3.py``, in a process of its own), at the source's defaults (``steps.PmcConfig``)
   and at the politeness defaults of the other services (8 in flight, 10 requests/s): articles/s of
   each, and the ratio. moto answers from one Python process and closes its connections early (one
   connect for every two requests measured), so the first figure is moto's ceiling, not S3's.
Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pmcurate.harvest import europepmc, eutils, pmc  # noqa: E402
from pmcurate.harvest.fetch import FetchConfig  # noqa: E402
from pmcurate.harvest.steps import PmcConfig  # noqa: E402
from tests.servers.corpus import EuropePmcApp, EutilsApp, corpus  # noqa: E402
from tests.servers.faulty import App, FaultyServer, Reply  # noqa: E402
from tests.servers.s3 import ArticleVersion, PmcBucketLoader, free_port  # noqa: E402


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most timestamps inside any half-open window ``[t, t + window)``."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def delayed(app: App, latency: float) -> App:
    """``app``, answering each request ``latency`` seconds late (in the server's thread for that
    request: the others go on), as a distant service would."""

    def answer(path: str, query: dict[str, list[str]]) -> Reply:
        time.sleep(latency)
        return app(path, query)

    return answer


def throughput(n: int, concurrency: int, latency: float) -> None:
    app = delayed(EuropePmcApp(corpus(n)), latency)
    with tempfile.TemporaryDirectory() as out, FaultyServer(app) as server:
        options = europepmc.EuropePmcOptions(
            out=Path(out),
            query="OPEN_ACCESS:Y",
            base_url=f"{server.url}{EuropePmcApp.PREFIX}",
            fetch=FetchConfig(concurrency=concurrency, rate=100_000.0),
        )
        summary = europepmc.harvest(options)
    print(
        f"throughput: {summary.articles} articles, concurrency {concurrency}, "
        f"latency {latency * 1000:.0f} ms: "
        f"{summary.seconds:.2f} s, {summary.articles / summary.seconds:.1f} articles/s, "
        f"{summary.bytes / 1e6 / summary.seconds:.1f} MB/s"
    )


def rate_limit(rate: float, concurrency: int) -> bool:
    n = int(rate * 3)
    with tempfile.TemporaryDirectory() as out, FaultyServer(EuropePmcApp(corpus(n))) as server:
        options = europepmc.EuropePmcOptions(
            out=Path(out),
            query="OPEN_ACCESS:Y",
            base_url=f"{server.url}{EuropePmcApp.PREFIX}",
            fetch=FetchConfig(concurrency=concurrency, rate=rate),
        )
        europepmc.harvest(options)
        times = [s.at for s in server.served()]
    mean = (len(times) - 1) / (max(times) - min(times))
    peak = max_in_window(times)
    ok = peak <= rate
    print(
        f"rate limit {rate:g}/s, concurrency {concurrency}: {len(times)} requests, mean {mean:.2f} req/s, "
        f"max {peak} in any 1 s window -> {'OK' if ok else 'EXCEEDED'}"
    )
    return ok


def ncbi_ceiling(n: int) -> bool:
    app = EutilsApp(corpus(n))
    with tempfile.TemporaryDirectory() as out, FaultyServer(app) as server:
        options = eutils.EutilsOptions(
            out=Path(out), ids=tuple(app.articles), base_url=f"{server.url}{EutilsApp.PREFIX}", batch_size=1
        )
        eutils.harvest(options)
        times = [s.at for s in server.served()]
    peak = max_in_window(times)
    ok = peak <= eutils.RATE_WITHOUT_KEY
    print(
        f"eutils without API key: {len(times)} requests, max {peak} in any 1 s window "
        f"(NCBI's ceiling: {eutils.RATE_WITHOUT_KEY:g}) -> {'OK' if ok else 'EXCEEDED'}"
    )
    return ok


def bucket_throughput(n: int) -> None:
    """``harvest pmc --all`` of ``n`` article versions from a local bucket: the source's defaults
    beside the other services' politeness defaults."""
    with moto_process() as endpoint:
        loader = PmcBucketLoader(endpoint)
        for pmcid, xml in corpus(n).items():
            loader.add(ArticleVersion(pmcid, 1, xml))
        base_url = f"{endpoint}/pmc-oa-opendata"
        defaults = PmcConfig(all=True, base_url=base_url)
        polite = PmcConfig(all=True, base_url=base_url, concurrency=8, rate=10.0)
        rates = []
        for label, config in (("the source's defaults", defaults), ("8 in flight, 10 requests/s", polite)):
            with tempfile.TemporaryDirectory() as out:
                options = config.harvest_options(Path(out))
                summary = pmc.harvest(options)
            rates.append(summary.articles / summary.seconds)
            print(
                f"pmc bucket, {label} ({options.fetch.concurrency} in flight, {options.fetch.rate:g}/s): "
                f"{summary.articles} articles in {summary.seconds:.1f} s, {rates[-1]:.1f} articles/s"
            )
        print(f"pmc bucket: the source's defaults harvest {rates[0] / rates[1]:.1f}× as fast")


@contextlib.contextmanager
def moto_process() -> Iterator[str]:
    """moto's S3 server in a process of its own (in this one, it would share the harvest's GIL);
    its endpoint once it answers."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "moto.server", "-p", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                httpx.get(endpoint, timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"moto's server did not answer at {endpoint}")
        yield endpoint
    finally:
        server.terminate()
        server.wait()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.02, help="server delay per answer, seconds")
    parser.add_argument("--rate", type=float, default=20.0, help="rate limit to verify, requests/s")
    parser.add_argument("--bucket-articles", type=int, default=200, help="article versions in the bucket")
    args = parser.parse_args()
    throughput(args.articles, args.concurrency, args.latency)
    throughput(args.articles, 1, args.latency)
    ok = rate_limit(args.rate, args.concurrency)
    ok &= ncbi_ceiling(10)
    bucket_throughput(args.bucket_articles)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
