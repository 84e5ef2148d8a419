"""The README's research-code snippet runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet(heading: str) -> str:
    text = README.read_text()
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
