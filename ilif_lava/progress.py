"""Progress bars for long work: shown only on a terminal, never written into logs or pipes.

One rule for every stage (training epochs, Lava samples, state recording, the comparison engines).
"""
from __future__ import annotations

import sys
from typing import Iterable, Optional, TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    """True when stderr (where bars are drawn) is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):      # replaced or closed stream
        return False


def bar(iterable: Iterable[T], desc: str, unit: str = "it", enabled: bool = True, total: Optional[int] = None,
        leave: bool = False) -> Iterable[T]:
    """``iterable`` wrapped in a tqdm bar when ``enabled`` and stderr is a terminal; else ``iterable`` itself."""
    if not (enabled and on_terminal()):
        return iterable
    from tqdm import tqdm
    return tqdm(iterable, desc=desc, unit=unit, total=total, leave=leave, file=sys.stderr)
