"""``pmcurate annotate sample|llm|train|apply``: argument handling around the stage functions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import polars as pl

from pmcurate.annotate import labels_file, llm, rules, sample, student, vllm_backend
from pmcurate.annotate.report import format_report, side_by_side
from pmcurate.errors import UserError


def run(args: argparse.Namespace) -> int:
    handler = {"sample": _sample, "llm": _llm, "train": _train, "apply": _apply, "distill": _distill}[
        args.step
    ]
    return handler(args)


def _sample(args: argparse.Namespace) -> int:
    frame = sample.stratified_sample(args.build, args.n, seed=args.seed, min_tokens=args.min_tokens)
    path = sample.write_sample(args.build, frame)
    strata = frame.group_by("article_type", "section_type").len().sort("len", descending=True)
    print(f"sampled {frame.height} paragraphs from {frame['article_id'].n_unique()} articles → {path}")
    print(strata)
    return 0


def _llm(args: argparse.Namespace) -> int:
    summary = _llm_vllm(args) if args.backend == "vllm" else _llm_http(args)
    print(
        f"{summary.items} paragraphs: {summary.cached} from cache, {summary.answered} answered, "
        f"{summary.failed} failed, {summary.skipped} not asked; tokens {summary.prompt_tokens:,} in, "
        f"{summary.completion_tokens:,} out; cost {summary.cost:.4f}; {summary.seconds:.1f} s"
    )
    if summary.budget_exhausted:
        print("budget spent: rerun with a larger budget to label the rest (answers so far are cached)")
    return 0


def _llm_vllm(args: argparse.Namespace) -> llm.RunSummary:
    if args.max_tokens is not None or args.max_cost is not None:
        raise UserError("--max-tokens and --max-cost apply to --backend http only")
    if not 0 < args.gpu_memory_utilization <= 1:
        raise UserError("--gpu-memory-utilization must be in (0, 1]")
    config = vllm_backend.VllmConfig(
        model=args.model,
        tensor_parallel=args.tensor_parallel,
        gpu_memory_utilization=args.gpu_memory_utilization,
        retry_failed=args.retry_failed,
    )
    return vllm_backend.run_vllm_teacher(args.build, config, sample=sample.read_sample(args.build))


def _llm_http(args: argparse.Namespace) -> llm.RunSummary:
    if not args.endpoint:
        raise UserError("--endpoint is needed with --backend http")
    if args.max_cost is not None and not (args.price_in or args.price_out):
        raise UserError("--max-cost needs --price-in and/or --price-out")
    config = llm.LlmConfig(
        endpoint=args.endpoint,
        model=args.model,
        api_key=llm.api_key_from_env(args.api_key_env),
        concurrency=args.concurrency,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_tokens=args.max_tokens,
        max_cost=args.max_cost,
        price_in=args.price_in,
        price_out=args.price_out,
        retry_failed=args.retry_failed,
    )
    return llm.run_llm_teacher(args.build, config, sample=sample.read_sample(args.build))


def _teacher(args: argparse.Namespace) -> tuple[pl.DataFrame, str]:
    """The teacher labels ``--labels`` or ``--teacher`` name, and the name reports give them."""
    if args.labels:
        return labels_file.load_teacher(args.build, path=args.labels), f"file:{Path(args.labels).name}"
    if args.teacher == "rules":
        labels_file.write_teacher_labels(
            args.build, "rules", rules.rules_teacher_rows(sample.read_sample(args.build))
        )
    return labels_file.load_teacher(args.build, name=args.teacher), args.teacher


STUDENTS = {
    "fasttext": ("fasttext",),
    "embedding": ("embedding",),
    "both": ("fasttext", "embedding"),
    "encoder": ("encoder",),
    "all": ("fasttext", "embedding", "encoder"),
}


def _train(args: argparse.Namespace) -> int:
    teacher, name = _teacher(args)
    chosen = STUDENTS[args.student]
    if "fasttext" in chosen:
        _train_fasttext(args, teacher, name)
    if "embedding" in chosen:
        _train_embedding(args, teacher, name)
    if "encoder" in chosen:
        _train_encoder(args, teacher, name)
    if len(chosen) > 1 or "encoder" in chosen:
        table = side_by_side(args.build)
        if table:
            print("\nevery student on the same held-out rows\n" + table)
    return 0


def _train_fasttext(args: argparse.Namespace, teacher: pl.DataFrame, name: str) -> None:
    result = student.train_student(
        args.build,
        teacher,
        teacher_name=name,
        dim=args.dim,
        pretrain=not args.no_pretrain,
        seed=args.seed,
        context=not args.text_only,
        joint=not args.separate,
        grid=(student.Params(),) if args.no_search else student.GRID,
    )
    print(format_report(result.report))
    print(f"\nmodels: {Path(args.build) / 'models'} (annotator {result.manifest['annotator']})")
    print(json.dumps(result.report["chosen"]))


def _train_embedding(args: argparse.Namespace, teacher: pl.DataFrame, name: str) -> None:
    from pmcurate.annotate import embedding

    result = embedding.train_embedding_student(
        args.build, teacher, teacher_name=name, seed=args.seed, context=not args.text_only
    )
    print()
    print(format_report(result.report))
    print(f"\nreport: {Path(args.build) / 'models' / embedding.REPORT_DIR / 'report.json'}")
    if result.comparison is None:
        print("no fastText report on the same teacher and split to compare with (train with --student both)")
    else:
        print()
        print(embedding.format_comparison(result.comparison))


def _train_encoder(args: argparse.Namespace, teacher: pl.DataFrame, name: str) -> None:
    from pmcurate.annotate import encoder

    config = encoder.TrainConfig(epochs=args.epochs, max_tokens=args.max_tokens, context=not args.text_only)
    result = encoder.train_encoder_student(
        args.build,
        teacher,
        teacher_name=name,
        config=config,
        encoder_path=args.encoder,
        device=args.device,
        seed=args.seed,
    )
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

    teacher, name = _teacher(args)
    result = distill.distill(
        args.build,
        teacher,
        teacher_name=name,
        sample_size=args.sample,
        seed=args.seed,
        dim=args.dim,
        device=args.device,
    )
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
    if args.student == "embedding":
        from pmcurate.annotate import embedding

        result = embedding.apply_embedding_student(args.build, force=args.force)
    elif args.student == "encoder":
        from pmcurate.annotate import encoder

        result = encoder.apply_encoder_student(args.build, device=args.device, force=args.force)
    elif args.student == "distilled":
        result = student.apply_students(args.build, jobs=args.jobs, force=args.force, folder="distilled")
    else:
        result = student.apply_students(args.build, jobs=args.jobs, force=args.force)
    rate = result.paragraphs / result.seconds if result.seconds else 0.0
    print(
        f"labelled {result.paragraphs:,} paragraphs in {result.shards} shards "
        f"({result.skipped} already done) in {result.seconds:.1f} s ({rate:,.0f} paragraphs/s)"
    )
    return 0
