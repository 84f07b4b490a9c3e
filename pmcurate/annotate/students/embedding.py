"""``embedding``: all-MiniLM-L6-v2, frozen, with one logistic regression per label (extra ``embedding``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmcurate.annotate.steps import EmbeddingConfig, TrainEmbeddingStep
from pmcurate.annotate.students import Student, Train, register

if TYPE_CHECKING:
    from pmcurate.annotate.apply_config import ApplyConfig

FOLDER = "embedding"  # embedding.REPORT_DIR, without importing torch


def _show(build: Path, result: Any) -> str:
    from pmcurate.annotate import embedding
    from pmcurate.annotate.report import format_report

    lines = ["", format_report(result.report), f"\nreport: {build / 'models' / FOLDER / 'report.json'}"]
    if result.comparison is None:
        lines.append(
            "no fastText report on the same teacher and split to compare with "
            "(train with --student fasttext embedding)"
        )
    else:
        lines += ["", embedding.format_comparison(result.comparison)]
    return "\n".join(lines)


def _manifest(build: Path) -> dict[str, Any]:
    from pmcurate.annotate import embedding

    return embedding.load_manifest(build)


def _load(build: Path, config: ApplyConfig) -> Any:
    from pmcurate.annotate import embedding

    return embedding.EmbeddingStudent(build, embedding.load_manifest(build))


STUDENT = register(
    Student(
        name="embedding",
        description="all-MiniLM-L6-v2 + logistic regression (extra `embedding`), about 20 paragraphs/s "
        "per core: CPUs only, where domain matters most",
        folder=FOLDER,
        trains=(Train(EmbeddingConfig, TrainEmbeddingStep, _show),),
        manifest=_manifest,
        load=_load,
        in_process=True,
    )
)
