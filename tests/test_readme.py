"""The README's Python tour runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_tour_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)  # the tour writes a model file
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    scores = [float(line) for line in capsys.readouterr().out.split("\n") if re.fullmatch(r"0\.\d+", line)]
    assert len(scores) == 2 and min(scores) > 0.85
