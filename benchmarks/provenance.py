"""Provenance for benchmark result files: which code, on which hardware, with which software.

Every results file under ``benchmarks/results/`` records the command, git commit, hardware and torch version
(airbench-style headers), so a number can be traced back and measured again.

Records hold no folder of the machine they ran on (see "Paths in records" in ``benchmarks/REFERENCE.md``): the
command is ``python benchmarks/SCRIPT.py ...``; a path inside the repository is written relative to its root, and
a path outside it (a data root, a run folder, a scratch folder) as a placeholder named after its flag or field,
``--data-root DATA_ROOT``, as a usage line writes it. The data itself is named by what it is (``dataset``,
``data_note``), not by where it lay.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Hashable
from pathlib import Path

import torch

from ssl_mix.atomic import write_atomic
from ssl_mix.trainer import resolve_device

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_features() -> list[str]:
    """The /proc/cpuinfo flags that decide which CPU kernels run (vector width, bfloat16 and AMX units)."""
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return [f for f in wanted if f in line.split(":", 1)[1].split()]
    except OSError:
        pass
    return []


@functools.cache
def git_commit() -> str | None:
    """HEAD of the checkout the benchmark runs from, with ``+dirty`` when the tree has uncommitted changes.

    Read once per process, at the first call: a long benchmark calls it when it starts, so that its records name
    the code it loaded, not a commit made while it ran.
    """
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        return out.stdout.strip() + ("+dirty" if dirty.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return None  # not a git checkout, or no commit yet


def _is_absolute(value: str) -> bool:
    return value.startswith("~") or Path(value).is_absolute()


def placeholder(name: str) -> str:
    """The placeholder of a path outside the repository: the flag or field name in capitals (``DATA_ROOT``).

    Args:
        name: a flag (``--data-root``) or a field name (``data_root``).
    """
    return name.lstrip("-").replace("-", "_").upper() or "PATH"


def portable_path(path: str | Path | None, name: str) -> str | None:
    """A path as a record holds it: relative paths as given, absolute ones inside the repository relative to its
    root, and any other absolute path as :func:`placeholder` of ``name`` (None stays None).

    Args:
        path: the path (a data root, a run folder, an output file).
        name: the flag or field it was given as, for the placeholder.
    """
    if path is None:
        return None
    if not _is_absolute(str(path)):
        return str(path)
    try:
        return Path(path).expanduser().resolve().relative_to(REPO).as_posix()
    except ValueError:
        return placeholder(name)


def portable_args(args: dict) -> dict:
    """A script's arguments (``vars(args)``) for a record: every absolute path through :func:`portable_path`."""
    return {k: portable_path(v, k) if isinstance(v, (str, Path)) and _is_absolute(str(v)) else v
            for k, v in args.items()}


def command_line(script: str | Path, argv: list[str] | None = None) -> str:
    """The command a record names: ``python benchmarks/SCRIPT.py ARGS``, shell-quoted, with every absolute path
    argument through :func:`portable_path` (placeholders named after the flag before it; ``PATH`` for a
    positional one).

    Args:
        script: the benchmark's ``__file__``.
        argv: the arguments ``main`` was given (None: ``sys.argv[1:]``).
    """
    args = sys.argv[1:] if argv is None else list(argv)
    words = ["python", portable_path(Path(script).resolve(), "script")]
    previous = ""
    for arg in args:
        flag, equals, value = arg.partition("=")
        if arg.startswith("--") and equals:
            words.append(f"{flag}={portable_path(value, flag) if _is_absolute(value) else value}")
        elif _is_absolute(arg):
            words.append(portable_path(arg, previous if previous.startswith("-") else "PATH"))
        else:
            words.append(arg)
        previous = arg
    return shlex.join(words)


def hardware(device: torch.device | str = "cpu") -> dict:
    """CPU model and features, core and thread counts, and the GPU name when ``device`` is CUDA (``auto`` is
    resolved as the trainer resolves it)."""
    device = resolve_device(device) if isinstance(device, str) else device
    info = {"cpu": cpu_model(), "cpu_features": cpu_features(), "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def hardware_summary(device: torch.device | str = "cpu") -> str:
    """One line: the GPU name on CUDA, else ``CPU model (N threads)``."""
    info = hardware(device)
    return info.get("gpu") or f"{info['cpu']} ({info['torch_threads']} threads)"


def record_header(script: str, argv: list[str] | None, device: torch.device | str = "cpu") -> dict:
    """The provenance fields a result record starts with: command, git commit, hardware, versions and date.

    Args:
        script: the benchmark's ``__file__``.
        argv: the arguments ``main`` was given (None: the command line).
        device: the device the benchmark measured.
    """
    from PIL import __version__ as pillow_version

    return {"command": command_line(script, argv), "git_commit": git_commit(), "hardware": hardware(device),
            "torch_version": torch.__version__, "pillow_version": pillow_version,
            "python_version": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_record(path: str | Path, record: dict) -> Path:
    """Write a result record as indented JSON (creating its folder), atomically, and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def read_records(path: str | Path, key: Callable[[dict], Hashable] | None = None) -> list[dict]:
    """The records of a benchmark's JSON-lines file, in file order. A line cut short by a kill mid-write is ignored;
    with ``key`` (a record's grid cell), only the first record of each cell is kept (grids run in parallel may
    write a cell twice)."""
    path = Path(path)
    if not path.exists():
        return []
    records: dict[Hashable, dict] = {}
    for i, line in enumerate(path.read_text().splitlines()):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        records.setdefault(i if key is None else key(record), record)
    return list(records.values())
