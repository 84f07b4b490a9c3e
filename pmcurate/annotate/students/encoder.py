"""``encoder``: all-MiniLM-L6-v2 (or a local encoder) fine-tuned, one head per label (extra ``encoder``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pmcurate.annotate.steps import EncoderConfig, TrainEncoderStep
from pmcurate.annotate.students import Student, Train, register

if TYPE_CHECKING:
    from pmcurate.annotate.apply_config import ApplyConfig

FOLDER = "encoder"  # encoder.FOLDER, without importing torch


def _show(build: Path, result: Any) -> str:
    from pmcurate.annotate.report import format_report

    assert result.manifest is not None
    return (
        f"\n{format_report(result.report)}\n"
        f"\nencoder student: {build / 'models' / FOLDER} "
        f"(annotator {result.manifest['annotator']}; best epoch {result.report['chosen']['best_epoch']}, "
        f"{result.report['train_seconds']:.0f} s on {result.report['device']})"
    )


def _manifest(build: Path) -> dict[str, Any]:
    from pmcurate.annotate import encoder

    return encoder.load_manifest(build)


def _load(build: Path, config: ApplyConfig) -> Any:
    from pmcurate.annotate import encoder

    manifest = encoder.load_manifest(build)
    return encoder.EncoderStudent.load(build / "models" / encoder.FOLDER, manifest, device=config.device)


TRAIN = Train(EncoderConfig, TrainEncoderStep, _show)

STUDENT = register(
    Student(
        name="encoder",
        description="the fine-tuned encoder (extra `encoder`) labels every paragraph: a GPU for large builds",
        folder=FOLDER,
        trains=(TRAIN,),
        manifest=_manifest,
        load=_load,
        in_process=True,
    )
)
