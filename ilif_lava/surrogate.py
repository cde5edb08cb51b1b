"""Spike functions: Heaviside forward (fires at x >= 0, x = H - V_th), surrogate gradient backward."""
from __future__ import annotations

from typing import Callable

import torch

SURROGATES = ("rectangle", "exp", "sigmoid")


class _Rectangle(torch.autograd.Function):
    """Rectangle surrogate (paper App. F): d/dx = 1/gamma where |x| <= gamma / 2, else 0."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, gamma: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= ctx.gamma / 2).to(grad.dtype) / ctx.gamma, None


class _Exp(torch.autograd.Function):
    """slayer's exponential surrogate: d/dx = scale / (2 tau) * exp(-|x| / tau)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, tau: float, scale: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.tau, ctx.scale = tau, scale
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad * ctx.scale / (2 * ctx.tau) * torch.exp(-x.abs() / ctx.tau), None, None


class _Sigmoid(torch.autograd.Function):
    """spikingjelly Sigmoid(alpha) surrogate (the ILIF code's default, alpha = 4)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        sg = torch.sigmoid(ctx.alpha * x)
        return grad * ctx.alpha * sg * (1 - sg), None


def make_spike_fn(kind: str = "rectangle", gamma: float = 1.0, tau: float = 0.03,
                  scale: float = 3.0, alpha: float = 4.0) -> Callable[[torch.Tensor], torch.Tensor]:
    """Return ``f(x) -> spikes`` with the chosen surrogate. ``x = H - V_th`` in threshold units."""
    if kind == "rectangle":
        return lambda x: _Rectangle.apply(x, gamma)
    if kind == "exp":
        return lambda x: _Exp.apply(x, tau, scale)
    if kind == "sigmoid":
        return lambda x: _Sigmoid.apply(x, alpha)
    raise ValueError(f"unknown surrogate {kind!r}; choose one of {SURROGATES}")
