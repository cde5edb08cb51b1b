"""Reading files that come from other people: regular files only, size known before a byte is read.

:func:`open_regular` opens without blocking (a FIFO or a device never blocks the caller), checks with ``fstat``
on the open descriptor (no race between the check and the read) that the file is a regular, non-empty file of at
most ``max_bytes`` bytes, and only then hands back a blocking binary file object. Every refusal is one exception
line built by the caller's error class and naming the file.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO, Callable, Union

PathLike = Union[str, Path]
ErrorFactory = Callable[[str], Exception]


def file_kind(mode: int) -> str:
    """A few words for a non-regular ``st_mode``: 'a directory', 'a FIFO', 'a device', 'a socket'."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: PathLike, max_bytes: int, error: ErrorFactory = OSError, what: str = "a data file",
                 allow_empty: bool = False) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file of 1..``max_bytes`` bytes, else raise ``error(msg)``.

    ``what`` names what the file should be in the messages (``'a CIFAR batch'``). The returned file object owns the
    descriptor (use it in a ``with``); its ``os.fstat(f.fileno()).st_size`` is the size that was checked.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a directory, expected {what}") from None
    except OSError as exc:
        raise error(f"{path}: cannot be opened ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path}: is {file_kind(st.st_mode)}, expected {what}")
        if st.st_size == 0 and not allow_empty:
            raise error(f"{path}: is empty, expected {what}")
        if st.st_size > max_bytes:
            raise error(f"{path}: is {st.st_size} bytes, more than the {max_bytes} {what} may have")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: PathLike, max_bytes: int, error: ErrorFactory = OSError, what: str = "a data file") -> bytes:
    """The whole content of ``path`` after the :func:`open_regular` checks (at most ``max_bytes`` bytes)."""
    with open_regular(path, max_bytes, error, what) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:          # grew between fstat and read
        raise error(f"{Path(path)}: grew past the {max_bytes} bytes {what} may have while it was read")
    return data
