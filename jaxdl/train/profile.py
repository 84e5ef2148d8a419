"""`--config.profile_steps=START:STOP`: a `jax.profiler` trace of those train steps.

The trace goes to `<workdir>/profile/plugins/profile/<time>/<host>.xplane.pb`, which
TensorBoard's profile plugin (`pip install tensorboard-plugin-profile`, then
`tensorboard --logdir <workdir>`) and xprof open. Steps count as the state's step does:
START:STOP traces the updates from step START to step STOP (STOP - START steps), each
under a `StepTraceAnnotation` so the viewer splits them. Start after the first steps,
so compilation stays out of the trace (e.g. 10:15).
"""

import contextlib
from pathlib import Path

import jax

from jaxdl.errors import UserError


def parse_steps(text: str) -> tuple[int, int] | None:
    """'START:STOP' -> (START, STOP); '' -> None."""
    if not text:
        return None
    try:
        start, stop = (int(p) for p in text.split(":"))
    except ValueError:
        start = stop = -1
    if not 0 <= start < stop:
        raise UserError(f"config key 'profile_steps' is {text!r}; allowed: 'START:STOP' with "
                        "0 <= START < STOP (e.g. --config.profile_steps=10:15)")
    return start, stop


class StepProfiler:
    """Starts the trace before step `start`, stops it once step `stop` has finished."""

    def __init__(self, logdir: Path, steps: tuple[int, int] | None):
        self.logdir, self.steps, self.active = Path(logdir), steps, False

    def step(self, step: int):
        """A context for the update from `step`: the annotation while tracing."""
        if self.steps is None:
            return contextlib.nullcontext()
        if step == self.steps[0] and not self.active:
            self.logdir.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.logdir))
            self.active = True
        if self.active:
            return jax.profiler.StepTraceAnnotation("train", step_num=step)
        return contextlib.nullcontext()

    def done(self, step: int, outputs) -> None:
        """After the update that reached `step`: stop once `stop` is reached."""
        if self.active and step >= self.steps[1]:
            self.stop(outputs)

    def stop(self, outputs=None) -> None:
        if self.active:
            if outputs is not None:
                jax.block_until_ready(outputs)  # the traced steps finish inside the trace
            jax.profiler.stop_trace()
            self.active = False
