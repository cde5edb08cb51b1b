"""How a study writes a swept value: in cell ids, in study.md tables and in plot labels (one rule for all three)."""
from __future__ import annotations

from typing import Optional


def format_value(x: Optional[float]) -> str:
    """``2.0 -> '2'``, ``0.5 -> '0.5'``, ``None -> '-'`` (shortest ``%g`` form)."""
    return "-" if x is None else f"{x:g}"
