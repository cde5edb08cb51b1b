"""Atomic file writes: write a fresh temporary file next to the target, then rename it over the target.

A crash, a full disk or Ctrl-C never leaves a half-written target, and the temporary file is removed on any
failure. Temporary names are ``.<name>.<random>.tmp`` in the target's folder (same file system, so the rename
is atomic), created with ``O_EXCL`` so an existing file or a planted symlink of that name is never written
through.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, Path]


def write_error(path: PathLike, exc: BaseException) -> OSError:
    """An ``OSError`` naming ``path`` for a failed write reported as something else (h5py and torch raise
    ``RuntimeError`` on a full disk); says 'No space left on device' when the folder's file system is full."""
    path = Path(path)
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    code = errno.EIO
    try:
        st = os.statvfs(path.parent)
        if st.f_bavail * st.f_frsize < 64 * 1024:
            code = errno.ENOSPC
    except OSError:
        pass
    if code == errno.ENOSPC or "No space left" in detail:
        return OSError(errno.ENOSPC, f"No space left on device (cannot write it: {detail})", str(path))
    return OSError(code, f"cannot write it ({detail})", str(path))


def _fresh_temp(path: Path) -> Path:
    """Create (O_EXCL, mode 0666 & ~umask) and return an empty temporary file next to ``path``."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"{path}: could not create a temporary file next to it")


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on normal exit it is renamed to ``path``, on any exception removed."""
    path = Path(path)
    tmp = _fresh_temp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_json(path: PathLike, obj: Any, **kw: Any) -> Path:
    """``json.dumps(obj, **kw)`` written to ``path`` atomically."""
    return write_text(path, json.dumps(obj, **kw))
