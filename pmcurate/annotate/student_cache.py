"""fastText students trained before on this machine, kept by what they are a function of.

Without pretraining a student is a function of its teacher labels, its settings and the code that
trains it: every fit is single-threaded from a fixed seed, so training twice writes byte-identical
models (``tests/annotate/test_student.py``). Every build of a manifest over new or more articles
with the same labels would spend ~2.6 CPU-s learning the same models again, so ``trained`` asks
this cache first. With pretraining the word vectors come from the build's own paragraphs, and the
students are always trained.

An entry is ``$PMCURATE_CACHE/students/<key>/``: the files training wrote to ``models/`` (the
manifest, the report, the models) and a ``meta.json`` recording the key and each file's sha256. It
is written in a folder beside it and renamed into place; an entry whose files do not match their
record is a miss, and the training that follows replaces it. A cache that cannot be written costs
the training each time, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import pmcurate
from pmcurate import cache
from pmcurate.annotate.student import MANIFEST, REPORT, TrainResult, train_student
from pmcurate.filters import _langid
from pmcurate.step import sha256_file

log = logging.getLogger(__name__)

FORMAT = "pmcurate-students-1"
SOURCES = (Path(pmcurate.__file__).parent / "annotate", Path(pmcurate.__file__).parent / "labels")
"""The code that turns teacher rows into models: its sources are part of the key."""
UNREAD = ("at",)
"""Columns of teacher rows that training never reads: when a label was given (a labels file's rows
are stamped when read)."""


def trained(build: Path, teacher: pl.DataFrame, *, teacher_name: str, **settings: Any) -> TrainResult:
    """``student.train_student(build, teacher, teacher_name=…, **settings)``, or the models it wrote
    before for the same teacher rows and settings, copied into ``BUILD/models/`` (``from_cache``)."""
    if settings.get("pretrain", True):
        return train_student(build, teacher, teacher_name=teacher_name, **settings)
    key = cache_key(teacher, teacher_name, settings)
    entry = cache.cache_root() / "students" / key[:32]
    models_dir = settings.get("models_dir") or build / "models"
    if _restore(entry, key, models_dir):
        manifest = json.loads((models_dir / MANIFEST).read_text())
        return TrainResult(manifest=manifest, report=manifest["report"], from_cache=str(entry))
    result = train_student(build, teacher, teacher_name=teacher_name, **settings)
    _store(entry, key, models_dir, result)
    return result


def cache_key(teacher: pl.DataFrame, teacher_name: str, settings: dict[str, Any]) -> str:
    """What the models are a function of: the teacher rows (in order, every column but ``UNREAD``),
    the training settings, the versions of the libraries that train and split, and pmcurate's
    training code."""
    rows = hashlib.sha256(teacher.drop(UNREAD, strict=False).write_ndjson().encode())
    code = hashlib.sha256()
    for path in sorted(_sources()):
        code.update(path.name.encode() + b"\0" + path.read_bytes())
    parts = {
        "format": FORMAT,
        "teacher": teacher_name,
        "rows": rows.hexdigest(),
        "settings": {k: _plain(v) for k, v in sorted(settings.items()) if k != "models_dir"},
        "versions": {
            "pmcurate": pmcurate.__version__,
            "fasttext": _version("fasttext-community"),
            "polars": pl.__version__,
            "numpy": np.__version__,
            "compiled": _langid.BUILT_FROM_SHA256,
        },
        "code": code.hexdigest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _sources() -> Iterable[Path]:
    for folder in SOURCES:
        yield from folder.rglob("*.py")


def _plain(value: Any) -> Any:
    """Settings as JSON values: the hyper-parameter grid as dicts."""
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    return value


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def _model_files(manifest: dict[str, Any]) -> list[str]:
    return [MANIFEST, REPORT, *(entry["file"] for entry in manifest["models"].values())]


def _restore(entry: Path, key: str, models_dir: Path) -> bool:
    """Copy ``entry``'s files into ``models_dir`` when it is whole and for ``key``."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        files: dict[str, str] = meta["files"]
        if meta["key"] != key or any(sha256_file(entry / name) != digest for name, digest in files.items()):
            return False
    except (OSError, ValueError, KeyError, TypeError):  # missing, truncated, or not ours
        return False
    models_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        _copy(entry / name, models_dir / name)
    return True


def _store(entry: Path, key: str, models_dir: Path, result: TrainResult) -> None:
    names = _model_files(result.manifest)
    try:
        with cache.staged(entry) as staging:
            for name in names:
                shutil.copyfile(models_dir / name, staging / name)
            files = {name: sha256_file(staging / name) for name in names}
            (staging / "meta.json").write_text(json.dumps({"key": key, "files": files}, indent=1))
    except OSError as exc:
        log.warning("cannot keep the trained students in %s (%s): they are trained each time", entry, exc)


def _copy(source: Path, target: Path) -> None:
    """``source`` over ``target`` through a temporary file: a reader never sees half a model."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)
