"""What a build leaves behind: ``BUILD/provenance.json`` and the summary printed at its end.

``write_provenance`` records what is needed to reproduce the build: tool and library versions,
the manifest, every input with its checksum, the teacher, the students, row counts, export files
with checksums and what each step did (docs/build.md, "Provenance"). ``format_summary`` lists, per
step, counts, drops by reason and time; ``print_dataset`` says where the dataset is, with a query
over it.
"""

from __future__ import annotations

import json
import os
import platform
import re
from dataclasses import asdict
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from pmcurate import __version__, schema
from pmcurate.export.steps import dataset_dir, export_dir
from pmcurate.http import public_url
from pmcurate.step import Build, resolved_text, sha256_file

if TYPE_CHECKING:
    from pmcurate.manifest import Manifest
    from pmcurate.pipeline import BuildResult

PROVENANCE_FILE = "provenance.json"
LOCAL_PREFIX = "local-"
PACKAGES = ("pyarrow", "polars", "duckdb", "lxml", "fasttext-community", "numpy", "huggingface_hub", "ray")


def _versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _table_counts(build: Path) -> dict[str, dict[str, int]]:
    root = build / "tables"
    names = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    counts = {}
    for name in names:
        shards = schema.shard_paths(build, name)
        counts[name] = {
            "rows": sum(pq.ParquetFile(p).metadata.num_rows for p in shards),
            "shards": len(shards),
        }
    return counts


def _input_files(manifest: Manifest, store: Build) -> list[dict[str, Any]]:
    """Every local input file with its sha256 (``ContentHashes``: cached in the build state by path,
    size and mtime, the cache every fingerprint uses)."""
    from pmcurate.harvest import archive
    from pmcurate.harvest.steps import LocalConfig

    paths = [p for s in manifest.sources if isinstance(s, LocalConfig) for p in s.paths]
    if not paths:
        return []
    rows: list[dict[str, Any]] = []
    for path in archive.discover_inputs(paths):
        stat = path.stat()
        digest = store.hashes.digest(path, stat)
        rows.append(
            {"source": "local", "path": resolved_text(str(path)), "bytes": stat.st_size, "sha256": digest}
        )
    return rows


def _network_inputs(manifest: Manifest, build: Path) -> list[dict[str, Any]]:
    """Network sources: their settings, and a digest of the article versions they gave."""
    from pmcurate.harvest.steps import NetworkConfig

    sources = [s for s in manifest.sources if isinstance(s, NetworkConfig)]
    if not sources:
        return []
    import duckdb

    shards = [p for p in schema.shard_paths(build, "articles") if not p.stem.startswith(LOCAL_PREFIX)]
    digest, count = "", 0
    if shards:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in shards)
        with duckdb.connect() as con:  # a relation has no fetchone() since duckdb 2: execute a statement
            count, digest = con.execute(
                "SELECT count(*), sha256(coalesce(string_agg(article_id || ':'"
                " || coalesce(version::VARCHAR, '') || ':' || coalesce(content_sha256, ''),"
                " ',' ORDER BY article_id), ''))"
                f" FROM read_parquet([{files}])"
            ).fetchone()  # type: ignore[misc]
    rows: list[dict[str, Any]] = []
    for source in sources:
        settings = {k: v for k, v in asdict(source).items() if v not in (None, (), False)}
        if "base_url" in settings:
            settings["base_url"] = public_url(settings["base_url"])
        ids = getattr(source, "ids", None)
        if ids:
            settings["ids_sha256"] = sha256_file(ids)
        rows.append({"source": source.kind, "settings": settings})
    rows.append(
        {
            "source": "network articles",
            "articles": count,
            "articles_sha256": digest,
            "detail": "tables/articles: article_id, version, source_uri, content_sha256 of each",
        }
    )
    return rows


def _teacher_provenance(manifest: Manifest, build: Path) -> dict[str, Any] | None:
    teacher = manifest.teacher
    if teacher is None:
        return None
    info: dict[str, Any] = {"kind": teacher.kind}
    if teacher.llm is not None:
        from pmcurate.annotate import prompt

        endpoint = public_url(teacher.llm.endpoint) if teacher.llm.endpoint else None
        info |= teacher.llm.settings() | {"endpoint": endpoint, "prompt_hash": prompt.PROMPT_HASH}
    if teacher.kind != "labels":
        info |= teacher.sample.settings()
    if teacher.labels:
        info["labels"] = {"path": str(teacher.labels), "sha256": sha256_file(teacher.labels)}
    for name in ("sample.parquet", f"teacher/{teacher.kind}.parquet"):
        path = build / "labels" / name
        if teacher.kind != "labels" and path.is_file():
            info[name] = {"sha256": sha256_file(path), "rows": pq.ParquetFile(path).metadata.num_rows}
    return info


def _models_provenance(build: Path) -> dict[str, Any] | None:
    path = build / "models" / "students.json"
    if not path.is_file():
        return None
    students = json.loads(path.read_text())
    students.pop("report", None)
    report = build / "models" / "report.json"
    if report.is_file():
        students["report_sha256"] = sha256_file(report)
    for folder in ("encoder", "distilled"):  # the student kinds beside fastText, when trained
        manifest = build / "models" / folder / "students.json"
        if manifest.is_file():
            students[folder] = json.loads(manifest.read_text())
    return students


def _exports_provenance(manifest: Manifest, build: Path) -> dict[str, Any]:
    exports = {}
    for spec in manifest.exports:
        folder = export_dir(build, spec.name)
        if folder.is_dir():
            exports[spec.name] = [
                {
                    "file": str(p.relative_to(folder)),
                    "bytes": p.stat().st_size,
                    "sha256": sha256_file(p),
                    **({"rows": pq.ParquetFile(p).metadata.num_rows} if p.suffix == ".parquet" else {}),
                }
                for p in sorted(folder.rglob("*"))
                if p.is_file() and not p.name.startswith(".")
            ]
    return exports


def write_provenance(manifest: Manifest, store: Build, seconds: float) -> Path:
    """``BUILD/provenance.json``: tool and library versions, the manifest (text and sha256), every
    input with its checksum and source, teacher (model, prompt hash, labels checksums), student
    models with their sha256, row counts per table and subset, export files with checksums, and
    what each step did. Secrets are never written: only the names of the variables holding them."""
    subsets = {}
    for spec in manifest.subsets:
        summary = store.path / "subsets" / spec.name / "subset.json"
        if summary.is_file():
            subsets[spec.name] = json.loads(summary.read_text()).get("counts", {})
    provenance = {
        "tool": {
            "name": "pmcurate",
            "version": __version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": _versions(),
        },
        "built_at": datetime.now(UTC).isoformat(),
        "manifest": {
            "name": manifest.name,
            "path": str(manifest.path),
            "sha256": manifest.sha256,
            "text": manifest.path.read_text(encoding="utf-8"),
        },
        "inputs": _input_files(manifest, store) + _network_inputs(manifest, store.path),
        "teacher": _teacher_provenance(manifest, store.path),
        "models": _models_provenance(store.path),
        "tables": _table_counts(store.path),
        "subsets": subsets,
        "exports": _exports_provenance(manifest, store.path),
        "steps": {
            s.step: {"status": s.status, "seconds": round(s.seconds, 3), "counts": s.counts, "drops": s.drops}
            for s in store.reports
        },
        "seconds": round(seconds, 3),
    }
    store.hashes.forget_unused()
    store.save_state()
    path = store.path / PROVENANCE_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_scrub(json.dumps(provenance, indent=2, default=str)) + "\n")
    os.replace(tmp, path)
    return path


def _scrub(text: str) -> str:
    """Replace the value of any secret environment variable that appears in ``text``."""
    for name, value in os.environ.items():
        if re.search(r"TOKEN|KEY|SECRET|PASSWORD", name) and len(value) >= 8 and value in text:
            text = text.replace(value, f"<${name}>")
    return text


# ---------------------------------------------------------------- summary


def format_summary(result: BuildResult) -> str:
    """Per step: status, seconds, counts and drops by reason; then the total."""
    where = f"{result.remote} (working copy {result.build})" if result.remote else str(result.build)
    lines = [f"build {result.manifest.name} → {where}  ({result.executor}, {result.workers} workers)"]
    width = max(len(s.step) for s in result.steps) if result.steps else 10
    for step in result.steps:
        counts = ", ".join(
            f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
            for k, v in step.counts.items()
            if k != "sha256"
        )
        lines.append(f"  {step.step:<{width}}  {step.status:<9} {step.seconds:7.1f} s  {counts}")
        if step.drops:
            drops = ", ".join(f"{k} {v:,}" for k, v in sorted(step.drops.items(), key=lambda kv: -kv[1]))
            lines.append(f"  {'':<{width}}  {'':<9} {'':>9}  dropped: {drops}")
    ran = len(result.ran)
    lines.append(
        f"{ran} of {len(result.steps)} steps ran, {result.seconds:.1f} s; provenance: {result.provenance}"
    )
    return "\n".join(lines)


def example_query(result: BuildResult) -> tuple[Path, str] | None:
    """(dataset folder, SQL over its first Parquet config's view), for the end of a build."""
    from pmcurate.export.exporter import config_folder

    for spec in result.manifest.exports:
        if spec.format != "parquet" or not any(export_dir(result.build, spec.name).glob("*.parquet")):
            continue
        view = config_folder(spec.name)
        if spec.preset == "image-text":
            sql = f"SELECT license, count(*) AS figures, round(avg(width)) AS width FROM {view} GROUP BY ALL"
        elif spec.preset == "biomed-enriched" or result.manifest.student:
            sql = (
                "SELECT document_type, count(*) AS paragraphs, round(avg(educational_score), 2) AS edu, "
                f"round(avg(length(text))) AS chars FROM {view} GROUP BY ALL ORDER BY paragraphs DESC"
            )
        else:
            sql = f"SELECT license, count(*) AS paragraphs FROM {view} GROUP BY ALL ORDER BY 2 DESC"
        return dataset_dir(result.build), sql
    return None


def print_dataset(result: BuildResult) -> None:
    """Where the dataset is, and a ``pmcurate query`` over it with its result."""
    found = example_query(result)
    if found is None:
        return
    from pmcurate.export.query import run_query  # DuckDB: only for a build that exported

    folder, sql = found
    print(f"\nDataset: {folder}  (card: {folder / 'README.md'})")
    print(f'\n$ pmcurate query {folder} "{sql}"')
    run_query(folder, sql)
