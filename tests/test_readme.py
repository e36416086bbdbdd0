"""The README's commands are what CI runs, and its Python example works."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _first_bash_block() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_the_readme_setup_and_test_command_verbatim():
    commands = _first_bash_block()
    assert commands[-1] == "python -m pytest -q", "the README's first block must end with the test command"
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    setup = [c for c in commands if c not in ("ssl-mix demo", commands[-1])]
    for command in setup[0].split(" && ") + setup[1:]:
        assert command in ci_lines, f"README set-up command {command!r} is not in .ci/run"
    assert ci_lines[-1] == commands[-1], ".ci/run must end with the README's test command"
    assert ci_lines.index("ruff check .") < len(ci_lines) - 1, ".ci/run lints before it tests"


def test_readme_torch_pin_matches_the_disk_copy():
    assert "pip install torch==2.14.1 torchvision==0.29.1" in _first_bash_block()


def test_readme_python_example_runs(tmp_path, monkeypatch):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    code = code.replace('"steps": 100', '"steps": 20, "progress": False')
    exec(compile(code, "README.md", "exec"), {})
    assert (tmp_path / "runs/api/last.pt").exists()
