"""Evaluation metrics on host arrays: accuracy, confusion matrix, the sklearn report, LM units.

Per-step metrics live in the task losses as sums; these are the end-of-run summaries.
"""

import math

import numpy as np


def _sklearn_metrics():
    """sklearn is imported on first use: at import it would cost every jaxdl process 1 s."""
    from sklearn import metrics

    return metrics


def accuracy(labels, preds) -> float:
    labels, preds = np.asarray(labels), np.asarray(preds)
    return float(np.mean(labels == preds)) if labels.size else 0.0


def confusion_matrix(labels, preds, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted (sklearn's convention, as the reference prints)."""
    return _sklearn_metrics().confusion_matrix(labels, preds, labels=list(range(num_classes)))


def classification_report(labels, preds, num_classes: int, class_names=None, *, as_dict=False):
    """Precision / recall / F1 per class, as the reference prints it (zero_division=0)."""
    names = None if class_names is None else [str(c) for c in class_names]
    return _sklearn_metrics().classification_report(
        labels, preds, labels=list(range(num_classes)), target_names=names,
        zero_division=0, output_dict=as_dict, digits=4 if as_dict else 2,
    )


def perplexity(nats_per_token: float) -> float:
    return float(math.exp(min(nats_per_token, 700.0)))


def bits_per_char(nats_per_char: float) -> float:
    return float(nats_per_char / math.log(2.0))
