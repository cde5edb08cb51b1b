"""The neuron bias (issue 26 item 1): one rule, ``u += bias_mant << bias_exp`` in the input current, everywhere.

1. ``ilif_lava.fixed_point``: the Loihi form and bit widths, the kernels' input-unit form, quantization, refusals;
   the rule's defining property: a bias is exactly a constant synaptic input (so a folded batch norm is exact).
2. The neuron and blocks: float paths (torch loop, compiled CPU kernel, Triton under its interpreter) equal to the
   step-by-step reference with the bias, gradients to the bias (1e-9 in float64); the quantized path's kernels
   equal :func:`ilif_lava.fixed_point.ilif_step`; straight-through quantization; the bias learns.
3. Lava: the ``fixed_pt`` ILIF process against the quantized neuron, 0 spike and 0 state (u, v, c, m) mismatches,
   every variant, biases that wrap u and saturate v, c and m; netx's conv layout (per-channel bias over (W, H, C));
   ``floating_pt`` against the float neuron; refusals of bad biases, one line naming the process and key.

Lava process tests feed integer synaptic input from a RingBuffer straight into one ILIF process (no synapse), so
Lava's states read after step j+1 equal the neuron's at t = j with no shift (as in tests/test_fixed_point_lava.py).
"""
from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch

import ilif_lava  # noqa: F401
from ilif_lava import block
from ilif_lava import fixed_point as fx
from ilif_lava import kernels
from ilif_lava.kernels import cpu_build
from ilif_lava.neuron import Neuron

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("ILIF", "MPIU", "CIU", "LIF")
HAVE_CPU = cpu_build.load() is not None
needs_cpu = pytest.mark.skipif(not HAVE_CPU, reason=f"compiled CPU kernel unavailable: {cpu_build.error()}")


# =========================================================================================================
# 1. the integer rule
# =========================================================================================================
def test_effective_bias_is_mantissa_shifted_by_exponent():
    mant = np.arange(fx.BIAS_MANT_MIN, fx.BIAS_MANT_MAX + 1, dtype=np.int64)
    assert (fx.BIAS_MANT_MIN, fx.BIAS_MANT_MAX) == (-4096, 4095)          # 13-bit signed, Lava's bias_mant
    for exp in range(fx.BIAS_EXP_MIN, fx.BIAS_EXP_MAX + 1):
        got = fx.effective_bias(mant, exp)
        np.testing.assert_array_equal(got, mant * 2 ** exp)
        assert torch.equal(fx.effective_bias(torch.from_numpy(mant), exp), torch.from_numpy(got))
        assert np.abs(got).max() < fx.STATE_MAX                           # the bias alone never leaves 24 bits
    np.testing.assert_array_equal(fx.effective_bias(mant[:3], np.array([6])), mant[:3] * 64)   # a Var [1]
    assert fx.bias_step(fx.BIAS_EXP) == 1 / 64 and fx.BIAS_EXP == fx.ACT_SHIFT == 6


def test_bias_as_input_units_equals_the_current_term():
    rng = np.random.default_rng(5)
    a = rng.integers(-40000, 40000, 5000)
    mant = rng.integers(fx.BIAS_MANT_MIN, fx.BIAS_MANT_MAX + 1, 5000)
    for exp in (6, 7):
        lhs = (a << fx.ACT_SHIFT) + fx.effective_bias(mant, exp)
        np.testing.assert_array_equal((a + fx.bias_as_input(mant, exp)) << fx.ACT_SHIFT, lhs)
    for exp in range(0, 6):
        with pytest.raises(ValueError, match=f"bias_exp {exp} is not a whole number of input units"):
            fx.bias_as_input(mant, exp)


def test_bias_quantization_rounds_half_even_and_clips():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 4095.4, 4095.6, 5000.0, -4096.4, -4096.6, -1e9]) / 64
    want = [0, 2, 2, 0, -2, 0, 4095, 4095, 4095, -4096, -4096, -4096]
    np.testing.assert_array_equal(fx.bias_to_mant(x), want)
    assert fx.bias_to_mant(torch.tensor(x)).tolist() == want
    mant = np.arange(-4096, 4096)
    np.testing.assert_array_equal(fx.bias_to_mant(fx.bias_to_float(mant)), mant)   # exact round trip
    np.testing.assert_array_equal(fx.bias_to_float(mant, 7), mant / 32.0)
    assert fx.bias_to_mant(np.array([1.0]), 7).tolist() == [32]


def _run_steps(a: np.ndarray, p: fx.ILIFParams, bias) -> Dict[str, np.ndarray]:
    state = fx.zero_state_like(a[..., 0])
    out = {k: [] for k in fx.STATE_NAMES + ("s",)}
    for t in range(a.shape[-1]):
        state = fx.ilif_step(state, a[..., t], p, bias)
        for k in out:
            out[k].append(getattr(state, k))
    return {k: np.stack(v, -1) for k, v in out.items()}


@pytest.mark.parametrize("variant,i_decay", list(itertools.product(VARIANTS, (fx.DECAY_ONE, 90))))
def test_bias_is_a_constant_synaptic_input(variant, i_decay):
    """The rule's defining property (why the bias joins the current): a neuron with bias b computes exactly what
    the unbiased neuron computes on input a + b, states included, so folding a batch norm's shift into the bias
    changes nothing. The CIU reads the biased previous current; a current decay integrates the bias."""
    rng = np.random.default_rng(17)
    flags = {"mpiu": variant in ("ILIF", "MPIU"), "ciu": variant in ("ILIF", "CIU")}
    p = fx.ILIFParams(vth_mant=200, i_decay=i_decay, v_decay=1500, c_decay=2000, m_decay=300, **flags)
    a = rng.integers(-150, 150, (64, 50))
    mant = rng.integers(-300, 300, 64)
    for exp in (6, 7):
        biased = _run_steps(a, p, fx.effective_bias(mant, exp))
        folded = _run_steps(a + fx.bias_as_input(mant, exp)[:, None], p, 0)
        for k in biased:
            np.testing.assert_array_equal(biased[k], folded[k], err_msg=k)
        assert 0.05 < biased["s"].mean() < 0.95
    # and the bias matters: without it the spikes differ
    assert (_run_steps(a, p, 0)["s"] != biased["s"]).any()

    # the float neuron: bias b == input z + b (same spikes, same states)
    kw = {"variant": variant, "tau": 2.0, "kappa": 0.4, "beta": 0.9, "threshold": 1.0,
          "current_decay": None if i_decay == fx.DECAY_ONE else 0.3, "record_states": True}
    z = torch.randn(3, 8, 30, dtype=torch.float64) * 0.8
    b = torch.linspace(-0.9, 0.9, 8, dtype=torch.float64)
    nb, n0 = Neuron(**kw).double(), Neuron(**kw).double()
    nb.add_bias(8, b)
    s_b = nb.reference_dynamics(z)
    s_0 = n0.reference_dynamics(z + nb.quantized_bias.detach()[:, None])
    assert torch.equal(s_b, s_0)
    for k in fx.STATE_NAMES:
        assert torch.equal(nb.states[k], n0.states[k]), k


@pytest.mark.parametrize("mant,exp,shape,match", [
    (4096, 6, (3,), r"L7: bias_mant must lie in \[-4096, 4095\] \(13-bit\), got 4096\.\.4096"),
    (np.array([0, -4097, 3]), 6, (3,), r"L7: bias_mant must lie in \[-4096, 4095\] \(13-bit\), got -4097\.\.3"),
    (np.array([0.5, 1.0]), 6, (2,), r"L7: bias_mant must be finite integers"),
    (np.array([np.nan]), 6, (1,), r"L7: bias_mant must be finite integers"),
    (np.array(["a"]), 6, (1,), r"L7: bias_mant must be integers, got dtype <U1"),
    (np.zeros(4, np.int64), 6, (3,), r"L7: bias_mant of shape \(4,\) does not broadcast to the layer shape \(3,\)"),
    (np.zeros(2, np.int64), 6, (4, 4, 3), r"bias_mant of shape \(2,\) does not broadcast to the layer shape"),
    (0, 8, (3,), r"L7: bias_exp must be one integer in \[0, 7\], got \[8\]"),
    (0, -1, (3,), r"L7: bias_exp must be one integer in \[0, 7\], got \[-1\]"),
    (0, 6.5, (3,), r"L7: bias_exp must be one integer in \[0, 7\]"),
    (0, np.array([6, 6]), (3,), r"L7: bias_exp must be one integer in \[0, 7\], got \[6 6\]"),
])
def test_check_bias_refusals(mant, exp, shape, match):
    with pytest.raises(ValueError, match=match) as info:
        fx.check_bias(mant, exp, shape, where="L7")
    assert "\n" not in str(info.value)


def test_check_bias_accepts_and_broadcasts():
    full, exp = fx.check_bias(np.array([5, -7]), np.array([6]), (3, 2, 2), where="L")
    assert exp == 6 and full.dtype == np.int64 and full.shape == (3, 2, 2)
    assert (full[..., 0] == 5).all() and (full[..., 1] == -7).all()
    full, exp = fx.check_bias(np.array([-4096.0, 4095.0]), 7, (2,))
    assert full.tolist() == [-4096, 4095] and exp == 7
    assert fx.check_bias(0, 0, (4,))[0].tolist() == [0, 0, 0, 0]


# =========================================================================================================
# 2. neuron and blocks
# =========================================================================================================
def _bias_grads(n: Neuron, z: torch.Tensor, kernel: str, reference: bool = False):
    """(spikes, dz, dbias) of a fixed random readout of the spikes; the float path on ``kernel``."""
    zz = z.detach().clone().requires_grad_(True)
    n.kernel = kernel
    n.bias.grad = None
    s = n.reference_dynamics(zz) if reference else n.float_dynamics(zz)
    readout = torch.randn(s.shape, generator=torch.Generator().manual_seed(11), dtype=s.dtype)
    gz, gb = torch.autograd.grad((s * readout).sum(), [zz, n.bias])
    return s.detach(), gz, gb


FLOAT_KERNELS = ["torch"] + (["cpu"] if HAVE_CPU else [])


@pytest.mark.parametrize("kernel,variant,current_decay", list(itertools.product(FLOAT_KERNELS, VARIANTS + ("IPLIF",),
                                                                              (None, 0.25))))
def test_float_bias_paths_match_reference(kernel, variant, current_decay):
    n = Neuron(variant=variant, current_decay=current_decay, tau=2.0, kappa=0.3, surrogate="exp",
               tau_grad=0.3).double()
    n.add_bias(6, torch.tensor([-0.75, -0.3, 0.0, 0.2, 0.5, 0.9]))
    z = torch.randn(2, 6, 4, 5, 23, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 0.9
    s_ref, gz_ref, gb_ref = _bias_grads(n, z, "torch", reference=True)
    s_k, gz_k, gb_k = _bias_grads(n, z, kernel)
    assert kernels.last_used()["float"] == kernel
    assert torch.equal(s_k, s_ref), f"{int((s_k != s_ref).sum())} spike mismatches"
    assert 0.05 < s_ref.mean() < 0.95
    torch.testing.assert_close(gz_k, gz_ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(gb_k, gb_ref, rtol=1e-9, atol=1e-9)
    # the bias enters every step and position of its channel like the input does
    torch.testing.assert_close(gb_k, gz_k.sum(dim=(0, 2, 3, 4)), rtol=1e-9, atol=1e-9)
    assert (gb_ref.abs() > 1e-6).sum() >= 4
    # the per-channel layout: channel 0's strongly negative bias lowers its rate below channel 5's
    assert s_ref[:, 0].mean() < s_ref[:, 5].mean()


def _int_case(seed: int, variant: str, n: int = 37, steps: int = 60) -> Tuple[Neuron, torch.Tensor]:
    """A quantized neuron with biases over the whole 13-bit range and inputs that wrap/saturate its states."""
    g = torch.Generator().manual_seed(seed)
    neuron = Neuron(variant=variant, threshold=40.0, tau=1e6 if seed % 2 else 3.0, kappa=0.999, beta=1.0,
                    current_decay=0.01 if seed % 3 else None, quantized=True, record_states=True)
    neuron.add_bias(n, torch.randint(fx.BIAS_MANT_MIN, fx.BIAS_MANT_MAX + 1, (n,), generator=g) / 64)
    a = torch.randint(-2000, 2000, (3, n, steps), generator=g)
    return neuron, a.double() / fx.WEIGHT_SCALE


@needs_cpu
@pytest.mark.parametrize("variant,seed", list(itertools.product(VARIANTS, (1, 2, 3))))
def test_cpu_integer_kernel_with_bias_matches_ilif_step(variant, seed):
    neuron, z = _int_case(seed, variant)
    neuron.kernel = "torch"
    s_t = neuron.integer_dynamics(z)
    st_t = dict(neuron.states)
    neuron.kernel = "cpu"
    s_c = neuron.integer_dynamics(z)
    assert kernels.last_used()["integer"] == "cpu"
    assert torch.equal(s_t, s_c), f"{int((s_t != s_c).sum())} spike mismatches"
    for k in fx.STATE_NAMES:
        assert torch.equal(st_t[k], neuron.states[k]), k
    assert (st_t["v"].abs() == fx.STATE_MAX).any()                      # saturation is really exercised


TRITON_SCRIPT = """
import itertools, torch
from ilif_lava import kernels, fixed_point as fx
from tests.test_bias import _bias_grads, _int_case
from ilif_lava.neuron import Neuron
count = 0
for variant, cd in itertools.product(("ILIF", "MPIU", "CIU", "LIF"), (None, 0.25)):
    n = Neuron(variant=variant, current_decay=cd, tau=2.0, kappa=0.3).double()
    n.add_bias(5, torch.tensor([-0.75, -0.3, 0.2, 0.5, 0.9]))
    z = torch.randn(2, 5, 7, 19, generator=torch.Generator().manual_seed(count), dtype=torch.float64) * 0.9
    ref = _bias_grads(n, z, "torch", reference=True)
    got = _bias_grads(n, z, "gpu")
    assert kernels.last_used()["float"] == "gpu"
    assert torch.equal(got[0], ref[0]), variant
    for x, y in zip(got[1:], ref[1:]):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-9)
    neuron, zi = _int_case(count + 1, variant, n=11, steps=40)
    neuron.kernel = "torch"
    s_t = neuron.integer_dynamics(zi)
    st_t = dict(neuron.states)
    neuron.kernel = "gpu"
    s_g = neuron.integer_dynamics(zi)
    assert kernels.last_used()["integer"] == "gpu"
    assert torch.equal(s_t, s_g), variant
    for k in fx.STATE_NAMES:
        assert torch.equal(st_t[k], neuron.states[k]), (variant, k)
    count += 1
print("TRITON_BIAS_OK", count)
"""


def test_triton_kernel_with_bias_under_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1", **{kernels.ENV: "gpu"})
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(TRITON_SCRIPT)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (res.stdout[-2000:], res.stderr[-4000:])
    assert "TRITON_BIAS_OK 8" in res.stdout


def test_quantized_bias_straight_through_and_mantissas():
    n = Neuron()
    n.add_bias(5, [0.3, -0.01, 63.98, 70.0, -80.0])
    q = n.quantized_bias
    assert q.tolist() == pytest.approx([19 / 64, -1 / 64, 4095 / 64, 4095 / 64, -4096 / 64])
    (g,) = torch.autograd.grad((q * torch.arange(1.0, 6.0)).sum(), [n.bias])
    assert g.tolist() == [1.0, 2.0, 3.0, 0.0, 0.0]                    # straight through inside, 0 where clipped
    assert n.bias_mant.dtype == np.int64 and n.bias_mant.tolist() == [19, -1, 4095, 4095, -4096]
    assert n.bias_exp == 6
    assert Neuron().bias is None and Neuron().bias_mant is None and Neuron().quantized_bias is None
    with pytest.raises(ValueError, match="bias: init must be one number or 5 numbers"):
        Neuron().add_bias(5, [1.0, 2.0])
    with pytest.raises(ValueError, match="bias: this neuron already has a bias"):
        n.add_bias(5)
    with pytest.raises(ValueError, match=r"bias: the neuron has a bias for 5 channels but its input has shape"):
        n(torch.zeros(1, 4, 3))


@pytest.mark.parametrize("quantized", [False, True])
def test_bias_learns_through_a_block(quantized):
    """Only the bias is trained: gradients reach it through the block (float path, or QAT's straight-through
    estimator) and move every neuron's firing rate toward its target."""
    torch.manual_seed(0)
    blk = block.Dense({"threshold": 1.0, "tau": 2.0, "variant": "ILIF", "quantized": quantized,
                       "surrogate": "exp", "tau_grad": 0.5}, 20, 6, weight_scale=1, bias=True)
    for p in blk.synapse.parameters():
        p.requires_grad_(False)
    x = (torch.rand(8, 20, 30) < 0.3).float()
    target = torch.tensor([0.05, 0.2, 0.4, 0.6, 0.8, 0.95])
    opt = torch.optim.Adam([blk.neuron.bias], lr=0.05)

    def error() -> torch.Tensor:
        return ((blk(x).mean(dim=(0, 2)) - target) ** 2).sum()
    with torch.no_grad():
        before = float(error())
    for _ in range(60):
        opt.zero_grad()
        error().backward()
        opt.step()
    with torch.no_grad():
        after = float(error())
    assert after < 0.2 * before, (before, after)
    assert blk.neuron.bias_mant.tolist() == sorted(blk.neuron.bias_mant.tolist())  # higher target, higher bias


def test_block_bias_arguments_and_layout():
    params = {"threshold": 1.0, "variant": "CIU"}
    assert block.Dense(params, 4, 3).neuron.bias is None
    assert block.Dense(params, 4, 3, bias=None).neuron.bias is None
    assert block.Dense(params, 4, 3, bias=True).neuron.bias.tolist() == [0.0, 0.0, 0.0]
    assert block.Dense(params, 4, 3, bias=0.25).neuron.bias.tolist() == [0.25] * 3
    assert block.Dense(params, 4, 3, bias=np.array([1.0, -1.0, 0.5])).neuron.bias.tolist() == [1.0, -1.0, 0.5]
    with pytest.raises(ValueError, match="bias: init must be one number or 3 numbers"):
        block.Dense(params, 4, 3, bias=[1.0, 2.0])
    conv = block.Conv(params, 2, 3, 3, padding=1, bias=[0.5, -0.25, 1.0]).double()
    assert "neuron.bias" in dict(conv.named_parameters())
    x = (torch.rand(2, 2, 5, 5, 9, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    ref = Neuron(**params).double()
    syn = conv.synapse(x)
    late = torch.cat([torch.zeros_like(syn[..., :1]), syn[..., :-1]], dim=-1)   # delay_shift: input one step late
    out = conv(x)
    assert torch.equal(out, ref(late + torch.tensor([0.5, -0.25, 1.0], dtype=torch.float64).reshape(1, 3, 1, 1, 1)))
    assert out[:, 2, ..., 0].all() and not out[:, :2, ..., 0].any()     # step 0: the bias alone (1.0 fires)
    # the parameter travels with the state dict
    copy = block.Conv(params, 2, 3, 3, padding=1, bias=True).double()
    copy.load_state_dict(conv.state_dict())
    assert torch.equal(copy(x), out)


def test_export_writes_the_bias_mantissas(tmp_path):
    """The export writes netx's layer ``bias``: the neuron's 13-bit mantissas (clipped, rounded), one per output
    channel; the Lava round trip is tests/test_netx_bias.py."""
    import h5py
    from ilif_lava.netx import export_blocks
    from ilif_lava.netx_schema import K
    params = {"threshold": 1.0, "variant": "ILIF"}
    blk = block.Dense(params, 4, 3, bias=[-100.0, 0.5, 1 / 128])
    blk(torch.zeros(1, 4, 2))
    with h5py.File(export_blocks([blk], tmp_path / "b.net"), "r") as h:
        np.testing.assert_array_equal(h[f"{K.LAYER}/0/{K.BIAS}"][()], [-4096, 32, 0])
    plain = block.Dense(params, 4, 3)
    plain(torch.zeros(1, 4, 2))
    with h5py.File(export_blocks([plain], tmp_path / "p.net"), "r") as h:
        assert K.BIAS not in h[f"{K.LAYER}/0"]                       # no bias: no key, as before


# =========================================================================================================
# 3. Lava
# =========================================================================================================
def _run_lava_many(proc_kwargs: List[dict], a: np.ndarray, tag: str) -> List[Tuple[np.ndarray, Dict[str, np.ndarray]]]:
    """ILIF processes (one per kwargs) all fed ``a`` [*shape, T] from one RingBuffer, run together in one Lava
    runtime -> per process (spikes [*shape, T] from its sink, states {k: [*shape, T]} read after every step)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    from ilif_lava.lava_proc.process import ILIF

    shape, steps = a.shape[:-1], a.shape[-1]
    src = io.source.RingBuffer(data=a)
    procs, sinks = [], []
    for kw in proc_kwargs:
        procs.append(ILIF(shape=shape, **kw))
        sinks.append(io.sink.RingBuffer(shape=shape, buffer=steps))
        src.s_out.connect(procs[-1].a_in)
        procs[-1].s_out.connect(sinks[-1].a_in)
    cfg = Loihi2SimCfg(select_tag=tag)
    rec = [{k: [] for k in fx.STATE_NAMES} for _ in procs]
    try:
        for _ in range(steps):
            src.run(condition=RunSteps(num_steps=1), run_cfg=cfg)
            for proc, r in zip(procs, rec):
                for k in fx.STATE_NAMES:
                    r[k].append(np.array(getattr(proc, k).get()))
        spikes = [np.array(sink.data.get()) for sink in sinks]
    finally:
        src.stop()
    return [(sp, {k: np.stack(v, axis=-1) for k, v in r.items()}) for sp, r in zip(spikes, rec)]


def _run_lava(proc_kwargs: dict, a: np.ndarray, tag: str) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """One ILIF process fed ``a`` [*shape, T] -> (spikes [*shape, T], states {k: [*shape, T]})."""
    return _run_lava_many([proc_kwargs], a, tag)[0]


def _int_kwargs(neuron: Neuron) -> dict:
    p = neuron.int_params
    return {"vth": p.vth_mant, "i_decay": p.i_decay, "v_decay": p.v_decay, "c_decay": p.c_decay,
            "m_decay": p.m_decay, "mpiu": p.mpiu, "ciu": p.ciu, "bias_mant": neuron.bias_mant,
            "bias_exp": neuron.bias_exp}


# (bias mantissa range, float neuron parameters, limits the case must reach: see _limits_reached)
LAVA_CASES = {
    "negative": ((-4096, -2000), {"threshold": 4.0, "tau": 1e6, "kappa": 0.5, "beta": 0.8}, ("h_neg",)),
    "positive_memory": ((2000, 4096), {"threshold": 20.0, "tau": 2.0, "kappa": 0.03, "beta": 1.0,
                                       "current_decay": 0.005}, ("u_wrap", "h_pos", "m_sat")),
    "ciu_memory": ((2000, 4096), {"threshold": 20.0, "tau": 2.0, "kappa": 0.9995, "beta": 1.0,
                                  "current_decay": 0.005}, ("u_wrap", "c_sat")),
    "mixed": ((-400, 400), {"threshold": 3.0, "tau": 1.5, "kappa": 0.2, "beta": 1.0, "current_decay": 0.3}, ()),
}
LAVA_N, LAVA_STEPS = 20, 48


@pytest.fixture(scope="module")
def lava_layers():
    """Every (variant, case) layer: one ILIF process each, all fed the same random integer input in one Lava run.
    -> (a [n, T], {(variant, case): neuron}, {(variant, case): (spikes, states)})."""
    rng = np.random.default_rng(26)
    a = rng.integers(-300, 300, (LAVA_N, LAVA_STEPS))
    neurons = {}
    for variant, case in itertools.product(VARIANTS, LAVA_CASES):
        (b_lo, b_hi), kw, _ = LAVA_CASES[case]
        neuron = Neuron(variant=variant, quantized=True, record_states=True, **kw)
        neuron.add_bias(LAVA_N, rng.integers(b_lo, b_hi, LAVA_N) / 64)
        neurons[(variant, case)] = neuron
    runs = _run_lava_many([_int_kwargs(nr) for nr in neurons.values()], a.astype(np.int32), "fixed_pt")
    return a, neurons, dict(zip(neurons, runs))


def _limits_reached(neuron: Neuron, a: np.ndarray, st: Dict[str, np.ndarray]) -> Dict[str, bool]:
    """Which limits the recorded integer states [n, T] hit: u wrapped, the charge h left 24 bits (saturated) up or
    down, c or m saturated. h is rebuilt from the states: h = decay(v[t-1]) + u[t] - max(c[t], 0)."""
    p = neuron.int_params
    u, v, c, m = (st[k] for k in fx.STATE_NAMES)
    bias = fx.effective_bias(neuron.bias_mant)[:, None]
    unwrapped = fx.decay(u[:, :-1], p.i_decay) + (a[:, 1:] << fx.ACT_SHIFT) + bias
    v_prev = np.concatenate([np.zeros_like(v[:, :1]), v[:, :-1]], axis=1)
    h = fx.decay(v_prev, p.v_decay) + u - (np.maximum(c, 0) if p.ciu else 0)
    return {"u_wrap": bool((unwrapped != u[:, 1:]).any()), "h_pos": bool((h > fx.STATE_MAX).any()),
            "h_neg": bool((h < -fx.STATE_MAX).any()), "c_sat": bool((c == fx.STATE_MAX).any()),
            "m_sat": bool((m == fx.STATE_MAX).any())}


@pytest.mark.parametrize("variant,case", list(itertools.product(VARIANTS, LAVA_CASES)))
def test_lava_fixed_pt_bias_bit_exact(variant, case, lava_layers):
    a, neurons, runs = lava_layers
    neuron, (spikes_l, states_l) = neurons[(variant, case)], runs[(variant, case)]
    z = torch.from_numpy(a[None]).double() / fx.WEIGHT_SCALE
    for kernel in FLOAT_KERNELS:
        neuron.kernel = kernel
        with torch.no_grad():
            spikes_t = neuron(z)[0].numpy()
        mism = {"spikes": int((spikes_t != spikes_l).sum())}
        mism.update({k: int((neuron.states[k][0].numpy() != states_l[k]).sum()) for k in fx.STATE_NAMES})
        assert mism == {"spikes": 0, "u": 0, "v": 0, "c": 0, "m": 0}, (kernel, mism)
    # the states really reach their limits (on the neuron's states, equal to Lava's)
    reached = _limits_reached(neuron, a, {k: neuron.states[k][0].numpy() for k in fx.STATE_NAMES})
    has = {"c_sat": neuron.flags["ciu"], "m_sat": neuron.flags["mpiu"]}
    missing = [k for k in LAVA_CASES[case][2] if has.get(k, True) and not reached[k]]
    assert not missing, (missing, reached)
    if case == "negative":
        assert spikes_t.sum() == 0
    if case == "mixed":
        assert 0.05 < spikes_t.mean() < 0.95 and len(set(spikes_t.sum(axis=1).tolist())) > 5   # graded rates


def test_lava_dense_synapse_into_biased_ilif_bit_exact():
    """A trained-looking ``block.Dense(..., bias=...)`` deployed by hand as Lava's own fixed_pt Dense synapse feeding
    the ILIF process with the block's ``neuron.bias_mant`` / ``bias_exp``: 0 spike and 0 state mismatches. Lava's
    synapse adds one step (delay_shift=True models it): Lava spikes equal the block output at the same index,
    Lava states after step j+1 equal the neuron's at t = j (tests/test_fixed_point_lava.py)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io
    from lava.proc.dense.process import Dense as LavaDense

    from ilif_lava.lava_proc.process import ILIF

    torch.manual_seed(4)
    n_in, n_out, steps = 30, 12, 40
    blk = block.Dense({"threshold": 1.25, "tau": 2.0, "variant": "ILIF", "current_decay": 0.2, "quantized": True,
                       "record_states": True}, n_in, n_out, weight_scale=2, delay_shift=True,
                      bias=torch.linspace(-2.0, 1.5, n_out)).eval()
    x = (torch.rand(1, n_in, steps) < 0.3).float()
    with torch.no_grad():
        out = blk(x)[0].numpy()
    st = {k: blk.neuron.states[k][0].numpy() for k in fx.STATE_NAMES}
    w = blk.synapse.pre_hook_fx(blk.synapse.weight, descale=True).detach().numpy().reshape(n_out, n_in)
    src = io.source.RingBuffer(data=x[0].numpy().astype(np.int32))
    syn = LavaDense(weights=w.astype(np.int32))
    neu = ILIF(shape=(n_out,), **_int_kwargs(blk.neuron))
    sink = io.sink.RingBuffer(shape=(n_out,), buffer=steps)
    src.s_out.connect(syn.s_in)
    syn.a_out.connect(neu.a_in)
    neu.s_out.connect(sink.a_in)
    rec = {k: [] for k in fx.STATE_NAMES}
    try:
        for _ in range(steps):
            neu.run(condition=RunSteps(num_steps=1), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
            for k in fx.STATE_NAMES:
                rec[k].append(np.array(getattr(neu, k).get()))
        spikes_l = np.array(sink.data.get())
    finally:
        neu.stop()
    np.testing.assert_array_equal(spikes_l, out)
    for k in fx.STATE_NAMES:
        lava = np.stack(rec[k], axis=-1)
        np.testing.assert_array_equal(lava[:, 1:], st[k][:, :-1], err_msg=k)
        np.testing.assert_array_equal(lava[:, 0], blk.neuron.lead_states[k][0].numpy(), err_msg=k)
    # Lava's first step: no input yet, the current is the bias alone, and the largest biases fire already
    np.testing.assert_array_equal(blk.neuron.lead_states["u"][0].numpy(), fx.effective_bias(blk.neuron.bias_mant))
    assert out[-1, 0] == 1 and out[0].sum() < out[-1].sum() and 0.05 < out.mean() < 0.95


@pytest.mark.parametrize("quantized", [False, True])
def test_delayed_input_is_slayers_output_shift_without_bias(quantized):
    """forward_delayed (input one step late) equals slayer's delay_shift (output one step late, 0 first) for an
    unbiased neuron, states included; with a bias the first step differs (it integrates the bias)."""
    z = torch.randn(2, 7, 25, generator=torch.Generator().manual_seed(9), dtype=torch.float64) + 0.4
    n = Neuron(variant="ILIF", current_decay=0.3, quantized=quantized, record_states=True).double()
    s = n(z)
    st = dict(n.states)
    s_d = n.forward_delayed(z)
    assert torch.equal(s_d[..., 1:], s[..., :-1]) and not s_d[..., 0].any()
    for k in fx.STATE_NAMES:
        assert torch.equal(n.states[k], st[k]) and not n.lead_states[k].any(), k
    n.add_bias(7, 1.5)                                   # above the threshold: the first step fires
    s_b = n.forward_delayed(z)
    assert s_b[..., 0].all() and (n.lead_states["u"] == (1.5 * 4096 if quantized else 1.5)).all()
    blk = block.Dense({"variant": "ILIF", "quantized": quantized}, 7, 3, bias=1.5)
    assert blk((torch.rand(2, 7, 5) < 0.5).float())[..., 0].all()


def test_lava_conv_layout_per_channel_bias():
    """netx lays conv neurons out as (W, H, C): the neuron's [C] bias_mant broadcasts over the last axis."""
    rng = np.random.default_rng(8)
    c, h, w, steps = 3, 4, 5, 30
    neuron = Neuron(variant="ILIF", threshold=1.5, tau=2.0, current_decay=0.5, quantized=True, record_states=True)
    neuron.add_bias(c, [-0.5, 0.25, 1.0])
    a = rng.integers(-80, 120, (1, c, h, w, steps))
    with torch.no_grad():
        spikes_t = neuron(torch.from_numpy(a).double() / fx.WEIGHT_SCALE)[0].numpy()     # [C, H, W, T]
    to_whc = (2, 1, 0, 3)
    spikes_l, states_l = _run_lava(_int_kwargs(neuron), a[0].transpose(to_whc).astype(np.int32), "fixed_pt")
    np.testing.assert_array_equal(spikes_l, spikes_t.transpose(to_whc))
    for k in fx.STATE_NAMES:
        np.testing.assert_array_equal(states_l[k], neuron.states[k][0].numpy().transpose(to_whc), err_msg=k)
    rates = spikes_t.mean(axis=(1, 2, 3))
    assert rates[0] < rates[1] < rates[2]


@pytest.mark.parametrize("current_decay", [None, 0.4])
def test_lava_floating_pt_bias_matches_float_neuron(current_decay):
    torch.manual_seed(2)
    n, steps = 10, 36
    neuron = Neuron(variant="ILIF", inhibition="plan", tau=3.0, threshold=0.75, kappa=0.3, beta=0.9,
                    current_decay=current_decay, record_states=True).double()
    neuron.add_bias(n, torch.linspace(-0.6, 0.6, n))
    z = (torch.randn(1, n, steps, dtype=torch.float64) * 0.5) * (torch.rand(1, n, steps) < 0.6)
    with torch.no_grad():
        s_t = neuron(z)[0].numpy()
    p = neuron.int_params
    kw = {**_int_kwargs(neuron), "float_params": {
        "lam": float(neuron.lam.detach()[0]), "beta": neuron.beta, "kappa": neuron.kappa,
        "cur_kept": 0.0 if current_decay is None else 1.0 - current_decay, "threshold": float(neuron.threshold),
        "inhibition": "plan"}}
    assert p.vth_mant == kw["vth"]
    s_l, st_l = _run_lava(kw, z[0].numpy(), "floating_pt")
    np.testing.assert_array_equal(s_l, s_t)
    for k in fx.STATE_NAMES:
        np.testing.assert_allclose(st_l[k], neuron.states[k][0].numpy(), atol=1e-9, err_msg=k)
    assert 0.05 < s_t.mean() < 0.95 and s_t[0].sum() < s_t[-1].sum()


@pytest.mark.parametrize("kwargs,match", [
    ({"bias_mant": np.array([0, 4096, 0])}, r"^dense_3: bias_mant must lie in \[-4096, 4095\] \(13-bit\)"),
    ({"bias_mant": np.array([1.5, 0, 0])}, r"^dense_3: bias_mant must be finite integers"),
    ({"bias_mant": np.zeros(2, np.int32)}, r"^dense_3: bias_mant of shape \(2,\) does not broadcast"),
    ({"bias_exp": 8}, r"^dense_3: bias_exp must be one integer in \[0, 7\]"),
])
def test_ilif_process_refuses_bad_bias(kwargs, match):
    from ilif_lava.lava_proc.process import ILIF
    with pytest.raises(ValueError, match=match) as info:
        ILIF(shape=(3,), vth=64, name="dense_3", **kwargs)
    assert "\n" not in str(info.value)


def test_ilif_process_stores_the_broadcast_bias():
    from ilif_lava.lava_proc.process import ILIF
    proc = ILIF(shape=(2, 2, 3), vth=64, bias_mant=np.array([7, -8, 0]), bias_exp=7)
    assert proc.bias_mant.init.shape == (2, 2, 3) and (proc.bias_mant.init[..., 1] == -8).all()
    assert np.asarray(proc.bias_exp.init).tolist() == [7]
