"""Every row of every table ``jats.parse`` gives for every XML file under ``tests/data`` is unchanged.

``tests/data/jats-output-digests.json`` holds, per file and per option set, the SHA-256 of each
table's rows (JSON, keys sorted) as the parser wrote them before the speed work of issue 15, or
the error message it raised. Speed work must keep the output byte-identical: any change to a row,
its order, or an error shows here, named by file, option set and table. A deliberate change of
the text rules regenerates the file (``python tests/harvest/test_jats_digest.py``) in the same
commit, so the diff shows which files' output moved.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from pmcurate.harvest import jats

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DIGESTS = DATA_DIR / "jats-output-digests.json"
OPTION_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    "citations-drop": {"citations": "drop"},
    "sub-articles": {"include_sub_articles": True},
}
TABLES = ("articles", "paragraphs", "figures", "tables")


def xml_files() -> list[Path]:
    return sorted(p for p in DATA_DIR.rglob("*") if p.suffix in (".xml", ".nxml"))


def table_digests(name: str, data: bytes, options: dict[str, Any]) -> dict[str, str]:
    """SHA-256 of each table's rows in order, or the error ``parse`` raised."""
    try:
        parsed = jats.parse(data, source_uri=name, **options)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    rows: dict[str, list[dict[str, Any]]] = {
        "articles": [a.article for a in parsed],
        "paragraphs": [r for a in parsed for r in a.paragraphs],
        "figures": [r for a in parsed for r in a.figures],
        "tables": [r for a in parsed for r in a.tables],
    }
    return {
        table: hashlib.sha256(
            "\n".join(json.dumps(r, sort_keys=True, ensure_ascii=False) for r in rows[table]).encode()
        ).hexdigest()
        for table in TABLES
    }


def keys() -> list[str]:
    """``<file under tests/data> <option set>`` for every XML file and option set."""
    names = [p.relative_to(DATA_DIR).as_posix() for p in xml_files()]
    return [f"{name} {option_name}" for name in names for option_name in OPTION_SETS]


def current_digests() -> dict[str, dict[str, str]]:
    digests = {}
    for key in keys():
        name, option_name = key.rsplit(" ", 1)
        digests[key] = table_digests(name, (DATA_DIR / name).read_bytes(), OPTION_SETS[option_name])
    return digests


RECORDED: dict[str, dict[str, str]] = json.loads(DIGESTS.read_text()) if DIGESTS.is_file() else {}


def test_every_recorded_file_is_still_under_tests_data() -> None:
    assert RECORDED, f"{DIGESTS} is missing"
    assert sorted(RECORDED) == sorted(keys())


@pytest.mark.parametrize("key", sorted(RECORDED))
def test_parse_output_is_byte_identical_to_the_recorded_one(key: str) -> None:
    name, option_name = key.rsplit(" ", 1)
    assert table_digests(name, (DATA_DIR / name).read_bytes(), OPTION_SETS[option_name]) == RECORDED[key]


if __name__ == "__main__":
    DIGESTS.write_text(json.dumps(current_digests(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {DIGESTS}", file=sys.stderr)
