"""The training bounds and network names, re-exported for existing imports: they live in :mod:`ilif_lava.names`
(one torch-free module for the core, the stages and the command line)."""
from __future__ import annotations

from ilif_lava.names import AMP_DTYPES, ARCHS, MAX_BATCH, MAX_EPOCHS, MAX_HIDDEN, MAX_TIME_BINS  # noqa: F401
