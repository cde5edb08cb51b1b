"""Fast float ILIF over a whole sequence: one autograd node with a hand-written backward through time.

The reference implementation is :meth:`ilif_lava.neuron.Neuron.reference_dynamics` (plain autograd through every
step, the authors' equations); tests require this function to give the same spikes and the same input (and PLIF
decay) gradients. Forward and backward are time loops without an autograd graph, which removes most of the
per-step overhead (about 20 autograd nodes per step in the reference).

Shapes: ``z`` is [..., T] (time last), any leading dims; returns spikes of the same shape.
"""
from __future__ import annotations

from typing import Tuple

import torch

from ilif_lava.fixed_point import plan_sigmoid_float
from ilif_lava.surrogate import Surrogate, surrogate_grad


def _inhibit(m: torch.Tensor, kind: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(g(m), g'(m)) for 'sigmoid' or 'plan'. g'(0) = 0 for plan, as autograd of |m| gives."""
    if kind == "sigmoid":
        g = torch.sigmoid(m)
        return g, g * (1 - g)
    a = m.abs()
    slope = torch.where(a >= 5, 0.0, torch.where(a >= 2.375, 1 / 32, torch.where(a >= 1, 1 / 8, 0.25)))
    return plan_sigmoid_float(m), slope * (m != 0).to(m.dtype)


class ILIFSequence(torch.autograd.Function):
    """Float ILIF dynamics over T steps with an analytic backward (BPTT through v, MPIU, CIU and the previous input)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, lam: torch.Tensor, beta: float, kappa: float, cur_kept: float,
                threshold: float, mpiu: bool, ciu: bool, inhibition: str,
                surrogate: Surrogate) -> torch.Tensor:
        zt = z.movedim(-1, 0).contiguous()  # time-major: each step reads one contiguous slice
        steps = zt.shape[0]
        lam_v = lam.reshape(())
        zero = torch.zeros_like(zt[0])
        v, m, c, i_prev, s_prev = zero, zero, zero, zero, zero
        hs, vps, ms, cs, vprevs, ips, outs = [], [], [], [], [], [], []
        for t in range(steps):
            if ciu:
                c = kappa * (c + i_prev * s_prev)
            i_t = zt[t] if cur_kept == 0 else cur_kept * i_prev + zt[t]
            h = lam_v * v + (i_t - torch.relu(c) if ciu else i_t)
            s = (h >= threshold).to(z.dtype)
            vp = h - s * threshold
            vprevs.append(v)
            if mpiu:
                m = beta * (m + s * vp)
                v = vp - s * _inhibit(m, inhibition)[0]
            else:
                v = vp
            hs.append(h)
            vps.append(vp)
            ms.append(m)
            cs.append(c)
            ips.append(i_prev)
            outs.append(s)
            i_prev, s_prev = i_t, s
        out = torch.stack(outs)
        ctx.save_for_backward(torch.stack(hs), torch.stack(vps), torch.stack(ms), torch.stack(cs),
                              torch.stack(vprevs), torch.stack(ips), out, lam)
        ctx.cfg = (beta, kappa, cur_kept, threshold, mpiu, ciu, inhibition, surrogate)
        return out.movedim(0, -1)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hs, vps, ms, cs, vprevs, ips, out, lam = ctx.saved_tensors  # all time-major [T, ...]
        beta, kappa, cur_kept, th, mpiu, ciu, inhibition, sg = ctx.cfg
        lam_v = lam.reshape(())
        go = grad_out.movedim(-1, 0).contiguous()
        steps = go.shape[0]
        zero = torch.zeros_like(go[0])
        gv, gm, gc, gi, gs_extra = zero, zero, zero, zero, zero
        gzs, ghs = [], []
        for t in range(steps - 1, -1, -1):
            s, h, vp = out[t], hs[t], vps[t]
            gs = go[t] + gs_extra
            if mpiu:
                g, dg = _inhibit(ms[t], inhibition)
                gm_tot = gm - s * dg * gv                  # v_t = v' - S g(m_t)
                gs = gs - g * gv + beta * gm_tot * vp      # ... and m_t = beta (m_{t-1} + S v')
                gvp = gv + beta * gm_tot * s
                gm = beta * gm_tot
            else:
                gvp = gv
            gs = gs - th * gvp                             # v' = h - S th
            gh = gvp + gs * surrogate_grad(h - th, sg)
            ghs.append(gh)
            gv = lam_v * gh                                # h = lam v_{t-1} + I_t - relu(c_t)
            gi = gi + gh
            gzs.append(gi)                                 # I_t = cur_kept I_{t-1} + z_t
            gi = cur_kept * gi
            if ciu:
                gc_tot = gc - gh * (cs[t] > 0).to(gh.dtype)
                gc = kappa * gc_tot                        # c_t = kappa (c_{t-1} + I_{t-1} S_{t-1})
                s_prev = out[t - 1] if t > 0 else zero
                gi = gi + kappa * gc_tot * s_prev
                gs_extra = kappa * gc_tot * ips[t]
        gz = torch.stack(gzs[::-1]).movedim(0, -1)
        glam_out = None
        if ctx.needs_input_grad[1]:                        # d/d lambda = sum_t gh_t * v_{t-1}
            glam_out = (torch.stack(ghs[::-1]) * vprevs).sum().reshape(lam.shape)
        return gz, glam_out, None, None, None, None, None, None, None, None
