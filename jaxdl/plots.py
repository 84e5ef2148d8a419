"""Matplotlib figures written into a run's workdir (Agg backend: no display needed)."""

from pathlib import Path

import numpy as np


class _Pyplot:
    """matplotlib.pyplot on first use, on the Agg backend (at import it would cost every jaxdl
    process half a second, plots or not)."""

    def __getattr__(self, name):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot

        return getattr(matplotlib.pyplot, name)


plt = _Pyplot()


def plot_curves(history: list[dict], keys, path: str | Path, *, xlabel: str = "epoch",
                title: str | None = None) -> Path:
    """One panel per metric key, x = the history rows' `xlabel` field."""
    keys = [k for k in keys if any(k in row for row in history)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(4.5 * max(len(keys), 1), 3.4))
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, keys, strict=False):
        rows = [r for r in history if key in r]
        ax.plot([r.get(xlabel, i + 1) for i, r in enumerate(rows)], [r[key] for r in rows],
                marker="o")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_series(series: dict[str, tuple], path: str | Path, *, xlabel: str, ylabel: str,
                title: str | None = None, logy: bool = False) -> Path:
    """Several named (x, y) lines on one axis, e.g. activations' training curves."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_confusion_matrix(cm: np.ndarray, path: str | Path, class_names=None) -> Path:
    n = cm.shape[0]
    names = [str(c) for c in (class_names or range(n))]
    fig, ax = plt.subplots(figsize=(0.55 * n + 2.5, 0.55 * n + 2))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    limit = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                    color="white" if cm[i, j] > limit else "black")
    return _save(fig, path)


def plot_image_grid(images: np.ndarray, path: str | Path, *, nrow: int,
                    row_labels=None) -> Path:
    """images (N, H, W, C) in [0, 1], laid out `nrow` rows."""
    images = np.clip(np.asarray(images), 0, 1)
    n, h, w, c = images.shape
    ncol = int(np.ceil(n / nrow))
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 0.9 + (1.8 if row_labels else 0),
                                                  nrow * 0.9), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k, ..., 0] if c == 1 else images[k], cmap="gray", vmin=0, vmax=1)
    if row_labels:
        for r, label in enumerate(row_labels):
            axes[r, 0].text(-0.1 * w, h / 2, label, ha="right", va="center", fontsize=7)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_attention(weights: np.ndarray, path: str | Path, *, keys, queries,
                   title: str | None = None) -> Path:
    """An attention map: rows are queries (e.g. output characters), columns keys (inputs)."""
    weights = np.asarray(weights)
    fig, ax = plt.subplots(figsize=(0.28 * len(keys) + 1.8, 0.28 * len(queries) + 1.4))
    ax.imshow(weights[: len(queries), : len(keys)], cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(keys)), [repr(k)[1:-1] or " " for k in keys], fontsize=8)
    ax.set_yticks(range(len(queries)), list(queries), fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def read_png(path: str | Path) -> np.ndarray:
    """A saved figure as an (H, W, 3) uint8 array (for TensorBoard's image tab)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
