"""A larger local corpus for the reliability runs: copies of the real JATS fixtures with new ids."""

from __future__ import annotations

import re
from pathlib import Path

JATS_DIR = Path(__file__).parents[1] / "data" / "jats"
FIXTURES = tuple(sorted(p for p in JATS_DIR.iterdir() if p.suffix in {".xml", ".nxml"}))
_PMC_ID = re.compile(rb'(<article-id pub-id-type="(?:pmc|pmcid)">)(?:PMC)?(\d+)(</article-id>)')


def renumbered(data: bytes, copy: int) -> bytes:
    """``data`` with every PMC id moved into a range of its own for copy number ``copy``."""
    offset = (copy + 1) * 100_000_000
    return _PMC_ID.sub(lambda m: m[1] + str(int(m[2]) + offset).encode() + m[3], data)


def write_copies(folder: Path, copies: int) -> list[Path]:
    """``copies`` copies of every fixture under ``folder`` (one subfolder per copy), new ids each."""
    written = []
    for copy in range(copies):
        target = folder / f"copy{copy:03d}"
        target.mkdir(parents=True, exist_ok=True)
        for fixture in FIXTURES:
            path = target / fixture.name
            path.write_bytes(renumbered(fixture.read_bytes(), copy))
            written.append(path)
    return written
