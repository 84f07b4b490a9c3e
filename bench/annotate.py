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

With ``--student distilled``: ``annotate distill`` run for real on the corpus (an encoder
fine-tuned for a few steps labels ``--sample`` paragraphs; a joint fastText student learns them,
its settings chosen on the teacher's validation split), then ``apply --student distilled`` timed
end to end on one process and on all cores beside its raw ``predict``, and the encoder student's
``apply`` on ``--encoder-paragraphs`` of the same paragraphs: the ratio is what distillation buys.
The labels' quality does not change either speed (the distilled model's settings can: they are
printed).

    .venv/bin/python bench/annotate.py [--paragraphs 400000] [--shards 8]
    .venv/bin/python bench/annotate.py --student encoder --paragraphs 2000 --shards 2 [--device cuda]
    .venv/bin/python bench/annotate.py --student distilled --paragraphs 200000 --encoder-paragraphs 400
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
from typing import Any

import polars as pl
import torch
from predict import fasttext_predict

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


def raw_predict_rate(build: Path, texts: list[str], folder: str = "") -> float:
    """fastText ``predict(texts, k=-1)`` of every model of the build's students (those of
    ``BUILD/models/<folder>/``), texts in memory."""
    predict, _ = fasttext_predict(build, texts, folder)
    start = time.perf_counter()
    predict()
    return len(texts) / (time.perf_counter() - start)


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


def measure_encoder(
    build: Path,
    teacher: pl.DataFrame,
    *,
    max_tokens: int,
    device: str,
    train_steps: int = 1,
    onnx: bool = False,
) -> dict[str, Any]:
    """The encoder student: tokenizer alone, forward pass alone (token ids and padded batches
    ready in memory) and ``apply`` end to end (read, tokenize in the background thread, batch,
    forward, write), on the same paragraphs. The model is fine-tuned for ``train_steps`` steps
    (heads at lr 2e-3): its speed does not depend on its weights, only ONNX int8's agreement does.
    With ``onnx``, the same batches through ONNX Runtime, float32 and int8 (``onnx_rates``)."""
    from pmcurate.annotate import encoder

    config = encoder.TrainConfig(epochs=1, max_steps=train_steps, max_tokens=max_tokens, head_lr=2e-3)
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
    onnx_figures = onnx_rates(labeller, ids, batches) if onnx else {}
    result = apply_steps.apply(
        build, ApplyConfig(student="encoder", device=device), force=True, progress=False
    )
    tokens = sum(len(r) for r in ids) / len(ids)
    return {
        "tokenize": tokenize_rate,
        "forward": forward_rate,
        "apply": result.counts["paragraphs_labelled"] / result.seconds,
        "tokens": tokens,
        "onnx": onnx_figures,
    }


def onnx_rates(labeller: Any, ids: list[list[int]], batches: list[tuple[Any, Any]]) -> dict[str, Any]:
    """The encoder exported to ONNX (the TorchScript exporter, opset 17, dynamic batch and length)
    and quantized to int8 (``quantize_dynamic``: int8 weights, activations quantized on the fly);
    each timed on one thread on ``batches`` beside torch's float32 forward on one thread, and
    compared with torch's answers (argmax agreement, score difference)."""
    try:
        import onnxruntime
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise SystemExit("--onnx needs onnxruntime and onnx: pip install onnxruntime onnx") from None
    import numpy as np

    from pmcurate.annotate import encoder

    class Outputs(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.model(input_ids, mask)
            return out["document_type"], out["domain"], out["educational_score"]

    wrapped = Outputs(labeller.model.cpu().eval())
    # Traced on rows of two lengths: an all-ones mask lets transformers drop the mask from the
    # traced graph, which would then ignore the padding of every later batch.
    longest = max(ids, key=len)
    example = encoder.pad([longest[:4], longest], labeller.tokenizer.pad_token_id)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, int8 = Path(tmp) / "encoder.onnx", Path(tmp) / "encoder-int8.onnx"
        torch.onnx.export(
            wrapped,
            example,
            str(fp32),
            input_names=["input_ids", "attention_mask"],
            output_names=["document_type", "domain", "educational_score"],
            dynamic_axes={name: {0: "rows", 1: "tokens"} for name in ("input_ids", "attention_mask")},
            opset_version=17,
            dynamo=False,
        )
        quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1

        def run(forward: Any) -> tuple[float, list[np.ndarray]]:
            start = time.perf_counter()
            outs = [forward(a, m) for a, m in batches]
            rate = len(ids) / (time.perf_counter() - start)
            return rate, [np.concatenate([o[i] for o in outs]) for i in range(3)]

        with torch.inference_mode():
            torch_rate, reference = run(lambda a, m: [t.numpy() for t in wrapped(a, m)])
        out: dict[str, Any] = {"torch": torch_rate, "sizes": {}}
        for name, path in (("fp32", fp32), ("int8", int8)):
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            rate, answers = run(
                lambda a, m, s=session: s.run(None, {"input_ids": a.numpy(), "attention_mask": m.numpy()})
            )
            out[name] = {
                "rate": rate,
                "document_type": float((answers[0].argmax(1) == reference[0].argmax(1)).mean()),
                "domain": float((answers[1].argmax(1) == reference[1].argmax(1)).mean()),
                "score_diff": float(2 * np.abs(answers[2] - reference[2]).max()),
            }
            out["sizes"][name] = path.stat().st_size
    torch.set_num_threads(threads)
    return out


def measure_distilled(
    build: Path, teacher: pl.DataFrame, *, sample: int, device: str, cores: int
) -> dict[str, Any]:
    """``annotate distill`` on ``sample`` paragraphs of the build, then the distilled student's
    ``apply`` end to end (one process, all cores) beside its raw ``predict``."""
    from pmcurate.annotate import distill, encoder

    config = encoder.TrainConfig(epochs=1, max_steps=4, max_tokens=32)
    encoder.train_encoder_student(
        build, teacher, teacher_name="dev", config=config, device=device, speed_texts=0, progress=False
    )
    distill.distill(build, teacher, teacher_name="dev", sample_size=sample, device=device, progress=False)
    manifest = student.load_manifest(build, distill.FOLDER)
    texts = pl.read_parquet(schema.shard_paths(build, "paragraphs")[0], columns=["text"])["text"].to_list()
    out: dict[str, Any] = {
        "raw": raw_predict_rate(build, texts, distill.FOLDER),
        "settings": manifest["models"][student.JOINT]["params"],
        "n_distilled": manifest["n_distilled"],
    }
    for jobs in sorted({1, cores}):
        config = ApplyConfig(student="distilled")
        result = apply_steps.apply(build, config, workers=jobs, force=True, progress=False)
        out[f"apply{jobs}"] = result.counts["paragraphs_labelled"] / result.seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=400_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--student",
        choices=("fasttext", "encoder", "distilled"),
        default="fasttext",
        help="which student to time",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=1,
        help="encoder: fine-tuning steps before timing (ONNX int8 agreement)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="encoder: also ONNX Runtime float32 and int8 (needs onnxruntime, onnx)",
    )
    parser.add_argument("--sample", type=int, default=2_000, help="distilled: paragraphs the encoder labels")
    parser.add_argument(
        "--encoder-paragraphs",
        type=int,
        default=400,
        help="distilled: paragraphs the encoder's apply is timed on",
    )
    parser.add_argument("--max-tokens", type=int, default=256, help="encoder: word pieces per paragraph")
    parser.add_argument("--device", default="auto", help="encoder: auto, cpu or cuda")
    parser.add_argument("--threads", type=int, help="encoder: torch threads (default: one per core)")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    if args.student == "encoder":
        main_encoder(args, cores)
        return
    if args.student == "distilled":
        main_distilled(args, cores)
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
        rates = measure_encoder(
            build,
            teacher,
            max_tokens=args.max_tokens,
            device=args.device,
            train_steps=args.train_steps,
            onnx=args.onnx,
        )
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
    onnx = rates["onnx"]
    if onnx:
        print(f"  forward alone, one thread: torch float32 {onnx['torch']:,.1f} paragraphs/s")
        for name in ("fp32", "int8"):
            o = onnx[name]
            print(
                f"    ONNX Runtime {name}: {o['rate']:,.1f} paragraphs/s "
                f"({o['rate'] / onnx['torch']:.2f} x torch; {onnx['sizes'][name] / 2**20:.0f} MiB); "
                f"same answer as torch: document_type {o['document_type']:.3f}, domain {o['domain']:.3f}; "
                f"score differs by at most {o['score_diff']:.3f}"
            )


def main_distilled(args: argparse.Namespace, cores: int) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = labels_file.read_labels_jsonl(LABELS)
    with tempfile.TemporaryDirectory() as tmp:
        build = make_build(Path(tmp) / "distilled", args.paragraphs, args.shards)
        rates = measure_distilled(build, teacher, sample=args.sample, device=args.device, cores=cores)
        small = make_build(Path(tmp) / "encoder", args.encoder_paragraphs, 1)
        enc = measure_encoder(small, teacher, max_tokens=args.max_tokens, device=args.device)
    threads = torch.get_num_threads()
    print(
        f"distilled student (joint fastText, {rates['settings']}) learnt from {rates['n_distilled']:,} "
        f"encoder-labelled paragraphs; {args.paragraphs:,} paragraphs in {args.shards} shards; {cores} cores"
    )
    print(f"  raw fastText predict (one core): {rates['raw']:>10,.0f} paragraphs/s")
    for jobs in sorted({1, cores}):
        rate = rates[f"apply{jobs}"]
        print(
            f"  annotate apply --student distilled, {jobs} process(es): {rate:>10,.0f} paragraphs/s "
            f"({rate / jobs:,.0f}/core; {rate / jobs / rates['raw']:.2f} x raw predict)"
        )
    per_core = rates["apply1"]
    print(f"  target 25,000 paragraphs/s/core: {'met' if per_core >= 25_000 else 'NOT met'}")
    encoder_core = enc["apply"] / threads
    print(
        f"encoder student on {args.encoder_paragraphs:,} of these paragraphs (≤ {args.max_tokens} word "
        f"pieces, torch threads {threads}): apply {enc['apply']:,.1f} paragraphs/s "
        f"({encoder_core:,.1f}/s per thread; forward alone {enc['forward']:,.1f}/s)"
    )
    print(f"  distilled / encoder, per core: {per_core / encoder_core:,.0f} x")


if __name__ == "__main__":
    main()
