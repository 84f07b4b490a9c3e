"""The dataset card: ``README.md`` with the Hub's YAML header, then counts, distributions, provenance.

The header is what the Hub and ``datasets.load_dataset(DIR)`` read: ``configs`` (one per exported
config, ``data_files`` per split), ``dataset_info`` (features, with ``dtype: image`` for image
columns, and split sizes), ``license`` (from the rows' license URLs), ``task_categories``,
``size_categories``. The body is computed from the exported shards themselves (DuckDB over the
Parquet files) and from ``provenance/<config>.json``; it holds no time stamps, so re-exporting the
same rows leaves the card unchanged.

The header is made with ``huggingface_hub``'s ``DatasetCardData`` and the card is a ``DatasetCard``,
so its metadata follows the Hub's schema; the body has the sections of the Hub's card template
(structure, licensing per split, personal information, bias and limitations, citation).

Title, description and repository come from ``write_card``'s arguments (a build passes its
manifest's ``name``, ``description`` and ``[publish] repo``) and are kept in the card itself, in an
HTML comment the Hub does not show, so a later export or ``pmcurate publish`` rewrites the same
card. A ``README.md`` that pmcurate did not write is never overwritten (``CardError``).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from pmcurate.errors import Fatal
from pmcurate.export.exporter import DEFAULT_CONFIG, PROVENANCE_DIR
from pmcurate.export.stats import DISTRIBUTIONS, LICENSE_COLUMNS, UNKNOWN_LICENSE, CardStats

REPO_PLACEHOLDER = "ORG/NAME"
CARD = "README.md"
MARKER = "<!-- pmcurate-card "
"""Starts the comment that marks a card as pmcurate's and holds its settings (JSON)."""
_SETTINGS = re.compile(r"<!-- pmcurate-card (\{.*\}) -->")
_LANGUAGE = re.compile(r"[a-z]{2,3}")
_CC_URL = re.compile(r"creativecommons\.org/licenses/(by(?:-nc)?(?:-sa|-nd)?)/(\d\.\d)", re.IGNORECASE)
_CC0_URL = re.compile(r"creativecommons\.org/publicdomain/zero/1\.0", re.IGNORECASE)
_SIZES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
)


def size_category(rows: int) -> str:
    for limit, name in _SIZES:
        if rows < limit:
            return name
    return "1B<n<10B"


def hub_license_ids(urls: list[str | None]) -> list[str]:
    """Hub license ids (``cc-by-4.0``…) of the rows' license URLs; ``other`` for anything else."""
    ids = set()
    for url in urls:
        cc = _CC_URL.search(url or "")
        if cc:
            ids.add(f"cc-{cc[1].lower()}-{cc[2]}")
        elif _CC0_URL.search(url or ""):
            ids.add("cc0-1.0")
        else:
            ids.add("other")
    return sorted(ids)


def features_yaml(features: dict[str, Any]) -> list[dict[str, Any]]:
    """``datasets`` features JSON → the card's ``features:`` list (as ``datasets`` itself writes it)."""
    return [{"name": name, **_feature_yaml(feature)} for name, feature in features.items()]


def _feature_yaml(feature: dict[str, Any]) -> dict[str, Any]:
    kind = feature.get("_type")
    if kind == "Image":
        return {"dtype": "image"}
    if kind == "Value":
        return {"dtype": feature["dtype"]}
    if kind == "List":
        inner = _feature_yaml(feature["feature"])
        return {"list": inner.get("dtype", inner.get("struct", inner))}
    return {"struct": features_yaml(feature)}


def read_configs(out: Path, written: Mapping[str, dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The provenance records of every config exported into ``out``, default config first.
    ``written``: records just written, by config, as their files hold them (not read again)."""
    paths = sorted((out / PROVENANCE_DIR).glob("*.json"))
    known = written or {}
    configs = [known[p.stem] if p.stem in known else json.loads(p.read_text()) for p in paths]
    return sorted(configs, key=lambda c: (c["config"] != DEFAULT_CONFIG, c["config"]))


def _parquet_glob(out: Path, config: dict[str, Any]) -> str:
    return str((out / config["folder"]).resolve() / "*.parquet").replace("'", "''")


class CardError(Fatal):
    """The card cannot be written: the message says why (a README.md that is not pmcurate's)."""


@dataclass(frozen=True)
class CardSettings:
    """What the card says that the shards do not: the dataset's title, description and repository."""

    title: str | None = None
    description: str | None = None
    repo_id: str | None = None


def read_settings(out: Path) -> CardSettings:
    """The settings kept in ``out``'s card by the last ``write_card`` (none when there is no card)."""
    path = out / CARD
    found = _SETTINGS.search(path.read_text(encoding="utf-8", errors="replace")) if path.is_file() else None
    if found is None:
        return CardSettings()
    data = json.loads(found[1])
    return CardSettings(data.get("title"), data.get("description"), data.get("repo_id"))


def _settings_comment(settings: CardSettings) -> str:
    text = json.dumps(asdict(settings), sort_keys=True).replace("-->", "-\\u002d>")
    return f"{MARKER}{text} -->"


def check_card_target(out: str | os.PathLike[str]) -> None:
    """Raise ``CardError`` when ``out/README.md`` exists and was not written by pmcurate."""
    path = Path(out) / CARD
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8", errors="replace")
    if MARKER in text or re.search(r"(?m)^- pmcurate$", text.split("\n---", 1)[0]):
        return
    raise CardError(
        f"{path} exists and was not written by pmcurate: move it away (its text can go into the "
        "card's description) so the dataset card can be written; nothing was overwritten"
    )


def header(out: Path, configs: list[dict[str, Any]], title: str | None = None) -> dict[str, Any]:
    """The YAML metadata; licenses and languages are those the exporter found in the rows."""
    license_urls = [url for config in configs for url in config.get("license_urls", [])]
    languages = {lang for config in configs for lang in config.get("languages", []) if lang}
    licenses = hub_license_ids(license_urls) if license_urls else ["other"]
    meta: dict[str, Any] = {"license": licenses[0] if len(licenses) == 1 else licenses}
    if "other" in licenses:
        meta["license_name"] = "pmc-open-access-per-article"
        meta["license_link"] = "https://pmc.ncbi.nlm.nih.gov/tools/openftlist/"
    known = sorted(lang for lang in languages if _LANGUAGE.fullmatch(lang))
    if known:  # no language column values: say nothing rather than guess
        meta["language"] = known
    meta["task_categories"] = sorted({t for c in configs for t in c["task_categories"]})
    meta["tags"] = ["biology", "medical", "pubmed-central", "pmcurate"]
    meta["size_categories"] = [size_category(max(_rows(c) for c in configs))]
    meta["pretty_name"] = title or out.resolve().name
    meta["configs"] = [_config_entry(c) for c in configs]
    info = [_dataset_info(c) for c in configs if c["format"] == "parquet"]
    if info:
        meta["dataset_info"] = info
    return meta


def _rows(config: dict[str, Any]) -> int:
    return sum(s["rows"] for s in config["splits"].values())


def _config_entry(config: dict[str, Any]) -> dict[str, Any]:
    suffix = "parquet" if config["format"] == "parquet" else "tar"
    entry: dict[str, Any] = {
        "config_name": config["config"],
        "data_files": [
            {"split": split, "path": f"{config['folder']}/{split}-*.{suffix}"} for split in config["splits"]
        ],
    }
    if config["config"] == DEFAULT_CONFIG:
        entry["default"] = True
    return entry


def _dataset_info(config: dict[str, Any]) -> dict[str, Any]:
    splits = [
        {"name": name, "num_bytes": s["bytes"], "num_examples": s["rows"]}
        for name, s in config["splits"].items()
    ]
    size = sum(s["bytes"] for s in config["splits"].values())
    return {
        "config_name": config["config"],
        "features": features_yaml(config["features"]),
        "splits": splits,
        "download_size": size,
        "dataset_size": size,
    }


def _table(headers: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _human(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.1f} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.1f} TB"


def shard_stats(out: Path, config: dict[str, Any]) -> CardStats:
    """What the card counts in ``config``'s shards (DuckDB over them): for a config exported earlier."""
    con = duckdb.connect()
    source = f"read_parquet('{_parquet_glob(out, config)}', filename = true)"
    names = set(config["features"])
    stats = CardStats()
    for column, _, expression, _ in DISTRIBUTIONS:
        if column in names:
            rows = con.sql(f"SELECT {expression}, count(*) FROM {source} GROUP BY 1").fetchall()
            stats.values[column] = Counter(dict(rows))
    if "n_words" in names:
        words = f"SELECT n_words, count(*) FROM {source} WHERE n_words IS NOT NULL GROUP BY 1"
        stats.words = Counter(dict(con.sql(words).fetchall()))
    license = next((c for c in LICENSE_COLUMNS if c in names), None)
    if license is not None:
        split = "regexp_extract(parse_filename(filename), '^(.*)-[0-9]{5}-of-[0-9]{5}', 1)"
        value = f"coalesce({license}, '{UNKNOWN_LICENSE}')"
        query = f"SELECT {split}, {value}, count(*) FROM {source} GROUP BY ALL"
        stats.licenses = Counter({(s, lic): n for s, lic, n in con.sql(query).fetchall()})
    return stats


def _distributions(config: dict[str, Any], stats: CardStats) -> list[str]:
    names = set(config["features"])
    parts = []
    for column, title, _, _ in DISTRIBUTIONS:
        if column not in names:
            continue
        rows = stats.top(column)
        total = sum(n for _, n in rows) or 1
        table = _table(
            (title, "rows", "share"),
            [("(none)" if v is None else v, n, f"{100 * n / total:.1f}%") for v, n in rows],
        )
        parts.append(f"**{title}**\n\n{table}")
    if "n_words" in names:
        words, mean, median = stats.word_summary()
        parts.append(
            f"**Words**: {words or 0:,} in all; {mean or 0:.1f} per row on average, median {median or 0}."
        )
    return parts


def _provenance_section(config: dict[str, Any]) -> list[str]:
    source = config["source"]
    lines = [
        f"- Tool: pmcurate {config['tool']['version']}, preset `{config['preset']}`, "
        f"format {config['format']}, splits by `{config['split_by']}`",
        f"- Build: `{source['build']}`" + (f", subset `{source['subset']}`" if source["subset"] else ""),
    ]
    lines += _subset_lines(source.get("subset_parameters"))
    for table, info in source["inputs"].items():
        lines.append(
            f"- Input `{table}`: {info['rows']:,} rows in {info['shards']} shards, sha256 `{info['sha256']}`"
        )
    build = source.get("build_provenance")
    if isinstance(build, dict):
        scalars = [f"{k} `{v}`" for k, v in sorted(build.items()) if not isinstance(v, dict | list)]
        lines.append("- Build provenance (`provenance.json`): " + ", ".join(scalars))
    if source.get("annotators"):
        lines.append("- Label annotators (teacher model / prompt hash): " + ", ".join(
            f"`{a}`" for a in source["annotators"]
        ))  # fmt: skip
    lines += _student_lines(source.get("student"))
    if config.get("skipped_rows"):
        lines.append(f"- Rows left out: {config['skipped_rows']:,} (figures without a harvested image)")
    return lines


def _subset_lines(parameters: Any) -> list[str]:
    """The subset's rules, deduplication and counts, then all its parameters folded away."""
    if not isinstance(parameters, dict):
        return []
    lines = []
    for rule in parameters.get("rules") or []:
        lines.append(f"  - rule `{rule.get('name')}`: `{rule.get('predicate')}`")
    dedup = (parameters.get("dedup") or {}).get("kinds")
    if dedup:
        lines.append(f"  - deduplication: {', '.join(dedup)}")
    for item in parameters.get("upsample") or []:
        lines.append(f"  - upsampled ×{item.get('factor')}: `{item.get('rule')}` (`{item.get('predicate')}`)")
    counts = parameters.get("counts") or {}
    if counts:
        lines.append(f"  - rows: {counts.get('input', 0):,} in, {counts.get('kept', 0):,} kept, "
                     f"{counts.get('output', 0):,} written")  # fmt: skip
    folded = json.dumps(parameters, indent=2, sort_keys=True, ensure_ascii=False)
    details = ["", "<details><summary>All subset parameters</summary>", "", "```json", folded, "```"]
    return ["- Subset:", *lines, *details, "", "</details>", ""]


def _student_lines(student: Any) -> list[str]:
    """The student's held-out agreement with its teacher, with the baselines it was compared to."""
    if not isinstance(student, dict):
        return []
    lines = [f"- Student (fastText) trained on teacher `{student.get('teacher')}`; held-out agreement:"]
    for task, results in sorted((student.get("labels") or {}).items()):
        parts = []
        for who in ("student", "majority", "rules"):
            metrics = results.get(who) if isinstance(results, dict) else None
            if isinstance(metrics, dict):
                scores = ", ".join(
                    f"{k} {_number(v)}"
                    for k, v in sorted(metrics.items())
                    if isinstance(v, int | float) and not isinstance(v, bool)
                )
                parts.append(f"{who}: {scores}")
        lines.append(f"  - {task}: " + "; ".join(parts))
    return lines


def _number(value: float) -> str:
    """A count as ``12,345``, a score as ``0.925``."""
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


def _usage(config: dict[str, Any], repo_id: str) -> str:
    name = config["config"]
    split = next(iter(config["splits"]))
    if config["format"] == "webdataset":
        return (
            "```python\nimport webdataset as wds\n"
            f'url = "https://huggingface.co/datasets/{repo_id}/resolve/main/{config["folder"]}/'
            f'{split}-00000-of-{len(config["splits"][split]["shards"]):05d}.tar"\n'
            'for sample in wds.WebDataset(url).decode("pil"):\n'
            f'    image, caption, meta = sample["{config.get("image_extension", "jpg")}"], '
            'sample["txt"], sample["json"]\n```'
        )
    load = (
        f'ds = load_dataset("{repo_id}", "{name}", split="{split}", streaming=True)'
        if name != DEFAULT_CONFIG
        else f'ds = load_dataset("{repo_id}", split="{split}", streaming=True)'
    )
    group = "license" if "license" in config["features"] else next(iter(config["features"]))
    path = f"hf://datasets/{repo_id}/{config['folder']}/*.parquet"
    return (
        f"```python\nfrom datasets import load_dataset\n{load}\n```\n\n"
        f"```sql\n-- DuckDB (local export: read_parquet('{config['folder']}/*.parquet'))\n"
        f"SELECT {group}, count(*) AS n FROM read_parquet('{path}') GROUP BY ALL ORDER BY n DESC;\n```\n\n"
        f"```python\nimport polars as pl\ndf = pl.scan_parquet('{path}').head(5).collect()\n```"
    )


def import_hub_card() -> None:
    """Import what ``render`` makes the card with (``DatasetCardData``: 0.05 CPU-s, where
    ``huggingface_hub.repocard`` and its Hub client take 0.2) ahead of it: the export step does it
    in a thread while its tasks write."""
    import huggingface_hub.repocard_data  # noqa: F401


def render(
    out: Path,
    settings: CardSettings | None = None,
    stats: Mapping[str, CardStats] | None = None,
    written: Mapping[str, dict[str, Any]] | None = None,
) -> str:
    """The card's text: YAML header (``DatasetCardData``), then the template's sections. It is the
    text ``DatasetCard`` gives of itself (its header read back and dumped again: the same, as
    ``tests/export/test_card.py`` checks), without reading the header back.

    ``stats``: what the card counts in the rows of configs just exported (by config name); any
    other Parquet config is counted in its shards. ``written``: the provenance records of configs
    just exported (``read_configs``)."""
    from huggingface_hub import DatasetCardData

    configs = read_configs(out, written)
    if not configs:
        raise FileNotFoundError(
            f"{out}: no exported config (no {PROVENANCE_DIR}/*.json): run `pmcurate export`"
        )
    counted = {
        c["config"]: (stats or {}).get(c["config"]) or shard_stats(out, c)
        for c in configs
        if c["format"] == "parquet"
    }
    settings = settings or CardSettings()
    repo = settings.repo_id or REPO_PLACEHOLDER
    title = settings.title or out.resolve().name
    data = DatasetCardData(**header(out, configs, title))
    body = [_settings_comment(settings), "", f"# {title}", ""]
    if settings.description:
        body += [settings.description, ""]
    body.append(
        "Made with pmcurate from PubMed Central Open Access "
        "articles: every row keeps its article id, its XML path, its license and license URL."
    )
    overview = [
        (c["config"], c["preset"], c["format"], split, f"{s['rows']:,}", len(s["shards"]), _human(s["bytes"]))
        for c in configs
        for split, s in c["splits"].items()
    ]
    body += ["", "## Dataset Structure", ""]
    body.append(_table(("config", "preset", "format", "split", "rows", "shards", "size"), overview))
    for config in configs:
        body += ["", f"### Config `{config['config']}`", "", config["description"] + ".", ""]
        if config["format"] == "parquet":
            body += ["#### Distributions", ""]
            for part in _distributions(config, counted[config["config"]]):
                body += [part, ""]
        body += ["#### Provenance", "", *_provenance_section(config), ""]
        body += ["#### Usage", "", _usage(config, repo), ""]
    body += ["## Licensing Information", "", *_licensing(configs, counted), ""]
    body += ["## Personal and Sensitive Information", "", PERSONAL, ""]
    body += ["## Bias, Risks, and Limitations", "", *_limitations(configs), ""]
    body += ["## Citation", "", *_citation(title, repo), ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body).rstrip() + "\n"


PERSONAL = (
    "The texts are published scientific articles. Case reports describe patients as their journals "
    "published them (de-identified under each journal's consent and privacy policy); pmcurate removes "
    "nothing further. Author names and affiliations of the articles are in the metadata columns. Do "
    "not try to re-identify the people described."
)


def _licensing(configs: list[dict[str, Any]], stats: Mapping[str, CardStats]) -> list[str]:
    """Licenses per config and split, counted in the rows: each article keeps its own license."""
    lines = [
        "Each row carries its article's license (`license`/`license_type` and `license_url`); the "
        "dataset has no single license. Use only the rows whose license fits your use (for example "
        "the `commercial` split for commercial use), and attribute the articles (`article_url`).",
        "",
    ]
    rows = []
    for config in configs:
        if config["format"] != "parquet" or not any(c in config["features"] for c in LICENSE_COLUMNS):
            continue
        counted = stats[config["config"]].license_rows()
        rows += [(config["config"], split, license, f"{n:,}") for split, license, n in counted]
    if rows:
        lines.append(_table(("config", "split", "license", "rows"), rows))
    return lines


def _limitations(configs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "- PubMed Central Open Access is the openly licensed part of the biomedical literature: "
        "fields, journals and years are not represented in proportion to the literature as a whole.",
        "- Retractions are those known when the articles were harvested; check `pmcid`/`doi` again "
        "before relying on a finding.",
        "- Text comes from the articles' JATS XML; tables and formulas appear as text, and figures only "
        "through their captions unless a config holds images.",
    ]
    if any((c.get("source") or {}).get("annotators") for c in configs):
        lines.append(
            "- Labels (document type, domain, educational score) are predictions of a small student "
            "model trained on an LLM's labels of a sample: errors of both are in them (held-out "
            "agreement under Provenance); they rank and filter, they are not ground truth."
        )
    return lines


def _citation(title: str, repo: str) -> list[str]:
    key = re.sub(r"\W+", "_", title.lower()).strip("_") or "dataset"
    return [
        "Cite the articles you use (each row's `article_url` or `doi`) and this dataset:",
        "",
        "```bibtex",
        f"@misc{{{key},",
        f"  title = {{{{{title}}}}},",
        f"  howpublished = {{\\url{{https://huggingface.co/datasets/{repo}}}}},",
        "  note = {Made with pmcurate from PubMed Central Open Access}",
        "}",
        "```",
    ]


def write_card(
    out: str | os.PathLike[str],
    repo_id: str | None = None,
    *,
    title: str | None = None,
    description: str | None = None,
    stats: Mapping[str, CardStats] | None = None,
    written: Mapping[str, dict[str, Any]] | None = None,
) -> Path:
    """Write ``out/README.md`` for every config exported into ``out``.

    ``repo_id``, ``title`` and ``description`` not given are those of the folder's previous card
    (kept in the card). A ``README.md`` not written by pmcurate is refused (``CardError``).
    ``stats``: the counts of configs just exported, gathered as they were written, and
    ``written``: their provenance records (``render``).
    """
    out = Path(out)
    check_card_target(out)
    previous = read_settings(out)
    settings = CardSettings(
        title or previous.title, description or previous.description, repo_id or previous.repo_id
    )
    path = out / CARD
    path.write_text(render(out, settings, stats, written), encoding="utf-8")
    return path
