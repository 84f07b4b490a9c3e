"""The SQL of a subset: row views over a build's tables, the rules' verdicts, the rows written.

The same SQL runs over a whole build (to check a subset's rules before any work) and over one
partition of it (``engine.py``): it only needs views named ``articles``, ``paragraphs`` or
``figures``, and ``labels`` when the build has labels.

Row views, one per unit (every one has ``id``, ``text`` and ``n_words``):

- ``paragraph_rows``: the paragraph's columns, its article's columns, its labels and its article's
  statistics: ``article_paragraphs``, ``article_words`` and, with labels,
  ``article_clinical_paragraphs``, ``article_clinical_fraction``, ``article_educational_mean``.
  Labels live in their own namespace: the struct column ``labels`` holds every column of the labels
  table (``labels.document_type``, ``labels.annotator``…), so a label named like a paragraph or
  article column (the ``language`` label beside the article's ``language``) never renames or hides
  either. Each label column is also there under its flat name (``schema.LABEL_COLUMNS``): its own
  name when no other column takes it (``document_type``), else ``labels_NAME``
  (``labels_language``, ``labels_annotator``).
- ``article_rows``: the article's columns and the same statistics; ``text`` is title and abstract.
- ``figure_rows``: the figure's columns and its article's; ``text`` is the caption.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
import pyarrow as pa

from pmcurate import schema
from pmcurate.filters.rules import Rule

LABEL_STATS = schema.ARTICLE_STATS[2:]
ORDER = {
    "paragraph": ("article_id", "ordinal", "id"),
    "article": ("id",),
    "figure": ("article_id", "id"),
}
"""The order of a unit's rows: ``seq``, what "first" means for duplicates, and the output order."""
BASE_TABLES = {"paragraph": ("paragraphs", "paragraph_id"), "figure": ("figures", "figure_id")}
"""The table and key holding the texts that dedup reads, by unit."""
LABEL_FIELDS = {flat: name for name, flat in schema.LABEL_COLUMNS.items()}
"""Columns of a paragraph subset that come from the labels table, and their name there."""


def quote(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The views of the connection (one per table of the build)."""
    return {
        row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }


def columns(con: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    return [row[0] for row in con.execute(f"DESCRIBE {relation}").fetchall()]


def create_views(con: duckdb.DuckDBPyConnection, source: str, *, stats: bool = True) -> None:
    """The row views (``paragraph_rows``, ``article_rows``, ``figure_rows``) over the table views;
    without ``stats``, ``paragraph_rows`` has no article statistics (for rules that read none: the
    statistics cost a second pass over the paragraphs and their labels)."""
    if source == "figures":
        con.execute(
            """CREATE OR REPLACE TEMP VIEW figure_rows AS
            SELECT f.figure_id AS id, f.*, a.* EXCLUDE (article_id), f.caption AS text,
                   CASE WHEN trim(coalesce(f.caption, '')) = '' THEN 0
                        ELSE len(regexp_split_to_array(trim(f.caption), '\\s+')) END AS n_words
            FROM figures f LEFT JOIN articles a ON a.article_id = f.article_id"""
        )
        return
    labels = "labels" in tables(con)
    label_stats = (
        """, count(*) FILTER (WHERE l.document_type = 'clinical_case') AS article_clinical_paragraphs,
           count(*) FILTER (WHERE l.document_type = 'clinical_case') / count(*) AS article_clinical_fraction,
           avg(l.educational_score)::DOUBLE AS article_educational_mean"""
        if labels
        else ""
    )
    label_join = "LEFT JOIN labels l ON l.paragraph_id = p.paragraph_id" if labels else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW article_stats AS
        SELECT p.article_id, count(*) AS article_paragraphs, sum(p.n_words) AS article_words {label_stats}
        FROM paragraphs p {label_join} GROUP BY p.article_id"""
    )
    label_columns = _label_columns(con) if labels else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP VIEW paragraph_rows AS
        SELECT p.paragraph_id AS id, p.*, a.* EXCLUDE (article_id) {label_columns}
               {", s.* EXCLUDE (article_id)" if stats else ""}
        FROM paragraphs p
        LEFT JOIN articles a ON a.article_id = p.article_id
        {label_join}
        {"LEFT JOIN article_stats s ON s.article_id = p.article_id" if stats else ""}"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP VIEW article_rows AS
        SELECT a.article_id AS id, a.*, s.* EXCLUDE (article_id),
               concat_ws(E'\\n', a.title, a.abstract) AS text, coalesce(s.article_words, 0) AS n_words
        FROM articles a LEFT JOIN article_stats s ON s.article_id = a.article_id"""
    )


def reads_stats(rules: Sequence[Rule]) -> bool:
    """Whether any of ``rules`` may read an article statistic (a name of one in its SQL)."""
    return any(
        name in text
        for rule in rules
        for text in (rule.predicate, rule.reason)
        for name in schema.ARTICLE_STATS
    )


def _label_columns(con: duckdb.DuckDBPyConnection) -> str:
    """The select list of the labels: the ``labels`` struct, and the label columns no other column
    of the paragraph row is named like, under their own names."""
    names = [c for c in columns(con, "labels") if c != "paragraph_id"]
    taken = {
        "id",
        "labels",
        *columns(con, "paragraphs"),
        *columns(con, "articles"),
        "article_paragraphs",
        "article_words",
        *LABEL_STATS,
    }
    struct = "{" + ", ".join(f"{quote(n)}: l.{ident(n)}" for n in names) + "} AS labels"
    flat = {n: schema.LABEL_COLUMNS.get(n, n) for n in names}
    plain = [
        f"l.{ident(n)}" + ("" if flat[n] == n else f" AS {ident(flat[n])}")
        for n in names
        if flat[n] not in taken
    ]
    return ", " + ", ".join([struct, *plain])


def case(branches: Sequence[tuple[str, str]], otherwise: str) -> str:
    """``CASE WHEN c1 THEN v1 ... ELSE otherwise END`` (just ``otherwise`` without branches)."""
    if not branches:
        return otherwise
    return "CASE " + " ".join(f"WHEN {c} THEN {v}" for c, v in branches) + f" ELSE {otherwise} END"


def judge(con: duckdb.DuckDBPyConnection, rules: Sequence[Rule], view: str, unit: str) -> None:
    """Table ``judged``: every row's id, position in the subset's order (``seq``, from 0), and the
    rule that dropped it (the first rule it fails; a NULL predicate fails), with the rule's reason."""
    first_failing = case(
        [(f"NOT coalesce(({r.predicate})::BOOLEAN, false)", str(k)) for k, r in enumerate(rules)], "NULL"
    )
    names = case([(f"drop_k = {k}", quote(r.name)) for k, r in enumerate(rules)], "NULL::VARCHAR")
    reasons = case(
        [(f"drop_k = {k}", f"({r.reason})::VARCHAR") for k, r in enumerate(rules)], "NULL::VARCHAR"
    )
    order = ", ".join(ORDER[unit])
    extra = "".join(f", {c}" for c in ORDER[unit] if c not in ("id", "article_id"))
    # the inner query keeps only narrow columns, so the window's sort never carries texts
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE judged AS
        SELECT id, article_id, row_number() OVER (ORDER BY {order}) - 1 AS seq, rule, reason,
               NULL::VARCHAR AS cluster
        FROM (
            SELECT id, article_id {extra}, {first_failing} AS drop_k,
                   {names} AS rule, coalesce({reasons}, {names}) AS reason
            FROM {view}
        )"""
    )


def survivors(
    con: duckdb.DuckDBPyConnection, unit: str, columns: Sequence[str], batch_rows: int
) -> pa.RecordBatchReader:
    """``seq``, ``id`` and ``columns`` of the rows of ``judged`` still kept, in the subset's order.
    Read from the base table, not the row view: its own columns need no joins."""
    table, key = BASE_TABLES[unit]
    selected = "".join(f", r.{ident(c)}" for c in columns)
    return con.sql(
        f"""SELECT j.seq, j.id {selected} FROM judged j JOIN {table} r ON r.{key} = j.id
        WHERE j.rule IS NULL ORDER BY j.seq"""
    ).to_arrow_reader(batch_rows)


def output_select(
    con: duckdb.DuckDBPyConnection, source: str, unit: str, upsample: Sequence[tuple[Rule, int]]
) -> tuple[str, pa.Schema]:
    """The query for the kept rows of ``judged``, in the subset's schema and order, upsampled."""
    out_schema = schema.SUBSET_FIGURES if source == "figures" else schema.SUBSET_PARAGRAPHS
    view = "figure_rows" if source == "figures" else "paragraph_rows"
    available = set(columns(con, view))

    def column(name: str) -> str:
        if source == "paragraphs" and name in LABEL_FIELDS:
            field = LABEL_FIELDS[name]
            return (
                f"r.labels.{ident(field)} AS {ident(name)}"
                if "labels" in available
                else f"NULL AS {ident(name)}"
            )
        return f"r.{ident(name)}" if name in available else f"NULL AS {ident(name)}"

    select = ", ".join(column(f.name) for f in out_schema if f.name != "repeat")
    key = "r.article_id" if unit == "article" else "r.id"
    copies = (
        "greatest(1, "
        + ", ".join(
            f"CASE WHEN coalesce(({r.predicate})::BOOLEAN, false) THEN {n} ELSE 1 END" for r, n in upsample
        )
        + ")"
        if upsample
        else "1"
    )
    order = "r.article_id, r.ordinal, r.id" if source == "paragraphs" else "r.article_id, r.id"
    query = f"""
        SELECT {select}, unnest(range({copies}))::INTEGER AS "repeat"
        FROM {view} r JOIN judged j ON j.id = {key}
        WHERE j.rule IS NULL
        ORDER BY {order}, "repeat"
    """
    return query, out_schema
