"""Safe reading of inputs: discovery, gzip and tar reading, refused members, size caps, image headers."""

from __future__ import annotations

import gzip
import io
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from pmcurate.harvest import HarvestInputError, archive
from pmcurate.harvest.archive import Document, Rejected
from tests.harvest.tarballs import gif, jpeg, link_member, png, write_gzip, write_tar

ARTICLE = b"<article><front/><body><p>Text.</p></body></article>"


def items(path: Path, **kwargs: int) -> list[archive.Item]:
    return list(archive.iter_items(path, **kwargs))


# --- discovery -------------------------------------------------------------------------------------


def test_discover_inputs_searches_folders_recursively_for_supported_suffixes(tmp_path: Path) -> None:
    for name in ("a.xml", "sub/b.nxml", "sub/deep/c.xml.gz", "d.tar.gz", "e.tgz", "notes.txt", "f.pdf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = archive.discover_inputs([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "a.xml",
        "d.tar.gz",
        "e.tgz",
        "sub/b.nxml",
        "sub/deep/c.xml.gz",
    ]


def test_discover_inputs_skips_hidden_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "a.xml").write_bytes(b"x")
    (tmp_path / "._b.xml").write_bytes(b"x")
    (tmp_path / "c.xml").write_bytes(b"x")
    assert archive.discover_inputs([tmp_path]) == [tmp_path / "c.xml"]


def test_discover_inputs_lists_a_file_named_twice_once(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(b"x")
    assert archive.discover_inputs([tmp_path, tmp_path / "a.xml"]) == [tmp_path / "a.xml"]


def test_discover_inputs_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(HarvestInputError, match=r"nope\.xml: no such file or folder"):
        archive.discover_inputs([tmp_path / "nope.xml"])


def test_discover_inputs_refuses_an_explicit_unsupported_file(tmp_path: Path) -> None:
    (tmp_path / "paper.pdf").write_bytes(b"%PDF")
    with pytest.raises(HarvestInputError, match=r"paper\.pdf: not a supported input"):
        archive.discover_inputs([tmp_path / "paper.pdf"])


# --- plain and gzipped files -----------------------------------------------------------------------


def test_plain_xml_file_is_one_document_with_its_file_uri(tmp_path: Path) -> None:
    path = tmp_path / "a.xml"
    path.write_bytes(ARTICLE)
    [doc] = items(path)
    assert isinstance(doc, Document)
    assert (doc.data, doc.member, doc.uri) == (ARTICLE, None, path.resolve().as_uri())


def test_gzipped_xml_is_decompressed(tmp_path: Path) -> None:
    [doc] = items(write_gzip(tmp_path / "a.xml.gz", ARTICLE))
    assert isinstance(doc, Document)
    assert doc.data == ARTICLE


def test_empty_file_is_rejected_as_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.xml").write_bytes(b"")
    [rejected] = items(tmp_path / "empty.xml")
    assert isinstance(rejected, Rejected)
    assert rejected.error == "EmptyFile"
    assert "empty.xml is empty" in rejected.reason


def test_corrupt_gzip_is_rejected_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml.gz"
    path.write_bytes(gzip.compress(ARTICLE)[:-12])
    [rejected] = items(path)
    assert isinstance(rejected, Rejected)
    assert "bad.xml.gz" in rejected.reason


def test_gzip_bomb_is_stopped_at_the_cap_with_bounded_memory(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.xml.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as sink:
        block = b"\0" * 2**20
        for _ in range(64):  # 64 MiB of zeros, ~64 KiB on disk
            sink.write(block)
    cap = 4 * 2**20
    tracemalloc.start()
    try:
        [rejected] = items(bomb, max_member_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(rejected, Rejected)
    assert rejected.error == "TooLarge"
    assert "4,194,304-byte cap" in rejected.reason
    assert peak < 3 * cap


def test_read_bounded_accepts_exactly_the_cap() -> None:
    assert archive.read_bounded(io.BytesIO(b"x" * 10), 10) == b"x" * 10


def test_read_bounded_refuses_one_byte_over_the_cap() -> None:
    with pytest.raises(archive.TooLarge):
        archive.read_bounded(io.BytesIO(b"x" * 11), 10)


# --- tar archives ----------------------------------------------------------------------------------


def test_bulk_package_yields_each_xml_member(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "oa_comm_xml.PMC006xxxxxx.baseline.2024-06-18.tar.gz",
        [("PMC006xxxxxx/PMC6908519.xml", ARTICLE), ("PMC006xxxxxx/PMC6908520.xml", ARTICLE)],
    )
    docs = items(path)
    assert [d.member for d in docs] == ["PMC006xxxxxx/PMC6908519.xml", "PMC006xxxxxx/PMC6908520.xml"]
    assert docs[0].uri == f"{path.resolve().as_uri()}#PMC006xxxxxx/PMC6908519.xml"


def test_member_with_dotdot_is_refused(tmp_path: Path) -> None:
    [rejected] = items(write_tar(tmp_path / "evil.tar.gz", [("../../etc/x", ARTICLE)]))
    assert isinstance(rejected, Rejected)
    assert (rejected.member, rejected.error) == ("../../etc/x", "UnsafeMember")
    assert "leaves the archive" in rejected.reason


def test_absolute_member_is_refused(tmp_path: Path) -> None:
    [rejected] = items(write_tar(tmp_path / "evil.tar.gz", [("/etc/x.xml", ARTICLE)]))
    assert isinstance(rejected, Rejected)
    assert "absolute path" in rejected.reason


def test_symlink_member_is_refused(tmp_path: Path) -> None:
    [rejected] = items(write_tar(tmp_path / "evil.tar.gz", [link_member("PMC1/a.nxml", "/etc/passwd")]))
    assert isinstance(rejected, Rejected)
    assert "symbolic link to '/etc/passwd'" in rejected.reason


def test_hardlink_member_is_refused(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "evil.tar",
        [("PMC1/a.nxml", ARTICLE), link_member("PMC1/b.nxml", "PMC1/a.nxml", hard=True)],
    )
    [rejected] = [item for item in items(path) if isinstance(item, Rejected)]
    assert rejected.member == "PMC1/b.nxml"
    assert "hard link to 'PMC1/a.nxml'" in rejected.reason


def test_member_declaring_more_than_the_cap_is_refused_unread(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "big.tar.gz", [("PMC1/a.nxml", b"<" * 5000), ("PMC1/b.nxml", ARTICLE)])
    rejected, doc = items(path, max_member_bytes=4096)
    assert isinstance(rejected, Rejected)
    assert "declares 5,000 bytes" in rejected.reason
    assert isinstance(doc, Document)


def test_truncated_archive_keeps_the_documents_read_before_the_damage(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "t.tar", [("a/PMC1.xml", ARTICLE), ("b/PMC2.xml", b"x" * 20000)])
    path.write_bytes(path.read_bytes()[:3000])
    doc, rejected = items(path)
    assert isinstance(doc, Document)
    assert doc.member == "a/PMC1.xml"
    assert isinstance(rejected, Rejected)
    assert "truncated" in rejected.reason


def test_non_xml_members_are_ignored(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "PMC1.tar.gz", [("PMC1/a.pdf", b"%PDF"), ("PMC1/a.nxml", ARTICLE)])
    assert [item.member for item in items(path)] == ["PMC1/a.nxml"]


# --- images ----------------------------------------------------------------------------------------


def test_images_of_a_package_are_attached_by_stem_even_when_stored_after_the_xml(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "PMC1.tar.gz",
        [("PMC1/a.nxml", ARTICLE), ("PMC1/a.g001.png", png(3, 2)), ("PMC1/a.g002.jpg", jpeg(640, 480))],
    )
    [doc] = items(path)
    assert isinstance(doc, Document)
    assert sorted(doc.images) == ["a.g001", "a.g002"]
    assert (doc.images["a.g001"].format, doc.images["a.g001"].width, doc.images["a.g001"].height) == (
        "png",
        3,
        2,
    )
    assert doc.images["a.g002"].path == "PMC1/a.g002.jpg"


def test_images_of_another_directory_are_not_attached(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "two.tar.gz", [("PMC1/a.nxml", ARTICLE), ("PMC2/b.g001.png", png(1, 1))])
    [doc] = items(path)
    assert isinstance(doc, Document)
    assert doc.images == {}


def test_jpeg_is_preferred_to_the_gif_preview_of_the_same_stem(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "PMC1.tar.gz",
        [("PMC1/f1.gif", gif(10, 10)), ("PMC1/f1.jpg", jpeg(100, 100)), ("PMC1/a.nxml", ARTICLE)],
    )
    [doc] = items(path)
    assert isinstance(doc, Document)
    assert doc.images["f1"].format == "jpeg"


def test_image_member_whose_header_is_not_an_image_is_refused(tmp_path: Path) -> None:
    path = write_tar(
        tmp_path / "PMC1.tar.gz", [("PMC1/a.nxml", ARTICLE), ("PMC1/f1.jpg", b"<html>oops</html>")]
    )
    rejected, doc = items(path)
    assert isinstance(rejected, Rejected)
    assert (rejected.error, rejected.member) == ("NotAnImage", "PMC1/f1.jpg")
    assert isinstance(doc, Document)
    assert doc.images == {}


@pytest.mark.parametrize(
    ("data", "expected"),
    [(png(7, 5), ("png", 7, 5)), (gif(300, 200), ("gif", 300, 200)), (jpeg(1024, 768), ("jpeg", 1024, 768))],
    ids=["png", "gif", "jpeg"],
)
def test_read_image_reads_format_and_size_from_the_header(
    data: bytes, expected: tuple[str, int, int]
) -> None:
    image = archive.read_image("f.img", data)
    assert (image.format, image.width, image.height) == expected


def test_read_image_refuses_a_truncated_jpeg() -> None:
    with pytest.raises(archive.NotAnImage):
        archive.read_image("f.jpg", jpeg(10, 10)[:8])


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("pone.0000217.g001", "pone.0000217.g001"),
        ("PMC1/pone.0000217.g001.jpg", "pone.0000217.g001"),
        ("F1.TIF", "F1"),
    ],
)
def test_image_key_strips_folders_and_image_suffixes_only(name: str, key: str) -> None:
    assert archive.image_key(name) == key


def test_attach_images_fills_the_figure_image_columns() -> None:
    image = archive.read_image("PMC1/f1.png", png(4, 3))
    figure: dict[str, object] = {"figure_id": "PMC1/fig1", "graphics": ["f1"]}
    assert archive.attach_images([figure], {"f1": image}) == 1
    assert figure["image"] == {"bytes": image.data, "path": "PMC1/f1.png"}
    assert (figure["format"], figure["width"], figure["height"]) == ("png", 4, 3)
    assert figure["image_sha256"] == image.sha256


def test_tarfile_keeps_the_unsafe_names_the_tests_rely_on(tmp_path: Path) -> None:
    path = write_tar(tmp_path / "check.tar", [("/etc/x.xml", b"x"), ("../../etc/x", b"x")])
    with tarfile.open(path) as tar:
        assert tar.getnames() == ["/etc/x.xml", "../../etc/x"]


def test_a_directory_over_the_hold_limit_streams_its_documents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive, "HOLD_BYTES", len(ARTICLE) - 1)
    path = write_tar(
        tmp_path / "bulk.tar.gz", [("d/PMC1.xml", ARTICLE), ("d/PMC2.xml", ARTICLE), ("d/f1.png", png(1, 1))]
    )
    stream = archive.iter_items(path)
    first = next(stream)
    assert isinstance(first, Document)
    assert first.member == "d/PMC1.xml"
    assert first.images == {}
