"""``pmcurate build MANIFEST``: every stage of a manifest, in order, doing only the work that changed.

Stages: harvest → annotate (sample, teacher, train, apply) → filter (one step per subset) →
export (one step per export) → publish. Each call to another stage's module sits in one small
adapter function below (``_harvest_*``, ``_sample``, ``_train``…), so a stage whose API moves is
fixed in one place.

What "only the work that changed" means:

- **Shard steps** (harvest of local files, applying the students) decide per shard. A harvest
  shard's name is a hash of its input files' paths, sizes and mtimes: new or changed files make
  new shards, unchanged ones are found complete and skipped, and shards whose files are gone or
  changed are removed from every table (their labels too). A labels shard is redone only when
  its paragraphs shard is new or the students changed. Shard tasks run on the executor
  (``executor.py``): a local process pool or Ray.
- **Whole steps** (sample, teacher, train, each subset, each export, publish) have a
  *fingerprint*: a hash of their settings and of the files they read (names, sizes and sha256 of
  the shards of the tables they read; checksums of labels files). Content, not mtimes: a file is
  hashed again only when its size or mtime changed (``ContentHashes``), and a build copied with
  ``cp -r`` (new mtimes, same bytes) reruns nothing. A step whose fingerprint equals
  the one recorded at its last successful run (``BUILD/.pmcurate/state.json``) is skipped.
  Subsets and exports read the whole build (deduplication is global, shards are cut by size), so
  they are recomputed, as DuckDB queries over Parquet, whenever any table they read changed.
- The students learn from the teacher labels only, so new articles do not retrain them — except
  with ``pretrain = true``, where the word vectors come from the build's paragraphs: then the
  paragraphs are an input of training, and new articles retrain and relabel everything.

``plan_build`` walks the same stages without running anything and says, per step, whether it would
run and why (``pmcurate build --plan``); ``preflight`` checks, before any step runs, what would
otherwise fail late (the Hub token, the LLM key, a README.md in the dataset folder that pmcurate
did not write).

At the end ``BUILD/provenance.json`` records what is needed to reproduce the build (see
``write_provenance``) and the summary lists counts, drops by reason and time per step.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pmcurate import __version__, schema
from pmcurate.executor import Executor, UrlBuildExecutor, locate_build, make_executor, pull, push
from pmcurate.export.steps import DATASET_DIR, dataset_dir, export_dir
from pmcurate.http import public_url
from pmcurate.manifest import Manifest
from pmcurate.step import (
    Build,
    PlannedStep,
    Step,
    StepFailed,
    StepInterrupted,
    StepReport,
    run_step,
    sha256_file,
)

log = logging.getLogger(__name__)

STAGES = ("harvest", "annotate", "filter", "export", "publish")
PROVENANCE_FILE = "provenance.json"
LOCAL_PREFIX = "local-"
PACKAGES = ("pyarrow", "polars", "duckdb", "lxml", "fasttext-community", "numpy", "huggingface_hub", "ray")


class BuildError(StepFailed):
    """A build that cannot go on for a reason the user can fix; the message says which step and why."""


class BuildInterrupted(StepInterrupted):
    """A build stopped by its services (unreachable, failing): finished work is kept, a rerun resumes."""


@dataclass
class BuildResult:
    manifest: Manifest
    build: Path
    executor: str
    workers: int
    steps: list[StepReport]
    seconds: float
    provenance: Path | None
    remote: str | None = None
    """The URL the build was synchronised to, when ``out`` was one."""

    def step(self, name: str) -> StepReport:
        return next(s for s in self.steps if s.step == name)

    @property
    def ran(self) -> list[str]:
        return [s.step for s in self.steps if s.status == "ran"]


@dataclass
class _Context:
    """A manifest being built: the manifest, the build (``step.Build``) and the executor."""

    manifest: Manifest
    store: Build
    executor: Executor | None
    remote: str | None = None
    """The build's URL when its tasks run on Ray: export tasks read and write through it."""

    @property
    def build(self) -> Path:
        return self.store.path

    @property
    def plan(self) -> list[PlannedStep] | None:
        return self.store.plan

    @property
    def pending(self) -> str | None:
        return self.store.pending

    @property
    def force(self) -> bool:
        return self.store.force

    @property
    def progress(self) -> bool:
        return self.store.progress

    @property
    def steps(self) -> list[StepReport]:
        return self.store.reports

    @property
    def runner(self) -> Executor:
        """The executor that runs a step's tasks (a plan has none: it runs nothing)."""
        assert self.executor is not None, "a plan runs no tasks"
        return self.executor

    def planned(self, step: str, action: str, reason: str) -> None:
        self.store.planned(step, action, reason)

    def run(self, step: Step[Any, Any]) -> StepReport:
        """``step`` through the one runner, on this build's executor."""
        return run_step(step, self.store, self.executor)


# ---------------------------------------------------------------- entry point


def default_build_dir(manifest: Manifest) -> Path | str:
    """The manifest's ``out`` (a path or a URL), else ``build/<name>`` under the current directory."""
    return manifest.out or Path("build") / manifest.name


def run_build(
    manifest: Manifest,
    out: str | os.PathLike[str] | None = None,
    *,
    executor: str | Executor = "local",
    workers: int | None = None,
    until: str = "publish",
    force: bool = False,
    progress: bool = True,
) -> BuildResult:
    """Build ``manifest`` into ``out`` (default: ``default_build_dir``), stopping after ``until``."""
    if until not in STAGES:
        raise BuildError(f"--until {until!r}: one of {', '.join(STAGES)}")
    started = time.perf_counter()
    location = locate_build(out if out is not None else default_build_dir(manifest))
    build = location.local
    try:
        pulled = pull(location)
    except OSError as exc:
        raise BuildError(f"{location.remote}: cannot read the build ({exc})") from None
    if pulled:
        log.info("%s: %d files copied into the working copy %s", location.remote, pulled, build)
    _check_build_dir(build)
    preflight(manifest, build, until)
    build.mkdir(parents=True, exist_ok=True)
    swept = sweep_temporaries(build)
    if swept:
        log.info("%s: removed %d temporary files left by an interrupted run", build, swept)
    runner = make_executor(executor, workers) if isinstance(executor, str) else executor
    tasks: Executor = runner
    if location.remote and runner.name == "ray":  # workers that may not share this disk
        tasks = UrlBuildExecutor(runner, location)
    ctx = _Context(manifest, Build.open(build, force=force, progress=progress), tasks)
    ctx.remote = location.remote if runner.name == "ray" else None
    stages = {
        "harvest": _stage_harvest,
        "annotate": _stage_annotate,
        "filter": _stage_filter,
        "export": _stage_export,
        "publish": _stage_publish,
    }
    try:
        for stage in STAGES[: STAGES.index(until) + 1]:
            stages[stage](ctx)
    finally:
        if isinstance(executor, str):
            runner.close()
    seconds = time.perf_counter() - started
    provenance = write_provenance(ctx, seconds)
    if location.remote:
        sent, deleted = push(location)
        log.info("%s: %d files sent, %d deleted", location.remote, sent, deleted)
    return BuildResult(
        manifest, build, runner.name, runner.workers, ctx.steps, seconds, provenance, location.remote
    )


def sweep_temporaries(build: Path) -> int:
    """Delete the hidden temporaries that killed writes left in the build's tables and subsets.

    Readers never see them; a step that was finished before the kill is skipped on resume and would
    never sweep its own folder. Runs before any step, when nothing else writes into the build.
    """
    folders = [*(build / "tables").glob("*"), build / "subsets", *(build / "subsets").glob("*")]
    return sum(schema.remove_temporaries(folder) for folder in folders if folder.is_dir())


def _check_build_dir(build: Path) -> None:
    """Refuse to build into a folder that holds something other than a pmcurate build."""
    if build.is_file():
        raise BuildError(f"{build}: is a file, not a build folder")
    if build.is_dir() and any(build.iterdir()):
        known = {
            "tables",
            "labels",
            "models",
            "subsets",
            DATASET_DIR,
            ".pmcurate",
            "reports",
            PROVENANCE_FILE,
            "raw",
        }
        if not any((build / name).exists() for name in known):
            raise BuildError(f"{build} exists and is not a pmcurate build; choose another --out")


# ---------------------------------------------------------------- harvest


def _stage_harvest(ctx: _Context) -> None:
    """The harvest steps (``harvest.steps``): local files first, then each network source."""
    from pmcurate.harvest import steps

    local_sources = [s for s in ctx.manifest.sources if s.kind == "local"]
    if local_sources:
        modes = {s.citations for s in local_sources if s.citations}
        if len(modes) > 1:
            raise BuildError(
                f"harvest: local sources disagree on citations ({', '.join(sorted(modes))}); give one"
            )
        config = steps.LocalConfig(
            paths=tuple(path for source in local_sources for path in source.paths),
            batch_size=next(
                (s.batch_size for s in local_sources if s.batch_size), steps.LocalConfig.batch_size
            ),
            citations=modes.pop() if modes else steps.LocalConfig.citations,
        )
        ctx.run(steps.LocalHarvest(config))
    for index, source in enumerate(ctx.manifest.sources, 1):
        if source.kind != "local":
            settings = {k: v for k, v in asdict(source).items() if v not in (None, (), False) and k != "kind"}
            ctx.run(steps.NetworkHarvest(source.kind, index, settings))


# ---------------------------------------------------------------- annotate


def _stage_annotate(ctx: _Context) -> None:
    if ctx.manifest.teacher is None:
        return
    if not schema.shard_paths(ctx.build, "paragraphs") and ctx.plan is None:
        raise BuildError(
            f"annotate: {schema.table_dir(ctx.build, 'paragraphs')} has no shards; harvest found nothing"
        )
    for step in annotate_steps(ctx.manifest):
        ctx.run(step)
    _apply(ctx)


def annotate_steps(manifest: Manifest) -> list[Step[Any, Any]]:
    """The training steps of the manifest's ``[teacher]`` and ``[student]``, in order."""
    from pmcurate.annotate import steps

    teacher, student = manifest.teacher, manifest.student
    if teacher is None or student is None:
        return []
    found: list[Step[Any, Any]] = []
    if teacher.kind != "labels":
        found.append(steps.SampleStep(teacher.sample))
        found.append(steps.LlmTeacherStep(teacher.llm) if teacher.llm else steps.RulesTeacherStep())
    found.append(steps.TrainStep(student.train))
    if student.embedding is not None:
        found.append(steps.TrainEmbeddingStep(student.embedding))
    if student.encoder is not None:
        found.append(steps.TrainEncoderStep(student.encoder))
    if student.distill is not None:
        found.append(steps.DistillStep(student.distill))
    return found


def _apply(ctx: _Context) -> StepReport:
    """``annotate:apply`` (``annotate.apply_steps.ApplyStep``) with the manifest's student: a torch
    student (the encoder) in this process, the others on the build's executor."""
    from pmcurate.annotate import apply_steps
    from pmcurate.annotate.apply_config import ApplyConfig

    spec = ctx.manifest.student
    assert spec is not None  # the manifest requires one with a teacher
    device = spec.encoder.device if spec.encoder is not None else "auto"
    workers = ctx.executor.workers if ctx.executor is not None else 1
    step = apply_steps.ApplyStep(ApplyConfig(student=spec.kind, device=device), workers=workers)
    return run_step(step, ctx.store, None if step.in_process else ctx.executor)


# ---------------------------------------------------------------- filter, export, publish

READS = ("articles", "paragraphs", "figures", "labels")


def _stage_filter(ctx: _Context) -> None:
    from pmcurate.filters.steps import SubsetStep

    for subset in ctx.manifest.subsets:
        ctx.run(SubsetStep(subset.config, executor=ctx.executor))


def _stage_export(ctx: _Context) -> None:
    from pmcurate.export.steps import ExportConfig, ExportStep

    manifest = ctx.manifest
    for spec in manifest.exports:
        config = ExportConfig(
            name=spec.name,
            preset=spec.preset,
            subset=spec.subset,
            format=spec.format,
            split_by=spec.split_by,
            shard_mb=spec.shard_mb,
            title=manifest.name,
            description=manifest.description,
            repo=manifest.publish.repo if manifest.publish else None,
            remote=ctx.remote,
            tasks=ctx.executor.workers if ctx.executor else None,
        )
        ctx.run(ExportStep(config))


def _stage_publish(ctx: _Context) -> None:
    from pmcurate.export.steps import PublishConfig, PublishStep

    spec = ctx.manifest.publish
    if spec is None:
        return
    ctx.run(PublishStep(PublishConfig(repo=spec.repo, private=spec.private, token_env=spec.token_env)))


# ---------------------------------------------------------------- checks and plan


def preflight(manifest: Manifest, build: Path, until: str = "publish") -> list[str]:
    """Check what the stages up to ``until`` need and can be checked now, before hours of work:
    ``BuildError`` for the first missing thing, else the list of what was checked."""
    stages = STAGES[: STAGES.index(until) + 1]
    checked = []
    teacher = manifest.teacher
    key_env = teacher.llm.api_key_env if teacher is not None and teacher.llm is not None else None
    if "annotate" in stages and key_env:
        if not os.environ.get(key_env):
            raise BuildError(
                f"annotate: ${key_env} is not set ([teacher] api_key_env names it): "
                "set it, or drop api_key_env for an endpoint that needs no key"
            )
        checked.append(f"LLM key in ${key_env}")
    if "export" in stages and manifest.exports:
        from pmcurate.export.card import CardError, check_card_target  # Polars, DuckDB: only to export

        try:
            check_card_target(dataset_dir(build))
        except CardError as exc:
            raise BuildError(f"export: {exc}") from None
        checked.append(f"dataset card {dataset_dir(build) / 'README.md'} writable")
    spec = manifest.publish
    if "publish" in stages and spec is not None:
        from huggingface_hub import get_token

        if not (os.environ.get(spec.token_env) or get_token()):
            raise BuildError(
                f"publish: no Hugging Face token: set ${spec.token_env} ([publish] token_env) or log in "
                "with `hf auth login`; or build with --until export"
            )
        checked.append(f"Hugging Face token for {spec.repo}")
    return checked


@dataclass
class BuildPlan:
    manifest: Manifest
    build: Path
    steps: list[PlannedStep]
    checks: list[str]
    remote: str | None = None


def plan_build(
    manifest: Manifest,
    out: str | os.PathLike[str] | None = None,
    *,
    until: str = "publish",
    force: bool = False,
) -> BuildPlan:
    """What ``run_build`` would do, step by step, and why; nothing is run, fetched or written.

    Raises ``BuildError`` when a check of ``preflight`` fails."""
    if until not in STAGES:
        raise BuildError(f"--until {until!r}: one of {', '.join(STAGES)}")
    location = locate_build(out if out is not None else default_build_dir(manifest))
    build = location.local
    _check_build_dir(build)
    checks = preflight(manifest, build, until)
    ctx = _Context(manifest, Build.open(build, force=force, progress=False, plan=True), None)
    stages = {
        "harvest": _stage_harvest,
        "annotate": _stage_annotate,
        "filter": _stage_filter,
        "export": _stage_export,
        "publish": _stage_publish,
    }
    for stage in STAGES[: STAGES.index(until) + 1]:
        stages[stage](ctx)
    return BuildPlan(manifest, build, ctx.plan or [], checks, location.remote)


def format_plan(plan: BuildPlan) -> str:
    where = f"{plan.remote} (working copy {plan.build})" if plan.remote else str(plan.build)
    lines = [f"plan for build {plan.manifest.name} → {where} (nothing is run)"]
    width = max((len(s.step) for s in plan.steps), default=10)
    for step in plan.steps:
        lines.append(f"  {step.step:<{width}}  {step.action:<9}  {step.reason}")
    runs = sum(s.action == "run" for s in plan.steps)
    lines.append(f"{runs} of {len(plan.steps)} steps would run")
    if plan.checks:
        lines.append("checked: " + "; ".join(plan.checks))
    return "\n".join(lines)


# ---------------------------------------------------------------- provenance


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


def _input_files(ctx: _Context) -> list[dict[str, Any]]:
    """Every local input file with its sha256 (``ContentHashes``: cached in the build state by path,
    size and mtime, the cache every fingerprint uses)."""
    from pmcurate.harvest import archive

    paths = [p for s in ctx.manifest.sources if s.kind == "local" for p in s.paths]
    if not paths:
        return []
    rows: list[dict[str, Any]] = []
    for path in archive.discover_inputs(paths):
        digest = ctx.store.hashes.digest(path)
        rows.append(
            {"source": "local", "path": str(path.resolve()), "bytes": path.stat().st_size, "sha256": digest}
        )
    return rows


def _network_inputs(ctx: _Context) -> list[dict[str, Any]]:
    """Network sources: their settings, and a digest of the article versions they gave."""
    sources = [s for s in ctx.manifest.sources if s.kind != "local"]
    if not sources:
        return []
    import duckdb

    shards = [p for p in schema.shard_paths(ctx.build, "articles") if not p.stem.startswith(LOCAL_PREFIX)]
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
        if source.ids:
            settings["ids_sha256"] = sha256_file(source.ids)
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


def _teacher_provenance(ctx: _Context) -> dict[str, Any] | None:
    teacher = ctx.manifest.teacher
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
        path = ctx.build / "labels" / name
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


def _exports_provenance(ctx: _Context) -> dict[str, Any]:
    exports = {}
    for spec in ctx.manifest.exports:
        folder = export_dir(ctx.build, spec.name)
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


def write_provenance(ctx: _Context, seconds: float) -> Path:
    """``BUILD/provenance.json``: tool and library versions, the manifest (text and sha256), every
    input with its checksum and source, teacher (model, prompt hash, labels checksums), student
    models with their sha256, row counts per table and subset, export files with checksums, and
    what each step did. Secrets are never written: only the names of the variables holding them."""
    manifest = ctx.manifest
    subsets = {}
    for spec in manifest.subsets:
        summary = ctx.build / "subsets" / spec.name / "subset.json"
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
        "inputs": _input_files(ctx) + _network_inputs(ctx),
        "teacher": _teacher_provenance(ctx),
        "models": _models_provenance(ctx.build),
        "tables": _table_counts(ctx.build),
        "subsets": subsets,
        "exports": _exports_provenance(ctx),
        "steps": {
            s.step: {"status": s.status, "seconds": round(s.seconds, 3), "counts": s.counts, "drops": s.drops}
            for s in ctx.steps
        },
        "seconds": round(seconds, 3),
    }
    ctx.store.hashes.forget_unused()
    ctx.store.save_state()
    path = ctx.build / PROVENANCE_FILE
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
    from pmcurate.export.query import run_query

    found = example_query(result)
    if found is None:
        return
    folder, sql = found
    print(f"\nDataset: {folder}  (card: {folder / 'README.md'})")
    print(f'\n$ pmcurate query {folder} "{sql}"')
    run_query(folder, sql)
