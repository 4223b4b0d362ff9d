"""Scores of the (Super)GLUE tasks as the BabyLM challenge reports them.

The challenge reports Matthews correlation for CoLA, F1 of the positive class (label 1) for MRPC
and QQP, and accuracy for every other task. The functions here take integer class predictions
and gold labels, both of shape ``(n,)``, and return a plain float; they agree with
scikit-learn's ``accuracy_score``, ``f1_score(average="binary")`` and ``matthews_corrcoef``,
including their conventions for degenerate inputs (a score of 0.0 where a ratio is 0/0).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def _as_label_arrays(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    """Return predictions and labels as int64 arrays of the same shape ``(n,)``, n >= 1."""
    predictions = np.asarray(predictions, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if predictions.shape != labels.shape:
        raise ValueError(f"{predictions.shape[0]} predictions for {labels.shape[0]} labels")
    if predictions.size == 0:
        raise ValueError("cannot score an empty set of predictions")
    return predictions, labels


def accuracy(predictions, labels) -> float:
    """Fraction of the ``(n,)`` predictions equal to the ``(n,)`` labels."""
    predictions, labels = _as_label_arrays(predictions, labels)
    return float(np.mean(predictions == labels))


def f1(predictions, labels) -> float:
    """F1 of the positive class (label 1) for binary ``(n,)`` predictions and labels.

    2 * TP / (2 * TP + FP + FN); 0.0 when there are neither positive labels nor positive
    predictions (scikit-learn's ``zero_division`` default).
    """
    predictions, labels = _as_label_arrays(predictions, labels)
    true_pos = np.sum((predictions == 1) & (labels == 1))
    false_pos = np.sum((predictions == 1) & (labels != 1))
    false_neg = np.sum((predictions != 1) & (labels == 1))
    denominator = 2 * true_pos + false_pos + false_neg
    return float(2 * true_pos / denominator) if denominator else 0.0


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation coefficient of ``(n,)`` predictions against ``(n,)`` labels.

    The multiclass form (Gorodkin 2004) computed from the confusion matrix C (K x K):
    (c * s - t . p) / sqrt((s^2 - p . p) * (s^2 - t . t)) with c = trace(C), s = n, t the true
    class counts and p the predicted class counts; for two classes it is the usual
    (TP * TN - FP * FN) / sqrt(...). 0.0 when either side is constant (zero denominator).
    """
    predictions, labels = _as_label_arrays(predictions, labels)
    classes, encoded = np.unique(np.concatenate([labels, predictions]), return_inverse=True)
    n_classes = classes.size
    true_idx, pred_idx = encoded[: labels.size], encoded[labels.size :]
    confusion = np.zeros((n_classes, n_classes), dtype=np.float64)
    np.add.at(confusion, (true_idx, pred_idx), 1.0)
    true_counts = confusion.sum(axis=1)
    pred_counts = confusion.sum(axis=0)
    correct = np.trace(confusion)
    total = confusion.sum()
    numerator = correct * total - pred_counts @ true_counts
    denominator = np.sqrt((total**2 - pred_counts @ pred_counts) * (total**2 - true_counts @ true_counts))
    return float(numerator / denominator) if denominator else 0.0


METRICS: dict[str, Callable[..., float]] = {"accuracy": accuracy, "f1": f1, "mcc": matthews_corrcoef}
"""Metric name (as written to ``glue_results.json``) -> function of (predictions, labels)."""


def classification_scores(predictions, labels, num_labels: int) -> dict[str, float]:
    """Every metric that applies to a ``num_labels``-way task, by name.

    Accuracy always; F1 and Matthews correlation for binary tasks (F1 of label 1 is undefined
    for three-way MNLI). ``predictions`` and ``labels`` are int arrays of shape ``(n,)``.
    """
    scores = {"accuracy": accuracy(predictions, labels)}
    if num_labels == 2:
        scores["f1"] = f1(predictions, labels)
        scores["mcc"] = matthews_corrcoef(predictions, labels)
    return scores
