"""Builders of the hostile and broken inputs under ``tests/data/hostile/``.

The corpus files are committed (each a few KB at most, listed with their expected outcome in
``tests/data/hostile/cases.toml``); this module is how they were made, so a case can be read and
regenerated: ``python -m tests.reliability.hostile`` rewrites them. Inputs too large to commit
(a gzip declaring 2 GB) and inputs that name a live resource of the test (a marker file, a local
HTTP server) are built at test time by the functions here.
"""

from __future__ import annotations

import gzip
import io
import struct
import sys
import tarfile
import zlib
from pathlib import Path

from tests.harvest.tarballs import jpeg, link_member, png, write_tar

HOSTILE_DIR = Path(__file__).parents[1] / "data" / "hostile"

_ENTITY_HEAD = '<?xml version="1.0" encoding="{encoding}"?>\n<!DOCTYPE article [{declarations}]>\n'


def article(pmcid: str, body: str = "<p>Hostile-corpus control paragraph.</p>", *, ids: str = "") -> str:
    """A minimal JATS article keyed by ``pmcid`` (digits), with ``body`` as its body."""
    id_elements = ids or f'<article-id pub-id-type="pmc">{pmcid}</article-id>'
    return (
        '<article xmlns:xlink="http://www.w3.org/1999/xlink" article-type="research-article">'
        f"<front><article-meta>{id_elements}"
        f"<title-group><article-title>Hostile case {pmcid}</article-title></title-group>"
        f"</article-meta></front><body>{body}</body></article>"
    )


def figure_article(pmcid: str, graphics: list[str]) -> bytes:
    """An article with one figure per graphic href (no extension, as PMC writes them)."""
    figures = "".join(
        f'<fig id="f{i}"><label>Figure {i}</label><caption><p>Caption {i}.</p></caption>'
        f'<graphic xlink:href="{href}"/></fig>'
        for i, href in enumerate(graphics, 1)
    )
    return article(pmcid, f"<sec><title>Results</title><p>See the figures.</p>{figures}</sec>").encode()


def with_entities(declarations: str, body: str, *, encoding: str = "UTF-8", pmcid: str = "900100") -> bytes:
    text = _ENTITY_HEAD.format(encoding=encoding, declarations=declarations) + article(pmcid, body)
    return text.encode(encoding.lower())


def xxe(uri: str, *, encoding: str = "UTF-8") -> bytes:
    """An external general entity naming ``uri`` (a file or a URL), used in a paragraph."""
    return with_entities(f'<!ENTITY xxe SYSTEM "{uri}">', "<p>before &xxe; after</p>", encoding=encoding)


def xxe_parameter(uri: str) -> bytes:
    """An external parameter entity: the DTD at ``uri`` would be fetched and expanded in the subset."""
    return with_entities(f'<!ENTITY % remote SYSTEM "{uri}"> %remote;', "<p>parameter entity</p>")


def external_dtd(uri: str, pmcid: str) -> bytes:
    """A well-formed article whose DOCTYPE names an external DTD (real PMC files name the JATS DTD)."""
    return (f'<?xml version="1.0"?>\n<!DOCTYPE article SYSTEM "{uri}">\n' + article(pmcid)).encode()


def billion_laughs(*, encoding: str = "UTF-8") -> bytes:
    """Ten levels of ten references: 10^9 ``lol`` if expanded."""
    levels = ['<!ENTITY lol0 "lol">']
    levels += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return with_entities("".join(levels), "<p>&lol9;</p>", encoding=encoding)


def quadratic_blowup() -> bytes:
    """One 20 KB entity referenced 2,000 times: 40 MB if expanded, no nesting to detect."""
    return with_entities(f'<!ENTITY big "{"A" * 20_000}">', f"<p>{'&big;' * 2_000}</p>")


def deep_nesting(depth: int = 1_000) -> bytes:
    return article("900101", "<sec>" * depth + "<p>deep</p>" + "</sec>" * depth).encode()


def invalid_utf8() -> bytes:
    """A declared UTF-8 document holding Latin-1 bytes and a lone continuation byte."""
    return ('<?xml version="1.0" encoding="UTF-8"?>' + article("900102", "<p>caf\xe9 \x80</p>")).encode(
        "latin-1"
    )


def shell_pmcid() -> bytes:
    """The only id is a PMCID made of shell and path characters: nothing to key the article by."""
    ids = '<article-id pub-id-type="pmc">../../$(touch pwned);`id`|rm -rf ~</article-id>'
    ids += '<article-id pub-id-type="pmcid">PMC1/../../../etc/passwd</article-id>'
    return article("0", ids=ids).encode()


def path_doi() -> bytes:
    """A DOI (DOIs may hold any character) made of path and shell characters: a plain string value."""
    ids = '<article-id pub-id-type="doi">10.9999/../../../tmp/$(id);x</article-id>'
    return article("0", ids=ids).encode()


def traversal_tar(path: Path) -> Path:
    """A package whose members try to leave the archive, next to one good article."""
    target = "../../pmcurate-hostile-outside.nxml"
    device = tarfile.TarInfo("PMC900103/device.nxml")
    device.type = tarfile.CHRTYPE
    return write_tar(
        path,
        [
            ("PMC900103/PMC900103.nxml", article("900103").encode()),
            ("../escape.nxml", article("900901").encode()),
            ("PMC900103/../../up.nxml", article("900902").encode()),
            ("/tmp/pmcurate-hostile-absolute.nxml", article("900903").encode()),
            ("..\\windows.nxml", article("900904").encode()),
            link_member("PMC900103/symlink.nxml", "/etc/passwd"),
            link_member("PMC900103/up-symlink.png", target),
            link_member("PMC900103/hardlink.nxml", target, hard=True),
            device,
        ],
    )


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR declaring ``width``×``height``, a tiny IDAT and IEND: a decompression bomb
    for any reader that allocates the declared size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def image_bomb_tar(path: Path) -> Path:
    return write_tar(
        path,
        [
            ("PMC900104/PMC900104.nxml", figure_article("900104", ["bomb.g001", "bomb.g002", "ok.g003"])),
            ("PMC900104/bomb.g001.png", png_header(100_000, 100_000)),
            ("PMC900104/bomb.g002.jpg", jpeg(65_535, 65_535)),
            ("PMC900104/ok.g003.png", png(4, 3)),
        ],
    )


def not_an_image_tar(path: Path) -> Path:
    return write_tar(
        path,
        [
            ("PMC900105/PMC900105.nxml", figure_article("900105", ["fake.g001", "fake.g002"])),
            ("PMC900105/fake.g001.jpg", b"<html><body>this is not a JPEG</body></html>"),
            ("PMC900105/fake.g002.png", b"\x89PNG\r\n\x1a\n" + b"\xff" * 40),
        ],
    )


def member_bomb_tar(path: Path) -> Path:
    """A package whose member header declares 2 GB, followed by a few bytes (a truncated stream)."""
    info = tarfile.TarInfo("PMC900106/PMC900106.nxml")
    info.size = 2 * 2**30
    buffer = io.BytesIO()
    buffer.write(info.tobuf(format=tarfile.GNU_FORMAT))
    buffer.write(b"<article>" + b"\x00" * 1024)
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return path


def truncated_gzip(path: Path) -> Path:
    whole = gzip.compress(article("900107").encode() * 20, mtime=0)
    path.write_bytes(whole[: len(whole) // 2])
    return path


def gzip_bomb(path: Path, *, declared: int = 2 * 2**30, chunk: int = 2**20) -> Path:
    """A real gzip stream of ``declared`` zero bytes (ISIZE says so too), written in ~2 MB.

    A raw-deflate block of ``chunk`` zeros compressed after a full flush is the same bytes every
    time (the flush resets the dictionary), so the stream is one block repeated: no need to
    compress 2 GB. The CRC is left wrong on purpose: a reader must stop at its cap long before it.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(b"\x00" * chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    with open(path, "wb") as sink:
        sink.write(header)
        for _ in range(declared // chunk):
            sink.write(block)
        sink.write(zlib.compressobj(9, zlib.DEFLATED, -15).flush())  # an empty final block
        sink.write(struct.pack("<II", 0, declared % 2**32))
    return path


def write_corpus(folder: Path = HOSTILE_DIR) -> list[Path]:
    """(Re)write the committed hostile files into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "xxe-file.xml": xxe("file:///etc/passwd"),
        "xxe-network.xml": xxe("http://127.0.0.1:9/xxe"),
        "xxe-parameter.xml": xxe_parameter("http://127.0.0.1:9/evil.dtd"),
        "xxe-utf16.xml": xxe("file:///etc/passwd", encoding="UTF-16"),
        "external-dtd.xml": external_dtd("http://127.0.0.1:9/evil.dtd", "900108"),
        "billion-laughs.xml": billion_laughs(),
        "billion-laughs-utf16.xml": billion_laughs(encoding="UTF-16"),
        "quadratic-blowup.xml": quadratic_blowup(),
        "deep-nesting.xml": deep_nesting(),
        "invalid-utf8.xml": invalid_utf8(),
        "shell-pmcid.xml": shell_pmcid(),
        "path-doi.xml": path_doi(),
        "empty.xml": b"  \n",
        "not-xml.xml": bytes(range(256)) * 4,
    }
    written = []
    for name, data in files.items():
        (folder / name).write_bytes(data)
        written.append(folder / name)
    written.append(traversal_tar(folder / "tar-traversal.tar.gz"))
    written.append(image_bomb_tar(folder / "image-bomb.tar.gz"))
    written.append(not_an_image_tar(folder / "not-an-image.tar.gz"))
    written.append(member_bomb_tar(folder / "member-bomb.tar.gz"))
    written.append(truncated_gzip(folder / "truncated.xml.gz"))
    return written


if __name__ == "__main__":
    for path in write_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else HOSTILE_DIR):
        print(f"{path.stat().st_size:>8,}  {path}")
