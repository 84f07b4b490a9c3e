"""pmcurate's compiled modules (Cython, built by ``pip install``) checked against their sources."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType


def check_build(module: ModuleType, source: Path) -> None:
    """Refuse ``module`` when it was built from another version of its source ``source`` (when
    present, as in a source checkout): after the ``.pyx`` is edited or changed by a merge, the old
    build would otherwise run the old code without a word. ``setup.py`` records the source's
    SHA-256 in the module as ``BUILT_FROM_SHA256``."""
    if source.is_file() and hashlib.sha256(source.read_bytes()).hexdigest() != module.BUILT_FROM_SHA256:
        raise ImportError(
            f"{module.__file__} was built from another version of {source}: rebuild it "
            "(`make .venv/.installed`, or `pip install -e .`)"
        )
