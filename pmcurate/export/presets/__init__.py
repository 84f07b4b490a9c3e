"""Export presets: which rows and columns a published dataset has, as DuckDB SQL over a build.

A preset turns the build's views (``articles``, ``paragraphs``, ``figures``, ``labels``) and a
``selection`` view into the rows of a dataset. ``selection`` holds the keys of the rows to export
(``paragraph_id`` or ``figure_id``) and a ``repeat`` index: every row of the table when the whole
table is exported, or the rows of a subset (``BUILD/subsets/NAME/``, written by ``pmcurate filter``)
with the copies its upsampling rules added. Rows are re-joined with the base tables, so a subset
needs to carry nothing but its keys.

Columns whose name starts with ``__`` are for ordering only and are not exported.

- ``paragraphs``: one row per paragraph with its section, its article's metadata and license, and
  its labels when the build has them.
- ``biomed-enriched``: the columns of the Biomed-Enriched dataset (``article_id``, ``path``,
  ``section_title``, ``text``, ``document_type``/``domain`` with ``*_scores`` lists,
  ``educational_score``, ``authors``, ``article_url``, ``license_type``, ``license_url``,
  ``language``…) so that code written for it runs unchanged, plus our columns.
- ``image-text``: one row per figure that has an image: the image as the Hugging Face ``Image``
  struct, caption, label, the text of the paragraphs that cite the figure, image hash and size,
  article metadata and license.

A preset may also give ``rows_arrow``: the same rows as its SQL, in its order, computed with Arrow
from the columns it reads — each column gathered once, no round trip of every string through
DuckDB — as ``JoinedRows`` (its tables and the row indices that join them, and its late columns,
read from the build by row number: both gathered a range at a time), with ``licenses_arrow``, the
license of each of those rows, which an export's plan counts its splits by without reading the
text. ``tests/export/test_presets.py`` checks that both give
the same table.

``PRESETS`` is the registry of presets by name: the three above, and every module of this package.
A new preset is one new module here that calls ``register(Preset(...))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pmcurate import schema
from pmcurate.errors import Fatal
from pmcurate.registry import Registry, UnknownNameError

Unit = Literal["paragraph", "figure"]

ARTICLE_URL = (
    "CASE WHEN a.pmcid IS NOT NULL THEN 'https://pmc.ncbi.nlm.nih.gov/articles/' || a.pmcid || '/' "
    "WHEN a.doi IS NOT NULL THEN 'https://doi.org/' || a.doi END"
)
"""The article's landing page: PMC when it has a PMCID, else its DOI."""

LICENSE_GROUP = (
    "CASE WHEN {col} IN ({commercial}) THEN 'commercial' "
    "WHEN {col} IN ({noncommercial}) THEN 'noncommercial' ELSE 'other' END"
)


class PresetError(Fatal):
    """The build lacks what a preset needs: the message says what and how to make it."""


@dataclass(frozen=True)
class Source:
    """What a preset's SQL may use: whether the build has labels and paragraphs, and a subset."""

    has_labels: bool
    has_paragraphs: bool
    subset: str | None


class LateRows(Protocol):
    """Columns of some rows of a table, read when a range of them is asked for (``Read.late``)."""

    def take(self, indices: pa.Array) -> LateRows:
        """The rows at ``indices`` (nothing read)."""
        ...

    def table(self, start: int, length: int) -> pa.Table:
        """The columns of rows ``start`` to ``start + length``."""
        ...


class Read(Protocol):
    """``read(table, columns)``: those columns of a build table, every row (the exporter's reader);
    ``read(SELECTION, (key, "repeat"))``: the subset's keys and repeat index, when there is a subset;
    ``read.late(table, columns, rows)``: those columns of the rows numbered ``rows`` (0 the first row
    of the table's first shard, null for a row of nulls), read a range at a time as they are
    gathered: each shard once, kept while rows to come need it."""

    def __call__(self, name: str, columns: Sequence[str]) -> pa.Table: ...

    def late(self, name: str, columns: Sequence[str], rows: pa.Array) -> LateRows: ...

    def rows(self, name: str) -> int:
        """The rows of a table (its shards' footers say)."""
        ...


SELECTION = "selection"


@dataclass(frozen=True)
class Preset:
    name: str
    unit: Unit
    description: str
    task_categories: tuple[str, ...]
    license_column: str
    image_columns: tuple[str, ...]
    order_by: str
    rows_sql: Callable[[Source], str]
    requires_labels: bool = False
    rows_arrow: Callable[[Read, Source], JoinedRows] | None = None
    """The rows of ``rows_sql`` with Arrow, sorted by ``order_by`` (then ``repeat``, for a subset)."""
    licenses_arrow: Callable[[Read, Source], pa.Array | pa.ChunkedArray] | None = None
    """The ``license_column`` of every row of ``rows_arrow``, in any order (given with it); a
    dictionary array spares the plan a copy of every row's license."""


def license_group_sql(column: str) -> str:
    """SQL mapping a normalized license to ``commercial``, ``noncommercial`` or ``other``."""
    quote = ", ".join(f"'{code}'" for code in sorted(schema.COMMERCIAL_LICENSES))
    nc = ", ".join(f"'{code}'" for code in sorted(schema.NONCOMMERCIAL_LICENSES))
    return LICENSE_GROUP.format(col=f'"{column}"', commercial=quote, noncommercial=nc)


def _repeat(source: Source) -> str:
    return ", s.repeat" if source.subset else ""


def _rows_of(source: Source, unit: str, alias: str) -> str:
    """The ``FROM`` of a preset: the subset's keys joined to the ``unit`` table, or the whole table.

    Without a subset ``selection`` is every row of the table once, so the table is read as is:
    joining it to its own keys would cost a hash join over every row and change nothing.
    """
    if not source.subset:
        return f"FROM {unit}s {alias}"
    return f"FROM selection s JOIN {unit}s {alias} ON {alias}.{unit}_id = s.{unit}_id"


def _label_columns(source: Source) -> str:
    """Every column of the labels table under its flat name (``schema.LABEL_COLUMNS``)."""
    if not source.has_labels:
        return ""
    return "".join(
        f", l.{name}" if flat == name else f", l.{name} AS {flat}"
        for name, flat in schema.LABEL_COLUMNS.items()
    )


def _label_join(source: Source) -> str:
    return "LEFT JOIN labels l ON l.paragraph_id = p.paragraph_id" if source.has_labels else ""


def paragraphs_sql(source: Source) -> str:
    return f"""
        SELECT p.paragraph_id, p.article_id, p.path, p.ordinal, p.section_title, p.section_path,
               p.section_type, p.text, p.n_words {_label_columns(source)},
               a.pmcid, a.pmid, a.doi, a.title, a.journal, a.pub_year, a.language,
               a.license, a.license_url, a.commercial_use, {ARTICLE_URL} AS article_url {_repeat(source)}
        {_rows_of(source, "paragraph", "p")}
        LEFT JOIN articles a ON a.article_id = p.article_id
        {_label_join(source)}"""


def _score_list(column: str, names: tuple[str, ...]) -> str:
    items = ", ".join(f"l.{column}.{name}" for name in names)
    return f"CASE WHEN l.{column} IS NULL THEN NULL ELSE [{items}]::DOUBLE[] END"


def biomed_enriched_sql(source: Source) -> str:
    return f"""
        SELECT p.paragraph_id AS id, p.article_id, p.path, p.section_title,
               l.educational_score::DOUBLE AS educational_score, l.domain, l.document_type,
               {_score_list("domain_scores", schema.DOMAINS)} AS domain_scores,
               {_score_list("document_type_scores", schema.DOCUMENT_TYPES)} AS document_type_scores,
               p.text, list_transform(a.authors, lambda x: x.name) AS authors,
               {ARTICLE_URL} AS article_url, a.license AS license_type, a.license_url,
               a.language, NULL::DOUBLE AS language_score, a.source,
               a.pmcid, a.doi, a.journal, a.pub_year, p.section_type, p.n_words, a.commercial_use,
               l.annotator AS labels_annotator, p.ordinal AS __ordinal {_repeat(source)}
        {_rows_of(source, "paragraph", "p")}
        LEFT JOIN articles a ON a.article_id = p.article_id
        {_label_join(source)}"""


def image_text_sql(source: Source) -> str:
    if source.has_paragraphs:
        mentions = """
            LEFT JOIN (
                SELECT m.figure_id, list(p.text ORDER BY m.pos) AS mentions
                FROM (SELECT figure_id, unnest(mention_ids) AS paragraph_id,
                             generate_subscripts(mention_ids, 1) AS pos FROM figures) m
                JOIN paragraphs p ON p.paragraph_id = m.paragraph_id
                GROUP BY m.figure_id
            ) mn ON mn.figure_id = f.figure_id"""
        mention_column = "coalesce(mn.mentions, []::VARCHAR[])"
    else:
        mentions, mention_column = "", "[]::VARCHAR[]"
    return f"""
        SELECT f.image, f.figure_id, f.article_id, f.label, f.caption,
               {mention_column} AS mentions, f.mention_ids,
               f.image_sha256, f.width, f.height, f.format,
               a.pmcid, a.doi, a.title, a.journal, a.pub_year, a.license, a.license_url,
               a.commercial_use, {ARTICLE_URL} AS article_url {_repeat(source)}
        {_rows_of(source, "figure", "f")}
        LEFT JOIN articles a ON a.article_id = f.article_id
        {mentions}
        WHERE f.image.bytes IS NOT NULL"""


def gather(table: pa.Table, indices: pa.Array) -> pa.Table:
    """``table.take(indices)``; where the indices run on in order for long stretches (shards each
    sorted already), the stretches are sliced out of ``table`` instead of copied."""
    order = schema.numpy_of(indices)
    breaks = np.flatnonzero(np.diff(order) != 1) + 1
    if not len(order) or len(breaks) >= len(order) // GATHER_RUN_ROWS:
        return table.take(indices)
    bounds = zip(np.concatenate([[0], breaks]), np.concatenate([breaks, [len(order)]]), strict=True)
    return pa.concat_tables([table.slice(order[start], end - start) for start, end in bounds])


GATHER_RUN_ROWS = 1024
"""``gather`` slices when its stretches average at least this many rows."""


def sort_indices(table: pa.Table, keys: Sequence[str]) -> pa.Array:
    """``pc.sort_indices`` of ``table`` by ``keys``, ascending (stable). Where the table is a few
    runs each sorted already (its shards) that follow one another without overlapping, in some
    order, the runs are put in that order instead of sorting every row."""
    runs = _sorted_runs(table, keys)
    if runs is None:
        return pc.sort_indices(table.select(list(keys)), [(key, "ascending") for key in keys])
    return pa.array(np.concatenate([np.arange(start, end, dtype=np.uint64) for start, end in runs]))


SORTED_RUNS_MAX = 256
"""``sort_indices`` sorts every row of a table of more sorted runs than this."""


def _sorted_runs(table: pa.Table, keys: Sequence[str]) -> list[tuple[int, int]] | None:
    """The sorted runs of ``table`` (start, end), cut at its chunks too (the shards it was read
    from: shards each sorted may run on in order by chance), in the order that sorts the table,
    when they do not overlap (each run's last row before the next one's first: no ties between runs, so the
    order is the stable sort's); ``None`` when they do, or hold nulls, or are too many."""
    rows = table.num_rows
    if rows < 2 or any(table.column(key).null_count for key in keys):
        return None
    descents = np.flatnonzero(~_in_order(table.slice(0, rows - 1), table.slice(1), keys, strict=False)) + 1
    chunks = np.cumsum([len(chunk) for chunk in table.column(keys[0]).chunks])[:-1]  # its shards
    breaks = np.union1d(descents, chunks[(chunks > 0) & (chunks < rows)])
    if len(breaks) > SORTED_RUNS_MAX:
        return None
    starts = np.concatenate([[0], breaks]).astype(np.int64)
    ends = np.concatenate([breaks, [rows]]).astype(np.int64)
    firsts, lasts = table.take(pa.array(starts)), table.take(pa.array(ends - 1))
    order = schema.numpy_of(pc.sort_indices(firsts.select(list(keys)), [(key, "ascending") for key in keys]))
    if not _in_order(
        lasts.take(pa.array(order[:-1])), firsts.take(pa.array(order[1:])), keys, strict=True
    ).all():
        return None
    return [(int(starts[run]), int(ends[run])) for run in order]


def _in_order(before: pa.Table, after: pa.Table, keys: Sequence[str], *, strict: bool) -> np.ndarray:
    """Whether each row of ``before`` comes before (``strict``: strictly) the same row of ``after``
    by ``keys`` (no nulls). A key is compared only while some rows tie on the keys before it: the
    rows of an article differ by their ordinal, so their (long) paragraph ids are not compared."""
    found = np.zeros(before.num_rows, dtype=bool)
    tied = np.ones(before.num_rows, dtype=bool)  # equal on the keys so far
    for key in keys:
        if not tied.any():
            break
        first, second = before.column(key), after.column(key)
        found |= tied & schema.numpy_of(pc.less(first, second))
        tied &= schema.numpy_of(pc.equal(first, second))
    return found if strict else found | tied


NARROWED_SELECTION = 4
"""A selection of fewer rows than a table's ÷ this is looked up among the table's rows it names."""


def select(table: pa.Table, selection: pa.Table, key: str) -> pa.Table:
    """``FROM selection s JOIN table ON key``: a row of ``table`` per selected key (upsampled
    copies included) with its ``repeat``; keys without a row are left out.

    A small selection (a subset of a few percent: ``NARROWED_SELECTION``) first narrows the table
    to the rows it names, found by hashing the selection's keys, not the table's (a hash table of
    every paragraph id, for 106 selected rows: a subset's export at 10,000 articles went 0.19–0.20
    → 0.12–0.15 s without it)."""
    if selection.num_rows * NARROWED_SELECTION < table.num_rows:
        table = table.filter(pc.is_in(table.column(key), value_set=selection.column(key)))
    found = pc.index_in(selection.column(key), value_set=table.column(key))
    kept = pc.is_valid(found)
    return table.take(found.filter(kept)).append_column("repeat", selection.column("repeat").filter(kept))


def article_url(articles: pa.Table) -> pa.ChunkedArray:
    """``ARTICLE_URL`` of each article."""
    pmc_url, doi_url, slash, empty = map(
        schema.string, ("https://pmc.ncbi.nlm.nih.gov/articles/", "https://doi.org/", "/", "")
    )
    pmc = pc.binary_join_element_wise(pmc_url, articles["pmcid"], slash, empty)
    doi = pc.binary_join_element_wise(doi_url, articles["doi"], empty)
    return pc.if_else(pc.is_valid(articles["pmcid"]), pmc, doi)


def score_list(scores: pa.ChunkedArray, names: tuple[str, ...]) -> pa.Array:
    """``_score_list``: the struct's fields ``names`` as a list of doubles, null where the struct is."""
    struct = scores.combine_chunks()
    valid = schema.numpy_of(struct.is_valid())
    fields = [struct.field(struct.type.get_field_index(name)) for name in names]
    offsets = np.zeros(len(struct) + 1, dtype=np.int32)
    np.cumsum(valid * len(names), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), _row_major(fields, valid), mask=pa.array(~valid))


def _row_major(fields: list[pa.Array], valid: np.ndarray) -> pa.Array:
    """The values of ``fields`` (as many as ``valid``) in its valid rows, as doubles: each row's
    fields in turn. Without nulls they are a matrix that NumPy lays out row by row (the export
    derives every batch's scores beside the writer: Arrow's take of each value costs ~5 times)."""
    if not any(field.null_count for field in fields):
        matrix = np.column_stack([schema.numpy_of(field) for field in fields])
        return pa.array(matrix[valid].ravel().astype(np.float64))
    rows = np.flatnonzero(valid)
    order = (rows[:, None] + len(valid) * np.arange(len(fields))[None, :]).ravel()
    return pa.concat_arrays([field.cast(pa.float64()) for field in fields]).take(pa.array(order, pa.int64()))


def author_names(authors: pa.ChunkedArray) -> pa.Array:
    """``list_transform(authors, lambda x: x.name)``."""
    lists = authors.combine_chunks()
    names = pc.struct_field(lists.flatten(), [lists.type.value_type.get_field_index("name")])
    offsets = schema.numpy_of(pc.list_value_length(lists).fill_null(0)).cumsum()
    starts = pa.array(np.concatenate([[0], offsets]).astype(np.int32))
    return pa.ListArray.from_arrays(starts, names, mask=lists.is_null())


@dataclass(frozen=True)
class Derived:
    """``LateRows`` whose ranges go through ``derive`` as they are read (a label's score lists)."""

    rows: LateRows
    derive: Callable[[pa.Table], pa.Table]

    def take(self, indices: pa.Array) -> Derived:
        return Derived(self.rows.take(indices), self.derive)

    def table(self, start: int, length: int) -> pa.Table:
        return self.derive(self.rows.table(start, length))


@dataclass(frozen=True)
class JoinedRows:
    """A preset's rows before their columns are gathered: the ``base`` rows in the preset's order,
    the row of each ``joined`` table that every base row joins (a null index: none), the ``late``
    columns, read from the build only as their rows are gathered, and the exported columns, each
    named after the base, joined or late column it is.

    ``table`` gathers a range of rows at a time, so an export gathers — and reads the late columns
    of — each batch in the thread that cuts row groups, beside the writer, and never holds the
    joined rows whole; ``take`` reorders or filters the rows by moving indices, not the columns.
    """

    base: pa.Table
    joined: tuple[tuple[pa.Table, pa.Array], ...]
    columns: tuple[tuple[str, str], ...]
    """(exported name, name of a column of ``base``, of one ``joined`` table or of one ``late``)."""
    late: tuple[LateRows, ...] = ()

    @property
    def num_rows(self) -> int:
        return self.base.num_rows

    def take(self, indices: pa.Array) -> JoinedRows:
        """The rows at ``indices`` (``table.take``)."""
        joined = tuple((table, index.take(indices)) for table, index in self.joined)
        late = tuple(rows.take(indices) for rows in self.late)
        return JoinedRows(gather(self.base, indices), joined, self.columns, late)

    def column(self, name: str) -> pa.ChunkedArray:
        """Exported column ``name`` for every row (a joined one gathered alone; a late one read)."""
        source = dict(self.columns)[name]
        if source in self.base.column_names:
            return self.base.column(source)
        for table, index in self.joined:
            if source in table.column_names:
                return table.column(source).take(index)
        return next(
            table.column(source)
            for table in (rows.table(0, self.num_rows) for rows in self.late)
            if source in table.column_names
        )

    def encoded(self, name: str) -> pa.Array | pa.ChunkedArray:
        """``column(name)``, a joined one as its indices into its table's column (a dictionary
        array: nothing gathered)."""
        source = dict(self.columns)[name]
        for table, index in self.joined:
            if source in table.column_names:
                return pa.DictionaryArray.from_arrays(index, table.column(source).combine_chunks())
        return self.column(name)

    def select(self, names: Sequence[str]) -> JoinedRows:
        """These rows with only the exported columns ``names``."""
        sources = dict(self.columns)
        return replace(self, columns=tuple((name, sources[name]) for name in names))

    def table(self, start: int = 0, length: int | None = None) -> pa.Table:
        """The exported columns of rows ``start`` to ``start + length`` (default: to the end)."""
        base = self.base.slice(start, length)
        found = dict(zip(base.column_names, base.columns, strict=True))
        for table, index in self.joined:
            rows = table.take(index.slice(start, base.num_rows))
            found.update(zip(rows.column_names, rows.columns, strict=True))
        for late in self.late:
            rows = late.table(start, base.num_rows)
            found.update(zip(rows.column_names, rows.columns, strict=True))
        return pa.table({name: found[source] for name, source in self.columns})


def _same_keys(found: pa.ChunkedArray | pa.Array, keys: pa.ChunkedArray | pa.Array) -> bool:
    """Whether ``found`` holds ``keys``, row for row (no nulls)."""
    if len(found) != len(keys) or found.null_count or keys.null_count:
        return False
    return not len(keys) or bool(pc.all(pc.equal(found, keys)).as_py())


@dataclass
class KeyChecked:
    """``LateRows`` of a table read by the row numbers of another (``guessed``: labels written shard
    by shard beside their paragraphs hold them row for row, in the same order), each range checked
    against the ``keys`` the rows must have: where a range's ``key`` column differs, this range and
    the rest are read from the rows ``join`` finds by key (``pc.index_in``: the table's whole key
    column read once), as if the rows had been joined from the start. So the labels' keys are read
    range by range beside the writer, not all of them before the first row is written."""

    guessed: LateRows
    keys: pa.Array
    key: str
    join: Callable[[pa.Array], LateRows]
    """The rows holding ``keys``, read by key (called with the keys of every row)."""
    _joined: LateRows | None = None

    def take(self, indices: pa.Array) -> KeyChecked:
        return KeyChecked(self.guessed.take(indices), self.keys.take(indices), self.key, self.join)

    def table(self, start: int, length: int) -> pa.Table:
        if self._joined is None:
            found = self.guessed.table(start, length)
            if _same_keys(found.column(self.key), self.keys.slice(start, length)):
                return found.drop_columns([self.key])
            self._joined = self.join(self.keys)
        return self._joined.table(start, length).drop_columns([self.key])


def _articles_of(read: Read) -> pa.Table:
    """The article columns of ``biomed_enriched_sql``, one row per article."""
    articles = read("articles", ("article_id", "authors", "pmcid", "doi", "license", "license_url",
                                 "language", "source", "journal", "pub_year", "commercial_use"))  # fmt: skip
    articles = articles.combine_chunks()
    articles = articles.set_column(
        articles.schema.get_field_index("authors"), "authors", author_names(articles["authors"])
    ).append_column("article_url", article_url(articles))
    return articles.append_column("language_score", pa.nulls(articles.num_rows, pa.float64()))


BIOMED_LABEL_COLUMNS = (
    "educational_score",
    "domain",
    "document_type",
    "domain_scores",
    "document_type_scores",
    "annotator",
)
"""The columns of the labels table ``biomed_enriched_sql`` reads (``_label_columns_of`` derives them)."""


def _label_columns_of(labels: pa.Table) -> pa.Table:
    """The label columns of ``biomed_enriched_sql`` from those of the labels table
    (``BIOMED_LABEL_COLUMNS``): score structs as lists, the score as a double, each name prefixed."""
    labels = labels.combine_chunks()
    for column, names in (("domain_scores", schema.DOMAINS), ("document_type_scores", schema.DOCUMENT_TYPES)):
        index = labels.schema.get_field_index(column)
        labels = labels.set_column(index, column, score_list(labels[column], names))
    index = labels.schema.get_field_index("educational_score")
    score = labels["educational_score"].cast(pa.float64())
    labels = labels.set_column(index, "educational_score", score)
    return labels.rename_columns([f"label_{name}" for name in labels.column_names])


BIOMED_ENRICHED_COLUMNS = (
    ("id", "paragraph_id"), ("article_id", "article_id"), ("path", "path"),
    ("section_title", "section_title"),
    ("educational_score", "label_educational_score"), ("domain", "label_domain"),
    ("document_type", "label_document_type"), ("domain_scores", "label_domain_scores"),
    ("document_type_scores", "label_document_type_scores"), ("text", "text"), ("authors", "authors"),
    ("article_url", "article_url"), ("license_type", "license"), ("license_url", "license_url"),
    ("language", "language"), ("language_score", "language_score"), ("source", "source"), ("pmcid", "pmcid"),
    ("doi", "doi"), ("journal", "journal"), ("pub_year", "pub_year"), ("section_type", "section_type"),
    ("n_words", "n_words"), ("commercial_use", "commercial_use"), ("labels_annotator", "label_annotator"),
    ("__ordinal", "ordinal"),
)  # fmt: skip
"""``biomed_enriched_sql``'s columns, each the column of the paragraphs, articles or labels it is."""


ROW = "__row"
"""The row number of a paragraph in its table, kept while the rows are chosen and sorted: the late
columns are read by it."""


LATE_PARAGRAPH_COLUMNS = ("path", "section_title", "section_type", "n_words", "text")
"""The paragraph columns of ``biomed_enriched_sql`` read as their rows are gathered (``Read.late``)."""


def biomed_enriched_arrow(read: Read, source: Source) -> JoinedRows:
    """``biomed_enriched_sql`` over whole tables, with Arrow. Only what orders and joins the rows is
    read first: the paragraphs' keys, read and sorted while a thread beside reads the articles
    (Arrow's reads let go of the GIL) and derives their columns on their (small) table, joined by
    index. The other paragraph columns (the text)
    and the label columns are late (``Read.late``): read by row number as the export gathers each
    batch, in the thread beside the writer, so that reading them overlaps writing, and a subset of
    a few percent of the paragraphs (clinical cases) does not decompress the text of all of them.
    Labels written row for row beside their paragraphs (as many rows) are read by the paragraphs'
    row numbers, without a join, their keys checked as each range is read (``KeyChecked``)."""
    with ThreadPoolExecutor(1) as pool:
        articles_read = pool.submit(_articles_of, read)
        p, late = _ordered_paragraphs(read, source)
        articles = articles_read.result()
    joined = (
        articles.drop_columns(["article_id"]),
        pc.index_in(p["article_id"], value_set=articles["article_id"]).combine_chunks(),
    )
    columns = BIOMED_ENRICHED_COLUMNS + ((("repeat", "repeat"),) if source.subset else ())
    return JoinedRows(p.drop_columns([ROW]), (joined,), columns, late)


def _ordered_paragraphs(read: Read, source: Source) -> tuple[pa.Table, tuple[LateRows, ...]]:
    """The paragraphs' keys in ``biomed_enriched_sql``'s order, and their late paragraph and label
    columns: what ``biomed_enriched_arrow`` does beside the articles' read."""
    p = read("paragraphs", ("paragraph_id", "article_id", "ordinal"))
    aligned = read.rows("labels") == p.num_rows  # guessed: checked range by range (KeyChecked)
    p = p.append_column(ROW, pa.array(np.arange(p.num_rows, dtype=np.int64)))
    keys = ["article_id", "ordinal", "paragraph_id"]
    if source.subset:
        p = select(p, read(SELECTION, ("paragraph_id", "repeat")), "paragraph_id")
        keys.append("repeat")
    p = gather(p, sort_indices(p, keys))  # the preset's order
    rows = p[ROW].combine_chunks()
    paragraph_ids = p["paragraph_id"].combine_chunks()
    if aligned:
        checked = (*BIOMED_LABEL_COLUMNS, "paragraph_id")
        labels: LateRows = KeyChecked(
            read.late("labels", checked, rows),
            paragraph_ids,
            "paragraph_id",
            lambda ids: read.late("labels", checked, _label_rows(read, ids)),
        )
    else:
        labels = read.late("labels", BIOMED_LABEL_COLUMNS, _label_rows(read, paragraph_ids))
    late = (read.late("paragraphs", LATE_PARAGRAPH_COLUMNS, rows), Derived(labels, _label_columns_of))
    return p, late


def _label_rows(read: Read, paragraph_ids: pa.Array) -> pa.Array:
    """The row of the labels of each paragraph of ``paragraph_ids`` (null: none)."""
    labels = read("labels", ("paragraph_id",))["paragraph_id"]
    return pc.index_in(paragraph_ids, value_set=labels).cast(pa.int64())


def biomed_enriched_licenses(read: Read, source: Source) -> pa.DictionaryArray:
    """The ``license_type`` of every row of ``biomed_enriched_arrow``, in no particular order, as
    indices into the articles' licenses: what an export's plan counts its splits by, without
    reading the text. The articles are read in a thread beside the paragraphs."""
    with ThreadPoolExecutor(1) as pool:
        articles_read = pool.submit(read, "articles", ("article_id", "license"))
        p = read("paragraphs", ("paragraph_id", "article_id") if source.subset else ("article_id",))
        if source.subset:
            p = select(p, read(SELECTION, ("paragraph_id", "repeat")), "paragraph_id")
        articles = articles_read.result()
    index = pc.index_in(p["article_id"], value_set=articles["article_id"]).combine_chunks()
    return pa.DictionaryArray.from_arrays(index, articles["license"].combine_chunks())


PRESETS: Registry[Preset] = Registry("preset", package=__name__)


def register(preset: Preset) -> Preset:
    """Register ``preset`` under its name (what each module of this package calls)."""
    return PRESETS.register(preset.name, preset)


register(
    Preset(
        name="paragraphs",
        unit="paragraph",
        description="one row per paragraph: text, section, article metadata, license and labels",
        task_categories=("text-generation", "text-classification"),
        license_column="license",
        image_columns=(),
        order_by="article_id, ordinal, paragraph_id",
        rows_sql=paragraphs_sql,
    )
)
register(
    Preset(
        name="biomed-enriched",
        unit="paragraph",
        description="Biomed-Enriched columns (paragraph text, type/domain/educational labels with "
        "scores, authors, article URL, license) plus pmcurate's",
        task_categories=("text-generation", "text-classification"),
        license_column="license_type",
        image_columns=(),
        order_by="article_id, __ordinal, id",
        rows_sql=biomed_enriched_sql,
        requires_labels=True,
        rows_arrow=biomed_enriched_arrow,
        licenses_arrow=biomed_enriched_licenses,
    )
)
register(
    Preset(
        name="image-text",
        unit="figure",
        description="one row per figure image: image, caption, citing paragraphs, article metadata",
        task_categories=("image-to-text", "text-to-image"),
        license_column="license",
        image_columns=("image",),
        order_by="article_id, figure_id",
        rows_sql=image_text_sql,
    )
)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS.get(name)
    except UnknownNameError as exc:
        raise PresetError(str(exc)) from None


def check_source(preset: Preset, tables: set[str], source: Source) -> None:
    """Raise ``PresetError`` when the build lacks a table the preset reads."""
    needed = {"articles", "paragraphs"} if preset.unit == "paragraph" else {"articles", "figures"}
    missing = sorted(needed - tables)
    if missing:
        raise PresetError(
            f"preset {preset.name} needs the table(s) {', '.join(missing)}: run `pmcurate harvest` first"
        )
    if preset.requires_labels and not source.has_labels:
        raise PresetError(
            f"preset {preset.name} needs paragraph labels (tables/labels): run `pmcurate annotate` first"
        )


def preset_columns(name: str, source: Source) -> list[str]:
    """The columns preset ``name`` exports, found by running its SQL over empty tables of the
    build's schemas: what a manifest's ``split_by`` is checked against before anything is built."""
    import duckdb
    import pyarrow as pa

    preset = get_preset(name)
    key = f"{preset.unit}_id"
    with duckdb.connect() as con:
        for table, arrow_schema in schema.SCHEMAS.items():
            con.register(f"__empty_{table}", arrow_schema.empty_table())
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM __empty_{table}")
        selection = pa.table({key: pa.array([], pa.string()), "repeat": pa.array([], pa.int32())})
        con.register("selection", selection)
        names = [row[0] for row in con.sql(f"DESCRIBE {preset.rows_sql(source)}").fetchall()]
    return [n for n in names if not n.startswith("__") and n != "repeat"]
