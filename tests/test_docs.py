"""The documentation cannot rot: its examples run, its commands parse, its tables match the code, and it builds.

- Every fenced ``python`` block of ``docs/pages`` is executed, page by page in document order, in a fresh
  temporary directory (blocks of one page share a namespace, as a reader would run them). A block preceded by
  ``<!-- no-test: REASON -->`` is skipped; the reason is required.
- Every ``ssl-mix`` command in a ``bash`` block is parsed by the real argument parser, so a documented flag that
  does not exist fails. A bash block preceded by ``<!-- test: run -->`` is also run (in-process, in the page's
  directory, after the page's earlier blocks) and must exit with status 0.
- The configuration reference of ``concepts.md`` is generated from the config docstrings
  (``docs/hooks/config_reference.py``, the text of ``ssl-mix train --help``); its preset table matches the code.
- The Quickstart's install commands are the README's.
- The site builds with MkDocs in strict mode with no warning in its log, and its API reference documents every public
  name that ``ssl_mix`` re-exports.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = DOCS / "pages"

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.S | re.M)
_MARKER = re.compile(r"<!--\s*(no-test|test)\s*:\s*(.*?)\s*-->\s*$")


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    marker: tuple[str, str] | None  # ("no-test", reason) or ("test", "run")

    @property
    def where(self) -> str:
        return f"docs/pages/{self.page}:{self.line}"


def _blocks(path: Path) -> list[Block]:
    text = path.read_text()
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        blocks.append(Block(path.relative_to(PAGES).as_posix(), text.count("\n", 0, match.start()) + 1,
                            match.group(1), match.group(2), (marker.group(1), marker.group(2)) if marker else None))
    return blocks


def _pages() -> list[Path]:
    return sorted(PAGES.rglob("*.md"))


def _pages_with_python() -> list[str]:
    return [p.relative_to(PAGES).as_posix() for p in _pages() if any(b.lang == "python" for b in _blocks(p))]


def _commands(code: str) -> list[str]:
    """Shell commands of a bash block, with backslash continuations joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    commands = []
    for line in joined.splitlines():
        line = line.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            commands.extend(part.strip() for part in line.split(" && ") if part.strip())
    return commands


def _ssl_mix_argv(command: str) -> list[str] | None:
    """The argv after ``ssl-mix`` (or ``python -m ssl_mix``) in a command line, with shell variables filled and
    output redirection dropped."""
    words = shlex.split(re.sub(r"\$\{?\w+\}?", "1", command))
    words = words[:next((i for i, w in enumerate(words) if w in (">", ">>", "|")), len(words))]  # redirections
    for i, word in enumerate(words):
        if word == "ssl-mix":
            return words[i + 1:]
        if word == "ssl_mix" and i > 0 and words[i - 1] == "-m":
            return words[i + 1:]
    return None


def test_markers_are_justified():
    for page in _pages():
        for block in _blocks(page):
            if block.marker is None:
                continue
            kind, reason = block.marker
            if kind == "no-test":
                assert block.lang == "python" and len(reason) > 10, (
                    f"{block.where}: a no-test marker needs a python block and a reason, e.g. "
                    "'<!-- no-test: needs the CIFAR-10 download -->'")
            else:
                assert kind == "test" and reason == "run" and block.lang == "bash", (
                    f"{block.where}: the only test marker is '<!-- test: run -->' before a bash block")
    skipped = [b for p in _pages() for b in _blocks(p) if b.marker and b.marker[0] == "no-test"]
    assert len(skipped) <= 3, f"keep no-test blocks few; found {[b.where for b in skipped]}"


@pytest.mark.parametrize("page", _pages_with_python())
def test_page_examples_run(page, tmp_path, monkeypatch):
    from ssl_mix.cli import main

    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__docs__"}
    for block in _blocks(PAGES / page):
        if block.marker and block.marker[0] == "no-test":
            continue
        if block.lang == "python":
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(block.code, block.where, "exec"), namespace)
        elif block.lang == "bash" and block.marker == ("test", "run"):
            for command in _commands(block.code):
                argv = _ssl_mix_argv(command)
                assert argv is not None, f"{block.where}: only ssl-mix commands can be run, got {command!r}"
                with contextlib.redirect_stdout(io.StringIO()):
                    status = main(argv)
                assert status == 0, f"{block.where}: {command!r} exited with status {status}"


def test_documented_commands_parse():
    from ssl_mix.cli import build_parser

    parser = build_parser()
    checked = 0
    for page in _pages():
        for block in _blocks(page):
            if block.lang not in ("bash", "sh", "shell", "console"):
                continue
            for command in _commands(block.code):
                argv = _ssl_mix_argv(command)
                if argv is None:
                    continue
                stderr = io.StringIO()
                try:
                    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                        parser.parse_args(argv)
                except SystemExit as exit_:
                    assert exit_.code == 0, f"{block.where}: {command!r} does not parse: {stderr.getvalue()}"
                checked += 1
    assert checked >= 10, "the pages should show the command line"


def test_documented_scripts_exist():
    for page in _pages():
        for block in _blocks(page):
            if block.lang != "bash":
                continue
            for command in _commands(block.code):
                for script in re.findall(r"\b((?:benchmarks|ssl_mix)/[\w/]+\.py)\b", command):
                    assert (ROOT / script).is_file(), f"{block.where}: {command!r} runs {script}, which does not exist"


def _table_after(text: str, header_start: str) -> list[list[str]]:
    """Rows (without header) of the Markdown table whose header line starts with ``header_start``."""
    lines = text.split("\n" + header_start, 1)[1].splitlines()[1:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        if not set(line) <= set("|- "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_label_budget_flag_tables_match_the_script():
    import label_budget  # benchmarks/ is on sys.path (tests/conftest.py)

    subparsers = next(a for a in label_budget.build_parser()._actions if a.choices and "run" in a.choices).choices
    text = (PAGES / "label-budget.md").read_text()
    for command in ("run", "summarize"):
        documented = set()
        for row in _table_after(text, f"| `{command}` flag |"):
            documented |= set(re.findall(r"`(--[\w-]+)`", row[0]))
        actual = {opt for action in subparsers[command]._actions for opt in action.option_strings
                  if opt.startswith("--") and opt != "--help"}
        assert documented == actual, (f"label-budget.md, `{command}` flags: documented but missing "
                                      f"{sorted(documented - actual)}, undocumented {sorted(actual - documented)}")


def _table_rows(text: str, heading: str) -> list[list[str]]:
    section = text.split(heading, 1)[1].split("\n#", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows[1:]  # without the header


def _config_hook():
    spec = importlib.util.spec_from_file_location("config_reference", DOCS / "hooks" / "config_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_reference_is_drawn_from_the_config_docstrings():
    from ssl_mix.config import config_flags, field_docs, format_value, section_type

    hook = _config_hook()
    text = (PAGES / "concepts.md").read_text()
    rendered = hook.on_page_markdown(text, None, None, None)
    assert "config-table" not in rendered, "concepts.md: a placeholder names no config section"
    for section in ("data", "model", "method", "optim", "train"):
        assert f"### `{section}`\n\n<!-- config-table: {section} -->\n" in text, f"concepts.md: no table for {section}"
        rows = {row[0].strip("`"): row for row in _table_rows(rendered, f"### `{section}`")}
        defaults, docs = section_type(section)(), field_docs(section, as_flags=True)
        flags = {flag: name for flag, (sec, name) in config_flags().items() if sec == section}
        assert set(rows) == set(flags), f"section {section}: table {sorted(rows)} != flags {sorted(flags)}"
        for flag, name in flags.items():
            assert rows[flag][1] == f"`{format_value(getattr(defaults, name))}`"
            assert rows[flag][2] == hook.markdown(docs[name]) and "``" not in rows[flag][2]


def test_preset_table_matches_the_code():
    from ssl_mix.config import PRESETS

    rows = {row[0].strip("`"): row for row in _table_rows((PAGES / "concepts.md").read_text(), "## Presets")}
    assert set(rows) == set(PRESETS), f"concepts.md presets {sorted(rows)} != code {sorted(PRESETS)}"
    for name, cfg in ((n, p.config) for n, p in PRESETS.items()):
        row = rows[name]
        assert row[3] == f"`{cfg.model.name}`", f"preset {name}: model {cfg.model.name}, documented {row[3]}"
        assert row[6] == f"{cfg.data.batch_size} + {cfg.data.unlabeled_batch_size}", f"preset {name}: batch"
        assert int(row[7].replace(",", "")) == cfg.train.steps, f"preset {name}: steps {cfg.train.steps}"
        labels = re.search(r"(\d+) labels", row[2])
        if cfg.data.num_labels is None:  # the user's own budget
            assert not labels and "`--num-labels`" in row[2], f"preset {name}: no label budget, documented {row[2]!r}"
        else:
            assert labels and int(labels.group(1)) == cfg.data.num_labels, f"preset {name}: labels"
        if cfg.method.name == "erm":
            assert row[4].startswith("ERM") and f"EMA {cfg.method.ema_decay:g}" in row[4], f"preset {name}: {row[4]!r}"
        elif cfg.method.name in ("fixmatch", "mixmatch"):  # their own settings, on their own page
            if not row[4].startswith("as `"):
                own = (f"τ {cfg.method.threshold:g}" if cfg.method.name == "fixmatch"
                       else f"T {cfg.method.temperature:g}, α {cfg.method.alpha:g}")
                assert own in row[4] and f"EMA {cfg.method.ema_decay:g}" in row[4], f"preset {name}: {row[4]!r}"
        elif "as `" not in row[4]:  # "as `other-preset` with α=..." rows repeat another row
            for text in (f"K={cfg.method.k}", f"α={cfg.method.alpha}", f"w {cfg.method.consistency_weight:g}",
                         f"EMA {cfg.method.ema_decay:g}"):
                assert text in row[4], f"preset {name}: {text!r} missing from {row[4]!r}"
        else:
            assert f"α={cfg.method.alpha}" in row[4], f"preset {name}: alpha {cfg.method.alpha}"
        inputs = "ZCA-whitened" if cfg.data.zca else "normalised"
        assert (row[8], row[9]) == (inputs, cfg.method.teacher_bn), f"preset {name}: inputs and teacher BN"
    demo_labels = PRESETS["demo"].config.data.num_labels
    assert f"**{demo_labels} labels**" in (PAGES / "quickstart.md").read_text(), "quickstart: the demo's label budget"


def test_quickstart_install_is_the_readme_install():
    def first_bash(text: str) -> str:
        return re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip()

    assert first_bash((PAGES / "quickstart.md").read_text()) == first_bash((ROOT / "README.md").read_text())


def _anchor_ids(site: Path) -> set[str]:
    ids: set[str] = set()
    for html in (site / "reference").rglob("*.html"):
        ids.update(re.findall(r'id="([\w.]+)"', html.read_text()))
    return ids


@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("mkdocs", "mkdocstrings", "mkdocstrings_handlers.python")),
    reason="the docs tools are not installed (pip install -e '.[dev]' installs mkdocs and mkdocstrings[python])",
)
def test_site_builds_strictly_and_documents_every_public_name(tmp_path):
    import ssl_mix

    site = tmp_path / "site"
    # No --quiet: it raises the log level above WARNING, so strict mode never sees the warnings it should count.
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(DOCS / "mkdocs.yml"), "-d", str(site)],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )
    log = f"{result.stdout}\n{result.stderr}"
    warnings = [line for line in log.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert result.returncode == 0 and not warnings, (
        f"mkdocs build --strict failed (status {result.returncode}); warnings:\n" + "\n".join(warnings)
        + f"\n\nfull log:\n{log}")
    assert (site / "index.html").is_file()

    ids = _anchor_ids(site)
    missing = []
    for name in ssl_mix.__all__:
        obj = getattr(ssl_mix, name)
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if not (isinstance(module, str) and module.startswith("ssl_mix") and isinstance(qualname, str)):
            continue  # constants and type aliases: documented with their module, not addressable by object
        if f"{module}.{qualname}" not in ids:
            missing.append(f"{name} ({module}.{qualname})")
    assert not missing, f"public names without an entry in the API reference: {missing}"
