"""Fused ILIF sequence kernels for CUDA GPUs, written in Triton: float forward, float backward, integer forward.

The same three functions, with the same arguments and results, as the compiled CPU kernel (``ilif_cpu.cpp``), so
:mod:`ilif_lava.kernels` drives both through one autograd function. Twins of ilif_lava/dynamics.py (float) and
ilif_lava/fixed_point.py (integer); tests/test_kernels.py runs them under Triton's interpreter
(``TRITON_INTERPRET=1``) on the CPU, so they are proven equal even where no GPU is present.

One program handles ``BLOCK`` neurons and loops over time; tensors are time-major inside ([T, M], coalesced
loads); user tensors are [M, T]. Float parameters travel as a tensor of the input's dtype so float64 runs keep
float64 constants. FMA contraction is disabled, so every operation rounds as PyTorch's elementwise kernels do.
"""
from __future__ import annotations

from typing import List

import torch
import triton
import triton.language as tl

BLOCK = 128
INH_SIGMOID, INH_PLAN = 0, 1
SG_RECTANGLE, SG_EXP, SG_SIGMOID = 0, 1, 2


@triton.jit
def _plan(x):
    a = tl.abs(x)
    pos = tl.where(a >= 5.0, 1.0, tl.where(a >= 2.375, a / 32.0 + 0.84375,
                                           tl.where(a >= 1.0, a / 8.0 + 0.625, a / 4.0 + 0.5)))
    return tl.where(x < 0, 1.0 - pos, pos).to(x.dtype)


@triton.jit
def _plan_slope(x):
    a = tl.abs(x)
    sl = tl.where(a >= 5.0, 0.0, tl.where(a >= 2.375, 1.0 / 32.0, tl.where(a >= 1.0, 1.0 / 8.0, 0.25)))
    return tl.where(x != 0, sl, 0.0).to(x.dtype)


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _inhibit(m, INH: tl.constexpr):
    if INH == 1:
        g = _plan(m)
    else:
        g = _sigmoid(m).to(m.dtype)
    return g


@triton.jit
def _neurons(pid, M, BLOCK_N: tl.constexpr):
    """Neuron indices of program ``pid`` (int64) and the in-range mask."""
    n = (pid * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    return n, n < M


@triton.jit
def _params(prm):
    """(lambda, beta, kappa, current kept, threshold) from the parameter tensor."""
    return tl.load(prm + 0), tl.load(prm + 1), tl.load(prm + 2), tl.load(prm + 3), tl.load(prm + 4)


@triton.jit
def _fwd_float(zt, out, sh, sm, sc, si, prm, M, T, MPIU: tl.constexpr, CIU: tl.constexpr, HAS_CUR: tl.constexpr,
               INH: tl.constexpr, SAVE: tl.constexpr, BLOCK_N: tl.constexpr):
    n, mask = _neurons(tl.program_id(0), M, BLOCK_N)
    lam, beta, kappa, cur, th = _params(prm)
    zero = tl.zeros([BLOCK_N], dtype=lam.dtype)
    v = zero
    m = zero
    c = zero
    ip = zero
    sp = zero
    for t in range(T):
        off = t * M + n
        x = tl.load(zt + off, mask=mask, other=0.0)
        if CIU:
            c = kappa * (c + ip * sp)
        if HAS_CUR:
            it = cur * ip + x
        else:
            it = x
        if CIU:
            h = lam * v + (it - tl.where(c > 0, c, 0.0))
        else:
            h = lam * v + it
        s = tl.where(h >= th, 1.0, 0.0).to(h.dtype)
        vp = h - s * th
        if MPIU:
            m = beta * (m + s * vp)
            v = vp - s * _inhibit(m, INH)
        else:
            v = vp
        ip = it
        sp = s
        tl.store(out + off, s, mask=mask)
        if SAVE:
            tl.store(sh + off, h, mask=mask)
            if MPIU:
                tl.store(sm + off, m, mask=mask)
            if CIU:
                tl.store(sc + off, c, mask=mask)
                if HAS_CUR:
                    tl.store(si + off, it, mask=mask)


@triton.jit
def _bwd_float(got, zt, sh, sm, sc, si, gzt, glam, prm, M, T, MPIU: tl.constexpr, CIU: tl.constexpr,
               HAS_CUR: tl.constexpr, INH: tl.constexpr, SG: tl.constexpr, CIU_PASS: tl.constexpr,
               NEED_GLAM: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    n, mask = _neurons(pid, M, BLOCK_N)
    lam, beta, kappa, cur, th = _params(prm)
    p1 = tl.load(prm + 5)
    p2 = tl.load(prm + 6)
    zero = tl.zeros([BLOCK_N], dtype=lam.dtype)
    gv = zero
    gm = zero
    gc = zero
    gi = zero
    gsx = zero
    gl = tl.zeros([BLOCK_N], dtype=tl.float64)
    for k in range(T):
        t = T - 1 - k
        off = t * M + n
        offp = off - M
        has_prev = mask & (t > 0)
        h = tl.load(sh + off, mask=mask, other=0.0)
        s = tl.where(h >= th, 1.0, 0.0).to(h.dtype)
        vp = h - s * th
        gs = tl.load(got + off, mask=mask, other=0.0) + gsx
        gvp = gv
        if MPIU:
            mt = tl.load(sm + off, mask=mask, other=0.0)
            g = _inhibit(mt, INH)
            if INH == 1:
                dg = _plan_slope(mt)
            else:
                dg = g * (1.0 - g)
            gm_tot = gm - s * dg * gv
            gs = gs - g * gv + beta * gm_tot * vp
            gvp = gv + beta * gm_tot * s
            gm = beta * gm_tot
        gs = gs - th * gvp
        x = h - th
        if SG == 0:
            sgd = tl.where(tl.abs(x) <= p1 / 2.0, 1.0, 0.0).to(x.dtype) / p1
        elif SG == 1:
            sgd = p1 * tl.exp(-tl.abs(x) / p2)
        else:
            sig = _sigmoid(p1 * x)
            sgd = p1 * sig * (1.0 - sig)
        gh = gvp + gs * sgd
        hp = tl.load(sh + offp, mask=has_prev, other=0.0)
        sprev = tl.where(has_prev & (hp >= th), 1.0, 0.0).to(h.dtype)
        if NEED_GLAM:
            vprev = hp - sprev * th
            if MPIU:
                vprev = vprev - sprev * _inhibit(tl.load(sm + offp, mask=has_prev, other=0.0), INH)
            gl += gh.to(tl.float64) * vprev.to(tl.float64)
        gv = lam * gh
        gij = gi + gh
        tl.store(gzt + off, gij, mask=mask)
        gij = cur * gij
        if CIU:
            ct = tl.load(sc + off, mask=mask, other=0.0)
            if CIU_PASS:
                passes = ct >= 0
            else:
                passes = ct > 0
            gc_tot = gc - tl.where(passes, gh, 0.0)
            gc = kappa * gc_tot
            gij = gij + kappa * gc_tot * sprev
            if HAS_CUR:
                iprev = tl.load(si + offp, mask=has_prev, other=0.0)
            else:
                iprev = tl.load(zt + offp, mask=has_prev, other=0.0)
            gsx = kappa * gc_tot * iprev
        gi = gij
    if NEED_GLAM:
        tl.store(glam + pid, tl.sum(tl.where(mask, gl, 0.0), axis=0))


@triton.jit
def _decay(x, kept):
    p = x * kept
    mag = tl.abs(p) >> 12
    return tl.where(p < 0, -mag, mag)


@triton.jit
def _sat(x):
    return tl.minimum(tl.maximum(x, -8388607), 8388607)


@triton.jit
def _plan_int(m):
    a = tl.abs(m)
    pos = tl.where(a >= 20480, a * 0 + 4096, tl.where(a >= 9728, (a >> 5) + 3456,
                                                     tl.where(a >= 4096, (a >> 3) + 2560, (a >> 2) + 2048)))
    return tl.where(m < 0, 4096 - pos, pos)


@triton.jit
def _fwd_int(at, out, ru, rv, rc, rm, M, T, vth, ik, vk, ck, mk, in_mul, MPIU: tl.constexpr, CIU: tl.constexpr,
             RECORD: tl.constexpr, BLOCK_N: tl.constexpr):
    n, mask = _neurons(tl.program_id(0), M, BLOCK_N)
    zero = tl.zeros([BLOCK_N], dtype=tl.int64)
    u = zero
    v = zero
    c = zero
    m = zero
    sp = zero
    for t in range(T):
        off = t * M + n
        a = tl.load(at + off, mask=mask, other=0)
        rect = zero
        if CIU:
            c = _sat(_decay(c + tl.where(sp != 0, u, 0), ck))
            rect = tl.where(c > 0, c, 0)
        # a << input_shift as a product with 2**input_shift (int64, wrapping as torch's <<), then the 24-bit wrap
        # into (-2**23, 2**23]
        u = ((_decay(u, ik) + a * in_mul + 8388607) & 16777215) - 8388607
        h = _sat(_decay(v, vk) + u - rect)
        s = tl.where(h >= vth, 1, 0).to(tl.int64)
        v = h - s * vth
        if MPIU:
            m = _sat(_decay(m + s * v, mk))
            v = _sat(v - s * _plan_int(m))
        sp = s
        tl.store(out + off, s.to(out.dtype.element_ty), mask=mask)
        if RECORD:
            tl.store(ru + off, u, mask=mask)
            tl.store(rv + off, v, mask=mask)
            tl.store(rc + off, c, mask=mask)
            tl.store(rm + off, m, mask=mask)


def _grid(M: int):
    return (triton.cdiv(M, BLOCK),)


def _launch_opts() -> dict:
    import os
    return {} if os.environ.get("TRITON_INTERPRET") == "1" else {"enable_fp_fusion": False}


def forward_float(z: torch.Tensor, lam: float, beta: float, kappa: float, cur_kept: float, th: float, mpiu: bool,
                  ciu: bool, inhibition: int, save: bool) -> List[torch.Tensor]:
    """z [M, T] -> [spikes [M, T], h, m, c, i] (saved tensors time-major [T, M]; empty when unused)."""
    M, T = z.shape
    zt = z.t().contiguous()
    out = torch.empty_like(zt)
    none = zt.new_empty(0)
    sh = torch.empty_like(zt) if save else none
    sm = torch.empty_like(zt) if save and mpiu else none
    sc = torch.empty_like(zt) if save and ciu else none
    si = torch.empty_like(zt) if save and ciu and cur_kept != 0 else none
    prm = torch.tensor([lam, beta, kappa, cur_kept, th, 0.0, 0.0], dtype=z.dtype, device=z.device)
    _fwd_float[_grid(M)](zt, out, sh, sm, sc, si, prm, M, T, MPIU=mpiu, CIU=ciu, HAS_CUR=cur_kept != 0,
                         INH=inhibition, SAVE=save, BLOCK_N=BLOCK, **_launch_opts())
    return [out.t().contiguous(), sh, sm, sc, si]


def backward_float(grad_out: torch.Tensor, z: torch.Tensor, sh: torch.Tensor, sm: torch.Tensor, sc: torch.Tensor,
                   si: torch.Tensor, lam: float, beta: float, kappa: float, cur_kept: float, th: float, mpiu: bool,
                   ciu: bool, inhibition: int, sg_kind: int, sg_p1: float, sg_p2: float, ciu_pass_at_zero: bool,
                   need_glam: bool) -> List[torch.Tensor]:
    """-> [grad z [M, T], grad lambda (float64 scalar, empty when not asked)]."""
    M, T = z.shape
    got = grad_out.t().contiguous()
    zt = z.t().contiguous() if ciu and cur_kept == 0 else z.new_empty(0)
    gzt = torch.empty_like(got)
    nprog = triton.cdiv(M, BLOCK)
    glam = torch.zeros(nprog if need_glam else 0, dtype=torch.float64, device=z.device)
    prm = torch.tensor([lam, beta, kappa, cur_kept, th, sg_p1, sg_p2], dtype=z.dtype, device=z.device)
    _bwd_float[(nprog,)](got, zt, sh, sm, sc, si, gzt, glam, prm, M, T, MPIU=mpiu, CIU=ciu, HAS_CUR=cur_kept != 0,
                         INH=inhibition, SG=sg_kind, CIU_PASS=ciu_pass_at_zero, NEED_GLAM=need_glam,
                         BLOCK_N=BLOCK, **_launch_opts())
    return [gzt.t().contiguous(), glam.sum() if need_glam else glam]


def forward_int(a: torch.Tensor, vth: int, i_decay: int, v_decay: int, c_decay: int, m_decay: int, mpiu: bool,
                ciu: bool, record: bool, out_dtype: torch.dtype, input_shift: int) -> List[torch.Tensor]:
    """a [M, T] int64 (synaptic sums, entering the current as ``a << input_shift``, 0..6) -> [spikes [M, T] of
    out_dtype, u, v, c, m [M, T] int64 (empty unless record)]."""
    if not 0 <= int(input_shift) <= 6:
        raise ValueError(f"input_shift must be an integer in [0, 6], got {input_shift}")
    M, T = a.shape
    at = a.t().contiguous()
    out = torch.empty(at.shape, dtype=out_dtype, device=a.device)
    rec = [torch.empty_like(at) if record else at.new_empty(0) for _ in range(4)]
    _fwd_int[_grid(M)](at, out, *rec, M, T, vth, 4096 - i_decay, 4096 - v_decay, 4096 - c_decay, 4096 - m_decay,
                       1 << int(input_shift), MPIU=mpiu, CIU=ciu, RECORD=record, BLOCK_N=BLOCK, **_launch_opts())
    return [out.t().contiguous()] + [r.t().contiguous() if record else r for r in rec]


def forward_int_float(z: torch.Tensor, scale: float, bias: torch.Tensor, inner: int, vth: int, i_decay: int,
                      v_decay: int, c_decay: int, m_decay: int, mpiu: bool, ciu: bool, record: bool,
                      out_dtype: torch.dtype, input_shift: int) -> List[torch.Tensor]:
    """z [M, T] float -> :func:`forward_int` of ``a = round(z * scale) + bias[(row // inner) % C]`` (``bias`` int64
    [C] in input units, or empty), the CPU kernel's entry point of the same name. On the GPU the rounding and the
    bias are two elementwise torch passes before the fused step kernel."""
    a = torch.round(z * scale).to(torch.int64)
    if bias.numel():
        a = (a.reshape(-1, bias.numel(), inner, a.shape[-1]) + bias.reshape(1, -1, 1, 1)).reshape(a.shape)
    return forward_int(a, vth, i_decay, v_decay, c_decay, m_decay, mpiu, ciu, record, out_dtype, input_shift)
