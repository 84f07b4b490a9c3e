"""The language identifier beside py3langid, and the computed ``language`` label's cost in ``annotate
apply``, side by side in one run (issue 15).

The paragraphs are the fixtures' (``tests/data/jats``, harvested with ``harvest local``), repeated
to ``--paragraphs`` in ``--shards`` shards (``bench/annotate.py``'s ``make_build``); fastText
students are trained on ``tests/data/labels`` (one setting, seconds): the joint model, or with
``--separate`` one model per label. Everything runs on one core
and is timed in CPU seconds (``time.process_time``, which a busy machine inflates less than wall
time), best of ``--runs``, the contenders of each line run in turn in every round:

- identifier: py3langid's ``classify`` one text at a time on each text's first ``MAX_CHARS``
  characters (what ``language.detect`` did before, on ``--reference-paragraphs`` of them: it is
  slow) vs ``language.detect_many`` on all of them; the answers are compared on every text both saw,
  and the shares of texts the quantized and the exact compiled sums settle (the rest go to
  ``classify``) are printed;
- apply: the ``annotate:apply`` step on one process over the whole build (read the shards,
  normalize, the students, the computed ``language`` label, write the labels shards) vs fastText
  ``predict(k=-1)`` of the same models on the same lines already in memory. Target: apply at
  ≥ 0.8 of predict's speed.

    nice .venv/bin/python bench/language.py [--paragraphs 100000] [--shards 2] [--runs 3] [--separate]
"""

from __future__ import annotations

import os

os.environ.setdefault("POLARS_MAX_THREADS", "1")  # one core, like each apply worker

import argparse
import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from annotate import LABELS, make_build
from predict import fasttext_predict

from pmcurate import schema
from pmcurate.annotate import apply_steps, labels_file, student
from pmcurate.filters import _langid, language


def best_cpu_seconds(runs: int, contenders: Sequence[Callable[[], object]]) -> list[float]:
    """Best CPU time of each contender over ``runs`` rounds, one run of each per round."""
    best = [float("inf")] * len(contenders)
    for _ in range(runs):
        for index, function in enumerate(contenders):
            gc.collect()
            started = time.process_time()
            function()
            best[index] = min(best[index], time.process_time() - started)
    return best


def py3langid_one_by_one(texts: list[str]) -> list[str]:
    """The language rule before issue 15: py3langid's ``classify`` on each text's head."""
    identifier = language._identifier()
    answers = []
    for text in texts:
        head = (text or "")[: language.MAX_CHARS]
        if any(c.isalpha() for c in head):
            answers.append(identifier.classify(head)[0])
        else:
            answers.append(language.UNDETERMINED)
    return answers


def settled_shares(texts: list[str]) -> tuple[float, float]:
    """Shares of the texts with letters whose answer the quantized sums settle, and the exact sums
    (the rest go to ``classify``); texts whose head Python prepares are left out."""
    model = language._model()
    array = pa.array(texts, pa.large_string())
    _, offsets, data = array.buffers()
    rows = len(array)
    starts, lengths, kinds = np.empty(rows, np.int64), np.empty(rows, np.int64), np.empty(rows, np.int8)
    data_array = np.frombuffer(data, np.uint8)
    valid = np.zeros(0, np.uint8)
    _langid.heads(
        data_array, np.frombuffer(offsets, np.int64), valid, 0, language.MAX_CHARS, language.nfc_stable(),
        starts, lengths, kinds,
    )  # fmt: skip
    fast = kinds == _langid.FAST
    shares = []
    for quantized in (True, False):
        _, settled = language._identify(model, data_array, starts[fast], lengths[fast], quantized=quantized)
        shares.append(float(settled.mean()))
    return shares[0], shares[1]


def identifier_lines(texts: list[str], reference: int, runs: int) -> None:
    sample = texts[:reference]
    language.detect_many(sample[:100])  # load the model outside the timings
    slow, fast = best_cpu_seconds(
        runs, (lambda: py3langid_one_by_one(sample), lambda: language.detect_many(texts))
    )
    same = py3langid_one_by_one(sample) == language.detect_many(sample)
    old, new = len(sample) / slow, len(texts) / fast
    print(f"language identifier, one core (CPU time, best of {runs}; SIMD sum: {_langid.SIMD}):")
    print(
        f"  py3langid classify, one text at a time  {old:>10,.0f} paragraphs/s ({len(sample):,} paragraphs)"
    )
    print(f"  language.detect_many, batched           {new:>10,.0f} paragraphs/s ({len(texts):,} paragraphs)")
    print(f"  ratio {new / old:.1f}x (target ≥ 10x); same answers on all {len(sample):,}: {same}")
    quantized, exact = settled_shares(texts)
    print(f"  settled by the quantized sums: {quantized:.4%}, by the exact sums: {exact:.4%}")


def apply_lines(build: Path, runs: int) -> None:
    texts = pl.read_parquet(schema.shard_paths(build, "paragraphs"), columns=["text"])["text"].to_list()
    predict, models = fasttext_predict(build, texts)

    def apply() -> None:
        apply_steps.apply(build, workers=1, force=True, progress=False)

    def language_label() -> None:
        language.detect_many(texts)

    raw, ours, label = best_cpu_seconds(runs, (predict, apply, language_label))
    n = len(texts)
    print(f"annotate apply, one process, {models} fastText model(s) (CPU time, best of {runs}):")
    print(f"  fastText predict, same lines and models {n / raw:>10,.0f} paragraphs/s")
    print(f"  annotate apply with the language label  {n / ours:>10,.0f} paragraphs/s")
    print(f"  the language label alone                {n / label:>10,.0f} paragraphs/s")
    verdict = "met" if raw / ours >= 0.8 else "NOT met"
    print(f"  apply / predict speed {raw / ours:.2f} (target ≥ 0.8: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paragraphs", type=int, default=100_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--reference-paragraphs", type=int, default=5_000, help="for py3langid one by one")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--separate", action="store_true", help="one fastText model per label, not the joint one"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        build = make_build(Path(tmp), args.paragraphs, args.shards)
        texts = pl.read_parquet(schema.shard_paths(build, "paragraphs"), columns=["text"])["text"].to_list()
        identifier_lines(texts, args.reference_paragraphs, args.runs)
        teacher = labels_file.read_labels_jsonl(LABELS)
        student.train_student(
            build,
            teacher,
            teacher_name="dev",
            grid=(student.Params(),),
            pretrain=False,
            joint=not args.separate,
        )
        apply_lines(build, args.runs)
    print(f"load average {os.getloadavg()[0]:.1f} at the end", flush=True)


if __name__ == "__main__":
    main()
