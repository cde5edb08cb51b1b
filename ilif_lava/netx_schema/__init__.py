"""The netx HDF5 file format, in one place: key names, per-type tables, rules, Loihi 2 limits, decoding.

Plain Python + numpy (no torch, Lava or h5py). :mod:`ilif_lava.netx_schema.tables` holds the tables,
:mod:`ilif_lava.netx_schema.rules` the rule kinds, the Loihi 2 limits and the decoder.
"""
from ilif_lava.netx_schema.rules import (BIAS_LIMIT, DECAY_LIMIT, DELAY_LIMIT, STATE_LIMIT,  # noqa: F401
                                         VTH_MANT_LIMIT, WEIGHT_LIMIT, Choice, Flag, Int, Limit, Numbers, Text,
                                         decode, expected, show, text)
from ilif_lava.netx_schema.tables import (BUILT_LAYER_TYPES, COMPLEX_NEURON_HINT, DEFAULT_NEURON_TYPE,  # noqa: F401
                                          DELAY_RANGE, MAX_SKIPS, SKIP_KEYS, SKIP_TARGET_TYPES,
                                          ILIF_BIAS_EXP, ILIF_NEURON_TYPE, LAYER_TYPES, NEURON_TYPE_KEY, NEURON_TYPES,
                                          READOUT_NEURON_TYPE,
                                          REFUSED_LAYER_TYPES, K, Key, LayerType, NeuronRegistry, NeuronType, T,
                                          big_keys, layer_key_limits, layer_key_rules, neuron_key_limits,
                                          neuron_type_from_rules)
