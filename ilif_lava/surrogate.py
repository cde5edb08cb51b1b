"""Spike functions: Heaviside forward (fires at x >= 0, x = H - V_th), surrogate gradient backward.

:func:`surrogate_grad` is the single definition of each surrogate derivative; the per-step spike function and the
fused sequence backward (:mod:`ilif_lava.dynamics`) both use it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch

from ilif_lava.names import SURROGATES  # noqa: F401  (the names; their derivatives are defined here)


class Surrogate(NamedTuple):
    """A surrogate and its parameters (in threshold units)."""

    kind: str = "rectangle"   # 'rectangle' (paper App. F), 'exp' (slayer), 'sigmoid' (spikingjelly, ILIF code default)
    gamma: float = 1.0        # rectangle: full support width; d/dx = 1/gamma where |x| <= gamma/2
    tau: float = 0.03         # exp: d/dx = scale / (2 tau) * exp(-|x| / tau)
    scale: float = 3.0
    alpha: float = 4.0        # sigmoid: d/dx = alpha * s(alpha x) * (1 - s(alpha x))


def surrogate_grad(x: torch.Tensor, sg: Surrogate) -> torch.Tensor:
    """d spike / d x for ``x = H - V_th``."""
    if sg.kind == "rectangle":
        return (x.abs() <= sg.gamma / 2).to(x.dtype) / sg.gamma
    if sg.kind == "exp":
        return sg.scale / (2 * sg.tau) * torch.exp(-x.abs() / sg.tau)
    s = torch.sigmoid(sg.alpha * x)
    return sg.alpha * s * (1 - s)


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, sg: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.sg = sg
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.sg), None


def make_surrogate(kind: str = "rectangle", gamma: float = 1.0, tau: float = 0.03, scale: float = 3.0,
                   alpha: float = 4.0) -> Surrogate:
    if kind not in SURROGATES:
        raise ValueError(f"unknown surrogate {kind!r}; choose one of {SURROGATES}")
    return Surrogate(kind, float(gamma), float(tau), float(scale), float(alpha))


def make_spike_fn(kind: str = "rectangle", gamma: float = 1.0, tau: float = 0.03,
                  scale: float = 3.0, alpha: float = 4.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``f(x) -> spikes`` with the chosen surrogate. ``x = H - V_th`` in threshold units."""
    sg = make_surrogate(kind, gamma, tau, scale, alpha)
    return lambda x: _Spike.apply(x, sg)
