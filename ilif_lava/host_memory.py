"""Host memory reuse for large tensors: glibc's malloc told to keep freed memory in the process.

By default glibc serves every allocation above its mmap threshold (dynamic, at most 32 MiB on 64-bit Linux) with a
fresh ``mmap`` and returns it to the system on ``free``. A training step of an SNN allocates and frees the same
large activation tensors ([N, C, H, W, T], tens of MiB each) every step, so every step maps new pages and takes one
page fault per 4 KiB page when it first writes them. On this project's VM the faults cost more than the arithmetic:
the conv net of ``benchmarks/bench_networks.py`` (spikes [32, 2, 34, 34, 32]) trains 2.2x (ILIF) and 2.4x (LIF)
faster with freed memory kept, for 18 % more peak resident memory (2026-12-05; README, "Host memory").

:func:`keep_freed_memory` raises glibc's mmap and trim thresholds (``mallopt``), so large blocks come from the
heap and freed ones are reused by the next step instead of being unmapped. The price is resident memory: the heap
keeps its high-water mark and its holes (bounded; 1.8-2.0x the default's resident memory in a synthetic worst case
of varying batch sizes, README "Host memory"). It changes the whole process, so the
library never calls it on import: ``ilif-lava`` commands and ``make bench`` call :func:`apply_from_env` at start,
and a Python user can call :func:`keep_freed_memory` once in their own training script. ``ILIF_LAVA_KEEP_FREED_MEMORY=0``
leaves glibc's defaults (the process then returns freed memory to the system at once). Elsewhere than glibc
(macOS, musl) nothing changes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from typing import Mapping, Optional

ENV = "ILIF_LAVA_KEEP_FREED_MEMORY"
# glibc's mallopt parameters (malloc.h) and the values set: blocks below 1 GiB come from the heap; the heap's top
# is given back to the system only when more than 2 GiB - 1 of it is free.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1 << 30
TRIM_THRESHOLD_BYTES = (1 << 31) - 1

_applied = {"done": False}


class _MallInfo2(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33): byte counts of the heap and of mmap-ed blocks."""
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (it has ``mallopt`` and ``gnu_get_libc_version``), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - attribute lookup is the glibc check
        libc.mallopt
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def keep_freed_memory() -> bool:
    """Keep freed memory in this process (glibc only; idempotent). True when glibc accepted both settings."""
    libc = _glibc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
    _applied["done"] = _applied["done"] or ok
    return ok


def requested(env: Optional[Mapping[str, str]] = None) -> bool:
    """Whether ``ILIF_LAVA_KEEP_FREED_MEMORY`` asks for it: unset, empty or 1 (default) yes, 0 no; any other value
    is refused with a one-line :class:`ValueError` naming the variable."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    if raw in ("", "1"):
        return True
    if raw == "0":
        return False
    raise ValueError(f"{ENV}={raw!r}: use 1 (keep freed memory, the default) or 0 (glibc's defaults)")


def apply_from_env(env: Optional[Mapping[str, str]] = None) -> bool:
    """:func:`keep_freed_memory` unless ``ILIF_LAVA_KEEP_FREED_MEMORY=0``; True when the settings are in force."""
    return keep_freed_memory() if requested(env) else False


def applied() -> bool:
    """Whether this process has kept freed memory since :func:`keep_freed_memory` first succeeded."""
    return _applied["done"]


def mapped_bytes() -> Optional[int]:
    """Bytes glibc currently holds in mmap-ed blocks (``mallinfo2().hblkhd``; None without glibc >= 2.33): the
    memory that :func:`keep_freed_memory` moves onto the heap."""
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().hblkhd)
