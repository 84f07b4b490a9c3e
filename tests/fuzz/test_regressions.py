"""Crashes the fuzz targets found, kept as plain tests so they never come back."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from pmcurate.harvest import archive


def pax_archive(records: bytes) -> bytes:
    """A tar whose first member is a PAX extended header holding ``records`` verbatim."""
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = len(records)
    buffer = io.BytesIO()
    buffer.write(header.tobuf(format=tarfile.USTAR_FORMAT))
    buffer.write(records + b"\x00" * (-len(records) % tarfile.BLOCKSIZE))
    buffer.write(b"\x00" * tarfile.BLOCKSIZE * 2)
    return buffer.getvalue()


def test_pax_record_length_beyond_ssize_t_is_a_rejection_not_a_crash(tmp_path: Path) -> None:
    # found by test_fuzz_archive: tarfile raised OverflowError (not TarError) out of iter_items,
    # which ended the whole harvest task
    path = tmp_path / "bad.tar"
    path.write_bytes(pax_archive(b"99999999999999999999999 path=x\n"))
    items = list(archive.iter_items(path))
    assert [(type(i).__name__, i.error) for i in items] == [("Rejected", "OverflowError")]


def test_gzip_header_cut_after_three_bytes_is_a_rejection_not_a_crash(tmp_path: Path) -> None:
    # found by test_fuzz_archive: tarfile raised TypeError (ord() of an empty read)
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08")
    items = list(archive.iter_items(path))
    assert [(type(i).__name__, i.error) for i in items] == [("Rejected", "TypeError")]
