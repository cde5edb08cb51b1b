"""The one base of every error ilif-lava raises on purpose.

Each such error is one line naming what is wrong (the file, layer, key, node or flag) and keeps its Python mix-in
(``ValueError`` for bad input, ``OSError``/``FileNotFoundError`` for missing files, ``RuntimeError`` for a run that
cannot go on), so ``except ValueError`` keeps working. The command line catches :class:`IlifLavaError` and prints
``ilif-lava <cmd>: error: <message>``, exiting with the error's :attr:`~IlifLavaError.exit_code`: 2 for bad input
(the default), 1 for checks that failed or training that stopped.
"""
from __future__ import annotations


class IlifLavaError(Exception):
    """Base of the project's errors; ``exit_code`` is what the command line exits with (2: bad input)."""

    exit_code: int = 2
