"""TOYIF's Lava process and its netx loader (``params_fn`` of ``ilif_lava.netx.register_neuron_type``)."""
from __future__ import annotations

import functools
from typing import Any, Dict, Optional, Tuple

from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from ilif_lava import netx
from tests.toy_neuron.fixed_point import TOY_TABLE, ToyParams


class ToyIF(AbstractProcess):
    """TOYIF neurons: ports ``a_in`` (integer synaptic input per step) and ``s_out`` (binary spikes); Vars ``v``
    (membrane, state units), ``vth`` (threshold mantissa) and ``leak_shift``."""

    def __init__(self, *, shape: Tuple[int, ...], vth: int, leak_shift: int, name: Optional[str] = None,
                 log_config: Optional[LogConfig] = None, **kwargs: Any) -> None:
        super().__init__(shape=shape, params=ToyParams(vth=int(vth), leak_shift=int(leak_shift)), name=name,
                         log_config=log_config, **kwargs)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.vth = Var(shape=(1,), init=int(vth))
        self.leak_shift = Var(shape=(1,), init=int(leak_shift))


def toy_lava_params(neuron_config: Any, input: bool = False, reset_interval: Optional[int] = None,
                    reset_offset: int = 0, spike_exp: int = 6) -> Dict[str, Any]:
    """netx ``neuron_params`` of a TOYIF entry: the process class and its keywords, read as ``TOY_TABLE`` says."""
    if input:
        raise ValueError("a TOYIF layer cannot be a network's input layer")
    if reset_interval is not None:
        raise ValueError("TOYIF has no periodic reset (pipelined streaming)")
    out: Dict[str, Any] = {"neuron_proc": ToyIF, "num_message_bits": 0}
    out.update(TOY_TABLE.values(functools.partial(netx.read_key, neuron_config), lava_only=True))
    return out
