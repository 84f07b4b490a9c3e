"""``pmcurate annotate sample|llm|train|distill|apply``: each runs its steps (``annotate/steps.py``)
through the one runner, ``step.run_step``, as ``pmcurate build`` does, and prints what they made."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pmcurate.annotate import sample, steps, students
from pmcurate.annotate.report import side_by_side
from pmcurate.step import Build, Step, run_step


def run(args: argparse.Namespace) -> int:
    handler = {"sample": _sample, "llm": _llm, "train": _train, "apply": _apply, "distill": _distill}[
        args.step
    ]
    return handler(args)


def _run(build: Build, step: Step[Any, Any]) -> Any:
    """``step`` through the one runner (always run: a command is asked to run); what it produced."""
    run_step(step, build)
    return step.result


def _open(args: argparse.Namespace) -> Build:
    from pmcurate import progress

    return Build.open(Path(args.build), force=True, progress=progress.enabled())


def _sample(args: argparse.Namespace) -> int:
    frame = _run(_open(args), steps.SampleStep(steps.SampleConfig.from_args(args)))
    path = Path(args.build) / sample.SAMPLE_FILE
    strata = frame.group_by("article_type", "section_type").len().sort("len", descending=True)
    print(f"sampled {frame.height} paragraphs from {frame['article_id'].n_unique()} articles → {path}")
    print(strata)
    return 0


def _llm(args: argparse.Namespace) -> int:
    summary = _run(_open(args), steps.LlmTeacherStep(steps.LlmTeacherConfig.from_args(args)))
    print(
        f"{summary.items} paragraphs: {summary.cached} from cache, {summary.answered} answered, "
        f"{summary.failed} failed, {summary.skipped} not asked; tokens {summary.prompt_tokens:,} in, "
        f"{summary.completion_tokens:,} out; cost {summary.cost:.4f}; {summary.seconds:.1f} s"
    )
    if summary.budget_exhausted:
        print("budget spent: rerun with a larger budget to label the rest (answers so far are cached)")
    return 0


def _train(args: argparse.Namespace) -> int:
    """Each student ``--student`` names trained by its steps (``annotate/students/``); when they
    are not the fastText students alone, every student of the build side by side."""
    build = _open(args)
    if args.labels is None and args.teacher == "rules":
        _run(build, steps.RulesTeacherStep())
    chosen = tuple(dict.fromkeys(args.student))
    for train in dict.fromkeys(t for name in chosen for t in students.get(name).trains):  # encoder once
        print(train.show(Path(args.build), _run(build, train.step(train.config.from_args(args)))))
    if chosen != (students.BASELINE,):
        _print_side_by_side(args.build)
    return 0


def _distill(args: argparse.Namespace) -> int:
    from pmcurate.annotate.students import distilled

    result = _run(_open(args), steps.DistillStep(steps.DistillConfig.from_args(args)))
    print(distilled.show(Path(args.build), result))
    _print_side_by_side(args.build)
    return 0


def _print_side_by_side(build: str) -> None:
    table = side_by_side(build)
    if table:
        print("\nevery student on the same held-out rows\n" + table)


def _apply(args: argparse.Namespace) -> int:
    from pmcurate import progress
    from pmcurate.annotate import apply_steps
    from pmcurate.annotate.apply_config import ApplyConfig

    config = ApplyConfig.from_args(args)
    report = apply_steps.apply(
        args.build, config, workers=args.jobs, force=args.force, progress=progress.enabled()
    )
    counts = report.counts
    labelled = counts.get("paragraphs_labelled", 0)
    rate = labelled / report.seconds if report.seconds else 0.0
    print(
        f"labelled {labelled:,} paragraphs in {counts.get('shards_labelled', 0)} shards "
        f"({counts.get('shards', 0) - counts.get('shards_labelled', 0)} already done) in "
        f"{report.seconds:.1f} s ({rate:,.0f} paragraphs/s)"
    )
    return 0
