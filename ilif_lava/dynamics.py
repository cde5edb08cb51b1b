"""Fast float ILIF over a whole sequence: one autograd node with a hand-written backward through time.

The reference implementation is :meth:`ilif_lava.neuron.Neuron.reference_dynamics` (plain autograd through every
step, the authors' equations); tests require this function, and the compiled kernels of :mod:`ilif_lava.kernels`,
to give the same spikes and the same input (and decay) gradients. :func:`ilif_sequence` is the entry point: it
picks the compiled CPU kernel, the Triton GPU kernel or the torch loop below (``ILIF_LAVA_KERNEL``).

The CIU rectifier ``relu(C)`` has a named gradient rule at exactly ``C = 0`` (:data:`CIU_GRAD_RULES`): ``'pass'``
(the authors' ``clamp(C, min=0)``: the gradient passes where ``C >= 0``; C is exactly 0 on every step before a
neuron's first spike) or ``'block'`` (relu: 0 at ``C = 0``). Forward values are identical.

Shapes: ``z`` is [..., T] (time last), any leading dims; returns spikes of the same shape.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

from ilif_lava import kernels
from ilif_lava.fixed_point import plan_sigmoid_float
from ilif_lava.kernels import FloatConfig
from ilif_lava.surrogate import surrogate_grad

CIU_GRAD_RULES = ("pass", "block")


def check_ciu_rule(rule: str) -> bool:
    """Validate a CIU gradient rule; True when the gradient passes at C = 0."""
    if rule not in CIU_GRAD_RULES:
        raise ValueError(f"ciu_grad_at_zero must be one of {CIU_GRAD_RULES}, got {rule!r}")
    return rule == "pass"


class _CIURectify(torch.autograd.Function):
    """relu(C) forward; backward passes the gradient where C > 0, or where C >= 0 with ``pass_at_zero``."""

    @staticmethod
    def forward(ctx, c: torch.Tensor, pass_at_zero: bool) -> torch.Tensor:
        ctx.save_for_backward(c)
        ctx.pass_at_zero = pass_at_zero
        return torch.relu(c)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (c,) = ctx.saved_tensors
        return grad * ciu_mask(c, ctx.pass_at_zero), None


def ciu_mask(c: torch.Tensor, pass_at_zero: bool) -> torch.Tensor:
    """d relu(C) / dC under the chosen rule at C = 0, as C's dtype."""
    return (c >= 0 if pass_at_zero else c > 0).to(c.dtype)


def ciu_rectify(c: torch.Tensor, rule: str = "pass") -> torch.Tensor:
    """The CIU rectifier max(C, 0) with the named gradient rule at C = 0 (see module docstring)."""
    return _CIURectify.apply(c, check_ciu_rule(rule))


def _inhibit(m: torch.Tensor, kind: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(g(m), g'(m)) for 'sigmoid' or 'plan'. g'(0) = 0 for plan, as autograd of |m| gives."""
    if kind == "sigmoid":
        g = torch.sigmoid(m)
        return g, g * (1 - g)
    a = m.abs()
    slope = torch.where(a >= 5, 0.0, torch.where(a >= 2.375, 1 / 32, torch.where(a >= 1, 1 / 8, 0.25)))
    return plan_sigmoid_float(m), slope * (m != 0).to(m.dtype)


def _inhibit_value(m: torch.Tensor, kind: str) -> torch.Tensor:
    """g(m) alone (the forward pass needs no slope)."""
    return torch.sigmoid(m) if kind == "sigmoid" else plan_sigmoid_float(m)


class ILIFSequence(torch.autograd.Function):
    """Float ILIF dynamics over T steps with an analytic backward (BPTT through v, MPIU, CIU and the previous input).

    The torch path: runs on every device and dtype. Saves h, m, c (and the current when it has memory) into
    preallocated [T, ...] buffers and recomputes spikes, resets and the previous potential step by step in the
    backward loop.
    """

    @staticmethod
    def forward(ctx, z: torch.Tensor, lam: torch.Tensor, cfg: FloatConfig) -> torch.Tensor:
        zt = z.movedim(-1, 0).contiguous()  # time-major: each step reads one contiguous slice
        steps = zt.shape[0]
        lam_v = lam.reshape(())
        beta, kappa, cur_kept, th = cfg.beta, cfg.kappa, cfg.cur_kept, cfg.threshold
        hs = torch.empty_like(zt)
        out = torch.empty_like(zt)
        ms = torch.empty_like(zt) if cfg.mpiu else None
        cs = torch.empty_like(zt) if cfg.ciu else None
        its = torch.empty_like(zt) if cfg.ciu and cur_kept != 0 else None
        zero = torch.zeros_like(zt[0])
        v, m, c, i_prev, s_prev = zero, zero, zero, zero, zero
        for t in range(steps):
            if cfg.ciu:
                c = kappa * (c + i_prev * s_prev)
                cs[t] = c
            i_t = zt[t] if cur_kept == 0 else cur_kept * i_prev + zt[t]
            h = torch.add(lam_v * v, i_t - torch.relu(c) if cfg.ciu else i_t, out=hs[t])
            s = (h >= th).to(z.dtype)
            out[t] = s
            vp = h - s * th
            if cfg.mpiu:
                m = beta * (m + s * vp)
                ms[t] = m
                v = vp - s * _inhibit_value(m, cfg.inhibition)
            else:
                v = vp
            if its is not None:
                its[t] = i_t
            i_prev, s_prev = i_t, s
        ctx.save_for_backward(hs, ms, cs, its if its is not None else (zt if cfg.ciu else None), lam)
        ctx.cfg = cfg
        return out.movedim(0, -1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hs, ms, cs, ips_src, lam = ctx.saved_tensors  # time-major [T, ...]
        cfg = ctx.cfg
        beta, kappa, cur_kept, th = cfg.beta, cfg.kappa, cfg.cur_kept, cfg.threshold
        lam_v = lam.reshape(())
        go = grad_out.movedim(-1, 0).contiguous()
        steps = go.shape[0]
        zero = torch.zeros_like(go[0])
        gv, gm, gc, gi, gs_extra = zero, zero, zero, zero, zero
        gz = torch.empty_like(go)
        glam = torch.zeros((), dtype=go.dtype, device=go.device) if ctx.needs_input_grad[1] else None
        for t in range(steps - 1, -1, -1):
            h = hs[t]
            s = (h >= th).to(h.dtype)                      # recomputed: spikes, reset, previous step
            vp = h - s * th
            gs = go[t] + gs_extra
            if cfg.mpiu:
                g, dg = _inhibit(ms[t], cfg.inhibition)
                gm_tot = gm - s * dg * gv                  # v_t = v' - S g(m_t)
                gs = gs - g * gv + beta * gm_tot * vp      # ... and m_t = beta (m_{t-1} + S v')
                gvp = gv + beta * gm_tot * s
                gm = beta * gm_tot
            else:
                gvp = gv
            gs = gs - th * gvp                             # v' = h - S th
            gh = gvp + gs * surrogate_grad(h - th, cfg.surrogate)
            s_prev = (hs[t - 1] >= th).to(h.dtype) if t > 0 else zero
            if glam is not None and t > 0:                 # d/d lambda = sum_t gh_t * v_{t-1}
                v_prev = hs[t - 1] - s_prev * th
                if cfg.mpiu:
                    v_prev = v_prev - s_prev * _inhibit_value(ms[t - 1], cfg.inhibition)
                glam = glam + (gh * v_prev).sum()
            gv = lam_v * gh                                # h = lam v_{t-1} + I_t - relu(c_t)
            gi = gi + gh
            gz[t] = gi                                     # I_t = cur_kept I_{t-1} + z_t
            gi = cur_kept * gi
            if cfg.ciu:
                gc_tot = gc - gh * ciu_mask(cs[t], cfg.ciu_pass_at_zero)
                gc = kappa * gc_tot                        # c_t = kappa (c_{t-1} + I_{t-1} S_{t-1})
                gi = gi + kappa * gc_tot * s_prev
                gs_extra = kappa * gc_tot * (ips_src[t - 1] if t > 0 else zero)
        glam_out = glam.reshape(lam.shape) if glam is not None else None
        return gz.movedim(0, -1), glam_out, None


def ilif_sequence(z: torch.Tensor, lam: torch.Tensor, cfg: FloatConfig,
                  kernel: Optional[str] = None) -> torch.Tensor:
    """Float ILIF over time on the selected kernel. z [..., T], lam a 1-element tensor -> spikes [..., T]."""
    name = kernels.choose(z, kernel)
    kernels.note_used("float", name)
    if name == "torch":
        return ILIFSequence.apply(z, lam, cfg)
    save = torch.is_grad_enabled() and (z.requires_grad or lam.requires_grad)
    return kernels.float_sequence(name, z, lam, cfg, save=save)
