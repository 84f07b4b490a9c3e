"""Counts and distributions of a build or of a subset, as text tables and as an HTML report.

The report is one self-contained HTML file with inline SVG bar charts (no plotting library, no
scripts, nothing fetched), so it opens anywhere, offline, and can be attached to a dataset card.
Distributions count rows: paragraphs for a build or a paragraph subset (upsampled copies included,
since they are what a model will read), figures for a figure subset.
"""

from __future__ import annotations

import html
import itertools
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pmcurate import schema
from pmcurate.build import open_build

WORD_BINS = (0, 16, 32, 48, 64, 128, 256, 512, 1024)
MAX_BARS = 25
"""Distributions with more values show the most frequent ones and one ``(other)`` bar."""


class StatsError(ValueError):
    """A build or subset that cannot be described: the message says what is missing."""


@dataclass(frozen=True)
class Distribution:
    """Counts of the values of one column (``value`` is a string; null shows as ``(none)``)."""

    name: str
    title: str
    counts: pl.DataFrame


@dataclass(frozen=True)
class Stats:
    """What ``stats`` reports: the totals and the distributions of a build or subset."""

    title: str
    unit: str
    totals: dict[str, int]
    distributions: list[Distribution]


def _word_bucket(column: str) -> str:
    """SQL labelling a word count with its bucket: ``0-15``, ``16-31``… ``1024+``."""
    cases = " ".join(
        f"WHEN {column} < {high} THEN '{low}-{high - 1}'" for low, high in itertools.pairwise(WORD_BINS)
    )
    return f"CASE WHEN {column} IS NULL THEN NULL {cases} ELSE '{WORD_BINS[-1]}+' END"


def _bucket_order(label: str) -> int:
    return int(label.split("-")[0].rstrip("+")) if label[0].isdigit() else -1


DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    "document_type": ("Document types", "document_type"),
    "domain": ("Domains", "domain"),
    "educational_score": ("Educational scores (rounded)", "round(educational_score)::INTEGER::VARCHAR"),
    "license": ("Licenses", "license"),
    "commercial_use": ("Commercial use allowed", "commercial_use::VARCHAR"),
    "pub_year": ("Publication years", "pub_year::VARCHAR"),
    "article_type": ("Article types", "article_type"),
    "section_type": ("Section types", "section_type"),
    "words": ("Words per row", _word_bucket("n_words")),
}
NUMERIC_ORDER = {"educational_score", "pub_year", "words"}
"""Distributions shown in value order; the others by decreasing count."""


def _paragraph_relation(con: duckdb.DuckDBPyConnection, tables: list[str]) -> str:
    labels = "labels" in tables
    label_columns = ", l.document_type, l.domain, l.educational_score" if labels else ""
    label_join = "LEFT JOIN labels l ON l.paragraph_id = p.paragraph_id" if labels else ""
    articles = "articles" in tables
    article_columns = ", a.license, a.commercial_use, a.pub_year, a.article_type" if articles else ""
    article_join = "LEFT JOIN articles a ON a.article_id = p.article_id" if articles else ""
    con.execute(
        f"""CREATE TEMP VIEW stat_rows AS
        SELECT p.article_id, p.section_type, p.n_words {article_columns} {label_columns}
        FROM paragraphs p {article_join} {label_join}"""
    )
    return "stat_rows"


def _subset_relation(con: duckdb.DuckDBPyConnection, build: Path, name: str) -> tuple[str, str]:
    folder = build / "subsets" / name
    shards = sorted(folder.glob("*.parquet"))
    if not shards:
        known = sorted(
            p.name for p in (build / "subsets").glob("*") if p.is_dir() and not p.name.startswith(".")
        )
        raise StatsError(f"{build}: no subset {name!r} (subsets: {', '.join(known) or 'none'})")
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in shards)
    con.execute(f"CREATE TEMP VIEW stat_rows AS SELECT * FROM read_parquet([{files}])")
    columns = {row[0] for row in con.execute("DESCRIBE stat_rows").fetchall()}
    if "figure_id" in columns:
        con.execute(
            """CREATE OR REPLACE TEMP VIEW stat_rows AS
            SELECT *, CASE WHEN trim(coalesce(caption, '')) = '' THEN 0
                           ELSE len(regexp_split_to_array(trim(caption), '\\s+')) END AS n_words
            FROM read_parquet(["""
            + files
            + "])"
        )
        return "stat_rows", "figures"
    return "stat_rows", "paragraphs"


def _distribution(con: duckdb.DuckDBPyConnection, relation: str, name: str) -> Distribution | None:
    title, expression = DISTRIBUTIONS[name]
    columns = {row[0] for row in con.execute(f"DESCRIBE {relation}").fetchall()}
    needed = "n_words" if name == "words" else name
    if needed not in columns:
        return None
    counts = pl.from_arrow(
        con.sql(
            f"SELECT coalesce(({expression})::VARCHAR, '(none)') AS value, count(*) AS rows "
            f"FROM {relation} GROUP BY ALL"
        ).to_arrow_table()
    )
    assert isinstance(counts, pl.DataFrame)
    if name in NUMERIC_ORDER:
        counts = counts.sort(pl.col("value").map_elements(_bucket_order, return_dtype=pl.Int64), "value")
    else:
        counts = counts.sort(["rows", "value"], descending=[True, False])
        if counts.height > MAX_BARS:
            head = counts.head(MAX_BARS - 1)
            rest = counts.tail(counts.height - MAX_BARS + 1)["rows"].sum()
            counts = pl.concat(
                [head, pl.DataFrame({"value": ["(other)"], "rows": [rest]}, schema=counts.schema)]
            )
    return Distribution(name, title, counts)


def compute_stats(build: str | os.PathLike[str], subset: str | None = None) -> Stats:
    """Totals and distributions of the build's paragraphs, or of subset ``subset``'s rows."""
    build = Path(build)
    try:
        opened = open_build(build)
    except FileNotFoundError as exc:
        raise StatsError(str(exc)) from None
    con = opened.duckdb()
    try:
        tables = opened.tables
        if subset is None:
            if "paragraphs" not in tables:
                raise StatsError(
                    f"{build}: no paragraphs table ({schema.table_dir(build, 'paragraphs')}/ has no shards)"
                )
            relation, unit = _paragraph_relation(con, tables), "paragraphs"
            title = f"build {build}"
        else:
            relation, unit = _subset_relation(con, build, subset)
            title = f"subset {subset} of build {build}"
        rows, articles, words = con.execute(
            f"SELECT count(*), count(DISTINCT article_id), coalesce(sum(n_words), 0) FROM {relation}"
        ).fetchall()[0]
        totals = {unit: int(rows), "articles": int(articles), "words": int(words)}
        if subset is None:
            for table in ("figures", "labels"):
                if table in tables:
                    totals[table] = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        found = [_distribution(con, relation, name) for name in DISTRIBUTIONS]
        return Stats(title, unit, totals, [d for d in found if d is not None])
    finally:
        con.close()


def format_text(stats: Stats) -> str:
    """The stats as plain-text tables (value, rows, share)."""
    lines = [stats.title, "", *(f"{name:>12}: {value:,}" for name, value in stats.totals.items())]
    for dist in stats.distributions:
        total = int(dist.counts["rows"].sum()) or 1
        width = max(12, *(len(v) for v in dist.counts["value"]))
        lines += ["", f"{dist.title} ({stats.unit})", f"  {'value':<{width}}  {'rows':>10}  {'share':>6}"]
        for value, rows in dist.counts.iter_rows():
            lines.append(f"  {value:<{width}}  {rows:>10,}  {100 * rows / total:>5.1f}%")
    return "\n".join(lines) + "\n"


def _svg_bars(dist: Distribution) -> str:
    """One horizontal bar chart as inline SVG."""
    bar, gap, label_width, chart_width, right = 18, 4, 190, 420, 130
    counts = list(dist.counts.iter_rows())
    peak = max((rows for _, rows in counts), default=0) or 1
    total = sum(rows for _, rows in counts) or 1
    height = len(counts) * (bar + gap) + gap
    parts = [
        '<svg xmlns="http://www.w3.org/2000/svg" '
        f'width="{label_width + chart_width + right}" height="{height}" '
        f'role="img" aria-label="{html.escape(dist.title)}">'
    ]
    for i, (value, rows) in enumerate(counts):
        y = gap + i * (bar + gap)
        width = max(1, round(chart_width * rows / peak))
        text = html.escape(value if len(value) <= 28 else value[:27] + "…")
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar - 5}" text-anchor="end">{text}</text>'
            f'<rect x="{label_width}" y="{y}" width="{width}" height="{bar}" fill="#3b78b0">'
            f"<title>{html.escape(value)}: {rows:,}</title></rect>"
            f'<text x="{label_width + width + 6}" y="{y + bar - 5}">'
            f"{rows:,} ({100 * rows / total:.1f}%)</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(stats: Stats) -> str:
    """A self-contained HTML report: totals, then one bar chart per distribution."""
    totals = "".join(f"<tr><th>{html.escape(k)}</th><td>{v:,}</td></tr>" for k, v in stats.totals.items())
    sections = "".join(
        f"<section><h2>{html.escape(d.title)}</h2>{_svg_bars(d)}</section>" for d in stats.distributions
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>pmcurate stats: {html.escape(stats.title)}</title>"
        "<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
        "svg text{font:12px system-ui,sans-serif}"
        "table{border-collapse:collapse}th{text-align:left;padding-right:2em}td{text-align:right}"
        "section{margin-top:1.5em}</style></head><body>"
        f"<h1>{html.escape(stats.title)}</h1><table>{totals}</table>{sections}</body></html>\n"
    )


def write_report(
    build: str | os.PathLike[str], subset: str | None = None, out: str | os.PathLike[str] | None = None
) -> tuple[Stats, Path]:
    """Compute the stats and write the HTML report (default ``BUILD/reports/stats[-SUBSET].html``)."""
    stats = compute_stats(build, subset)
    path = (
        Path(out) if out else Path(build) / "reports" / (f"stats-{subset}.html" if subset else "stats.html")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{schema.TMP_PREFIX}{path.name}")
    tmp.write_text(render_html(stats), encoding="utf-8")
    os.replace(tmp, path)
    return stats, path
