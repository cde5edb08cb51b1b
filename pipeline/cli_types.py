"""argparse value types for the ``ilif-lava`` command line: each refuses a bad value with one line naming it.

Light to import (no torch, no Lava): the parser is built before any heavy import.
"""
from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Optional


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (plus a ``--help`` hint) instead of the whole usage block; exit code 2.

    An unknown flag is reported by the subcommand that was given it (``ilif-lava train: error: unrecognized
    arguments: --datset (did you mean --dataset?)`` and ``see 'ilif-lava train --help'``), not by the top level.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n(see '{self.prog} --help')\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            target = self._chosen_subparser(ns)
            target.error(f"unrecognized arguments: {' '.join(extras)}{_suggestion(target, extras)}")
        return ns

    def _chosen_subparser(self, ns: argparse.Namespace) -> argparse.ArgumentParser:
        """The innermost subcommand parser that ``ns`` went through (``ilif-lava nir import``), else self."""
        parser: argparse.ArgumentParser = self
        while True:
            sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
            name = getattr(ns, sub.dest, None) if sub is not None else None
            if sub is None or name not in sub.choices:
                return parser
            parser = sub.choices[name]


def _suggestion(parser: argparse.ArgumentParser, extras: list) -> str:
    """`` (did you mean --dataset?)`` for the first unknown flag close to one of ``parser``'s flags, else ''."""
    import difflib
    flags = [o for a in parser._actions for o in a.option_strings if o.startswith("--")]
    for word in extras:
        if word.startswith("--"):
            close = difflib.get_close_matches(word.split("=", 1)[0], flags, n=1, cutoff=0.6)
            if close:
                return f" (did you mean {close[0]}?)"
    return ""


def parse_int(v: str, what: str) -> int:
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {v!r}") from None


def bounded_int(lo: int, hi: Optional[int] = None):
    """An argparse type: an integer in [lo, hi]."""
    what = {0: "an integer >= 0", 1: "a positive integer"}.get(lo, f"an integer >= {lo}")

    def parse(v: str) -> int:
        n = parse_int(v, what)
        if n < lo:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        if hi is not None and n > hi:
            raise argparse.ArgumentTypeError(f"expected at most {hi}, got {v}")
        return n
    parse.__name__ = "int"
    return parse


positive_int = bounded_int(1)
nonneg_int = bounded_int(0)


def finite(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {v!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {v}")
    return x


def unit_float(v: str) -> float:
    x = finite(v)
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {v}")
    return x


def positive_float(v: str) -> float:
    x = finite(v)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"expected a value > 0, got {v}")
    return x


def nonneg_float(v: str) -> float:
    x = finite(v)
    if not x >= 0:
        raise argparse.ArgumentTypeError(f"expected a value >= 0, got {v}")
    return x


def tau(v: str) -> float:
    x = finite(v)
    if not x >= 1:
        raise argparse.ArgumentTypeError(f"expected a value >= 1, got {v}")
    return x


def device(v: str) -> str:
    """'auto', 'cpu', 'cuda' or 'cuda:N', and the device must exist on this machine ('auto' and 'cpu' always
    do: answered without importing torch, as argparse also converts the default)."""
    if v in ("auto", "cpu"):
        return v
    from training.train import check_device
    try:
        check_device(v)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return v


def existing(v: str) -> Path:
    p = Path(v)
    if not p.exists():
        raise argparse.ArgumentTypeError(f"{v}: no such file or folder")
    return p


def check_output_dir(path: Path, flag: str = "--run-dir") -> None:
    """The output folder can be created: no existing part of it is a file, and its first existing folder is
    writable. Checked before any work is done."""
    p = Path(path).absolute()
    for anc in [p, *p.parents]:
        if anc.exists():
            if not anc.is_dir():
                raise ValueError(f"{flag} {path}: {anc} is not a folder")
            if not os.access(anc, os.W_OK | os.X_OK):
                raise ValueError(f"{flag} {path}: {anc} is not writable")
            return
