"""The fused kernels (compiled CPU extension, Triton GPU kernel under its interpreter) against the specifications.

Float: :meth:`ilif_lava.neuron.Neuron.reference_dynamics` (autograd through every step, the authors' equations):
identical spikes, gradients equal to 1e-9 in float64 (1e-5 in float32), for every variant, inhibition, surrogate,
current decay and CIU gradient rule, T from 1 to 300, odd neuron counts, non-contiguous inputs, batch 1.
Integer: :func:`ilif_lava.fixed_point.ilif_step` stepped in Python: 0 spike and 0 state mismatches, including
inputs that wrap u and saturate v, c and m.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from ilif_lava import fixed_point as fx
from ilif_lava import kernels
from ilif_lava.kernels import cpu_build
from ilif_lava.neuron import VARIANTS, Neuron

ROOT = Path(__file__).resolve().parents[1]
HAVE_CPU = cpu_build.load() is not None
needs_cpu = pytest.mark.skipif(not HAVE_CPU, reason=f"compiled CPU kernel unavailable: {cpu_build.error()}")


def _grads(n: Neuron, z: torch.Tensor, kernel: str, use_reference: bool = False):
    """(spikes, [dz, (dw_plif)]) for a fixed random readout of the spikes."""
    zz = z.detach().clone().requires_grad_(True)
    n.kernel = kernel
    s = n.reference_dynamics(zz) if use_reference else n.float_dynamics(zz)
    readout = torch.randn(s.shape, generator=torch.Generator().manual_seed(11), dtype=s.dtype)
    params = [zz] + ([n.plif_w] if n.flags["plif"] else [])
    return s.detach(), [g.detach() for g in torch.autograd.grad((s * readout).sum(), params)]


def _inputs(shape, seed: int, dtype=torch.float64, scale: float = 1.2, bias: float = 0.5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype) * scale + bias


def _compare_float(n: Neuron, z: torch.Tensor, kernel: str, tol: float) -> None:
    s_ref, g_ref = _grads(n, z, "torch", use_reference=True)
    s_k, g_k = _grads(n, z, kernel)
    assert kernels.last_used()["float"] == kernel
    assert torch.equal(s_k, s_ref), f"{int((s_k != s_ref).sum())} spike mismatches"
    if s_ref.numel() >= 100:
        assert 0.05 < s_ref.mean() < 0.95, "inputs must exercise firing and resets"
    for a, b in zip(g_k, g_ref):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


FLOAT_CASES = list(itertools.product(VARIANTS, ("plan", "sigmoid"), ("rectangle", "exp", "sigmoid"),
                                     (None, 0.25), ("pass", "block")))


FAST_KERNELS = ["torch", pytest.param("cpu", marks=needs_cpu)]


@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("variant,inhibition,surrogate,current_decay,rule", FLOAT_CASES)
def test_float_paths_match_reference(kernel, variant, inhibition, surrogate, current_decay, rule):
    """The torch fallback (ILIFSequence) and the compiled kernel against the autograd reference."""
    n = Neuron(variant=variant, inhibition=inhibition, surrogate=surrogate, current_decay=current_decay,
               tau=2.0, kappa=0.3, ciu_grad_at_zero=rule, tau_grad=0.3, scale_grad=1.0).double()
    seed = sum(map(ord, variant + inhibition + surrogate + rule))
    _compare_float(n, _inputs((3, 37, 29), seed=seed), kernel, 1e-9)


@pytest.mark.parametrize("kernel", FAST_KERNELS)
@pytest.mark.parametrize("steps", [1, 2, 31, 32, 33, 300])
@pytest.mark.parametrize("shape", [(1, 1), (1, 17), (2, 3, 5)])
def test_float_shapes_and_lengths(kernel, steps, shape):
    """Tile edges (32 steps), block edges (16 neurons), a single neuron, batch 1."""
    n = Neuron(variant="IPLIF", inhibition="plan", tau=1.5, kappa=0.2, current_decay=0.1).double()
    _compare_float(n, _inputs(shape + (steps,), seed=steps), kernel, 1e-9)


@needs_cpu
def test_cpu_float_non_contiguous_and_float32():
    n = Neuron(variant="ILIF", inhibition="plan", tau=1.1)
    base = _inputs((40, 3, 21), seed=5, dtype=torch.float32)
    z = base.permute(1, 0, 2)  # non-contiguous [3, 40, 21]
    assert not z.is_contiguous()
    _compare_float(n, z, "cpu", 1e-5)


@needs_cpu
@pytest.mark.parametrize("steps", [7, 8, 9, 24, 33, 72])
@pytest.mark.parametrize("variant,current_decay", [("ILIF", None), ("ILIF", 0.25), ("LIF", None)])
def test_cpu_float32_tile_moves(steps, variant, current_decay):
    """float32 tiles of whole 16-neuron blocks move as 8 x 8 transposes (ilif_cpu.cpp load_tile/store_tile), the
    rest element by element: step counts below, at and above multiples of 8 and of the 32-step tile, 48 neurons
    (3 whole blocks) and 53 (a partial fourth); spikes identical to the reference, gradients to 1e-5, and the
    forward-only (no-grad) path identical to the saving one."""
    n = Neuron(variant=variant, inhibition="plan", tau=1.3, kappa=0.2, current_decay=current_decay)
    for neurons in (48, 53):
        z = _inputs((1, neurons, steps), seed=steps + neurons, dtype=torch.float32)
        _compare_float(n, z, "cpu", 1e-5)
        saving = _grads(n, z, "cpu")[0]
        with torch.no_grad():
            assert torch.equal(n.float_dynamics(z), saving)


@needs_cpu
def test_cpu_float_inference_path_and_learnable_decay():
    """No-grad calls take the forward-only route; the PLIF decay gradient matches the reference."""
    n = Neuron(variant="PLIF", tau=1.7)
    z = _inputs((4, 50, 12), seed=9, dtype=torch.float32)
    n.kernel = "cpu"
    with torch.no_grad():
        s = n.float_dynamics(z)
    assert torch.equal(s, n.reference_dynamics(z).detach())
    _compare_float(n.double(), z.double(), "cpu", 1e-9)


def test_ciu_rule_changes_gradients_only_where_c_is_zero():
    """'pass' and 'block' give identical spikes; gradients differ (C = 0 before the first spike)."""
    z = _inputs((2, 30, 16), seed=3)
    res = {}
    for rule in ("pass", "block"):
        n = Neuron(variant="ILIF", tau=1.1, ciu_grad_at_zero=rule).double()
        res[rule] = _grads(n, z, "torch", use_reference=True)
    assert torch.equal(res["pass"][0], res["block"][0])
    assert (res["pass"][1][0] - res["block"][1][0]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="ciu_grad_at_zero"):
        Neuron(ciu_grad_at_zero="clamp")


# ---------------------------------------------------------------------------------------------------------
# the kernel's own exp (vectorised; the sigmoid inhibition and the exp/sigmoid surrogates use it)
# ---------------------------------------------------------------------------------------------------------
EXP_ULP_BOUND = 1.5     # ilif_cpu.cpp states the measured maximum: 1.01 ulp (float32 and float64)
SIGMOID_ULP_BOUND = 3.0  # 1 / (1 + exp(-x)) adds two roundings to exp's error: measured 2.35 ulp (float32)


def _ulp_error(got: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|got - exact| in units of the last place of ``exact`` rounded to got's dtype (subnormals: their spacing)."""
    ref = exact.to(got.dtype)
    spacing = (torch.nextafter(ref.abs(), torch.tensor(float("inf"), dtype=got.dtype)) - ref.abs()).to(exact.dtype)
    return (got.to(exact.dtype) - exact).abs() / spacing


def _exact_exp(x: torch.Tensor) -> torch.Tensor:
    """exp of float32 values in float64 (exact to far below a float32 ulp), of float64 values by mpmath."""
    if x.dtype == torch.float32:
        return torch.exp(x.double())
    import mpmath
    mpmath.mp.prec = 100
    return torch.tensor([float(mpmath.exp(mpmath.mpf(v))) for v in x.tolist()], dtype=torch.float64)


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_exp_within_one_ulp(dtype):
    """The kernel's exp against an exact reference over its whole range, subnormal results and edges included."""
    mod = cpu_build.load()
    lo, hi, n = (-104.0, 89.0, 1 << 20) if dtype == torch.float32 else (-746.0, 710.0, 1 << 14)
    g = torch.Generator().manual_seed(1)
    x = torch.cat([torch.linspace(lo, hi, n, dtype=dtype), (torch.rand(n, generator=g, dtype=dtype) - 0.5) * 2,
                   torch.linspace(-0.35, 0.35, 4097, dtype=dtype)])
    exact = _exact_exp(x)
    finite = torch.isfinite(exact.to(dtype)) & (exact.to(dtype) > 0)
    err = _ulp_error(mod.exp(x), exact)[finite]
    assert err.max() <= EXP_ULP_BOUND, f"{float(err.max()):.3f} ulp at {float(x[finite][err.argmax()])}"
    info = torch.finfo(dtype)
    edges = torch.tensor([float("inf"), float("-inf"), 0.0, -0.0, math.log(info.max) * 1.0001, lo, lo * 10, hi * 10],
                         dtype=dtype)
    assert mod.exp(edges).tolist() == [float("inf"), 0.0, 1.0, 1.0, float("inf"), 0.0, 0.0, float("inf")]
    assert mod.exp(torch.tensor([float("nan")], dtype=dtype)).isnan().all()
    assert (mod.exp(torch.tensor([math.log(info.max) * 0.9999], dtype=dtype)) < float("inf")).all()
    # the smallest subnormal results are produced (gradual underflow), not flushed to zero
    tiny = mod.exp(torch.tensor([math.log(info.smallest_normal) - 5.0], dtype=dtype))
    assert 0 < float(tiny) < info.smallest_normal


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_sigmoid_matches_torch_and_saturates(dtype):
    """sigmoid = 1 / (1 + exp(-x)), PyTorch's formula: within 3 ulp of the exact value where that is a normal
    number, within 6 ulp of torch.sigmoid, exactly 0 and 1 far out, never NaN for finite or infinite inputs.
    Where exp(-x) overflows but the exact sigmoid is still subnormal (x in [-104, -88.7] for float32), the formula
    gives 0, as torch.sigmoid does: an absolute error below the smallest normal number."""
    mod = cpu_build.load()
    info = torch.finfo(dtype)
    x = torch.cat([torch.linspace(-30, 30, 200001, dtype=dtype), torch.linspace(-1000, 1000, 4001, dtype=dtype)])
    got = mod.sigmoid(x)
    exact = 1 / (1 + _exact_exp(-x)) if dtype == torch.float32 else torch.sigmoid(x.to(torch.float64))
    theirs = torch.sigmoid(x).to(torch.float64)
    normal = (exact >= info.smallest_normal) & (theirs >= info.smallest_normal)
    if dtype == torch.float32:
        assert _ulp_error(got, exact)[normal].max() <= SIGMOID_ULP_BOUND
        assert ((got.double() - exact).abs()[~normal] < info.smallest_normal).all()
    assert _ulp_error(got, theirs)[normal].max() <= 2 * SIGMOID_ULP_BOUND
    assert ((got.double() - theirs).abs()[~normal] < info.smallest_normal).all()
    far = torch.tensor([-1e4, -800.0, 800.0, 1e4, float("-inf"), float("inf")], dtype=dtype)
    assert mod.sigmoid(far).tolist() == [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert not got.isnan().any() and ((got >= 0) & (got <= 1)).all()


def _saturating_inputs(shape, seed: int, dtype) -> torch.Tensor:
    """Inputs that drive the MPIU far into the sigmoid's saturation (m in the hundreds) and h far from the
    threshold (the exp surrogate underflows), with quiet stretches in between."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=dtype) * 1.5 + 0.6
    loud = torch.rand(shape[:-1] + (1,), generator=g, dtype=dtype) < 0.5
    return torch.where(loud, z * 40 + 20, z)


@needs_cpu
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-9), (torch.float32, 1e-5)])
@pytest.mark.parametrize("surrogate", ["rectangle", "exp", "sigmoid"])
def test_cpu_sigmoid_inhibition_and_exp_surrogates_match_torch_path(surrogate, dtype, tol):
    """The vectorised exp in the kernel against the torch path (torch.sigmoid / torch.exp) and the autograd
    reference: identical spikes, gradients to the suite's tolerance, large |m| (saturated sigmoid) and
    underflowing surrogates included, no NaN; T = 100 spans full and partial tiles, 37 neurons partial blocks."""
    n = Neuron(variant="IPLIF", inhibition="sigmoid", surrogate=surrogate, tau=2.0, kappa=0.3, tau_grad=0.3,
               scale_grad=1.0).to(dtype)
    z = _saturating_inputs((3, 37, 100), seed=len(surrogate), dtype=dtype)
    rec = Neuron(variant="IPLIF", inhibition="sigmoid", tau=2.0, kappa=0.3, record_states=True).to(dtype)
    rec(z)
    assert rec.states["m"].max() > 100, "the MPIU must reach the sigmoid's saturation"
    s_t, g_t = _grads(n, z, "torch")
    s_c, g_c = _grads(n, z, "cpu")
    s_r, g_r = _grads(n, z, "torch", use_reference=True)
    assert torch.equal(s_c, s_t) and torch.equal(s_c, s_r)
    for a, b, c in zip(g_c, g_t, g_r):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
        torch.testing.assert_close(a, c, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------------------------
# integer
# ---------------------------------------------------------------------------------------------------------
def _int_reference(a: torch.Tensor, p: fx.ILIFParams):
    state = fx.zero_state_like(a[..., 0])
    spikes, rec = [], {k: [] for k in fx.STATE_NAMES}
    for t in range(a.shape[-1]):
        state = fx.ilif_step(state, a[..., t], p)
        spikes.append(state.s)
        for k in fx.STATE_NAMES:
            rec[k].append(getattr(state, k))
    return torch.stack(spikes, -1), {k: torch.stack(v, -1) for k, v in rec.items()}


def _int_cases():
    g = torch.Generator().manual_seed(0)
    cases = []
    # (name, input magnitude, params): ordinary, u wrapping, v/c/m saturating, zero and full decays
    cases.append(("ordinary", 200, fx.ILIFParams(vth_mant=64)))
    cases.append(("u_wraps", 1 << 18, fx.ILIFParams(vth_mant=64, i_decay=0)))
    cases.append(("v_saturates", 1 << 16, fx.ILIFParams(vth_mant=fx.VTH_MANT_MAX, v_decay=0)))
    cases.append(("m_saturates", 1 << 15, fx.ILIFParams(vth_mant=1, m_decay=0)))
    cases.append(("c_saturates", 1 << 16, fx.ILIFParams(vth_mant=2, c_decay=0, i_decay=0)))
    for k in range(6):
        d = torch.randint(0, 4097, (4,), generator=g).tolist()
        cases.append((f"random{k}", int(torch.randint(1, 1 << 17, (1,), generator=g)),
                      fx.ILIFParams(vth_mant=int(torch.randint(1, fx.VTH_MANT_MAX, (1,), generator=g)),
                                    i_decay=d[0], v_decay=d[1], c_decay=d[2], m_decay=d[3],
                                    mpiu=bool(k % 2), ciu=bool(k // 2 % 2))))
    # input_shift < 6: a layer fed graded (direct-encoded) input, its sums already in state units (shift 0), and an
    # intermediate shift; the same edges (u wrapping, v/c/m saturating) and random decays
    cases.append(("graded_ordinary", 200 << 6, fx.ILIFParams(vth_mant=64, input_shift=0)))
    cases.append(("graded_u_wraps", 1 << 24, fx.ILIFParams(vth_mant=64, i_decay=0, input_shift=0)))
    cases.append(("graded_v_saturates", 1 << 22, fx.ILIFParams(vth_mant=fx.VTH_MANT_MAX, v_decay=0, input_shift=0)))
    cases.append(("graded_m_saturates", 1 << 21, fx.ILIFParams(vth_mant=1, m_decay=0, input_shift=0)))
    cases.append(("shift3_c_saturates", 1 << 19, fx.ILIFParams(vth_mant=2, c_decay=0, i_decay=0, input_shift=3)))
    for k in range(4):
        d = torch.randint(0, 4097, (4,), generator=g).tolist()
        shift = int(torch.randint(0, fx.ACT_SHIFT, (1,), generator=g))
        cases.append((f"random_shift{shift}_{k}", int(torch.randint(1, 1 << 17, (1,), generator=g)) << (6 - shift),
                      fx.ILIFParams(vth_mant=int(torch.randint(1, fx.VTH_MANT_MAX, (1,), generator=g)),
                                    i_decay=d[0], v_decay=d[1], c_decay=d[2], m_decay=d[3],
                                    mpiu=bool(k % 2), ciu=bool(k // 2 % 2), input_shift=shift)))
    return cases


INT_CASES = _int_cases()


def _check_int_kernel(backend, a: torch.Tensor, p: fx.ILIFParams, name: str) -> None:
    s_ref, st_ref = _int_reference(a, p)
    s_k, st_k = kernels.integer_forward(backend, a, p, True, torch.float32)
    assert torch.equal(s_k.to(torch.int64), s_ref), f"{name}: {int((s_k != s_ref).sum())} spike mismatches"
    for k in fx.STATE_NAMES:
        assert torch.equal(st_k[k], st_ref[k]), f"{name}: state {k} differs in {int((st_k[k] != st_ref[k]).sum())}"
    s_only, none = kernels.integer_forward(backend, a, p, False, torch.float64)
    assert none is None and torch.equal(s_only.to(torch.int64), s_ref)


@needs_cpu
@pytest.mark.parametrize("name,mag,p", INT_CASES, ids=[c[0] for c in INT_CASES])
def test_cpu_integer_matches_ilif_step(name, mag, p):
    g = torch.Generator().manual_seed(len(name))
    a = torch.randint(-mag, mag + 1, (3, 37, 45), generator=g) + mag // 4
    s_ref, st_ref = _int_reference(a, p)
    if name.endswith(("wraps", "saturates")):  # the edge is really reached
        key = name.split("_")[-2]
        lim = fx.STATE_MAX
        assert (st_ref[key].abs() >= lim - (1 << 12)).any() or key == "u", name
        if key == "u":
            step = fx.decay(st_ref["u"][..., :-1], p.i_decay) + (a[..., 1:] << p.input_shift)
            assert (step != st_ref["u"][..., 1:]).any(), "u never wrapped"
    _check_int_kernel(cpu_build.load(), a, p, name)


def test_integer_cases_cover_every_input_shift_edge():
    """The kernels' integer cases hold input_shift 6 (spikes), 0 (graded input) and one between, and the graded
    ones reach u's wrap and v's and m's saturation (checked per case in test_cpu_integer_matches_ilif_step)."""
    shifts = {p.input_shift for _, _, p in INT_CASES}
    assert {0, fx.ACT_SHIFT} <= shifts and shifts - {0, fx.ACT_SHIFT}
    graded = {name for name, _, p in INT_CASES if p.input_shift == 0}
    assert {"graded_u_wraps", "graded_v_saturates", "graded_m_saturates"} <= graded


NEURON_INT_CASES = [(shift, bias, dtype) for shift in (0, 3, fx.ACT_SHIFT) for bias in (False, True)
                    for dtype in (torch.float32, torch.float64)]


def _check_neuron_integer(kernel: str, input_shift: int, bias: bool, dtype: torch.dtype) -> None:
    """The neuron's quantized forward on ``kernel`` against its torch path (ilif_step stepped in Python): the float
    synaptic input z [N, C, H, W, T] is rounded to ``a = round(z * 2**(12 - input_shift))`` (values on the grid, off
    it and exactly half-way, so half-to-even is exercised), the per-channel bias joins it, u wraps; 0 spike and 0
    state mismatches. A ragged neuron count (not a multiple of the CPU kernel's block of 16)."""
    n = Neuron(variant="ILIF", quantized=True, record_states=True).to(dtype)
    n.input_shift = input_shift
    scale = 1 << (fx.DECAY_BITS - input_shift)
    if bias:
        n.add_bias(5, torch.linspace(-40.0, 40.0, 5))      # up to 40 thresholds: 2560 << 6 state units
    g = torch.Generator().manual_seed(7 * input_shift + bias)
    shape = (2, 5, 3, 7, 40)
    mag = 1 << (16 - input_shift)                         # synaptic sums up to 16 thresholds
    grid = torch.randint(-mag, mag, shape, generator=g).to(dtype)
    off = torch.rand(shape, generator=g, dtype=torch.float64).to(dtype)
    half = torch.randint(0, 3, shape, generator=g)      # 0: on the grid, 1: exactly half-way, 2: anywhere between
    frac = torch.where(half == 0, torch.zeros_like(off), torch.where(half == 1, torch.full_like(off, 0.5), off))
    z = (grid + frac) / scale
    big = torch.zeros(shape, dtype=torch.bool)
    big[0, 0, 0, 0, ::3] = True                          # sums far beyond 24 bits: u wraps
    z = torch.where(big, z + ((1 << 26) + 12345) / scale, z)
    n.kernel = "torch"
    s_t = n.integer_dynamics(z)
    st_t = dict(n.states)
    assert kernels.last_used()["integer"] == "torch"
    n.kernel = kernel
    s_k = n.integer_dynamics(z)
    assert kernels.last_used()["integer"] == kernel
    assert 0.05 < float(s_t.mean()) < 0.95 and s_k.dtype == dtype
    assert torch.equal(s_t, s_k), f"{int((s_t != s_k).sum())} spike mismatches"
    for k in fx.STATE_NAMES:
        assert torch.equal(st_t[k], n.states[k]), f"state {k} differs in {int((st_t[k] != n.states[k]).sum())}"
    n.record_states = False
    assert torch.equal(n.integer_dynamics(z), s_t)


@needs_cpu
@pytest.mark.parametrize("input_shift,bias,dtype", NEURON_INT_CASES)
def test_cpu_integer_neuron_rounds_float_input_like_torch(input_shift, bias, dtype):
    """A neuron fed graded input (``input_shift = 0``, as a ``graded_input`` block sets), an intermediate shift and
    spikes (6), with and without a bias, float32 and float64: the compiled kernel rounds the float input itself
    and gives the torch path's spikes and states exactly."""
    _check_neuron_integer("cpu", input_shift, bias, dtype)


@needs_cpu
def test_cpu_integer_through_neuron_records_states():
    n = Neuron(variant="ILIF", quantized=True, record_states=True)
    z = torch.randint(-4000, 4000, (2, 33, 40)).double() / fx.WEIGHT_SCALE
    n.kernel = "torch"
    s_t = n.integer_dynamics(z)
    st_t = dict(n.states)
    n.kernel = "cpu"
    s_c = n.integer_dynamics(z)
    assert kernels.last_used()["integer"] == "cpu"
    assert torch.equal(s_t, s_c) and s_c.dtype == z.dtype
    for k in fx.STATE_NAMES:
        assert torch.equal(st_t[k], n.states[k]), k


# ---------------------------------------------------------------------------------------------------------
# selection
# ---------------------------------------------------------------------------------------------------------
def test_kernel_switch(monkeypatch):
    z = torch.zeros(2, 3)
    monkeypatch.setenv(kernels.ENV, "bogus")
    with pytest.raises(kernels.KernelUnavailable, match="ILIF_LAVA_KERNEL='bogus'"):
        kernels.select(z)
    monkeypatch.setenv(kernels.ENV, "torch")
    assert kernels.select(z) == ("torch", None)
    monkeypatch.delenv(kernels.ENV)
    assert kernels.select(z.half())[0] == "torch"                # auto: unsupported dtype falls back
    if HAVE_CPU:
        assert kernels.select(z)[0] == "cpu"
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    if not torch.cuda.is_available():
        with pytest.raises(kernels.KernelUnavailable, match="gpu but the tensors are on cpu"):
            kernels.select(z, "gpu")
    with pytest.raises(kernels.KernelUnavailable, match="float32/float64"):
        kernels.select(z.half(), "cpu")


def test_cache_key_covers_every_build_input(monkeypatch, tmp_path):
    """The cache folder's key changes with the flags, the source, the compiler (command and version) and torch's
    headers, and with nothing else: environments that differ get their own folders instead of rebuilding one."""
    base = cpu_build.build_inputs()
    key = cpu_build.cache_key(base)
    assert cpu_build.cache_key(cpu_build.build_inputs()) == key == cpu_build.cache_key(dict(base))
    assert len(key) == cpu_build.KEY_LENGTH
    assert base["source_sha256"] == hashlib.sha256(cpu_build.SOURCE.read_bytes()).hexdigest()
    assert base["cflags"] == " ".join(cpu_build.CFLAGS) and torch.__version__ == base["torch_version"]
    keys = {key}
    keys.add(cpu_build.cache_key(cpu_build.build_inputs(cflags=cpu_build.CFLAGS + ["-DILIF_TEST_FLAG"])))
    keys.add(cpu_build.cache_key(cpu_build.build_inputs(cflags=[f for f in cpu_build.CFLAGS if f != "-O3"])))
    keys.add(cpu_build.cache_key(cpu_build.build_inputs(source=cpu_build.SOURCE.read_bytes() + b"\n// edit\n")))
    for field in ("torch_version", "torch_include", "python", "cpu_flags", "torch_cxx11_abi"):
        keys.add(cpu_build.cache_key(dict(base, **{field: base[field] + "x"})))
    # another compiler: a different command and a different --version (a fake one that only reports a version)
    fake = tmp_path / "fake-c++"
    fake.write_text("#!/bin/sh\necho 'fake c++ 99.1'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))
    other = cpu_build.build_inputs()
    assert other["compiler_command"].endswith(str(fake)) and "fake c++ 99.1" in other["compiler_version"]
    keys.add(cpu_build.cache_key(other))
    # the same compiler command whose binary changed (an upgrade in place): only the version differs
    fake.write_text("#!/bin/sh\necho 'fake c++ 99.2'\n")
    cpu_build._version_cache.clear()
    keys.add(cpu_build.cache_key(cpu_build.build_inputs()))
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    assert cpu_build.build_inputs()["compiler_version"].startswith("unavailable")
    assert len(keys) == 11, "every changed input must give its own key"


@needs_cpu
def test_cache_folder_holds_its_inputs_and_source():
    """The loaded kernel came from the folder named by this environment's key, which records its inputs and
    compiles its own copy of the source (so the build command does not depend on where the checkout lives)."""
    folder = cpu_build.loaded_from()
    assert folder is not None and folder.name == cpu_build.cache_key()
    assert json.loads((folder / cpu_build.INPUTS_FILE).read_text()) == cpu_build.build_inputs()
    assert (folder / cpu_build.SOURCE.name).read_bytes() == cpu_build.SOURCE.read_bytes()
    assert str(folder / cpu_build.SOURCE.name) in (folder / "build.ninja").read_text()


def _run_py(code: str, env_extra: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, **env_extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_no_compiler_falls_back_to_torch_with_one_notice(tmp_path):
    """A machine without a C++ compiler: one-line notice, the torch path runs, spikes are right."""
    code = """
        import torch
        from ilif_lava import kernels
        from ilif_lava.neuron import Neuron
        n = Neuron(variant='ILIF')
        z = torch.randn(2, 5, 7) + 0.5
        assert torch.equal(n.float_dynamics(z), n.reference_dynamics(z))
        assert kernels.last_used()['float'] == 'torch', kernels.last_used()
        print('OK')
    """
    res = _run_py(code, {"ILIF_LAVA_KERNEL_CACHE": str(tmp_path / "cache"), "CXX": str(tmp_path / "no-such-c++"),
                         "PATH": "/nonexistent"}, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip().endswith("OK")
    notices = [ln for ln in res.stderr.splitlines() if "[ilif-lava] notice" in ln]
    assert len(notices) == 1 and "using the torch path" in notices[0], res.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------
# the Triton GPU kernel, proven on the CPU with Triton's interpreter
# ---------------------------------------------------------------------------------------------------------
TRITON_SCRIPT = """
import itertools, torch
from ilif_lava import kernels, fixed_point as fx
from ilif_lava.neuron import Neuron
from tests.test_kernels import _compare_float, _inputs, _check_int_kernel, INT_CASES, NEURON_INT_CASES, \
    _check_neuron_integer
count = 0
for variant, inh, sg, cd, rule in itertools.product(("ILIF", "MPIU", "CIU", "LIF", "PLIF", "IPLIF"),
                                                    ("plan", "sigmoid"), ("rectangle", "exp", "sigmoid"),
                                                    (None, 0.25), ("pass", "block")):
    if inh == "sigmoid" and sg != "sigmoid" and cd is not None:
        continue  # keep the interpreter run short; every factor is still covered
    n = Neuron(variant=variant, inhibition=inh, surrogate=sg, current_decay=cd, tau=2.0, kappa=0.3,
               ciu_grad_at_zero=rule, tau_grad=0.3, scale_grad=1.0).double()
    _compare_float(n, _inputs((2, 19, 13), seed=count), "gpu", 1e-9)
    count += 1
for steps, shape in ((1, (1, 1)), (33, (1, 130)), (300, (1, 3))):
    n = Neuron(variant="IPLIF", tau=1.5, kappa=0.2, current_decay=0.1).double()
    _compare_float(n, _inputs(shape + (steps,), seed=steps), "gpu", 1e-9)
    count += 1
n = Neuron(variant="ILIF", inhibition="plan")
_compare_float(n, _inputs((40, 3, 21), seed=5, dtype=torch.float32).permute(1, 0, 2), "gpu", 1e-5)
from ilif_lava.kernels import ilif_triton
for name, mag, p in INT_CASES:
    g = torch.Generator().manual_seed(len(name))
    a = torch.randint(-mag, mag + 1, (2, 19, 23), generator=g) + mag // 4
    _check_int_kernel(ilif_triton, a, p, name)
    count += 1
for shift, bias, dtype in NEURON_INT_CASES:
    _check_neuron_integer("gpu", shift, bias, dtype)
    count += 1
print("TRITON_OK", count)
"""


def test_triton_kernel_under_interpreter():
    pytest.importorskip("triton")
    res = _run_py(TRITON_SCRIPT, {"TRITON_INTERPRET": "1", kernels.ENV: "gpu"})
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    assert "TRITON_OK" in res.stdout
