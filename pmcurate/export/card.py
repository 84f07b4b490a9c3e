"""The dataset card: ``README.md`` with the Hub's YAML header, then counts, distributions, provenance.

The header is what the Hub and ``datasets.load_dataset(DIR)`` read: ``configs`` (one per exported
config, ``data_files`` per split), ``dataset_info`` (features, with ``dtype: image`` for image
columns, and split sizes), ``license`` (from the rows' license URLs), ``task_categories``,
``size_categories``. The body is computed from the exported shards themselves (DuckDB over the
Parquet files) and from ``provenance/<config>.json``; it holds no time stamps, so re-exporting the
same rows leaves the card unchanged.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import duckdb
import yaml

from pmcurate.export.exporter import DEFAULT_CONFIG, PROVENANCE_DIR

REPO_PLACEHOLDER = "ORG/NAME"
_CC_URL = re.compile(r"creativecommons\.org/licenses/(by(?:-nc)?(?:-sa|-nd)?)/(\d\.\d)", re.IGNORECASE)
_CC0_URL = re.compile(r"creativecommons\.org/publicdomain/zero/1\.0", re.IGNORECASE)
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))
_SIZES += ((10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
_DISTRIBUTIONS = (
    ("license", "License", "license"),
    ("license_type", "License", "license_type"),
    ("document_type", "Document type", "document_type"),
    ("domain", "Domain", "domain"),
    ("educational_score", "Educational score (rounded)", "round(educational_score)::INTEGER"),
    ("section_type", "Section type", "section_type"),
    ("format", "Image format", "format"),
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


def read_configs(out: Path) -> list[dict[str, Any]]:
    """The provenance records of every config exported into ``out``, default config first."""
    paths = sorted((out / PROVENANCE_DIR).glob("*.json"))
    configs = [json.loads(p.read_text()) for p in paths]
    return sorted(configs, key=lambda c: (c["config"] != DEFAULT_CONFIG, c["config"]))


def _parquet_glob(out: Path, config: dict[str, Any]) -> str:
    return str((out / config["folder"]).resolve() / "*.parquet").replace("'", "''")


def header(out: Path, configs: list[dict[str, Any]]) -> dict[str, Any]:
    """The YAML metadata; licenses and languages are those the exporter found in the rows."""
    license_urls = [url for config in configs for url in config.get("license_urls", [])]
    languages = {lang for config in configs for lang in config.get("languages", []) if lang}
    licenses = hub_license_ids(license_urls) if license_urls else ["other"]
    meta: dict[str, Any] = {"license": licenses[0] if len(licenses) == 1 else licenses}
    if "other" in licenses:
        meta["license_name"] = "pmc-open-access-per-article"
        meta["license_link"] = "https://pmc.ncbi.nlm.nih.gov/tools/openftlist/"
    meta["language"] = sorted(lang for lang in languages if re.fullmatch(r"[a-z]{2,3}", lang)) or ["en"]
    meta["task_categories"] = sorted({t for c in configs for t in c["task_categories"]})
    meta["tags"] = ["biology", "medical", "pubmed-central", "pmcurate"]
    meta["size_categories"] = [size_category(max(_rows(c) for c in configs))]
    meta["pretty_name"] = out.resolve().name
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


def _distributions(out: Path, config: dict[str, Any]) -> list[str]:
    con = duckdb.connect()
    source = f"read_parquet('{_parquet_glob(out, config)}')"
    names = set(config["features"])
    parts = []
    for column, title, expression in _DISTRIBUTIONS:
        if column not in names:
            continue
        query = f"SELECT {expression} AS value, count(*) AS n FROM {source} GROUP BY 1 ORDER BY n DESC, 1"
        query += " LIMIT 12"
        rows = con.sql(query).fetchall()
        total = sum(n for _, n in rows) or 1
        table = _table(
            (title, "rows", "share"),
            [("(none)" if v is None else v, n, f"{100 * n / total:.1f}%") for v, n in rows],
        )
        parts.append(f"**{title}**\n\n{table}")
    if "n_words" in names:
        q = f"SELECT sum(n_words), avg(n_words), median(n_words) FROM {source}"
        total, mean, median = con.sql(q).fetchall()[0]
        parts.append(
            f"**Words**: {total or 0:,} in all; {mean or 0:.1f} per row on average, median {median or 0}."
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
                    f"{k} {v:.3f}"
                    for k, v in sorted(metrics.items())
                    if isinstance(v, int | float) and not isinstance(v, bool)
                )
                parts.append(f"{who}: {scores}")
        lines.append(f"  - {task}: " + "; ".join(parts))
    return lines


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


def render(out: Path, repo_id: str | None = None) -> str:
    configs = read_configs(out)
    if not configs:
        raise FileNotFoundError(
            f"{out}: no exported config (no {PROVENANCE_DIR}/*.json): run `pmcurate export`"
        )
    repo = repo_id or REPO_PLACEHOLDER
    meta = yaml.safe_dump(header(out, configs), sort_keys=False, allow_unicode=True, width=1000)
    body = [f"# {out.resolve().name}", ""]
    body.append(
        "Made with pmcurate from PubMed Central Open Access articles: "
        "every row keeps its article id, its XML path, its license and license URL. Each article "
        "has its own license (see the `license`/`license_url` columns): use the split or the "
        "column that fits your use (e.g. only `commercial` for commercial use)."
    )
    overview = [
        (c["config"], c["preset"], c["format"], split, f"{s['rows']:,}", len(s["shards"]), _human(s["bytes"]))
        for c in configs
        for split, s in c["splits"].items()
    ]
    body += ["", "## Configs and splits", ""]
    body.append(_table(("config", "preset", "format", "split", "rows", "shards", "size"), overview))
    for config in configs:
        body += ["", f"## Config `{config['config']}`", "", config["description"] + ".", ""]
        if config["format"] == "parquet":
            body += ["### Distributions", ""]
            for part in _distributions(out, config):
                body += [part, ""]
        body += ["### Provenance", "", *_provenance_section(config), ""]
        body += ["### Usage", "", _usage(config, repo), ""]
    return f"---\n{meta}---\n\n" + "\n".join(body).rstrip() + "\n"


def write_card(out: str | os.PathLike[str], repo_id: str | None = None) -> Path:
    """Write ``out/README.md`` for every config exported into ``out``."""
    out = Path(out)
    path = out / "README.md"
    path.write_text(render(out, repo_id), encoding="utf-8")
    return path
