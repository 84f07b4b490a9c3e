"""pmcurate's cache folder on this machine: the working copies of builds behind URLs (and their
workers' copies), the packed language model, and trained students."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """``$PMCURATE_CACHE``, else ``~/.cache/pmcurate``."""
    return Path(os.environ.get("PMCURATE_CACHE") or "~/.cache/pmcurate").expanduser()


STALE_STAGING_SECONDS = 3600.0
"""A staging folder untouched this long was left by a process killed while it filled it."""


@contextmanager
def staged(entry: Path) -> Iterator[Path]:
    """A fresh folder beside ``entry`` to fill; when the block ends without error its files are
    flushed to disk and the folder is renamed to ``entry`` (replacing what was there), so a reader
    sees a whole entry or none. On an error the folder is removed and the error raised. Staging
    folders of ``entry`` that a killed process left are removed first (``remove_stale_staging``)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(entry)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        yield staging
        for path in staging.iterdir():
            with open(path, "rb") as written:
                os.fsync(written.fileno())  # on disk before the rename makes it visible
        shutil.rmtree(entry, ignore_errors=True)
        os.rename(staging, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_stale_staging(entry: Path) -> None:
    """Remove the staging folders of ``entry`` not modified for ``STALE_STAGING_SECONDS`` (a
    process filling one now touches it: it is left alone)."""
    oldest = time.time() - STALE_STAGING_SECONDS
    for folder in entry.parent.glob(f".{entry.name}.*"):
        try:
            if folder.is_dir() and folder.stat().st_mtime < oldest:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:  # removed by another process meanwhile
            continue
