"""TOYIF's integer rule and netx table, defined once (torch int64 tensors or numpy int64 arrays).

Units as ILIF's (docs/fixed-point.md): the synaptic input ``a`` is a sum of 8-bit weight mantissas and enters the
membrane as ``a << 6``; one threshold unit is 4096 state units; the threshold is ``vThMant << 6``. Per step:

1. ``v = sat(v - trunc(v >> leak_shift) + (a << 6))``   (leak: keeps ``v * (1 - 2**-leak_shift)``, toward zero)
2. ``s = v >= vThMant << 6``
3. ``v = 0 where s``                                   (hard reset)
"""
from __future__ import annotations

from typing import Any, NamedTuple

from ilif_lava import fixed_point as fx
from ilif_lava.netx_schema import Int, K, Key, NeuronType
from ilif_lava.netx_schema.rules import VTH_MANT_LIMIT, VTH_MANT_MAX

from tests.toy_neuron import TOY_NEURON_TYPE

LEAK_SHIFT_KEY = "toyLeakShift"      # the one key ILIF does not have
LEAK_SHIFT_MAX = 12

#: the ``neuron/`` keys of a TOYIF layer: what the writer records, the validator checks and the loader passes
TOY_TABLE = NeuronType(TOY_NEURON_TYPE, (
    Key(K.VTH_MANT, Int(1, VTH_MANT_MAX, "strict"), required=True, loihi=VTH_MANT_LIMIT, param="vth"),
    Key(LEAK_SHIFT_KEY, Int(1, LEAK_SHIFT_MAX, "strict"), required=True, param="leak_shift"),
), has_bias=False)


class ToyParams(NamedTuple):
    """vth: threshold mantissa (17 bits; threshold = vth / 64). leak_shift: the leak removes ``v >> leak_shift``.
    (A NamedTuple, not a dataclass: Lava's compiler executes this file under a bare module name, and a dataclass
    with postponed annotations needs its module in ``sys.modules``.)"""

    vth: int
    leak_shift: int


class ToyState(NamedTuple):
    v: Any    # membrane, state units (24-bit, saturating)
    s: Any    # spikes of this step (0/1)


def toy_step(v: Any, a: Any, p: ToyParams) -> ToyState:
    """One TOYIF step for every neuron: membrane ``v`` and input ``a`` (int64, same shape) -> (new v, spikes)."""
    v = fx.saturate(v - fx.shift_right_to_zero(v, p.leak_shift) + (a << fx.ACT_SHIFT))
    s = (v >= (p.vth << fx.VTH_SHIFT)) * 1          # int64 0/1 for torch and numpy alike
    return ToyState(v * (1 - s), s)


def toy_sequence(a: Any, p: ToyParams) -> Any:
    """Spikes [..., T] (int64) of TOYIF neurons from rest, for integer input ``a`` [..., T] (numpy)."""
    import numpy as np
    a = np.asarray(a, dtype=np.int64)
    v, out = np.zeros(a.shape[:-1], dtype=np.int64), []
    for t in range(a.shape[-1]):
        v, s = toy_step(v, a[..., t], p)
        out.append(s)
    return np.stack(out, axis=-1)
