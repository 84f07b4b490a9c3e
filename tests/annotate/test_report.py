from __future__ import annotations

from pmcurate.annotate import report


def test_kappa_of_a_constant_answer_is_zero() -> None:
    assert report.cohen_kappa(["a", "b", "a"], ["a", "a", "a"]) == 0.0


def test_kappa_of_perfect_agreement_is_one() -> None:
    assert report.cohen_kappa(["a", "b", "c"], ["a", "b", "c"]) == 1.0


def test_macro_f1_averages_over_seen_classes() -> None:
    # class a: tp=1 fp=1 fn=0 → 2/3; class b: tp=0 → 0
    assert abs(report.macro_f1(["a", "b"], ["a", "a"]) - 1 / 3) < 1e-9


def test_confusion_rows_are_teacher_columns_predicted() -> None:
    assert report.confusion(["a", "b", "b"], ["b", "b", "a"], ["a", "b"]) == [[0, 1], [1, 1]]


def test_pearson_is_undefined_for_a_constant_prediction() -> None:
    assert report.pearson([1, 2, 3], [2, 2, 2]) is None


def test_f1_at_3_counts_rounded_scores_at_or_above_3() -> None:
    metrics = report.regression_metrics([3, 2, 4], [2.6, 2.4, 3.9])
    assert metrics["f1_at_3"] == 1.0 and abs(metrics["mae"] - 0.3) < 1e-9
