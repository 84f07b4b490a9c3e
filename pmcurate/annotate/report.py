"""Agreement metrics between a student (or a baseline) and the teacher, and the printed report.

Every metric is computed beside the majority-class baseline (always answering the most frequent
training label): with few, skewed teacher labels a classifier can look accurate while saying
nothing, and κ and macro-F1 next to that baseline show it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from pmcurate import labels
from pmcurate.annotate import students

EDU_THRESHOLD = 3


def confusion(truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]) -> list[list[int]]:
    """Rows: teacher's class; columns: predicted class; in the order of ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        matrix[index[t], index[p]] += 1
    return matrix.tolist()


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean F1 over the classes seen in either sequence (scikit-learn's ``average='macro'``)."""
    classes = sorted(set(truth) | set(predicted))
    t, p = np.asarray(truth), np.asarray(predicted)
    scores = []
    for c in classes:
        tp = float(np.sum((t == c) & (p == c)))
        fp = float(np.sum((t != c) & (p == c)))
        fn = float(np.sum((t == c) & (p != c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def cohen_kappa(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Agreement beyond chance; 0 for a constant answer, 1 for perfect agreement."""
    t, p = np.asarray(truth), np.asarray(predicted)
    if len(t) == 0:
        return 0.0
    observed = float(np.mean(t == p))
    classes = set(truth) | set(predicted)
    expected = sum(float(np.mean(t == c)) * float(np.mean(p == c)) for c in classes)
    return 0.0 if expected >= 1.0 else (observed - expected) / (1.0 - expected)


def classification_metrics(
    truth: Sequence[str], predicted: Sequence[str], classes: Sequence[str]
) -> dict[str, Any]:
    t, p = list(truth), list(predicted)
    return {
        "n": len(t),
        "accuracy": float(np.mean(np.asarray(t) == np.asarray(p))) if t else 0.0,
        "macro_f1": macro_f1(t, p),
        "kappa": cohen_kappa(t, p),
        "confusion": {"classes": list(classes), "matrix": confusion(t, p, classes)},
    }


def pearson(x: ArrayLike, y: ArrayLike) -> float | None:
    """Pearson r, or None when either side is constant (r is undefined there)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def regression_metrics(truth: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    """Educational score: Pearson r, MAE, and F1 of the binary decision ``score >= 3``."""
    t, p = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    t_pos, p_pos = t >= EDU_THRESHOLD, np.rint(p) >= EDU_THRESHOLD
    tp = float(np.sum(t_pos & p_pos))
    denom = float(np.sum(t_pos) + np.sum(p_pos))
    return {
        "n": len(t),
        "pearson": pearson(t, p),
        "mae": float(np.mean(np.abs(t - p))) if len(t) else 0.0,
        f"f1_at_{EDU_THRESHOLD}": 0.0 if denom == 0 else 2 * tp / denom,
    }


def format_report(report: Mapping[str, Any]) -> str:
    """The evaluation report as a plain-text table: one block per label, one column per predictor."""
    lines = [
        f"teacher: {report['teacher']}  train rows: {report['n_train']}  "
        f"validation rows: {report['n_validation']}  held-out rows: {report['n_test']} "
        f"({report['n_test_articles']} held-out articles)"
    ]
    for label, block in report["labels"].items():
        predictors = list(block)
        lines.append("")
        lines.append(f"{label:<24}" + "".join(f"{name:>16}" for name in predictors))
        metrics = [k for k, v in block[predictors[0]].items() if k not in ("n", "confusion") and _is_num(v)]
        for metric in metrics:
            cells = "".join(f"{_fmt(block[name].get(metric)):>16}" for name in predictors)
            lines.append(f"  {metric:<22}{cells}")
        student = block[predictors[0]]
        if "confusion" in student:
            lines.append(f"  confusion ({predictors[0]}; rows teacher, columns predicted):")
            classes = student["confusion"]["classes"]
            lines.append("    " + " " * 14 + "".join(f"{c[:12]:>13}" for c in classes))
            for c, row in zip(classes, student["confusion"]["matrix"], strict=True):
                lines.append(f"    {c[:14]:<14}" + "".join(f"{v:>13}" for v in row))
    speed = report.get("speed")
    if speed:
        lines.append("")
        for name, value in speed.items():
            lines.append(f"speed {name}: {value:,.0f} paragraphs/s (one core, predict only)")
    return "\n".join(lines)


def _is_num(value: Any) -> bool:
    return value is None or isinstance(value, int | float)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.3f}"


SPLIT_KEYS = ("teacher", "n_train", "n_validation", "n_test", "n_test_articles")
COMPARED = {
    spec.name: ("pearson", "mae") if spec.kind == "score" else ("macro_f1", "kappa")
    for spec in labels.taught()
}
"""The metrics compared per taught label (``pmcurate/labels/``)."""


def comparison(reports: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each student's held-out agreement beside the rules teacher and the majority class, one row
    per label and metric. Only reports made on the first one's teacher and split are compared
    (the others' numbers would be of other rows)."""
    first = next(iter(reports.values()), None)
    same = {
        name: r for name, r in reports.items() if first and all(r.get(k) == first.get(k) for k in SPLIT_KEYS)
    }
    columns = [*same, "rules", "majority"]
    rows: dict[str, dict[str, float | None]] = {}
    for task, names in COMPARED.items():
        for metric in names:
            row = {name: r["labels"][task]["student"].get(metric) for name, r in same.items()}
            block = first["labels"][task] if first else {}
            for baseline in ("rules", "majority"):
                row[baseline] = block.get(baseline, {}).get(metric)
            rows[f"{task} {metric}"] = row
    return {"columns": columns, "rows": rows, "left_out": sorted(set(reports) - set(same))}


def side_by_side(build: str | os.PathLike[str]) -> str:
    """The comparison of the students whose reports are in ``BUILD/models/``, as text ('' when
    fewer than two students were trained)."""
    folder = Path(build) / "models"
    paths = {name: folder / students.get(name).report for name in students.kinds()}
    reports = {name: json.loads(path.read_text()) for name, path in paths.items() if path.is_file()}
    if len(reports) < 2:
        return ""
    table = comparison(reports)
    lines = [f"{'held-out agreement':<32}" + "".join(f"{c:>12}" for c in table["columns"])]
    for name, row in table["rows"].items():
        lines.append(f"  {name:<30}" + "".join(f"{_fmt(row[c]):>12}" for c in table["columns"]))
    if table["left_out"]:
        lines.append(f"  (not compared, made on another teacher or split: {', '.join(table['left_out'])})")
    return "\n".join(lines)
