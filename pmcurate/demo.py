"""``pmcurate demo``: harvest the bundled sample articles into a fresh build and query it.

The sample (``pmcurate/data/sample/``, see its PROVENANCE.md) is eight real PMC articles under
CC BY or public domain; the demo runs with no network and no configuration.
"""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from pmcurate.build import open_build
from pmcurate.errors import UserError
from pmcurate.export.query import run_query
from pmcurate.harvest.local import harvest_local

DEFAULT_OUT = Path("build/demo")

DEMO_SQL = """\
SELECT a.article_id, a.pub_year AS year, a.license, a.article_type,
       count(p.paragraph_id) AS paragraphs, a.n_figures AS figures, left(a.title, 40) AS title
FROM articles a LEFT JOIN paragraphs p USING (article_id)
GROUP BY ALL ORDER BY paragraphs DESC"""


def fresh_build_dir(out: Path) -> None:
    """Empty ``out`` for a new build; refuse to delete a folder that is not a build."""
    if out.exists():
        if any(out.iterdir()) and not (out / "tables").is_dir():
            raise UserError(f"{out} exists and is not a pmcurate build; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)


def run_demo(out: Path = DEFAULT_OUT, *, workers: int | None = None) -> None:
    """Harvest the bundled sample into ``out`` (recreated), then print a DuckDB query and its result."""
    fresh_build_dir(out)
    with resources.as_file(resources.files("pmcurate") / "data" / "sample") as sample:
        summary = harvest_local([sample], out, workers=workers)
    print(summary)
    print(f"\nBuild: {out}  (tables: {', '.join(open_build(out).tables)})")
    print(f'\n$ pmcurate query {out} "<SQL>"\n{DEMO_SQL}\n')
    run_query(out, DEMO_SQL)
    print(f"\nFrom Python:  import pmcurate; pmcurate.open_build({str(out)!r}).table('paragraphs').collect()")
