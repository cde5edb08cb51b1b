"""TOYIF for SLAYER: a ``slayer.neuron.base.Neuron`` (float rule + surrogate gradient; ``quantized=True``: the
integer rule of ``tests/toy_neuron/fixed_point.py``) and a dense block that exports it to netx."""
from __future__ import annotations

from typing import Any, Dict

import numpy as np
import torch
from lava.lib.dl.slayer.block import base as block_base
from lava.lib.dl.slayer.neuron import base
from lava.lib.dl.slayer.synapse import layer as synapse

from ilif_lava import fixed_point as fx
from ilif_lava.surrogate import make_spike_fn
from tests.toy_neuron.fixed_point import TOY_TABLE, ToyParams, toy_step


class ToyNeuron(base.Neuron):
    """TOYIF neurons. Input ``z`` [N, C, T] (synaptic current, threshold units) -> spikes, same shape.

    Float rule: ``v = (1 - 2**-leak_shift) v + z[t]``, ``s = v >= threshold``, ``v = v (1 - s)``; quantized: the
    integer rule (bit-exact with the Lava ``fixed_pt`` model); the backward is the float rule's either way."""

    def __init__(self, threshold: float = 1.0, leak_shift: int = 2, quantized: bool = False, **kwargs: Any) -> None:
        super().__init__(threshold=threshold, p_scale=fx.DECAY_ONE, w_scale=fx.WEIGHT_SCALE,
                         s_scale=fx.STATE_SCALE, **kwargs)
        self.leak_shift, self.quantized = int(leak_shift), quantized
        self.spike_fn = make_spike_fn("rectangle", gamma=1.0)

    @property
    def int_params(self) -> ToyParams:
        return ToyParams(vth=fx.threshold_to_mant(self.threshold), leak_shift=self.leak_shift)

    @property
    def device_params(self) -> Dict[str, Any]:
        """The ``neuron/`` entries of a netx layer, from the TOYIF table."""
        p = self.int_params
        return TOY_TABLE.record(vth=p.vth, leak_shift=p.leak_shift)

    def float_dynamics(self, z: torch.Tensor) -> torch.Tensor:
        keep = 1.0 - 2.0 ** -self.leak_shift
        v, out = torch.zeros_like(z[..., 0]), []
        for t in range(z.shape[-1]):
            v = keep * v + z[..., t]
            s = self.spike_fn(v - self.threshold)
            v = v * (1 - s)
            out.append(s)
        return torch.stack(out, dim=-1)

    def integer_dynamics(self, z: torch.Tensor) -> torch.Tensor:
        a = torch.round(z.detach().double() * fx.WEIGHT_SCALE).to(torch.int64)   # sums of weight mantissas
        v, out, p = torch.zeros_like(a[..., 0]), [], self.int_params
        for t in range(a.shape[-1]):
            v, s = toy_step(v, a[..., t], p)
            out.append(s)
        return torch.stack(out, dim=-1).to(z.dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            self.shape = z.shape[1:-1]
            self.num_neurons = int(np.prod(self.shape))
        if not self.quantized:
            return self.float_dynamics(z)
        s_int = self.integer_dynamics(z)
        if not (torch.is_grad_enabled() and z.requires_grad):
            return s_int
        s_float = self.float_dynamics(z)
        return s_float + (s_int - s_float).detach()          # straight-through


class ToyDense(block_base.AbstractDense):
    """Dense synapse (slayer's 8-bit weights) + TOYIF neurons; slayer's ``export_hdf5`` writes a netx ``dense``
    layer whose ``neuron/`` group is :attr:`ToyNeuron.device_params`. [N, in, T] -> [N, out, T]."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.neuron = ToyNeuron(**self.neuron_params)
        self.delay = None
        del self.neuron_params
        self.synapse = synapse.Dense(**self.synapse_params)
        self.synapse.pre_hook_fx = self.neuron.quantize_8bit
        del self.synapse_params
