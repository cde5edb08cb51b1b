"""A reference-style ILIF, for timing comparisons only (not used by the package).

It follows the authors' released code style (KaiSUN1/ILIF ``InhibitoryLIFNeuron``, a spikingjelly 0.0.0.0.12
single-step ``LIFNode``): the state lives in the module, the network is called once per time step
(``for t in range(T): net(x_t)``), autograd records every step, and ``reset`` puts the states back to the
float ``0.``. The equations are those of docs/neuron.md:

1. C = kappa * (C + I_prev * S_prev)          (CIU)
2. I~ = I - relu(C)
3. H = lambda * V + I~   (H = I~ on the first step, as spikingjelly's ``_charging_v``)
4. S = Heaviside(H - V_th), rectangle surrogate in the backward pass
5. V' = H - S * V_th                            (soft reset, not detached)
6. M = beta * (M + S * V')                      (MPIU)
7. V = V' - S * sigmoid(M)
8. I_prev, S_prev = I, S

The networks mirror ``training.models.build_model`` layer for layer (torch ``Linear`` / ``Conv2d`` synapses
without bias, a sum-pool with a neuron after it, one single-step ILIF module per spiking layer); the slayer
specifics (8-bit weight pre-hook, delay shift) are not reproduced.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


class _RectangleSpike(torch.autograd.Function):
    """Heaviside forward (x >= 0), rectangle surrogate backward: 1/gamma where |x| <= gamma/2."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= ctx.gamma / 2).to(grad.dtype) / ctx.gamma, None


class RefILIFNode(torch.nn.Module):
    """Single-step ILIF neuron with its state kept in the module (authors' style)."""

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, beta: float = 1.0, kappa: float = 0.03,
                 gamma: float = 1.0) -> None:
        super().__init__()
        self.tau, self.v_threshold, self.beta, self.kappa, self.gamma = tau, v_threshold, beta, kappa, gamma
        self.reset()

    def reset(self) -> None:
        self.v = 0.
        self.inhibitory_memory = 0.
        self.inhibition = 0.
        self.prev_input = 0.
        self.prev_spike = 0.

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.inhibition, float):
            self.inhibition = torch.zeros_like(x)
            self.inhibitory_memory = torch.zeros_like(x)
            self.prev_input = torch.zeros_like(x)
            self.prev_spike = torch.zeros_like(x)
        self.inhibition = self.kappa * (self.inhibition + self.prev_input * self.prev_spike)
        current = x - torch.clamp(self.inhibition, min=0)
        if isinstance(self.v, float):
            self.v = current
        else:
            self.v = self.v * (1. - 1. / self.tau) + current
        spike = _RectangleSpike.apply(self.v - self.v_threshold, self.gamma)
        self.v = self.v - spike * self.v_threshold
        self.inhibitory_memory = self.beta * (self.inhibitory_memory + spike * self.v)
        self.v = self.v - spike * torch.sigmoid(self.inhibitory_memory)
        self.prev_input = x
        self.prev_spike = spike
        return spike


class _SumPool(torch.nn.Module):
    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.k, self.k, ceil_mode=True) * (self.k * self.k)


class RefNet(torch.nn.Module):
    """Single-step network; :meth:`run` loops it over the time axis of [N, C, H, W, T] inputs."""

    def __init__(self, layers: Sequence[torch.nn.Module], flatten_input: bool) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(*layers)
        self.flatten_input = flatten_input

    def reset(self) -> None:
        for m in self.modules():
            if isinstance(m, RefILIFNode):
                m.reset()

    def forward(self, x_t: torch.Tensor) -> torch.Tensor:
        if self.flatten_input:
            x_t = x_t.flatten(1)
        return self.net(x_t)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, H, W, T] -> output spikes [N, classes, T]; states are reset afterwards (reset_net)."""
        out = [self(x[..., t]) for t in range(x.shape[-1])]
        self.reset()
        return torch.stack(out, dim=-1)


def build_reference(arch: str, in_shape: Sequence[int], num_classes: int, hidden: int = 128,
                    tau: float = 2.0) -> RefNet:
    """Same layer shapes as ``training.models.build_model(arch, ...)`` for 'mlp' and 'cnn'."""
    c, h, w = (int(v) for v in in_shape)
    node = lambda: RefILIFNode(tau=tau)  # noqa: E731
    if arch == "mlp":
        layers = [torch.nn.Linear(c * h * w, hidden, bias=False), node(),
                  torch.nn.Linear(hidden, num_classes, bias=False), node()]
        return RefNet(layers, flatten_input=True)
    if arch == "cnn":
        c1, c2 = 8, 16
        feat = [torch.nn.Conv2d(c, c1, 3, padding=1, bias=False), node(), _SumPool(2), node(),
                torch.nn.Conv2d(c1, c2, 3, padding=1, bias=False), node(), _SumPool(2), node(),
                torch.nn.Flatten()]
        with torch.no_grad():
            n_flat = torch.nn.Sequential(*feat)(torch.zeros(1, c, h, w)).shape[1]
        for m in feat:
            if isinstance(m, RefILIFNode):
                m.reset()
        layers = feat + [torch.nn.Linear(n_flat, hidden, bias=False), node(),
                         torch.nn.Linear(hidden, num_classes, bias=False), node()]
        return RefNet(layers, flatten_input=False)
    raise ValueError(f"reference networks exist for 'mlp' and 'cnn', not {arch!r}")
