"""Writing a file atomically: readers and a crash see the previous file or the new one, never a torn one.

Every file the package writes (checkpoints, exports, run records, split files, cache entries, predictions) goes
through here, so there is one temporary-file scheme and one set of guarantees:

- the data goes to a temporary file ``.NAME.<random>.tmp`` in the target's folder (the same file system, so the
  rename cannot turn into a copy), is flushed to disk (``fsync``), and is then renamed over the target
  (``os.replace``, atomic on POSIX and Windows); the folder is flushed too where the OS allows, so the rename itself
  survives a power cut;
- the file gets the permissions a plain ``open(path, "w")`` would give a new file, ``0o666`` less the umask
  (``0o644`` under the usual umask ``0o022``): the temporary file is created with that mode, so the kernel applies
  the umask and no process-wide state is read or changed. (:func:`tempfile.mkstemp` would make it ``0o600``, so a
  model exported for a colleague on a shared machine could not be opened.)
- a failure or an interruption while writing removes the temporary file and leaves the previous target untouched.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["write_atomic", "atomic_path", "temporary_name"]

_FILE_MODE = 0o666  # less the umask, applied by the kernel when the file is created: what open(path, "w") gives
_ATTEMPTS = 100


def temporary_name(path: str | Path) -> str:
    """The name pattern of the temporary file a write of ``path`` goes through: ``.NAME.*.tmp`` (a glob).

    Args:
        path: the target file.

    Returns:
        A glob pattern, relative to the target's folder, that matches any temporary file left by a killed write.
    """
    return f".{Path(path).name}.*.tmp"


def _create_temporary(path: Path) -> Path:
    """Create an empty, new temporary file beside ``path`` with mode ``0o666 & ~umask``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, _FILE_MODE)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"could not create a temporary file for {str(path)!r}: {_ATTEMPTS} names matching "
                          f"{temporary_name(path)!r} were taken; remove the stale ones from {str(path.parent)!r}")


def _fsync_file(path: Path) -> None:
    # A descriptor opened for writing: Windows' fsync (_commit) refuses read-only ones.
    fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":  # Windows cannot open a folder as a file; NTFS journals the rename itself
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (network, FUSE) refuse to fsync a folder; the file itself is on disk
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write to, renamed over ``path`` when the block ends without error.

    For writers that take a file name rather than a file object (ONNX and TorchScript export, safetensors) and for
    files written in a stream (predictions row by row). The file exists, empty, when the block starts; open it
    (any mode) or hand its name to the writer.

    Args:
        path: the target file; its folder must exist.

    Returns:
        A context manager yielding the temporary file's path. On normal exit the file is flushed to disk and renamed
        over ``path``; on an exception (``KeyboardInterrupt`` included) it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = _create_temporary(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_atomic(path: str | Path, content: str | bytes | Callable[[BinaryIO], Any], *,
                 encoding: str = "utf-8") -> Path:
    """Write ``content`` to ``path`` atomically, flushed to disk, with the umask's permissions.

    Args:
        path: the target file; its folder must exist.
        content: text (encoded with ``encoding``, newlines written as given, ``\\n`` on every OS), bytes, or a
            function that writes to a binary file object (``lambda f: torch.save(state, f)``, ``np.save``).
        encoding: the encoding of text content.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        TypeError: ``content`` is neither text, bytes nor callable.
    """
    if isinstance(content, str):
        content = content.encode(encoding)
    if not isinstance(content, (bytes, bytearray, memoryview)) and not callable(content):
        raise TypeError(f"write_atomic writes str, bytes or a function of a binary file object, got "
                        f"{type(content).__name__}")
    path = Path(path)
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        if callable(content):
            content(f)
        else:
            f.write(content)
    return path
