"""Atomic file writes: write a fresh temporary file next to the target, then rename it over the target.

A crash, a full disk or Ctrl-C never leaves a half-written target, and the temporary file is removed on any
failure. Temporary names are ``.<name>.<random>.tmp`` in the target's folder (same file system, so the rename
is atomic), created with ``O_EXCL`` so an existing file or a planted symlink of that name is never written
through; a symlink at the target itself is replaced by the rename, never followed.

The same module holds the rest of the rule about which paths a command touches: :func:`append_line` (appends
with ``O_NOFOLLOW``), :func:`check_input` (an input that is a link out of its folder or not a regular file is
refused before ``open()``) and :func:`check_outputs` (an output never replaces an input of the same command).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Tuple, Union
from ilif_lava.errors import IlifLavaError

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


def save_npy(path: PathLike, array: Any) -> Path:
    """``np.save(array, allow_pickle=False)`` to ``path`` atomically (a fresh exclusive temporary file, renamed)."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def append_line(path: PathLike, line: str) -> None:
    """Append ``line`` + newline (UTF-8) to the regular file ``path`` (created if absent), never through a symlink:
    ``O_NOFOLLOW`` refuses a link planted at ``path`` and ``fstat`` a FIFO or device (``OSError`` naming it)."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "is a symbolic link; refusing to append through it", str(path)) from None
        if exc.errno == errno.ENXIO:      # a FIFO without a reader
            raise OSError(errno.EINVAL, "is not a regular file; refusing to append to it", str(path)) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "is not a regular file; refusing to append to it", str(path))
        os.set_blocking(fd, True)
        os.write(fd, (line.rstrip("\n") + "\n").encode("utf-8"))
    finally:
        os.close(fd)


class UnsafePathError(IlifLavaError, ValueError):
    """An input or output path a command must not use (a link out of its folder, a FIFO, an input that an output
    would replace); the message is one line naming the path and the flag or role."""


def check_input(path: PathLike, folder: Optional[PathLike] = None, what: str = "input") -> Path:
    """Refuse, before anything opens it, an input ``path`` that is a symbolic link resolving outside ``folder``
    (default: the folder holding ``path``) or that exists and is not a regular file (a FIFO would block the reader,
    a device never end). A missing path passes (the reader reports it). Returns ``path``."""
    path = Path(path)
    try:
        st = os.lstat(path)
    except OSError:
        return path
    if stat.S_ISLNK(st.st_mode):
        base = Path(os.path.realpath(folder if folder is not None else path.parent))
        target = Path(os.path.realpath(path))
        if base != target and base not in target.parents:
            raise UnsafePathError(f"{path}: {what} is a symbolic link to {target}, outside {base}; refusing it")
        try:
            st = os.stat(path)
        except OSError:
            return path
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        from ilif_lava.safe_read import file_kind
        raise UnsafePathError(f"{path}: {what} is {file_kind(st.st_mode)}, expected a regular file")
    return path


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name one file (one inode, or one resolved path when either does not exist)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(outputs: Sequence[PathLike], inputs: Sequence[Tuple[str, PathLike]]) -> None:
    """Refuse (one line naming both) when an output of a command would replace one of its ``inputs``
    (``(flag or role, path)`` pairs): e.g. ``nir import DIR/network.net --run-dir DIR``."""
    for out in outputs:
        for flag, inp in inputs:
            if same_file(out, inp):
                raise UnsafePathError(f"{inp}: {flag} is also an output of this command ({out}) and would be "
                                      f"replaced; use another output folder")
