"""Progress for long work: a bar on a terminal; in logs and pipes one heartbeat line now and then, never a bar.

One rule for every stage (training epochs, Lava samples, state recording, the comparison engines). When stderr is
not a terminal (output sent to a log file), :func:`bar` prints ``<desc>: <i>/<total> <unit> (<s> s)`` at most
every ``$ILIF_LAVA_HEARTBEAT_S`` seconds (default 60; ``0`` disables), so a long epoch is never silent for minutes.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    """True when stderr (where bars are drawn) is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):      # replaced or closed stream
        return False


DEFAULT_HEARTBEAT_S = 60.0


def heartbeat_seconds() -> float:
    """Seconds between heartbeat lines off a terminal (``$ILIF_LAVA_HEARTBEAT_S``; 0 or a bad value: none)."""
    try:
        value = float(os.environ.get("ILIF_LAVA_HEARTBEAT_S", DEFAULT_HEARTBEAT_S))
    except ValueError:
        return 0.0
    return value if value > 0 and value == value else 0.0


class Heartbeat:
    """Iterate ``iterable``; every ``interval`` seconds print one line of progress to stderr (tqdm-like API:
    :meth:`set_postfix` adds ``key=value`` to the next line)."""

    def __init__(self, iterable: Iterable[T], desc: str, unit: str, total: Optional[int], interval: float) -> None:
        self.iterable, self.desc, self.unit, self.interval = iterable, desc, unit, interval
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.postfix = ""

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in kwargs.items())

    def __iter__(self) -> Iterator[T]:
        start = last = time.monotonic()
        for i, item in enumerate(self.iterable):
            yield item
            now = time.monotonic()
            if self.interval and now - last >= self.interval:
                last = now
                of = f"/{self.total}" if self.total is not None else ""
                tail = f", {self.postfix}" if self.postfix else ""
                print(f"{self.desc}: {i + 1}{of} {self.unit} ({now - start:.0f} s{tail})", file=sys.stderr,
                      flush=True)


def bar(iterable: Iterable[T], desc: str, unit: str = "it", enabled: bool = True, total: Optional[int] = None,
        leave: bool = False) -> Iterable[T]:
    """``iterable`` wrapped in a tqdm bar when ``enabled`` and stderr is a terminal; off a terminal a
    :class:`Heartbeat` (one line every :func:`heartbeat_seconds`); ``iterable`` itself when not ``enabled``.
    The result has ``set_postfix`` in the first two cases."""
    if not enabled:
        return iterable
    if not on_terminal():
        interval = heartbeat_seconds()
        return Heartbeat(iterable, desc, unit, total, interval) if interval else iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, unit=unit, total=total, leave=leave, file=sys.stderr)
