"""The size limits of a network file, derived from the Loihi 2 chip capacities of :mod:`ilif_lava.names`.

Light to import (no numpy, h5py or torch), so the command line shows the defaults in ``--help`` at once.
:mod:`ilif_lava.safe_hdf5` and :mod:`ilif_lava.hdf5_validate` enforce the limits (those of :func:`current_limits`
unless given), :mod:`ilif_lava.loihi2` estimates resources with the same capacities.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Iterator, List, Optional

# the chip's capacities (128 cores, 1 M neurons, 120 M synapses, ~128 KB SRAM per core) live in ilif_lava/names.py
from ilif_lava.names import CHIP_CORES, CHIP_NEURONS, CHIP_SYNAPSES, SRAM_BYTES_PER_CORE


@dataclass(frozen=True)
class FileLimits:
    """Size limits of a network file, all checked from HDF5 metadata before any array is read.

    Defaults are one Loihi 2 chip as stated below: at most ``CHIP_CORES`` (128) layers (every
    layer takes at least one core), ``CHIP_NEURONS`` (1 M) neurons per layer and in total, ``CHIP_SYNAPSES``
    (120 M) synapses (fan-in x neurons, as :func:`ilif_lava.estimate_resources` counts them), and bytes:
    the chip's SRAM (``CHIP_CORES * SRAM_BYTES_PER_CORE`` = 16 MiB) holds at most 16 M 8-bit weights; a file
    stores each as up to 8 bytes (float64), so 128 MiB per dataset and in total. Keys other than
    ``weight``/``bias``/``delay`` (``type``, ``shape``, neuron parameters, ...) may hold ``max_key_bytes`` each.
    """

    max_layers: int = CHIP_CORES
    max_neurons_per_layer: int = CHIP_NEURONS
    max_neurons: int = CHIP_NEURONS
    max_synapses: int = CHIP_SYNAPSES
    max_dataset_bytes: int = CHIP_CORES * SRAM_BYTES_PER_CORE * 8
    max_total_bytes: int = CHIP_CORES * SRAM_BYTES_PER_CORE * 8
    max_key_bytes: int = 4096
    max_links: int = 64 * CHIP_CORES + 16       # links walked in the whole file (groups + datasets)
    max_depth: int = 6                                  # layer/<i>/neuron/<key> is depth 4

    def scaled(self, **overrides: Optional[int]) -> "FileLimits":
        """A copy with the given limits replaced (``None`` keeps the current value); the link budget follows
        ``max_layers``."""
        over = {k: int(v) for k, v in overrides.items() if v is not None}
        if "max_layers" in over and "max_links" not in over:
            over["max_links"] = 64 * over["max_layers"] + 16
        for k, v in over.items():
            if v <= 0:
                raise ValueError(f"limit {k} must be positive, got {v}")
        return replace(self, **over)


DEFAULT_LIMITS = FileLimits()
_active_limits: List[FileLimits] = []


@contextlib.contextmanager
def use_limits(limits: Optional[FileLimits]) -> Iterator[None]:
    """While active, readers called without ``limits`` (e.g. the validation inside ``ILIFNetwork``) use ``limits``
    (the CLI's ``--max-*`` flags); ``None`` changes nothing."""
    if limits is None:
        yield
        return
    _active_limits.append(limits)
    try:
        yield
    finally:
        _active_limits.pop()


def current_limits() -> FileLimits:
    """The limits of the innermost :func:`use_limits`, else :data:`DEFAULT_LIMITS`."""
    return _active_limits[-1] if _active_limits else DEFAULT_LIMITS
