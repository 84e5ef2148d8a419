"""The end-of-run classification report, printed as the reference prints it.

Test loss, test accuracy, scikit-learn's precision/recall/F1 report and the
confusion matrix; the same numbers go to a confusion-matrix PNG and a dict for
`results.json`.
"""

from pathlib import Path

import jax
import numpy as np
import optax

from jaxdl import metrics, plots
from jaxdl.train.loop import predict


def logits_function(model, preprocess=None, input_key: str = "image"):
    """`(state, batch) -> logits` in eval mode (no dropout, no augmentation); jit or shard it."""

    def logits_fn(state, batch):
        if preprocess is not None:
            batch = preprocess(batch, state.rng, False)
        variables = {"params": state.params}
        if state.batch_stats is not None:
            variables["batch_stats"] = state.batch_stats
        return model.apply(variables, batch[input_key], train=False)

    return logits_fn


def make_logits_fn(model, preprocess=None, input_key: str = "image"):
    """`logits_function`, jitted for one device."""
    return jax.jit(logits_function(model, preprocess, input_key))


def labels_of(state, batch):
    """`(state, batch) -> labels`: to compile on a mesh beside the logits function."""
    return batch["label"]


def classification_report(logits_fn, state, loader, *, num_classes: int, class_names=None,
                          workdir: Path | None = None, verbose: bool = True,
                          put_batch=lambda b: b, labels_fn=None) -> dict:
    """Evaluate on every example of `loader`; print and return the reference's test summary.

    On a mesh whose processes each load their slice of every batch, pass `put_batch` and a
    compiled `labels_fn` (`labels_of`), so labels and logits come back in the same order."""
    logits = predict(logits_fn, state, loader, put_batch=put_batch)
    if labels_fn is None:  # host batches: the labels are the loader's own
        labels = np.concatenate([b["label"][b["mask"] > 0] for b in loader.epoch(0)])
    else:  # through the mesh, in the order of the (global) logits
        labels = predict(labels_fn, state, loader, put_batch=put_batch)
    preds = logits.argmax(-1)
    test_loss = float(np.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels)))
    test_acc = metrics.accuracy(labels, preds)
    cm = metrics.confusion_matrix(labels, preds, num_classes)
    if verbose:
        print(f"Test loss: {test_loss:.4f}")
        print(f"Test accuracy: {100 * test_acc:.2f}%\n")
        print("Classification report (precision / recall / F1):")
        print(metrics.classification_report(labels, preds, num_classes, class_names))
        print("Confusion matrix (rows = true, cols = pred):")
        print(cm)
    if workdir is not None:
        plots.plot_confusion_matrix(cm, Path(workdir) / "confusion_matrix.png", class_names)
    report = metrics.classification_report(labels, preds, num_classes, class_names, as_dict=True)
    return {
        "test_loss": test_loss,
        "test_accuracy": test_acc,
        "num_test": int(labels.size),
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "confusion_matrix": cm.tolist(),
    }
