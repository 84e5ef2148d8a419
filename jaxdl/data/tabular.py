"""scikit-learn's shipped tabular datasets (no download), split and standardised.

    diabetes       regression   10 standardised features -> 1 standardised target
    breast_cancer  binary       30 standardised features -> 1 label
    digits         10 classes   8x8 pixels / 16 -> 10 labels

Each is split once (seeded, stratified for classification); statistics come from the
training split only.
"""

import numpy as np

from jaxdl.errors import UserError

PROBLEMS = ("diabetes", "breast_cancer", "digits")
KINDS = {"diabetes": "regression", "breast_cancer": "binary", "digits": "multiclass"}


def _standardise(x_tr, x_te):
    mean, std = x_tr.mean(0), x_tr.std(0)
    return (x_tr - mean) / std, (x_te - mean) / std


def load_problem(name: str, seed: int = 0, test_fraction: float = 0.2) -> dict:
    """Train/test arrays {'x', 'y'} for one problem, with its `kind` and output width."""
    if name not in PROBLEMS:
        raise UserError(f"unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"test_fraction must be in (0, 1), got {test_fraction}; e.g. 0.2")
    from sklearn import datasets  # here, not at import: it costs every jaxdl process 1 s
    from sklearn.model_selection import train_test_split

    kind = KINDS[name]
    if name == "diabetes":
        data = datasets.load_diabetes()
        x, y = data.data.astype(np.float32), data.target.astype(np.float32)
        x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction,
                                                  random_state=seed)
        x_tr, x_te = _standardise(x_tr, x_te)
        y_mean, y_std = float(y_tr.mean()), float(y_tr.std())
        y_tr, y_te = (y_tr - y_mean) / y_std, (y_te - y_mean) / y_std
        return dict(kind=kind, n_out=1, y_mean=y_mean, y_std=y_std,
                    train={"x": x_tr, "y": y_tr}, test={"x": x_te, "y": y_te})
    if name == "breast_cancer":
        data = datasets.load_breast_cancer()
        x, y = data.data.astype(np.float32), data.target.astype(np.int32)
    else:
        data = datasets.load_digits()
        x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction,
                                              random_state=seed, stratify=y)
    if name == "breast_cancer":
        x_tr, x_te = _standardise(x_tr, x_te)
    return dict(kind=kind, n_out=1 if kind == "binary" else 10,
                train={"x": x_tr, "y": y_tr}, test={"x": x_te, "y": y_te})
