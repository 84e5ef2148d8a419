"""The research-code snippets of the README and of docs/sharding.md run as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _snippet(heading: str, page: Path = README) -> str:
    text = page.read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_train_step_snippet_runs(capsys):
    code = _snippet("## Use the train step in your code")
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    state = namespace["state"]
    assert int(state.step) == 3
    step, loss = capsys.readouterr().out.split()
    assert step == "3" and 0.0 < float(loss) < 5.0


def test_scaling_snippet_runs_on_four_devices(tmp_path):
    """docs/sharding.md's "One host, many devices" snippet, as written, on 4 fake CPU
    devices (the device count must be set before jax starts, hence a child process)."""
    script = tmp_path / "snippet.py"
    script.write_text(_snippet("### One host, many devices", ROOT / "docs" / "sharding.md"))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                         text=True, timeout=300, cwd=README.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    devices, accuracy = out.stdout.split()[-2:]
    assert devices == "4" and float(accuracy) > 0.8
