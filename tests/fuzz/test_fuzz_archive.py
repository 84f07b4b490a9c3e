"""Fuzz target: the archive reader.

Whatever the file, ``archive.iter_items`` yields ``Document`` and ``Rejected`` items and never
raises; no document comes from a member whose name leaves the archive or that is a link or
special file, none is over the cap, and no attached image declares more pixels than the cap.
Inputs are tar archives built from hostile members (names with ``..``, absolute paths,
backslashes; links; devices; random bytes and image headers), plain or gzipped, then maybe
truncated or with bytes flipped; and arbitrary bytes named ``.xml.gz`` or ``.tar.gz``.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from hypothesis import given
from hypothesis import strategies as st

from pmcurate.harvest import archive
from tests.fuzz.budget import FUZZ, cpu_limit
from tests.harvest.tarballs import gif, jpeg, png
from tests.reliability.hostile import article, png_header

CAP = 4096
NAMES = st.sampled_from(
    [
        "PMC1/PMC1.nxml",
        "PMC1/a.g001.png",
        "PMC1/a.g001.jpg",
        "PMC1/b.gif",
        "PMC2/PMC2.xml",
        "../up.nxml",
        "PMC1/../../up.xml",
        "/abs.nxml",
        "\\win.xml",
        "PMC1\\..\\x.xml",
        "./PMC1/dot.nxml",
        "PMC1//double.nxml",
        "PMC1/é.nxml",
        "PMC1/doc.pdf",
        "",
        ".",
    ]
)
PAYLOADS = st.one_of(
    st.binary(max_size=300),
    st.just(article("1").encode()),
    st.just(png(2, 2)),
    st.just(jpeg(3, 3)),
    st.just(gif(4, 4)),
    st.just(png_header(100_000, 100_000)),
    st.just(b"<article>" * 1000),  # over the cap
    st.just(b""),
)
TYPES = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.REGTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.DIRTYPE,
        tarfile.CHRTYPE,
        tarfile.FIFOTYPE,
    ]
)


@st.composite
def tar_bytes(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(
        fileobj=buffer, mode="w", format=draw(st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
    ) as tar:
        for _ in range(draw(st.integers(0, 6))):
            info = tarfile.TarInfo(draw(NAMES))
            info.type = draw(TYPES)
            if info.type == tarfile.REGTYPE:
                data = draw(PAYLOADS)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                info.linkname = draw(NAMES)
                tar.addfile(info)
    data = buffer.getvalue()
    if draw(st.booleans()):
        data = gzip.compress(data, mtime=0)
    damage = draw(st.sampled_from(["none", "truncate", "flip"]))
    if damage == "truncate" and data:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif damage == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    return data


def check_items(name: str, data: bytes) -> None:
    """The fuzz property: only documents and rejections, documents safe and within the caps."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        with cpu_limit():
            items = list(archive.iter_items(path, max_member_bytes=CAP))
    for item in items:
        assert isinstance(item, archive.Document | archive.Rejected)
        if isinstance(item, archive.Rejected):
            assert item.reason
            continue
        assert len(item.data) <= CAP
        if item.member is not None:
            member = PurePosixPath(item.member)
            assert not member.is_absolute() and ".." not in member.parts and "\\" not in item.member
        for image in item.images.values():
            assert image.width * image.height <= archive.MAX_IMAGE_PIXELS


@FUZZ
@given(tar_bytes(), st.sampled_from(["input.tar.gz", "input.tar"]))
def test_hostile_archive_gives_only_safe_documents_and_rejections(data: bytes, name: str) -> None:
    check_items(name, data)


@FUZZ
@given(
    st.one_of(
        st.binary(max_size=500), st.binary(max_size=300).map(lambda b: gzip.compress(b, mtime=0)[: len(b)])
    )
)
def test_arbitrary_bytes_named_gzip_give_a_document_or_a_rejection(data: bytes) -> None:
    check_items("input.xml.gz", data)
