"""Per-step scalars to `<workdir>/metrics.jsonl` and TensorBoard event files, and images and
text to the event files: the run's log, readable by `tensorboard --logdir <workdir>`.

Event files are written by tensorboardX (no TensorFlow needed). A resumed run drops what
the interrupted one logged after the step it resumes from: rows of `metrics.jsonl` past that
step are cut, and the event writer's `purge_step` tells TensorBoard to discard its later
events, so the curves of a resumed run are those of an uninterrupted one. Only process 0
writes; on the others every method is a no-op.
"""

import json
import numbers
from pathlib import Path

import numpy as np

METRICS_FILE = "metrics.jsonl"


def _is_scalar(value) -> bool:
    return isinstance(value, numbers.Number | np.number) and not isinstance(value, bool)


def read_rows(workdir: str | Path) -> list[dict]:
    """Every row of `<workdir>/metrics.jsonl` (none if it does not exist)."""
    path = Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill mid-write
            continue
    return rows


class MetricWriter:
    """`scalars(step, {...})`, `images(step, {...})`, `texts(step, {...})`, `close()`."""

    def __init__(self, workdir: str | Path, *, resume_step: int = 0, enabled: bool = True):
        self.workdir = Path(workdir)
        self.enabled = enabled
        self._tb = None
        if not enabled:
            return
        from tensorboardX import SummaryWriter  # imported only where a run logs

        self.workdir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_rows(self.workdir) if r.get("step", 0) <= resume_step]
        tmp = self.workdir / f".{METRICS_FILE}.tmp"  # atomic: a kill keeps the old rows
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(self.workdir / METRICS_FILE)
        self._jsonl = open(self.workdir / METRICS_FILE, "a")  # noqa: SIM115 (closed in close)
        self._tb = SummaryWriter(str(self.workdir), purge_step=resume_step + 1 if resume_step
                                 else None, flush_secs=30)

    def scalars(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        row = {"step": int(step)}
        for name, value in values.items():
            if _is_scalar(value):
                row[name] = float(value)
                self._tb.add_scalar(name, float(value), int(step))
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()

    def images(self, step: int, images: dict) -> None:
        """name -> (H, W, C) or (H, W) array, float in [0, 1] or uint8."""
        if not self.enabled:
            return
        for name, image in images.items():
            a = np.asarray(image)
            a = a[..., None] if a.ndim == 2 else a
            if a.dtype != np.uint8:
                a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)
            self._tb.add_image(name, a, int(step), dataformats="HWC")

    def texts(self, step: int, texts: dict) -> None:
        if not self.enabled:
            return
        for name, text in texts.items():
            self._tb.add_text(name, str(text), int(step))

    def flush(self) -> None:
        if self.enabled:
            self._tb.flush()

    def close(self) -> None:
        if self.enabled and self._tb is not None:
            self._tb.close()
            self._jsonl.close()
            self._tb = None
            self.enabled = False


class NullWriter(MetricWriter):
    """Writes nothing: for fit called without a workdir log (tests, the judge classifier)."""

    def __init__(self):
        super().__init__(".", enabled=False)
