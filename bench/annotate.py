"""Throughput of ``pmcurate annotate apply`` end to end, beside raw fastText ``predict``.

Builds a corpus by repeating the real paragraphs of ``tests/data/jats`` (harvested with
``harvest local``) into shards, trains students on ``tests/data/labels``, then times:

- apply on one process and on all cores: read Parquet shards, normalize, three models, write the
  labels shards (``tables/labels``), paragraphs per second;
- raw fastText: the three models' ``predict(texts, k=-1)`` on the same texts already in memory.

The ratio (end to end / raw) is the cost of everything around the models. Target: 25,000
paragraphs/s per core end to end.

With ``--student encoder``: the fine-tuned encoder student's ``apply`` end to end beside its
forward pass alone (and the fast tokenizer alone) on the same paragraphs and machine (CPU, or
CUDA where there is one). Issue target on one H200: 20,000 paragraphs/s end to end.

    .venv/bin/python bench/annotate.py [--paragraphs 400000] [--shards 8]
    .venv/bin/python bench/annotate.py --student encoder --paragraphs 2000 --shards 2 [--device cuda]
"""

from __future__ import annotations

import os

# Per-core numbers: Polars (text normalization, Parquet) on one thread, like each apply worker.
os.environ.setdefault("POLARS_MAX_THREADS", "1")

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import fasttext
import polars as pl
import torch

from pmcurate import schema
from pmcurate.annotate import apply_steps, labels_file, student
from pmcurate.annotate.apply_config import ApplyConfig
from pmcurate.harvest.local import harvest_local

ROOT = Path(__file__).resolve().parent.parent
JATS = ROOT / "tests" / "data" / "jats"
LABELS = ROOT / "tests" / "data" / "labels" / "dev-paragraph-labels.jsonl"


def make_build(folder: Path, paragraphs: int, shards: int) -> Path:
    """A build whose paragraphs table holds ``paragraphs`` rows (the fixtures, repeated) in shards."""
    build = folder / "build"
    harvest_local([JATS], build, workers=1, progress=False)
    base = pl.read_parquet(schema.shard_paths(build, "paragraphs"))
    shutil.rmtree(schema.table_dir(build, "paragraphs"))
    per_shard = paragraphs // shards
    repeats = per_shard // base.height + 1
    for shard in range(shards):
        frame = pl.concat([base] * repeats).head(per_shard)
        frame = frame.with_columns(
            pl.col("paragraph_id") + f"#{shard}-" + pl.int_range(pl.len()).cast(pl.String)
        )
        schema.write_shard(
            frame.to_arrow().cast(schema.PARAGRAPHS),
            schema.table_dir(build, "paragraphs") / f"p{shard:03d}.parquet",
        )
    return build


def raw_predict_rate(build: Path, texts: list[str]) -> float:
    """fastText ``predict(texts, k=-1)`` of every model of the build's students, texts in memory."""
    manifest = student.load_manifest(build)
    models = [fasttext.load_model(str(build / "models" / e["file"])) for e in manifest["models"].values()]
    lines = [t.replace("\n", " ") for t in texts]
    start = time.perf_counter()
    for model in models:
        model.predict(lines, k=-1)
    return len(lines) / (time.perf_counter() - start)


def measure(build: Path, teacher: pl.DataFrame, *, joint: bool, cores: int) -> dict[str, float]:
    for old in schema.shard_paths(build, "labels"):
        old.unlink()
    student.train_student(
        build, teacher, teacher_name="dev", grid=(student.Params(),), max_pretrain_texts=10_000, joint=joint
    )
    sample = pl.read_parquet(schema.shard_paths(build, "paragraphs")[0], columns=["text"])["text"].to_list()
    rates = {"raw": raw_predict_rate(build, sample)}
    for jobs in sorted({1, cores}):
        result = apply_steps.apply(build, workers=jobs, force=True, progress=False)
        rates[f"apply{jobs}"] = result.counts["paragraphs_labelled"] / result.seconds
    return rates


def measure_encoder(build: Path, teacher: pl.DataFrame, *, max_tokens: int, device: str) -> dict[str, float]:
    """The encoder student: tokenizer alone, forward pass alone (token ids and padded batches
    ready in memory) and ``apply`` end to end (read, tokenize in the background thread, batch,
    forward, write), on the same paragraphs. The model is trained for one step: its speed does
    not depend on its weights."""
    from pmcurate.annotate import encoder

    config = encoder.TrainConfig(epochs=1, max_steps=1, max_tokens=max_tokens)
    encoder.train_encoder_student(
        build, teacher, teacher_name="dev", config=config, device=device, speed_texts=0, progress=False
    )
    labeller = encoder.EncoderStudent.load(
        build / "models" / encoder.FOLDER, encoder.load_manifest(build), device=device
    )
    frame = pl.read_parquet(schema.shard_paths(build, "paragraphs"))
    start = time.perf_counter()
    ids = labeller.tokenize(frame)
    tokenize_rate = len(ids) / (time.perf_counter() - start)
    batches = [
        encoder.pad([ids[i] for i in rows], labeller.tokenizer.pad_token_id)
        for rows in encoder.token_batches([len(r) for r in ids], 16_384, 512)
    ]
    model, torch_device = labeller.model, labeller.device
    start = time.perf_counter()
    with torch.inference_mode(), encoder.autocast(torch_device):
        for input_ids, mask in batches:
            model(input_ids.to(torch_device), mask.to(torch_device))
        if torch_device.type == "cuda":
            torch.cuda.synchronize()
    forward_rate = len(ids) / (time.perf_counter() - start)
    result = apply_steps.apply(
        build, ApplyConfig(student="encoder", device=device), force=True, progress=False
    )
    tokens = sum(len(r) for r in ids) / len(ids)
    return {
        "tokenize": tokenize_rate,
        "forward": forward_rate,
        "apply": result.counts["paragraphs_labelled"] / result.seconds,
        "tokens": tokens,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=400_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--student", choices=("fasttext", "encoder"), default="fasttext", help="which student to time"
    )
    parser.add_argument("--max-tokens", type=int, default=256, help="encoder: word pieces per paragraph")
    parser.add_argument("--device", default="auto", help="encoder: auto, cpu or cuda")
    parser.add_argument("--threads", type=int, help="encoder: torch threads (default: one per core)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.student == "encoder":
        main_encoder(args, cores)
        return
    with tempfile.TemporaryDirectory() as tmp:
        build = make_build(Path(tmp), args.paragraphs, args.shards)
        teacher = labels_file.read_labels_jsonl(LABELS)
        results = {
            "three models": measure(build, teacher, joint=False, cores=cores),
            "joint model": measure(build, teacher, joint=True, cores=cores),
        }
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"corpus: {args.paragraphs:,} paragraphs in {args.shards} shards; {cores} cores; "
        f"parent max RSS {rss:,.0f} MiB"
    )
    for variant, rates in results.items():
        raw = rates["raw"]
        print(f"{variant}: raw fastText predict (all models, one core): {raw:>10,.0f} paragraphs/s")
        for jobs in sorted({1, cores}):
            rate = rates[f"apply{jobs}"]
            print(
                f"  annotate apply end to end, {jobs} process(es): {rate:>10,.0f} paragraphs/s "
                f"({rate / jobs:,.0f}/core; {rate / jobs / raw:.2f} x raw predict)"
            )
        per_core = rates["apply1"]
        verdict = "met" if per_core >= 25_000 else "NOT met"
        print(
            f"  target 25,000 paragraphs/s/core: {verdict}; 146M paragraphs on {cores} cores: "
            f"{146e6 / rates[f'apply{cores}'] / 3600:.2f} h"
        )


def main_encoder(args: argparse.Namespace, cores: int) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        build = make_build(Path(tmp), args.paragraphs, args.shards)
        teacher = labels_file.read_labels_jsonl(LABELS)
        rates = measure_encoder(build, teacher, max_tokens=args.max_tokens, device=args.device)
    threads = torch.get_num_threads()
    print(
        f"encoder student (all-MiniLM-L6-v2, ≤ {args.max_tokens} word pieces, mean {rates['tokens']:.0f}): "
        f"{args.paragraphs:,} paragraphs in {args.shards} shards; device {args.device}; "
        f"torch threads {threads}; {cores} cores"
    )
    print(f"  fast tokenizer alone:          {rates['tokenize']:>10,.0f} paragraphs/s")
    print(f"  forward pass alone:            {rates['forward']:>10,.0f} paragraphs/s")
    print(
        f"  annotate apply end to end:     {rates['apply']:>10,.0f} paragraphs/s "
        f"({rates['apply'] / rates['forward']:.2f} x forward alone; "
        f"{rates['apply'] / threads:,.1f}/s per torch thread)"
    )
    print(f"  146M paragraphs at this rate: {146e6 / rates['apply'] / 3600:,.0f} h")


if __name__ == "__main__":
    main()
