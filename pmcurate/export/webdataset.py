"""Image-text rows as WebDataset tar shards: ``{split}-{i:05d}-of-{n:05d}.tar``.

Each sample is three files sharing a key: ``KEY.jpg`` (or ``.png``…: one extension for the whole
export, so every sample has the same set of files), ``KEY.txt`` (the caption) and ``KEY.json``
(every other column: figure and article ids, label, citing paragraphs, license, hashes, size).

WebDataset splits a file name at its first dot into key and extension, so keys contain no dots:
a key is the figure id with every run of characters other than letters, digits, ``-`` and ``_``
replaced by ``_``, then ``_`` and the first 8 hex digits of the id's sha1 (two ids that sanitize
alike still get different keys), and ``_r<k>`` for the k-th upsampled copy.

An image whose format differs from the export's extension is re-encoded with Pillow (losslessly
to PNG; JPEG at quality 95), and its JSON says ``"transcoded_from"``. Tar headers carry no time,
owner or permissions beyond fixed values, and samples are in row order, so the same rows give
byte-identical shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from pmcurate.export.parquet import Shard, check_split_name, shard_name
from pmcurate.schema import TMP_PREFIX

EXTENSIONS = {"jpg": "JPEG", "png": "PNG"}
"""The image extensions an export can use, with Pillow's name for the format."""

_MAGIC = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF8", "gif"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
    (b"RIFF", "webp"),
    (b"BM", "bmp"),
)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_TMP = f"{TMP_PREFIX}export-"


def sniff_format(data: bytes) -> str:
    """``jpg``, ``png``, ``gif``, ``tif``, ``webp``, ``bmp`` from the first bytes, else ``unknown``."""
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    return "unknown"


def sample_key(figure_id: str, repeat: int = 0) -> str:
    """A WebDataset key for a figure: no dots, no slashes, unique per id and repeat."""
    digest = hashlib.sha1(figure_id.encode()).hexdigest()[:8]
    key = f"{_UNSAFE.sub('_', figure_id).strip('_')}_{digest}"
    return f"{key}_r{repeat}" if repeat else key


def choose_extension(format_counts: dict[str, int]) -> str:
    """The most common of the supported formats among the images (PNG on a tie or when none is)."""
    supported = {fmt: n for fmt, n in format_counts.items() if fmt in EXTENSIONS}
    if not supported:
        return "png"
    return max(sorted(supported), key=lambda fmt: (supported[fmt], fmt == "png"))


def encode_image(data: bytes, extension: str) -> tuple[bytes, str | None]:
    """``data`` in the format of ``extension``, and the format it was converted from (or None)."""
    found = sniff_format(data)
    if found == extension:
        return data, None
    from PIL import Image  # only needed when formats are mixed

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        image: Image.Image = opened
        if extension == "jpg" and opened.mode not in ("RGB", "L"):
            image = opened.convert("RGB")
        out = io.BytesIO()
        options: dict[str, Any] = {"quality": 95} if extension == "jpg" else {"optimize": False}
        image.save(out, format=EXTENSIONS[extension], **options)
    return out.getvalue(), found


def samples(table: pa.Table, extension: str, image_column: str = "image") -> Iterator[tuple[str, dict]]:
    """``(key, {extension: bytes, "txt": bytes, "json": bytes})`` for each row of ``table``."""
    for row in table.to_pylist():
        image = row.pop(image_column)
        data, transcoded = encode_image(image["bytes"], extension)
        meta = {name: value for name, value in row.items() if not isinstance(value, bytes)}
        meta["image_path"] = image.get("path")
        if transcoded:
            meta["transcoded_from"] = transcoded
        key = sample_key(row["figure_id"], row.get("repeat") or 0)
        files = {
            extension: data,
            "txt": (row.get("caption") or "").encode(),
            "json": json.dumps(meta, ensure_ascii=False, sort_keys=True, default=str).encode(),
        }
        yield key, files


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


def write_split(
    tables: Iterable[pa.Table],
    folder: str | os.PathLike[str],
    split: str,
    *,
    extension: str,
    shard_bytes: int,
) -> list[Shard]:
    """Write one split's samples as tar shards of about ``shard_bytes`` each."""
    check_split_name(split)
    if extension not in EXTENSIONS:
        raise ValueError(f"unsupported image extension {extension!r} (choose from {', '.join(EXTENSIONS)})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, int]] = []
    tar: tarfile.TarFile | None = None
    rows = 0
    try:
        for table in tables:
            for key, files in samples(table, extension):
                if tar is None:
                    path = folder / f"{_TMP}{split}-{len(written):05d}"
                    tar = tarfile.open(path, "w", format=tarfile.GNU_FORMAT)  # noqa: SIM115 - closed below
                    written.append((path, 0))
                for suffix in (extension, "txt", "json"):
                    _add(tar, f"{key}.{suffix}", files[suffix])
                rows += 1
                if tar.fileobj.tell() >= shard_bytes:
                    tar.close()
                    written[-1] = (written[-1][0], rows)
                    tar, rows = None, 0
        if tar is not None:
            tar.close()
            written[-1] = (written[-1][0], rows)
            tar = None
    except BaseException:
        if tar is not None:
            tar.close()
        for path, _ in written:
            path.unlink(missing_ok=True)
        raise
    shards = []
    for index, (tmp, count) in enumerate(written):
        final = folder / shard_name(split, index, len(written), "tar")
        os.replace(tmp, final)
        shards.append(Shard(final, count, final.stat().st_size))
    return shards
