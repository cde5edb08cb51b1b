"""Loihi 2 limits: the per-key limits of the netx schema and the per-core capacities (ESTIMATES).

The parameter limits (bit widths of weights, decays, threshold, bias, delay, states) are the :class:`Limit` rows of
:mod:`ilif_lava.netx_schema`; the chip capacities are :mod:`ilif_lava.names`'s; the per-core capacities below
are estimates from secondary sources and from the compiler log printed in Intel's public PilotNet benchmark
notebooks (lava-dl ``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb``).
"""
from __future__ import annotations

from typing import Dict

from ilif_lava import netx_schema as schema
from ilif_lava.names import CHIP_CORES, CHIP_NEURONS, CHIP_SYNAPSES, SRAM_BYTES_PER_CORE  # noqa: F401
from ilif_lava.netx_schema.rules import (BIAS_LIMIT, DECAY_LIMIT, DELAY_LIMIT, INTEGER_INHIBITIONS,  # noqa: F401
                                         STATE_BITS, STATE_LIMIT, VTH_MANT_LIMIT, WEIGHT_BITS, WEIGHT_LIMIT, Limit)

# Per-core and per-chip capacities. ALL ARE ESTIMATES (docs/api.md, Background):
# * up to ~8 K neurons per core: secondary sources (summaries of the Intel Loihi 2 brief); an upper bound.
NEURONS_PER_CORE_MAX = 8192
# * 2048 .. 3168 neurons per core observed for PilotNet LIF conv layers in the public benchmark notebook.
NEURONS_PER_CORE_OBSERVED_CONV = (2048, 3168)
# * synaptic memory register seen in the same notebook's compiler log: ``registers[SynMem]=12000``.
SYNMEM_WORDS_PER_CORE = 12000
# * ~128 KB of flexibly partitioned SRAM per core (SRAM_BYTES_PER_CORE): see ilif_lava/names.py.
# * Stored synapses per SynMem word: our calibration, not a documented figure. In the PilotNet log a dense layer
#   with 2560 inputs ends at 8 neurons per core after ``allocation=61440 ... max_ratio=6``; 61440 words hold
#   48 neurons * 2560 inputs at 2 synapses per word, and 48 / 6 = 8 neurons per core, matching the table.
SYNAPSES_PER_WORD = 2
# * Chip: 128 neuro-cores, up to 1 M neurons and 120 M synapses: see ilif_lava/names.py.
# Neuron state words the per-core neuron cap refers to (CUBA/LIF: u and v).
REFERENCE_STATE_WORDS = 2

# the Loihi 2 limit of every key that has one, and the types the check knows (from the netx schema tables)
LAYER_KEY_LIMITS: Dict[str, Limit] = schema.layer_key_limits()
NEURON_KEY_LIMITS: Dict[str, Limit] = schema.neuron_key_limits()
KNOWN_LAYER_TYPES = tuple(n for n, t in schema.LAYER_TYPES.items() if t.resources)
STATE_NAMES = ("u", "v", "c", "m")
