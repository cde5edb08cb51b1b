"""Loihi 2 constraint checks and a resource *estimate* for an exported netx HDF5 network.

There is no public Loihi 2 compiler (the Lava extension for Loihi is INRC-only), so:

* the **parameter limits** below come from the public bit-accurate Lava CPU models that netx targets
  (lava-nc 0.10.0 ``proc/lif/models.py`` and ``proc/dense/models.py``);
  they are Loihi-1-derived and are what the Lava fixed-point simulation (our reference) implements;
* the **per-core capacities** are estimates from secondary sources and from the compiler log printed in Intel's
  public PilotNet benchmark notebooks (lava-dl ``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb``).
  Every resource number this module returns is flagged ``estimate=True``; the real mapper is closed.

The HDF5 layout, the keys, which are required and their Loihi 2 limits are the tables of
:mod:`ilif_lava.netx_schema`. Modules: :mod:`~ilif_lava.loihi2.limits` (limits and capacities),
:mod:`~ilif_lava.loihi2.findings` (parameter and state checks), :mod:`~ilif_lava.loihi2.resources` (the
estimate), :mod:`~ilif_lava.loihi2.report` (one network's report and verdict); files are opened and read through
:mod:`ilif_lava.safe_hdf5`. Dependencies: numpy and h5py (plus the numpy-only fan-out helper of
:mod:`ilif_lava.metrics`).
"""
from ilif_lava.loihi2.findings import (Finding, check_parameters, check_state_ranges, check_values,  # noqa: F401
                                       headroom_bits)
from ilif_lava.loihi2.limits import (BIAS_LIMIT, CHIP_CORES, CHIP_NEURONS, CHIP_SYNAPSES, DECAY_LIMIT,  # noqa: F401
                                     DELAY_LIMIT, INTEGER_INHIBITIONS, KNOWN_LAYER_TYPES, LAYER_KEY_LIMITS,
                                     NEURON_KEY_LIMITS, NEURONS_PER_CORE_MAX, NEURONS_PER_CORE_OBSERVED_CONV,
                                     REFERENCE_STATE_WORDS, SRAM_BYTES_PER_CORE, STATE_BITS, STATE_LIMIT,
                                     STATE_NAMES, SYNAPSES_PER_WORD, SYNMEM_WORDS_PER_CORE, VTH_MANT_LIMIT,
                                     WEIGHT_BITS, WEIGHT_LIMIT, Limit)
from ilif_lava.loihi2.report import Loihi2ConstraintError, Loihi2Report, assert_fits, check_network  # noqa: F401
from ilif_lava.loihi2.resources import LayerResource, estimate_resources  # noqa: F401
