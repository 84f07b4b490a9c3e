"""Safe reading of local inputs: XML files, gzipped XML, and tar archives of JATS articles.

Inputs are files with these suffixes, or folders searched recursively for them:

- ``.xml``, ``.nxml``: one XML document (which may hold several articles);
- ``.xml.gz``, ``.nxml.gz``: the same, gzip-compressed;
- ``.tar.gz``, ``.tgz``, ``.tar``: legacy per-article packages (``PMC13900.tar.gz`` holding
  ``PMC13900/<name>.nxml`` with the figure images, PDF and supplements) and bulk packages
  (``oa_comm_xml.PMC006xxxxxx.baseline.<date>.tar.gz`` with members like
  ``PMC006xxxxxx/PMC6908519.xml``).

Nothing is extracted: archive members are read into memory, so no member can write outside the
build. Members whose names leave the archive (``..``, absolute paths), links (symbolic and hard)
and special files are refused and reported as ``Rejected`` items, as are documents and images
larger than ``max_member_bytes`` (decompression is read in bounded chunks and stops at the cap, so
a gzip bomb costs at most the cap in memory) and images whose header is not PNG, JPEG or GIF.

Images of a package are matched to its XML documents by directory and file stem
(``image_key``): JATS ``graphic/@xlink:href`` values usually lack the extension. While reading an
archive, a directory's documents are held back until the directory ends, so that images stored
after their document are still attached; when the held documents exceed ``HOLD_BYTES`` (a bulk
package, which has no images) they are released at once and later documents stream through.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tarfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import quote_from_bytes

from pmcurate.errors import SkipItem
from pmcurate.harvest import HarvestInputError
from pmcurate.step import resolved_text


class ByteStream(Protocol):
    """A readable binary stream: a file, a tar member, a gzip stream or a file descriptor."""

    def read(self, size: int, /) -> bytes: ...


DEFAULT_MAX_MEMBER_BYTES = 512 * 2**20
"""Largest document or image read (after decompression); larger ones are rejected."""

HOLD_BYTES = 64 * 2**20
"""Documents of one archive directory held back (waiting for their images) at most."""

CHUNK = 2**20

XML_SUFFIXES = (".xml", ".nxml")
GZIP_SUFFIXES = (".xml.gz", ".nxml.gz")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
INPUT_SUFFIXES = XML_SUFFIXES + GZIP_SUFFIXES + ARCHIVE_SUFFIXES
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp", ".bmp", ".svg")
"""Stripped from names and hrefs by ``image_key``; TIFF is recognised but not attached (no header reader)."""

READABLE_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif")
IMAGE_PREFERENCE = ("jpeg", "png", "gif")
"""Several images with one stem (PMC ships a ``.jpg`` and a ``.gif`` preview): the first format here wins."""


class TooLarge(SkipItem):
    """A document or image over the size cap."""


class NotAnImage(SkipItem):
    """A file named like an image whose bytes are not a PNG, JPEG or GIF image."""


class DecompressionBomb(SkipItem):
    """An image whose header declares more than ``MAX_IMAGE_PIXELS`` pixels."""


MAX_IMAGE_PIXELS = 178_956_970
"""Pixel count above which an image is refused: where Pillow refuses to decode (twice its
``Image.MAX_IMAGE_PIXELS``), so no row holds an image that readers would fail on or explode."""


@dataclass(frozen=True)
class Image:
    """A figure image: its bytes, path, format and pixel size.

    ``format``, ``width`` and ``height`` are None for media fetched from the network whose bytes
    could not be read as an image: those are kept as they came, with their size unknown.
    """

    path: str
    data: bytes
    format: str | None
    width: int | None
    height: int | None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Document:
    """One XML document: the input file, the archive member (None for a plain file), its bytes."""

    source: str
    member: str | None
    data: bytes
    images: Mapping[str, Image] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        """``file://`` URI of the input, with ``#member`` for an archive member."""
        uri = "file://" + quote_from_bytes(os.fsencode(resolved_text(self.source)))  # Path.as_uri()
        return f"{uri}#{self.member}" if self.member else uri

    @property
    def where(self) -> str:
        return f"{self.source}:{self.member}" if self.member else self.source


@dataclass(frozen=True)
class Rejected:
    """An input (or archive member) that was not read, and why; becomes a quarantine record."""

    source: str
    member: str | None
    error: str
    reason: str


Item = Document | Rejected


def is_input(path: Path) -> bool:
    return path.name.lower().endswith(INPUT_SUFFIXES)


def discover_inputs(paths: Iterable[Path]) -> list[Path]:
    """The input files named by ``paths``: files as given, folders searched recursively.

    Inside folders, files without a supported suffix and hidden files (``.name``) are skipped.
    The result is sorted and without duplicates. A path that does not exist, or a file given
    explicitly with an unsupported suffix, is a ``HarvestInputError``.
    """
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(_inputs_under(path))
        elif path.is_file():
            if not is_input(path):
                expected = ", ".join(INPUT_SUFFIXES)
                raise HarvestInputError(f"{path}: not a supported input (expected {expected})")
            found.add(path)
        else:
            raise HarvestInputError(f"{path}: no such file or folder")
    return sorted(found, key=_parts)  # Path's order, without a Path comparison per step of the sort


def _parts(path: Path) -> tuple[str, ...]:
    return path.parts


def _inputs_under(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        base = Path(root)
        for name in files:
            if not name.startswith(".") and name.lower().endswith(INPUT_SUFFIXES):  # is_input
                yield base / name


def iter_items(path: Path, *, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES) -> Iterator[Item]:
    """The documents of input file ``path``, and the members refused, in archive order."""
    source = str(path)
    name = path.name.lower()
    try:
        if name.endswith(ARCHIVE_SUFFIXES):
            yield from _archive_items(path, max_member_bytes)
            return
        if name.endswith(GZIP_SUFFIXES):
            with open(path, "rb") as raw:
                data = read_bounded(gzip.GzipFile(fileobj=raw), max_member_bytes)
        else:
            data = _read_plain(path, max_member_bytes)
    except TooLarge as exc:
        yield Rejected(source, None, "TooLarge", f"{source}: {exc}")
        return
    except (OSError, EOFError, zlib.error) as exc:
        yield Rejected(source, None, type(exc).__name__, f"cannot read {source}: {exc}")
        return
    if _blank(data):
        yield Rejected(source, None, "EmptyFile", f"{source} is empty")
    else:
        yield Document(source, None, data)


def _read_plain(path: Path, limit: int) -> bytes:
    """The bytes of the plain file ``path`` (``read_bounded``'s cap): one read of the file's size, not
    of CHUNK bytes then shrunk to it, on a file descriptor, without the buffered file object of
    ``open`` (a quarter of the CPU of reading a 100 kB file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_bounded(_Descriptor(fd), limit, first=os.fstat(fd).st_size + 1)
    finally:
        os.close(fd)


class _Descriptor:
    """An open file descriptor as a ``ByteStream``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int, /) -> bytes:
        return os.read(self.fd, size)


def _blank(data: bytes) -> bool:
    """Whether ``data`` is empty or only ASCII whitespace (``not data.strip()``, without copying
    the document to find out)."""
    return not data or data.isspace()


def read_bounded(stream: ByteStream, limit: int, *, first: int = CHUNK) -> bytes:
    """All of ``stream`` if it holds at most ``limit`` bytes, else ``TooLarge`` after reading limit+1.
    ``first``: the bytes asked for by the first read (``CHUNK`` by the next ones)."""
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(min(first if not chunks else CHUNK, limit + 1 - total)):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"larger than the {limit:,}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _archive_items(path: Path, max_member_bytes: int) -> Iterator[Item]:
    source = str(path)
    group = _DirectoryGroup()
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                yield from _member_items(tar, member, source, group, max_member_bytes)
    except Exception as exc:  # corrupt input makes tarfile raise TypeError, OverflowError…, not only TarError
        yield from group.release()
        yield Rejected(source, None, type(exc).__name__, f"{source}: archive unreadable or truncated: {exc}")
        return
    yield from group.release()


def _member_items(
    tar: tarfile.TarFile, member: tarfile.TarInfo, source: str, group: _DirectoryGroup, cap: int
) -> Iterator[Item]:
    name = member.name
    if member.isdir():
        return
    problem = _unsafe_member(member)
    if problem:
        yield Rejected(source, name, "UnsafeMember", f"{source}: member {name!r} refused: {problem}")
        return
    lower = name.lower()
    is_xml = lower.endswith(XML_SUFFIXES)
    if not is_xml and not lower.endswith(READABLE_IMAGE_SUFFIXES):
        return  # PDFs, supplements, TIFFs: not used
    if member.size > cap:
        yield Rejected(
            source,
            name,
            "TooLarge",
            f"{source}: member {name!r} declares {member.size:,} bytes, over the {cap:,}-byte cap",
        )
        return
    stream = tar.extractfile(member)
    assert stream is not None  # a regular file, checked by _unsafe_member
    data = read_bounded(stream, cap)
    directory = str(PurePosixPath(name).parent)
    if is_xml:
        if _blank(data):
            yield Rejected(source, name, "EmptyFile", f"{source}: member {name!r} is empty")
            return
        yield from group.add_document(directory, Document(source, name, data))
        return
    try:
        image = read_image(name, data)
    except (NotAnImage, DecompressionBomb) as exc:
        yield Rejected(source, name, type(exc).__name__, f"{source}: member {name!r}: {exc}")
        return
    yield from group.add_image(directory, image)


def _unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why ``member`` must not be read, or None when it is a plain file with a safe relative name."""
    pure = PurePosixPath(member.name)
    if pure.is_absolute() or member.name.startswith(("/", "\\")):
        return "absolute path"
    if ".." in pure.parts or "\\" in member.name:
        return "path leaves the archive ('..' or backslash)"
    if member.issym():
        return f"symbolic link to {member.linkname!r}"
    if member.islnk():
        return f"hard link to {member.linkname!r}"
    if not member.isfile():
        return "not a regular file"
    return None


class _DirectoryGroup:
    """Documents and images of the archive directory being read, released when it ends."""

    def __init__(self) -> None:
        self.directory: str | None = None
        self.documents: list[Document] = []
        self.images: dict[str, Image] = {}
        self.held = 0
        self.streaming = False

    def _enter(self, directory: str) -> Iterator[Document]:
        if directory != self.directory:
            yield from self.release()
            self.directory = directory
            self.images = {}
            self.streaming = False

    def add_document(self, directory: str, document: Document) -> Iterator[Document]:
        yield from self._enter(directory)
        if self.streaming:
            yield self._with_images(document)
            return
        self.documents.append(document)
        self.held += len(document.data)
        if self.held > HOLD_BYTES:
            self.streaming = True
            yield from self.release()

    def add_image(self, directory: str, image: Image) -> Iterator[Document]:
        yield from self._enter(directory)
        key = image_key(image.path)
        current = self.images.get(key)
        if current is None or _rank(image) < _rank(current):
            self.images[key] = image

    def release(self) -> Iterator[Document]:
        documents, self.documents, self.held = self.documents, [], 0
        for document in documents:
            yield self._with_images(document)

    def _with_images(self, document: Document) -> Document:
        return Document(document.source, document.member, document.data, dict(self.images))


def _rank(image: Image) -> int:
    return IMAGE_PREFERENCE.index(image.format)


def image_key(name: str) -> str:
    """The matching key of an image file name or a ``graphic/@xlink:href``: base name, no image suffix."""
    if "/" in name or "\\" in name or name in ("", ".", ".."):
        base = PurePosixPath(name.replace("\\", "/")).name
    else:  # a bare name is its own base name
        base = name
    lower = base.lower()
    for suffix in IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return base[: -len(suffix)]
    return base


def read_image(path: str, data: bytes) -> Image:
    """``data`` as an ``Image`` with format and size read from its header; ``NotAnImage`` otherwise,
    ``DecompressionBomb`` when the header declares more than ``MAX_IMAGE_PIXELS`` pixels."""
    format, width, height = _read_image_header(data)
    if width * height > MAX_IMAGE_PIXELS:
        raise DecompressionBomb(
            f"declares {width:,}×{height:,} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel cap"
            " (decompression bomb)"
        )
    return Image(path, data, format, width, height)


def _read_image_header(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) from the header of a PNG, GIF or JPEG image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return "gif", width, height
    if data.startswith(b"\xff\xd8"):
        size = _jpeg_size(data)
        if size:
            return "jpeg", *size
    raise NotAnImage("not a PNG, JPEG or GIF image (header unrecognised)")


_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame segment of a JPEG, or None if there is none."""
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return (width, height) if width and height else None
        if marker == 0xDA or length < 2:  # start of scan before any frame header: corrupt
            return None
        pos += 2 + length
    return None


def attach_images(figures: Iterable[dict[str, Any]], images: Mapping[str, Image]) -> int:
    """Fill ``image``, ``image_sha256``, ``format``, ``width``, ``height`` of figure rows whose
    graphic matches an image by ``image_key``; the first matching graphic of a figure wins.
    Returns the number of figures that got an image."""
    attached = 0
    if not images:
        return attached
    for figure in figures:
        for href in figure.get("graphics") or ():
            image = images.get(image_key(href))
            if image is not None:
                figure.update(
                    image={"bytes": image.data, "path": image.path},
                    image_sha256=image.sha256,
                    format=image.format,
                    width=image.width,
                    height=image.height,
                )
                attached += 1
                break
    return attached
