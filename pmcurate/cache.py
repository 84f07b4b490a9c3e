"""pmcurate's cache folder on this machine: the working copies of builds behind URLs (and their
workers' copies), and the packed language model."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$PMCURATE_CACHE``, else ``~/.cache/pmcurate``."""
    return Path(os.environ.get("PMCURATE_CACHE") or "~/.cache/pmcurate").expanduser()
