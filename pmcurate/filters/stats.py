"""Counts and distributions of a build or of a subset, as text tables and as an HTML report.

The report is one self-contained HTML file with inline SVG charts (no plotting library, no
scripts, nothing fetched), so it opens anywhere, offline, and can be attached to a dataset card.
Distributions count rows: paragraphs for a build or a paragraph subset (upsampled copies included,
since they are what a model will read), figures for a figure subset.

What a curator reads in it: the totals; for a subset, why rows were dropped (each rule in the order
it ran, with its condition, the rows it dropped, what remained and an example reason); the labels;
the articles (licenses, publication years on a numeric axis with the empty years shown); the text
(sections, lengths); the figures and their images (how many have one, formats, sizes).
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl

from pmcurate import labels, schema
from pmcurate.build import open_build
from pmcurate.errors import Fatal

WORD_BINS = (0, 16, 32, 48, 64, 128, 256, 512, 1024)
PIXEL_BINS = (0, 256, 512, 1024, 2048)
MAX_BARS = 25
"""Distributions with more values show the most frequent ones and one ``(other)`` bar."""


class StatsError(Fatal):
    """A build or subset that cannot be described: the message says what is missing."""


@dataclass(frozen=True)
class Distribution:
    """Counts of the values of one column (``value`` is a string; null shows as ``(none)``)."""

    name: str
    title: str
    counts: pl.DataFrame
    unit: str | None = None
    """What the rows counted are, when not the report's unit (a build's figures)."""


@dataclass(frozen=True)
class DropStep:
    """One step of a subset: a rule or a deduplication, the rows it dropped and the rows left."""

    rule: str
    condition: str
    dropped: int
    remaining: int
    example: str | None


@dataclass(frozen=True)
class Stats:
    """What ``stats`` reports: the totals and the distributions of a build or subset."""

    title: str
    unit: str
    totals: dict[str, int]
    distributions: list[Distribution]
    drops: list[DropStep] = field(default_factory=list)
    """For a subset: its rules and deduplications in the order they ran."""
    subset_counts: dict[str, int] = field(default_factory=dict)
    """For a subset: rows ``input``, ``kept`` (after every step) and ``output`` (upsampled copies)."""


def _bucket(column: str, bins: tuple[int, ...]) -> str:
    """SQL labelling a number with its bucket: ``0-15``, ``16-31``… ``1024+``."""
    cases = " ".join(
        f"WHEN {column} < {high} THEN '{low}-{high - 1}'" for low, high in itertools.pairwise(bins)
    )
    return f"CASE WHEN {column} IS NULL THEN NULL {cases} ELSE '{bins[-1]}+' END"


def _word_bucket(column: str) -> str:
    return _bucket(column, WORD_BINS)


def _bucket_order(label: str) -> int:
    return int(label.split("-")[0].rstrip("+")) if label[0].isdigit() else -1


LABEL_DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    schema.LABEL_COLUMNS[spec.name]: (spec.title, spec.distribution_sql(schema.LABEL_COLUMNS[spec.name]))
    for spec in labels.specs()
}
"""One distribution per label (``pmcurate/labels/``), by its column in flat rows."""
DISTRIBUTIONS: dict[str, tuple[str, str]] = {
    **LABEL_DISTRIBUTIONS,
    "license": ("Licenses", "license"),
    "commercial_use": ("Commercial use allowed", "commercial_use::VARCHAR"),
    "pub_year": ("Publication years", "pub_year::VARCHAR"),
    "article_type": ("Article types", "article_type"),
    "section_type": ("Section types", "section_type"),
    "words": ("Words per row", _word_bucket("n_words")),
    "has_image": ("Figures with an image", "CASE WHEN image_sha256 IS NULL THEN 'no image' ELSE 'image' END"),
    "format": ("Image formats", "lower(format)"),
    "width": ("Image widths (pixels)", _bucket("width", PIXEL_BINS)),
}
NUMERIC_ORDER = {
    *(schema.LABEL_COLUMNS[spec.name] for spec in labels.specs() if spec.kind == "score"),
    "pub_year",
    "words",
    "width",
}
"""Distributions shown in value order; the others by decreasing count."""
FIGURE_DISTRIBUTIONS = ("has_image", "format", "width")
IMAGE_ONLY = {"format", "width"}
"""Counted over the figures that have an image."""
"""Over the figures table for a build; over the rows themselves for a figure subset."""
SECTIONS = {
    "Labels": tuple(LABEL_DISTRIBUTIONS),
    "Articles": ("license", "commercial_use", "pub_year", "article_type"),
    "Text": ("section_type", "words"),
    "Figures and images": FIGURE_DISTRIBUTIONS,
}


def _paragraph_relation(con: duckdb.DuckDBPyConnection, tables: list[str]) -> str:
    has_labels = "labels" in tables
    label_columns, label_join = "", ""
    if has_labels:
        present = {row[0] for row in con.execute("DESCRIBE labels").fetchall()}
        label_columns = "".join(
            f", l.{spec.name} AS {schema.LABEL_COLUMNS[spec.name]}"
            for spec in labels.specs()
            if spec.name in present
        )
        label_join = "LEFT JOIN labels l ON l.paragraph_id = p.paragraph_id"
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
    needed = {"words": "n_words", "has_image": "image_sha256"}.get(name, name)
    if needed not in columns:
        return None
    where = "WHERE image_sha256 IS NOT NULL" if name in IMAGE_ONLY else ""
    counts = pl.from_arrow(
        con.sql(
            f"SELECT coalesce(({expression})::VARCHAR, '(none)') AS value, count(*) AS rows "
            f"FROM {relation} {where} GROUP BY ALL"
        ).to_arrow_table()
    )
    assert isinstance(counts, pl.DataFrame)
    if counts.height == 0:
        return None
    if name == "pub_year":
        counts = _with_empty_years(counts)
    elif name in NUMERIC_ORDER:
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


def _with_empty_years(counts: pl.DataFrame) -> pl.DataFrame:
    """Every year from the first to the last, those without rows at 0 (a gap shows as a gap),
    then ``(none)`` for rows without a year."""
    found = dict(counts.iter_rows())
    years = [int(v) for v in found if v.isdigit()]
    span = [str(y) for y in range(min(years), max(years) + 1)] if years else []
    values = span + [v for v in found if not v.isdigit()]
    return pl.DataFrame({"value": values, "rows": [found.get(v, 0) for v in values]}, schema=counts.schema)


def _drop_steps(con: duckdb.DuckDBPyConnection, build: Path, name: str) -> tuple[list[DropStep], dict]:
    """The subset's rules and deduplications in order (``subset.json``), the rows each dropped and an
    example of its reasons (``drops/``)."""
    folder = build / "subsets" / name
    summary_path = folder / "subset.json"
    if not summary_path.is_file():
        return [], {}
    summary = json.loads(summary_path.read_text())
    counts = summary.get("counts", {})
    dropped: dict[str, int] = counts.get("dropped", {})
    examples: dict[str, str] = {}
    drops = sorted((folder / "drops").glob("*.parquet"))
    if drops:
        files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in drops)
        rows = con.execute(
            f"SELECT rule, min(reason) FROM read_parquet([{files}]) WHERE reason IS NOT NULL GROUP BY rule"
        ).fetchall()
        examples = {rule: reason for rule, reason in rows}
    steps = [(r["name"], r.get("predicate", "")) for r in summary.get("rules", [])]
    for kind in (summary.get("dedup") or {}).get("kinds", []):
        steps.append((f"dup_{kind}", f"{kind} duplicates removed (the first in reading order is kept)"))
    steps += [(rule, "") for rule in dropped if rule not in {s for s, _ in steps}]
    remaining = int(counts.get("input", 0))
    result = []
    for rule, condition in steps:
        n = int(dropped.get(rule, 0))
        remaining -= n
        result.append(DropStep(rule, condition, n, remaining, examples.get(rule)))
    return result, {k: int(counts[k]) for k in ("input", "kept", "output") if k in counts}


def compute_stats(build: str | os.PathLike[str], subset: str | None = None) -> Stats:
    """Totals and distributions of the build's paragraphs, or of subset ``subset``'s rows."""
    build = Path(build)
    opened = open_build(build)
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
        own = [name for name in DISTRIBUTIONS if name not in FIGURE_DISTRIBUTIONS or unit == "figures"]
        found = [_distribution(con, relation, name) for name in own]
        if unit == "figures":  # a figure's words are its caption's
            found = [
                dataclasses.replace(d, title="Words per caption") if d and d.name == "words" else d
                for d in found
            ]
        if subset is None and "figures" in tables:
            totals["figures with an image"] = int(
                con.execute("SELECT count(image_sha256) FROM figures").fetchall()[0][0]
            )
            found += [
                dataclasses.replace(d, unit="figures")
                for d in (_distribution(con, "figures", name) for name in FIGURE_DISTRIBUTIONS)
                if d is not None
            ]
        drops, subset_counts = _drop_steps(con, build, subset) if subset else ([], {})
        return Stats(title, unit, totals, [d for d in found if d is not None], drops, subset_counts)
    finally:
        con.close()


def format_text(stats: Stats) -> str:
    """The stats as plain-text tables (value, rows, share)."""
    lines = [stats.title, "", *(f"{name:>21}: {value:,}" for name, value in stats.totals.items())]
    if stats.drops:
        lines += ["", f"Why rows were dropped ({stats.subset_counts.get('input', 0):,} rows in)"]
        width = max(len(step.rule) for step in stats.drops)
        for step in stats.drops:
            lines.append(f"  {step.rule:<{width}}  {step.dropped:>10,} dropped  {step.remaining:>10,} left")
    for dist in stats.distributions:
        total = int(dist.counts["rows"].sum()) or 1
        width = max(12, *(len(v) for v in dist.counts["value"]))
        unit = dist.unit or stats.unit
        lines += ["", f"{dist.title} ({unit})", f"  {'value':<{width}}  {'rows':>10}  {'share':>6}"]
        for value, rows in dist.counts.iter_rows():
            lines.append(f"  {value:<{width}}  {rows:>10,}  {100 * rows / total:>5.1f}%")
    return "\n".join(lines) + "\n"


COLOR = "#2f6f9f"
MUTED = "#9bb7cc"


def _svg_bars(dist: Distribution, width: int = 460) -> str:
    """One horizontal bar chart as inline SVG: label, bar, count and share."""
    bar, gap, label_width, right = 16, 5, 150, 110
    chart_width = width - label_width - right
    counts = list(dist.counts.iter_rows())
    peak = max((rows for _, rows in counts), default=0) or 1
    total = sum(rows for _, rows in counts) or 1
    height = len(counts) * (bar + gap) + gap
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(dist.title)}">'
    ]
    for i, (value, rows) in enumerate(counts):
        y = gap + i * (bar + gap)
        length = max(1, round(chart_width * rows / peak)) if rows else 0
        text = html.escape(value if len(value) <= 22 else value[:21] + "…")
        fill = MUTED if value.startswith("(") or value == "no image" else COLOR
        parts.append(
            f'<text x="{label_width - 8}" y="{y + bar - 4}" text-anchor="end">{text}</text>'
            f'<rect x="{label_width}" y="{y}" width="{length}" height="{bar}" rx="2" fill="{fill}">'
            f"<title>{html.escape(value)}: {rows:,}</title></rect>"
            f'<text x="{label_width + length + 6}" y="{y + bar - 4}" class="n">'
            f"{rows:,} · {100 * rows / total:.1f}%</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _svg_columns(dist: Distribution, width: int = 940) -> str:
    """Rows per year as columns on a numeric axis: one slot per year, empty years left empty."""
    counts = [(v, n) for v, n in dist.counts.iter_rows() if v.isdigit()]
    if not counts:
        return _svg_bars(dist)
    left, bottom, top, height = 56, 28, 18, 210
    plot = height - bottom - top
    slot = (width - left - 8) / len(counts)
    peak = max(n for _, n in counts) or 1
    step = next(s for s in (1, 2, 5, 10, 20, 25, 50) if len(counts) / s <= 24)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(dist.title)}">'
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot * (1 - fraction)
        label = f"{round(peak * fraction):,}"
        parts.append(
            f'<line x1="{left}" x2="{width - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e8ee"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" class="n">{label}</text>'
        )
    for i, (year, n) in enumerate(counts):
        x = left + i * slot
        h = plot * n / peak
        parts.append(
            f'<rect x="{x + slot * 0.12:.1f}" y="{top + plot - h:.1f}" width="{slot * 0.76:.1f}" '
            f'height="{h:.1f}" fill="{COLOR}"><title>{year}: {n:,}</title></rect>'
        )
        if n and len(counts) <= 40:
            parts.append(
                f'<text x="{x + slot / 2:.1f}" y="{top + plot - h - 4:.1f}" text-anchor="middle" '
                f'class="n">{n:,}</text>'
            )
        if int(year) % step == 0 or i in (0, len(counts) - 1):
            parts.append(f'<text x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">{year}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _chart(dist: Distribution, unit: str) -> str:
    chart = _svg_columns(dist) if dist.name == "pub_year" else _svg_bars(dist)
    wide = " wide" if dist.name == "pub_year" else ""
    missing = dict(dist.counts.iter_rows()).get("(none)") if dist.name == "pub_year" else None
    note = f"<p class='note'>{missing:,} {unit} without a year.</p>" if missing else ""
    empty = "<p class='note'>Years without rows are shown empty.</p>" if dist.name == "pub_year" else ""
    counted = f" <small>({html.escape(dist.unit)})</small>" if dist.unit and dist.unit != unit else ""
    title = f"<h3>{html.escape(dist.title)}{counted}</h3>"
    return f"<div class='card{wide}'>{title}{chart}{empty}{note}</div>"


def _drops_html(stats: Stats) -> str:
    if not stats.drops:
        return ""
    counts = stats.subset_counts
    total = counts.get("input", 0) or 1
    rows = []
    for step in stats.drops:
        share = 100 * step.dropped / total
        bar = f"<span class='bar' style='width:{share:.1f}%'></span>" if step.dropped else ""
        example = html.escape(step.example) if step.example else ""
        condition = step.condition if len(step.condition) <= 80 else step.condition[:79] + "…"
        rows.append(
            f"<tr><td><code>{html.escape(step.rule)}</code></td>"
            f"<td class='cond' title='{html.escape(step.condition)}'>"
            f"<code>{html.escape(condition)}</code></td>"
            f"<td class='num'>{step.dropped:,}</td><td class='share'>{bar}{share:.1f}%</td>"
            f"<td class='num'>{step.remaining:,}</td><td class='example'>{example}</td></tr>"
        )
    kept, output = counts.get("kept", 0), counts.get("output", 0)
    upsampled = f", written {output:,} times with upsampling" if output != kept else ""
    return (
        "<section><h2>Why rows were dropped</h2>"
        f"<p>{counts.get('input', 0):,} {stats.unit} came in; each rule ran in this order on the rows "
        f"the ones before it kept, and {kept:,} ({100 * kept / total:.1f}%) passed them all{upsampled}.</p>"
        "<table class='drops'><tr><th>step</th><th>keeps rows where</th><th>dropped</th>"
        "<th>share of input</th><th>left</th><th>example reason</th></tr>"
        + "".join(rows)
        + "</table></section>"
    )


CSS = (
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2933;"
    "background:#f5f7fa}main{max-width:1000px;margin:0 auto;padding:28px 24px 48px}"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 10px}"
    "h3{font-size:14px;margin:0 0 8px;color:#3e4c59}h3 small{font-weight:400;color:#7b8794}"
    ".sub{color:#616e7c;margin:0 0 18px}"
    ".totals{display:flex;flex-wrap:wrap;gap:12px}.total{background:#fff;border:1px solid #e4e7eb;"
    "border-radius:8px;padding:10px 16px;min-width:120px}.total b{display:block;font-size:20px}"
    ".total span{color:#616e7c;font-size:12px}.grid{display:grid;grid-template-columns:1fr 1fr;gap:14px}"
    ".card{background:#fff;border:1px solid #e4e7eb;border-radius:8px;padding:14px 16px;overflow:hidden}"
    ".card.wide{grid-column:1/-1}svg{display:block;max-width:100%;height:auto}"
    "svg text{font:12px system-ui,sans-serif;fill:#323f4b}svg text.n{fill:#616e7c}"
    ".note{color:#616e7c;font-size:12px;margin:6px 0 0}"
    "table.drops{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e4e7eb}"
    "table.drops th,table.drops td{padding:7px 10px;border-bottom:1px solid #eef1f4;text-align:left;"
    "vertical-align:top}table.drops th{font-size:12px;color:#616e7c;font-weight:600}"
    "td.num{text-align:right;white-space:nowrap}td.cond code{display:block;max-width:280px;"
    "font-size:12px;color:#52606d;word-break:break-word}td.share{width:150px;white-space:nowrap}"
    ".bar{display:inline-block;height:10px;background:#c0504d;border-radius:2px;margin-right:6px;"
    "max-width:90px}td.example{font-size:12px;color:#52606d;word-break:break-word}code{font-size:12px}"
)


def render_html(stats: Stats) -> str:
    """A self-contained HTML report: totals, why rows were dropped (a subset), then charts by topic."""
    totals = "".join(
        f"<div class='total'><b>{v:,}</b><span>{html.escape(k)}</span></div>" for k, v in stats.totals.items()
    )
    by_name = {d.name: d for d in stats.distributions}
    sections = []
    for title, names in SECTIONS.items():
        charts = [_chart(by_name[n], stats.unit) for n in names if n in by_name]
        if "has_image" in by_name and title == "Figures and images" and "format" not in by_name:
            charts.append(
                "<div class='card'><h3>Images</h3><p class='note'>No figure has an image: fetch them with "
                "<code>harvest pmc --media</code>, or keep them beside the XML or in its .tar.gz.</p></div>"
            )
        if charts:
            sections.append(f"<section><h2>{title}</h2><div class='grid'>{''.join(charts)}</div></section>")
    upsampled = stats.subset_counts.get("output", 0) != stats.subset_counts.get("kept", 0)
    unit = html.escape(stats.unit) + (", upsampled copies included" if upsampled else "")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>pmcurate stats: {html.escape(stats.title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{html.escape(stats.title)}</h1><p class='sub'>Counts are of {unit}.</p>"
        f"<div class='totals'>{totals}</div>{_drops_html(stats)}{''.join(sections)}"
        "</main></body></html>\n"
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
