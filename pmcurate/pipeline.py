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

At the end ``BUILD/provenance.json`` records what is needed to reproduce the build, and the summary
lists counts, drops by reason and time per step (``provenance.py``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pmcurate import schema
from pmcurate.executor import (
    Executor,
    LocalExecutor,
    UrlBuildExecutor,
    build_preload,
    locate_build,
    make_executor,
    pull,
    push,
)
from pmcurate.export.steps import DATASET_DIR, dataset_dir
from pmcurate.manifest import Manifest
from pmcurate.provenance import PROVENANCE_FILE, write_provenance
from pmcurate.step import Build, PlannedStep, Step, StepFailed, StepInterrupted, StepReport, run_step

log = logging.getLogger(__name__)

STAGES = ("harvest", "annotate", "filter", "export", "publish")


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
    preload = build_preload(until)
    runner = make_executor(executor, workers, preload=preload) if isinstance(executor, str) else executor
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
    provenance = write_provenance(manifest, ctx.store, seconds)
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
    from pmcurate.harvest.steps import harvest_steps

    for step in harvest_steps(ctx.manifest.sources):
        ctx.run(step)


# ---------------------------------------------------------------- annotate


def _stage_annotate(ctx: _Context) -> None:
    if ctx.manifest.teacher is None:
        return
    if not schema.shard_paths(ctx.build, "paragraphs") and ctx.plan is None:
        raise BuildError(
            f"annotate: {schema.table_dir(ctx.build, 'paragraphs')} has no shards; harvest found nothing"
        )
    if isinstance(ctx.executor, LocalExecutor):
        ctx.executor.warm(TASK_IMPORTS)
    for step in annotate_steps(ctx.manifest):
        ctx.run(step)
    _apply(ctx)


TASK_IMPORTS = ("pmcurate.annotate.apply_steps", "pmcurate.filters.engine")
"""What the tasks of ``annotate:apply`` and of the subsets import first (Polars, DuckDB: ~0.25 CPU-s a
worker): the pool's workers import them while this process trains the students, with the cores
otherwise idle when the students come from the cache."""


def annotate_steps(manifest: Manifest) -> list[Step[Any, Any]]:
    """The training steps of the manifest's ``[teacher]`` and ``[student]``, in order."""
    from pmcurate.annotate import steps, students

    teacher, student = manifest.teacher, manifest.student
    if teacher is None or student is None:
        return []
    found: list[Step[Any, Any]] = []
    if teacher.kind != "labels":
        found.append(steps.SampleStep(teacher.sample))
        found.append(steps.LlmTeacherStep(teacher.llm) if teacher.llm else steps.RulesTeacherStep())
    trains = students.trains(student.kind)
    found.extend(train.step(config) for train, config in zip(trains, student.configs, strict=True))
    return found


def _apply(ctx: _Context) -> StepReport:
    """``annotate:apply`` (``annotate.apply_steps.ApplyStep``) with the manifest's student: a torch
    student (the encoder) in this process, the others on the build's executor."""
    from pmcurate.annotate import apply_steps
    from pmcurate.annotate.apply_config import ApplyConfig

    spec = ctx.manifest.student
    assert spec is not None  # the manifest requires one with a teacher
    workers = ctx.executor.workers if ctx.executor is not None else 1
    step = apply_steps.ApplyStep(ApplyConfig(student=spec.kind, device=spec.device), workers=workers)
    return run_step(step, ctx.store, None if step.in_process else ctx.executor)


# ---------------------------------------------------------------- filter, export, publish

READS = ("articles", "paragraphs", "figures", "labels")


def _stage_filter(ctx: _Context) -> None:
    from pmcurate.filters.steps import SubsetStep

    for subset in ctx.manifest.subsets:
        ctx.run(SubsetStep(subset.config, executor=ctx.executor))


def _stage_export(ctx: _Context) -> None:
    from pmcurate.export.steps import ExportStep

    manifest = ctx.manifest
    for spec in manifest.exports:
        config = replace(
            spec,
            title=manifest.name,
            description=manifest.description,
            repo=manifest.publish.repo if manifest.publish else None,
            remote=ctx.remote,
            tasks=ctx.executor.workers if ctx.executor else None,
        )
        ctx.run(ExportStep(config))


def _stage_publish(ctx: _Context) -> None:
    from pmcurate.export.steps import PublishStep

    if ctx.manifest.publish is not None:
        ctx.run(PublishStep(ctx.manifest.publish))


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
