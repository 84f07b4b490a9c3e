"""fastText ``predict`` of a build's trained students on texts already in memory: the raw library
call that ``annotate apply`` is measured against (``bench/annotate.py``, ``bench/language.py``,
``bench/throughput.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import fasttext

from pmcurate.annotate import student


def fasttext_predict(build: Path, texts: list[str], folder: str = "") -> tuple[Callable[[], None], int]:
    """A call of ``predict(lines, k=-1)`` of every model of the build's students (those of
    ``BUILD/models/<folder>/``) on ``texts`` as fastText lines, and how many models it runs."""
    manifest = student.load_manifest(build, folder)
    models = [fasttext.load_model(str(build / "models" / e["file"])) for e in manifest["models"].values()]
    lines = [text.replace("\n", " ") for text in texts]

    def predict() -> None:
        for model in models:
            model.predict(lines, k=-1)

    return predict, len(models)
