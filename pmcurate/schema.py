"""Arrow schemas of every table: the contract between stages.

A build folder holds each table as a folder of Parquet shards, ``BUILD/tables/<table>/*.parquet``,
every shard written with the schema defined here. Stages read tables and write tables; nothing
else passes between them. ``write_shard`` is the one way a shard reaches disk: a temporary name in
the same folder, then an atomic rename, so readers never see a half-written file and a killed run
leaves nothing that looks finished.
"""

from __future__ import annotations

import contextlib
import functools
import operator
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pmcurate import labels

LICENSE_CODES = (
    "CC0",
    "CC BY",
    "CC BY-SA",
    "CC BY-ND",
    "CC BY-NC",
    "CC BY-NC-SA",
    "CC BY-NC-ND",
    "PD",
    "TDM",
)
"""Normalized license codes; ``other`` for a recognised but non-standard license, null when unknown."""

COMMERCIAL_LICENSES = frozenset({"CC0", "CC BY", "CC BY-SA", "CC BY-ND", "PD"})
NONCOMMERCIAL_LICENSES = frozenset({"CC BY-NC", "CC BY-NC-SA", "CC BY-NC-ND"})

SECTION_TYPES = (
    "abstract",
    "introduction",
    "methods",
    "results",
    "discussion",
    "conclusion",
    "case",
    "other",
)
DOCUMENT_TYPES = labels.get("document_type").classes
DOMAINS = labels.get("domain").classes

TIMESTAMP = pa.timestamp("us", tz="UTC")
STRINGS = pa.list_(pa.string())

ABSTRACT = pa.struct([("type", pa.string()), ("title", pa.string()), ("text", pa.string())])
"""One abstract of an article: its ``abstract-type`` (null for the main one), title and text."""

DATE = pa.struct([("type", pa.string()), ("date", pa.string())])
"""A dated event (``epub``, ``ppub``, ``collection``, ``received``…) as an ISO date, maybe partial."""

AUTHOR = pa.struct(
    [
        ("name", pa.string()),
        ("surname", pa.string()),
        ("given_names", pa.string()),
        ("orcid", pa.string()),
        ("affiliations", STRINGS),
    ]
)

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
"""The Hugging Face ``datasets.Image`` storage layout."""

ARTICLES = pa.schema(
    [
        ("article_id", pa.string(), False),
        ("id_source", pa.string()),
        ("pmcid", pa.string()),
        ("version", pa.int32()),
        ("pmid", pa.string()),
        ("doi", pa.string()),
        ("title", pa.string()),
        ("abstract", pa.string()),
        ("abstracts", pa.list_(ABSTRACT)),
        ("journal", pa.string()),
        ("journal_abbrev", pa.string()),
        ("issn", STRINGS),
        ("publisher", pa.string()),
        ("pub_year", pa.int32()),
        ("pub_date", pa.string()),
        ("dates", pa.list_(DATE)),
        ("article_type", pa.string()),
        ("subjects", STRINGS),
        ("keywords", STRINGS),
        ("authors", pa.list_(AUTHOR)),
        ("language", pa.string()),
        ("license", pa.string()),
        ("license_url", pa.string()),
        ("license_text", pa.string()),
        ("commercial_use", pa.bool_()),
        ("license_source", pa.string()),
        ("retracted", pa.bool_()),
        ("is_pmc_openaccess", pa.bool_()),
        ("is_manuscript", pa.bool_()),
        ("is_retraction_notice", pa.bool_()),
        ("related_retractions", STRINGS),
        ("n_paragraphs", pa.int32()),
        ("n_figures", pa.int32()),
        ("n_tables", pa.int32()),
        ("source", pa.string()),
        ("source_uri", pa.string()),
        ("content_sha256", pa.string()),
        ("harvested_at", TIMESTAMP),
    ]
)

PARAGRAPHS = pa.schema(
    [
        ("paragraph_id", pa.string(), False),
        ("article_id", pa.string(), False),
        ("path", pa.string()),
        ("ordinal", pa.int32()),
        ("section_title", pa.string()),
        ("section_path", STRINGS),
        ("section_type", pa.string()),
        ("text", pa.string()),
        ("n_words", pa.int32()),
    ]
)

FIGURES = pa.schema(
    [
        ("figure_id", pa.string(), False),
        ("article_id", pa.string(), False),
        ("path", pa.string()),
        ("xml_id", pa.string()),
        ("label", pa.string()),
        ("caption", pa.string()),
        ("mention_ids", STRINGS),
        ("graphics", STRINGS),
        ("image", IMAGE),
        ("image_sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
    ]
)

TABLES = pa.schema(
    [
        ("table_id", pa.string(), False),
        ("article_id", pa.string(), False),
        ("path", pa.string()),
        ("xml_id", pa.string()),
        ("label", pa.string()),
        ("caption", pa.string()),
        ("text", pa.string()),
        ("footer", pa.string()),
        ("mention_ids", STRINGS),
        ("graphics", STRINGS),
    ]
)
"""``table-wrap`` objects: caption, cell text (cells tab-separated, rows newline-separated), footer."""


LABELS = pa.schema(
    [
        ("paragraph_id", pa.string(), False),
        *labels.fields(),
        ("annotator", pa.string()),
    ]
)
"""One row per paragraph: every registered label's columns (``pmcurate/labels/``, in name order; a
taught class label with its ``NAME_scores`` struct, a score as the students' expected value) and
the student that gave the taught ones."""

TAUGHT_LABELS = pa.schema([f for f in LABELS if f.name not in {s.name for s in labels.computed()}])
"""What a student gives (``LABELS`` without the computed labels, which ``labels.with_computed`` adds)."""

QUARANTINE = pa.schema(
    [
        ("source", pa.string()),
        ("member", pa.string()),
        ("article_id", pa.string()),
        ("stage", pa.string()),
        ("error", pa.string()),
        ("reason", pa.string()),
        ("at", TIMESTAMP),
    ]
)
"""Inputs that could not be processed, with one meaning for every source: ``source`` (the input
file, or the network source), ``member`` (archive member, object key or URL), ``article_id`` when
known, ``stage`` (``read``, ``select``, ``fetch``, ``media``, ``parse``), ``reason`` (a short
snake_case code to group by: ``parse_error``, ``http_404``, ``not_found``, ``too_large``…),
``error`` (one line for a person, naming the file or object and what went wrong) and ``at``."""

TEACHER_LABELS = pa.schema(
    [
        ("paragraph_id", pa.string()),
        ("text_sha256", pa.string(), False),
        ("text", pa.string()),
        ("article_id", pa.string()),
        *(spec.teacher_field for spec in labels.taught()),
        ("model", pa.string()),
        ("prompt_hash", pa.string()),
        ("annotator", pa.string()),
        ("at", TIMESTAMP),
    ]
)
"""Labels given by a teacher (an LLM, the JATS rules, or a labels file) to a sample of paragraphs:
the training data of the students, kept under ``BUILD/labels/teacher/``. ``paragraph_id`` is null
for labels made elsewhere and known only by their text; ``text_sha256`` is the sha256 of the text."""

DROPS = pa.schema(
    [
        ("id", pa.string(), False),
        ("subset", pa.string(), False),
        ("unit", pa.string(), False),
        ("rule", pa.string(), False),
        ("reason", pa.string(), False),
        ("cluster", pa.string()),
    ]
)
"""Rows a subset dropped (``BUILD/subsets/NAME/drops/``): the row's id (paragraph, article or figure
id, by ``unit``), the rule that dropped it and why in words; for duplicates, ``cluster`` is the id of
the row kept in its place."""

_ARTICLE_FIELDS = (
    "pmcid",
    "pmid",
    "doi",
    "title",
    "journal",
    "publisher",
    "pub_year",
    "article_type",
    "language",
    "license",
    "license_url",
    "commercial_use",
    "retracted",
)
ROW_COLUMNS = ("id", "labels", "repeat", "article_url", "license_type", "language_score", "mentions")
ARTICLE_STATS = (
    "article_paragraphs",
    "article_words",
    "article_clinical_paragraphs",
    "article_clinical_fraction",
    "article_educational_mean",
)
LABEL_COLUMNS: dict[str, str] = labels.flat_names(
    [*PARAGRAPHS.names, *ARTICLES.names, *FIGURES.names, *TABLES.names, *ROW_COLUMNS, *ARTICLE_STATS]
)
"""Labels-table column → its name in flat rows (subsets, exports, stats), where labels sit beside
article and paragraph columns: its own name, or ``labels_NAME`` when that is taken (``language``,
``annotator``). ``ROW_COLUMNS`` and ``ARTICLE_STATS`` are the other names such rows use."""

SUBSET_PARAGRAPHS = pa.schema(
    [
        *PARAGRAPHS,
        *(ARTICLES.field(name) for name in _ARTICLE_FIELDS),
        *(LABELS.field(name).with_name(flat) for name, flat in LABEL_COLUMNS.items()),
        ("repeat", pa.int32(), False),
    ]
)
"""Rows of a paragraph subset (``BUILD/subsets/NAME/*.parquet``): the paragraph, its article's
metadata and its labels (null where the build has no labels table), and ``repeat``: 0 for every row,
1..k-1 for the copies an ``--upsample`` rule added."""

SUBSET_FIGURES = pa.schema(
    [
        *FIGURES,
        *(ARTICLES.field(name) for name in _ARTICLE_FIELDS),
        ("repeat", pa.int32(), False),
    ]
)
"""Rows of a figure subset: the figure row (image included) and its article's metadata."""

SCHEMAS: dict[str, pa.Schema] = {
    "articles": ARTICLES,
    "paragraphs": PARAGRAPHS,
    "figures": FIGURES,
    "tables": TABLES,
    "labels": LABELS,
    "quarantine": QUARANTINE,
}

TMP_PREFIX = ".tmp-"
"""Temporary shards start with this prefix and do not end in ``.parquet``: globs never match them."""


def to_table(rows: Iterable[Mapping[str, Any]], schema: pa.Schema) -> pa.Table:
    """Rows (dicts keyed by column name; missing keys are null) as a table of exactly ``schema``.

    Built column by column (~25x faster than ``Table.from_pylist`` for these nested schemas), and
    the columns are pulled out of the rows without a Python-level loop: ``itemgetter`` and ``zip``
    transpose rows that hold every column (what the parser emits) in C; rows missing some keys take
    one ``dict.get`` per column instead.
    """
    rows = list(rows)
    return from_columns(dict(zip(schema.names, _columns(rows, schema.names), strict=True)), schema)


@functools.cache
def pyarrow_without_pandas() -> None:
    """Have pyarrow take this process for one without pandas, unless pandas is imported already.

    Before it converts Python values, pyarrow asks whether they are pandas objects, and imports
    pandas to find out (~0.14 CPU-s). pmcurate never hands it pandas objects, and converts to given
    types (``to_table``), which never need pandas: its first conversion is made while ``import
    pandas`` fails, and pyarrow remembers that there is none (a later ``to_pandas``, or an inference
    of types, imports it as before; so does ``to_numpy``: ``numpy_of``)."""
    if "pandas" not in sys.modules:
        with _pandas_left_out():
            pa.array([], pa.null())


@functools.cache
def pyarrow_datasets_without_pandas() -> None:
    """``pyarrow_without_pandas``, and ``pyarrow.dataset`` imported while ``import pandas`` fails:
    its import imports pandas otherwise, and ``pq.read_table`` imports it. Datasets read as before;
    a later ``to_pandas`` imports pandas then. The ``build`` command past its harvest does it first
    (``cli``: its own process, not a library user's), and so does its pool's forkserver
    (``executor.BUILD_PRELOAD``)."""
    pyarrow_without_pandas()
    if "pandas" not in sys.modules:
        with _pandas_left_out():
            import pyarrow.dataset  # noqa: F401


@contextlib.contextmanager
def _pandas_left_out() -> Iterator[None]:
    sys.meta_path.insert(0, _NoPandas)
    try:
        yield
    finally:
        sys.meta_path.remove(_NoPandas)


class _NoPandas:
    """An import finder that fails ``import pandas`` (``pyarrow_without_pandas``)."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ModuleNotFoundError("pandas is left out of this process", name=name)


def string(value: str) -> pa.Scalar:
    """``value`` as an Arrow string, for compute functions: a Python string there has its type
    inferred, and pyarrow imports pandas to infer it (``pyarrow_without_pandas``)."""
    return pa.scalar(value, pa.string())


def numpy_of(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``array.to_numpy()``, read over the buffer of an array of numbers or booleans without nulls:
    pyarrow's own ``to_numpy`` imports pandas first (~0.14 s), in a process that otherwise never
    needs it (``pyarrow_without_pandas``)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    kind = array.type
    if array.null_count or not (
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or kind == pa.bool_()
    ):
        return array.to_numpy(zero_copy_only=False)
    if kind == pa.bool_():
        return unpacked_bits(array.buffers()[1], array.offset, len(array))
    dtype = np.dtype(kind.to_pandas_dtype())
    if not len(array):
        return np.zeros(0, dtype)
    return np.frombuffer(array.buffers()[1], dtype, len(array), array.offset * dtype.itemsize)


def unpacked_bits(bitmap: pa.Buffer | None, offset: int, length: int) -> np.ndarray:
    """Bits ``offset`` to ``offset + length`` of an Arrow bitmap (booleans, validity: one bit a
    value, the first the lowest) as NumPy booleans. An empty array may have no bitmap at all; any
    other has one (a validity bitmap left out means every value is valid: the caller's to say)."""
    if not length:
        return np.zeros(0, bool)
    assert bitmap is not None
    data = np.frombuffer(bitmap, dtype=np.uint8)[offset // 8 : (offset + length + 7) // 8]
    return np.unpackbits(data, bitorder="little")[offset % 8 : offset % 8 + length].astype(bool)


def from_columns(columns: Mapping[str, Sequence[Any]], schema: pa.Schema) -> pa.Table:
    """Columns (Python values of each column, keyed by name) as a table of exactly ``schema``."""
    return pa.table([pa.array(columns[f.name], type=f.type) for f in schema], schema=schema)


def _columns(rows: list[Mapping[str, Any]], names: list[str]) -> list[Sequence[Any]]:
    """The values of each column of ``rows``, missing keys as None."""
    if len(names) > 1 and rows:
        try:
            return list(zip(*map(operator.itemgetter(*names), rows), strict=True))
        except KeyError:
            pass
    return [list(map(operator.methodcaller("get", name), rows)) for name in names]


def write_shard(table: pa.Table, path: str | os.PathLike[str], *, row_group_size: int | None = None) -> Path:
    """Write ``table`` to ``path`` (a ``.parquet`` file) atomically, zstd-compressed.

    The bytes go to a hidden temporary file in the destination folder, are flushed to disk, then
    renamed over ``path``: a reader sees either the old shard, or the complete new one.
    """

    def write(sink: BinaryIO) -> None:
        pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size, write_statistics=True)

    return _write_atomically(Path(path), write)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` the way ``write_shard`` writes a shard: temporary file, fsync, rename."""
    return _write_atomically(Path(path), lambda sink: sink.write(data))


def _write_atomically(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "wb") as sink:
            write(sink)
            sink.flush()
            os.fsync(sink.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_temporaries(folder: str | os.PathLike[str], prefix: str = "") -> int:
    """Delete what killed writes left in ``folder`` (``.tmp-<prefix>…`` files and folders); return how many.

    Readers never see these, but they take disk. Call it before a stage writes into ``folder``,
    never while another process may be writing there.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    found = list(folder.glob(f"{TMP_PREFIX}{prefix}*"))
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(found)


def table_dir(build: str | os.PathLike[str], name: str) -> Path:
    """The folder of table ``name`` inside a build."""
    return Path(build) / "tables" / name


def shard_paths(build: str | os.PathLike[str], name: str) -> list[Path]:
    """The finished shards of a table, sorted; temporary files are never listed."""
    folder = table_dir(build, name)
    return sorted(folder.glob("*.parquet")) if folder.is_dir() else []
