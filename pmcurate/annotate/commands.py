"""``pmcurate annotate sample|llm|train|distill|apply``: each runs its steps (``annotate/steps.py``)
through the one runner, ``step.run_step``, as ``pmcurate build`` does, and prints what they made."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pmcurate.annotate import sample, steps
from pmcurate.annotate.report import format_report, side_by_side
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


STUDENTS = {
    "fasttext": ("fasttext",),
    "embedding": ("embedding",),
    "both": ("fasttext", "embedding"),
    "encoder": ("encoder",),
    "all": ("fasttext", "embedding", "encoder"),
}


def _train(args: argparse.Namespace) -> int:
    build = _open(args)
    if args.labels is None and args.teacher == "rules":
        _run(build, steps.RulesTeacherStep())
    chosen = STUDENTS[args.student]
    if "fasttext" in chosen:
        result = _run(build, steps.TrainStep(steps.TrainConfig.from_args(args)))
        print(format_report(result.report))
        print(f"\nmodels: {Path(args.build) / 'models'} (annotator {result.manifest['annotator']})")
        print(json.dumps(result.report["chosen"]))
    if "embedding" in chosen:
        _print_embedding(args, _run(build, steps.TrainEmbeddingStep(steps.EmbeddingConfig.from_args(args))))
    if "encoder" in chosen:
        _print_encoder(args, _run(build, steps.TrainEncoderStep(steps.EncoderConfig.from_args(args))))
    if len(chosen) > 1 or "encoder" in chosen:
        table = side_by_side(args.build)
        if table:
            print("\nevery student on the same held-out rows\n" + table)
    return 0


def _print_embedding(args: argparse.Namespace, result: Any) -> None:
    from pmcurate.annotate import embedding

    print()
    print(format_report(result.report))
    print(f"\nreport: {Path(args.build) / 'models' / embedding.REPORT_DIR / 'report.json'}")
    if result.comparison is None:
        print("no fastText report on the same teacher and split to compare with (train with --student both)")
    else:
        print()
        print(embedding.format_comparison(result.comparison))


def _print_encoder(args: argparse.Namespace, result: Any) -> None:
    from pmcurate.annotate import encoder

    print()
    print(format_report(result.report))
    assert result.manifest is not None
    print(
        f"\nencoder student: {Path(args.build) / 'models' / encoder.FOLDER} "
        f"(annotator {result.manifest['annotator']}; best epoch {result.report['chosen']['best_epoch']}, "
        f"{result.report['train_seconds']:.0f} s on {result.report['device']})"
    )


def _distill(args: argparse.Namespace) -> int:
    from pmcurate.annotate import distill

    result = _run(_open(args), steps.DistillStep(steps.DistillConfig.from_args(args)))
    if result.report is not None:
        print(format_report(result.report))
        table = side_by_side(args.build)
        if table:
            print("\nevery student on the same held-out rows\n" + table)
    print(
        f"\ndistilled student: {Path(args.build) / 'models' / distill.FOLDER} (annotator "
        f"{result.manifest['annotator']}, learnt from {result.sample:,} paragraphs labelled by the encoder)"
    )
    return 0


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
