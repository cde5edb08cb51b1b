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
    slope = torch.where(a >= 5, torch.zeros_like(a),
                        torch.where(a >= 2.375, torch.full_like(a, 1 / 32),
                                    torch.where(a >= 1, torch.full_like(a, 1 / 8), torch.full_like(a, 1 / 4))))
    return plan_sigmoid_float(m), slope * (m != 0).to(m.dtype)


class ILIFSequence(torch.autograd.Function):
    """Float ILIF dynamics over T steps with an analytic backward (BPTT through v, MPIU, CIU and the previous input)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, lam: torch.Tensor, beta: float, kappa: float, cur_kept: float,
                threshold: float, mpiu: bool, ciu: bool, inhibition: str,
                surrogate: Surrogate) -> torch.Tensor:
        steps = z.shape[-1]
        lam_v = lam.reshape(())
        zero = torch.zeros_like(z[..., 0])
        v, m, c, i_prev, s_prev = zero, zero, zero, zero, zero
        out = torch.empty_like(z)
        hs, vps, ms, cs, vprevs, ips = [], [], [], [], [], []
        for t in range(steps):
            if ciu:
                c = kappa * (c + i_prev * s_prev)
            i_t = z[..., t] if cur_kept == 0 else cur_kept * i_prev + z[..., t]
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
            out[..., t] = s
            i_prev, s_prev = i_t, s
        ctx.save_for_backward(torch.stack(hs, -1), torch.stack(vps, -1), torch.stack(ms, -1), torch.stack(cs, -1),
                              torch.stack(vprevs, -1), torch.stack(ips, -1), out, lam)
        ctx.cfg = (beta, kappa, cur_kept, threshold, mpiu, ciu, inhibition, surrogate)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hs, vps, ms, cs, vprevs, ips, out, lam = ctx.saved_tensors
        beta, kappa, cur_kept, th, mpiu, ciu, inhibition, sg = ctx.cfg
        lam_v = lam.reshape(())
        steps = grad_out.shape[-1]
        zero = torch.zeros_like(grad_out[..., 0])
        gv, gm, gc, gi, gs_extra = zero, zero, zero, zero, zero
        glam = torch.zeros((), dtype=grad_out.dtype, device=grad_out.device)
        gz = torch.empty_like(grad_out)
        for t in range(steps - 1, -1, -1):
            s, h, vp = out[..., t], hs[..., t], vps[..., t]
            gs = grad_out[..., t] + gs_extra
            if mpiu:
                g, dg = _inhibit(ms[..., t], inhibition)
                gm_tot = gm - s * dg * gv                  # v_t = v' - S g(m_t)
                gs = gs - g * gv + beta * gm_tot * vp      # ... and m_t = beta (m_{t-1} + S v')
                gvp = gv + beta * gm_tot * s
                gm = beta * gm_tot
            else:
                gvp = gv
            gs = gs - th * gvp                             # v' = h - S th
            gh = gvp + gs * surrogate_grad(h - th, sg)
            glam = glam + (gh * vprevs[..., t]).sum()
            gv = lam_v * gh                                # h = lam v_{t-1} + I_t - relu(c_t)
            gi = gi + gh
            gz[..., t] = gi                                # I_t = cur_kept I_{t-1} + z_t
            gi = cur_kept * gi
            if ciu:
                gc_tot = gc - gh * (cs[..., t] > 0).to(gh.dtype)
                gc = kappa * gc_tot                        # c_t = kappa (c_{t-1} + I_{t-1} S_{t-1})
                s_prev = out[..., t - 1] if t > 0 else zero
                gi = gi + kappa * gc_tot * s_prev
                gs_extra = kappa * gc_tot * ips[..., t]
        glam_out = glam.reshape(lam.shape) if ctx.needs_input_grad[1] else None
        return gz, glam_out, None, None, None, None, None, None, None, None
