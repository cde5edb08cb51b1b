"""Tests of ilif_lava.neuron.Neuron against the specification (docs: /work/shared/docs/ilif-model.md, sections 1-2).

Every expected value comes from the spec (the 1.3 test vector, the step list of 1.2, the integer step list in the
docstring of ilif_lava/fixed_point.py) or from the independent reference implementations written in this file.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ilif_lava import fixed_point as fx
from ilif_lava.neuron import VARIANTS, Neuron, neuron_params_from_device

VTH = 1.0

# ---------------------------------------------------------------------------------------------------------
# independent float reference (ilif-model.md 1.2), written from the equations
# ---------------------------------------------------------------------------------------------------------


def ref_spike(x: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Heaviside (fires at x >= 0) with the rectangle surrogate: d/dx = 1/gamma where |x| <= gamma/2, else 0.

    Straight-through construction (no custom autograd.Function): value = step, gradient = g.
    """
    step = (x >= 0).to(x.dtype)
    g = ((x.abs() <= gamma / 2).to(x.dtype) / gamma).detach()
    return step.detach() + g * x - (g * x).detach()


def ref_variant(variant: str):
    """(mpiu, ciu, plif) straight from the brief/spec: LIF has no CIU and no MPIU step at all."""
    return {"ILIF": (True, True, False), "MPIU": (True, False, False), "CIU": (False, True, False),
            "LIF": (False, False, False), "PLIF": (False, False, True), "IPLIF": (True, True, True)}[variant]


def ref_ilif(x: torch.Tensor, lam, vth: float = VTH, beta: float = 1.0, kappa: float = 0.03,
             mpiu: bool = True, ciu: bool = True, inhibit=torch.sigmoid, gamma: float = 1.0,
             ciu_pass_at_zero: bool = True):
    """Step list of ilif-model.md 1.2 over the last (time) axis. Returns spikes and a dict of states (time last).

    The CIU rectifier is written out as C * mask with a constant mask: gradient 1 where C >= 0 (the authors'
    clamp(C, min=0), ``ciu_pass_at_zero``) or where C > 0 (relu)."""
    zero = torch.zeros_like(x[..., 0])
    C = M = V = I_prev = S_prev = zero
    S_out, rec = [], {"I": [], "C": [], "H": [], "M": [], "V": []}
    for t in range(x.shape[-1]):
        I = x[..., t]
        if ciu:
            C = kappa * (C + I_prev * S_prev)            # 1. CIU update
            mask = ((C >= 0) if ciu_pass_at_zero else (C > 0)).to(C.dtype)
            I_tilde = I - C * mask                        # 2. current inhibition (max(C, 0), written-out rule)
        else:
            I_tilde = I
        H = lam * V + I_tilde                             # 3. charge
        S = ref_spike(H - vth, gamma)                     # 4. fire
        V = H - S * vth                                   # 5. soft reset
        if mpiu:
            M = beta * (M + S * V)                        # 6. MPIU update (post-reset potential)
            V = V - S * inhibit(M)                        # 7. inhibitory reset
        I_prev, S_prev = I, S                             # 8.
        S_out.append(S)
        for k, val in zip(("I", "C", "H", "M", "V"), (I, C, H, M, V)):
            rec[k].append(val)
    return torch.stack(S_out, -1), {k: torch.stack(v, -1) for k, v in rec.items()}


def _plif_lam(w):
    return 1.0 - torch.sigmoid(w)


# ---------------------------------------------------------------------------------------------------------
# 1. the scalar test vector of ilif-model.md 1.3
# ---------------------------------------------------------------------------------------------------------
TV_INPUT = [1.5, 1.2, 0.3, 2.0, -0.5, 1.1, 1.4, 3.0]
TV_TABLE = np.array([  # I, C, H, S, M, V_end  (tau = 1.1)
    [1.500, 0.00000, 1.50000, 1, 0.50000, -0.12246],
    [1.200, 0.04500, 1.14387, 1, 0.64387, -0.51176],
    [0.300, 0.03735, 0.21613, 0, 0.64387, 0.21613],
    [2.000, 0.00112, 2.01853, 1, 1.66239, 0.17797],
    [-0.500, 0.06003, -0.54385, 0, 1.66239, -0.54385],
    [1.100, 0.00180, 1.04876, 1, 1.71115, -0.79823],
    [1.400, 0.03305, 1.29438, 1, 2.00553, -0.58700],
    [3.000, 0.04299, 2.90365, 1, 3.90918, 0.92331],
])
TV_SPIKES_TAU2 = [1, 1, 0, 1, 0, 0, 1, 1]


def _tv_input():
    return torch.tensor(TV_INPUT, dtype=torch.float64).reshape(1, 1, 8)  # [N, C, T]


def test_reference_reproduces_spec_test_vector():
    """Guards the reference implementation itself against the published table."""
    s, st = ref_ilif(_tv_input(), lam=1 - 1 / 1.1)
    np.testing.assert_array_equal(s[0, 0].numpy(), TV_TABLE[:, 3])
    for col, key in ((1, "C"), (2, "H"), (4, "M"), (5, "V")):
        np.testing.assert_allclose(st[key][0, 0].numpy(), TV_TABLE[:, col], atol=1e-5, err_msg=key)
    s2, _ = ref_ilif(_tv_input(), lam=0.5)
    assert s2[0, 0].tolist() == TV_SPIKES_TAU2


def test_default_inhibition_is_plan_everywhere():
    """Neuron(), the blocks and the CLI's models agree on the default inhibition map: PLAN, the one that deploys
    exactly (docs/neuron.md); the paper's sigmoid is asked for by name."""
    from ilif_lava import block
    from training.models import DEFAULT_ILIF
    assert Neuron().inhibition == "plan" == DEFAULT_ILIF["inhibition"]
    assert block.Dense({"threshold": 1.0, "tau": 2.0}, 4, 3).neuron.inhibition == "plan"
    assert Neuron(inhibition="sigmoid").inhibition == "sigmoid"


def test_spec_test_vector_tau_1_1():
    n = Neuron(tau=1.1, inhibition="sigmoid", record_states=True)  # the published table uses the sigmoid
    s = n(_tv_input())
    assert s.shape == (1, 1, 8)
    np.testing.assert_array_equal(s[0, 0].numpy(), TV_TABLE[:, 3])
    st = {k: v[0, 0].double().numpy() for k, v in n.states.items()}
    assert set(st) >= {"u", "v", "c", "m"}
    np.testing.assert_allclose(st["u"], TV_TABLE[:, 0], atol=1e-5)  # u = I (raw current)
    np.testing.assert_allclose(st["c"], TV_TABLE[:, 1], atol=1e-5)
    np.testing.assert_allclose(st["m"], TV_TABLE[:, 4], atol=1e-5)
    np.testing.assert_allclose(st["v"], TV_TABLE[:, 5], atol=1e-5)  # V_end
    # H is not a recorded state; steps 5+7 give H = V_end + S * (V_th + sigmoid(M))
    S = TV_TABLE[:, 3]
    H = st["v"] + S * (VTH + 1 / (1 + np.exp(-st["m"])))
    np.testing.assert_allclose(H, TV_TABLE[:, 2], atol=1e-5)
    # spec 1.3: M is non-negative and never decreases (beta = 1)
    assert (st["m"] >= 0).all() and (np.diff(st["m"]) >= 0).all()


def test_spec_test_vector_tau_2():
    s = Neuron(tau=2.0, inhibition="sigmoid")(_tv_input())
    assert s[0, 0].tolist() == TV_SPIKES_TAU2


def test_spec_test_vector_float32_input():
    """Default dtype path gives the same spikes."""
    s = Neuron(tau=1.1, inhibition="sigmoid")(_tv_input().float())
    np.testing.assert_array_equal(s[0, 0].numpy(), TV_TABLE[:, 3])


def test_fires_exactly_at_threshold():
    """Spec 1.2 step 4: Theta(x) = 1 for x >= 0, i.e. a spike iff H >= V_th (float and integer paths)."""
    x = torch.tensor([[[1.0, 0.0, 1.0 - 1 / 64, 0.0]]])
    for n in (Neuron(tau=1.1, variant="LIF"), Neuron(tau=1.1, variant="LIF", quantized=True)):
        with torch.no_grad():
            assert n(x)[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------------------
# 2. random tensors: Neuron vs the reference, all variants, forward + gradients
# ---------------------------------------------------------------------------------------------------------
def _random_input(seed: int, shape=(4, 16, 12)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (1.2 * torch.randn(shape, generator=g, dtype=torch.float64) + 0.7)


INHIBITIONS = ("sigmoid", "plan")


@pytest.mark.parametrize("kernel", ["torch", "cpu", None])
@pytest.mark.parametrize("rule", ["pass", "block"])
@pytest.mark.parametrize("tau,kappa", [(1.1, 0.03), (2.0, 0.3), (1.5, 0.9)])
@pytest.mark.parametrize("variant", ["ILIF", "CIU", "IPLIF"])
def test_ciu_gradient_parity_with_written_out_clamp(variant, tau, kappa, rule, kernel):
    """Gradient parity with the authors' clamp(C, min=0) (rule 'pass') and with relu ('block'), every path
    (torch fallback, compiled kernel, autograd reference), float64, to 1e-6."""
    from ilif_lava.kernels import cpu_build
    if kernel == "cpu" and cpu_build.load() is None:
        pytest.skip(f"compiled CPU kernel unavailable: {cpu_build.error()}")
    mpiu, ciu, plif = ref_variant(variant)
    x = _random_input(hash((variant, tau)) % 997, shape=(3, 24, 16))
    n = Neuron(threshold=VTH, tau=tau, kappa=kappa, variant=variant, inhibition="sigmoid", surrogate="rectangle",
               ciu_grad_at_zero=rule, kernel=kernel).double()
    xn = x.clone().requires_grad_(True)
    s = n.reference_dynamics(xn) if kernel is None else n.float_dynamics(xn)
    xr = x.clone().requires_grad_(True)
    lam = _plif_lam(torch.tensor([-math.log(tau - 1.0)], dtype=torch.float64)) if plif else 1.0 - 1.0 / tau
    sr, st = ref_ilif(xr, lam, kappa=kappa, mpiu=mpiu, ciu=ciu, ciu_pass_at_zero=(rule == "pass"))
    assert torch.equal(s.detach(), sr.detach())
    assert (st["C"] == 0).any(), "the tie C = 0 must occur"
    R = torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (s * R).sum().backward()
    (sr * R).sum().backward()
    torch.testing.assert_close(xn.grad, xr.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("inhibition", INHIBITIONS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_random_matches_reference(variant, inhibition):
    tau = 1.6
    mpiu, ciu, plif = ref_variant(variant)
    x = _random_input(10 * VARIANTS.index(variant) + INHIBITIONS.index(inhibition))
    n = Neuron(tau=tau, variant=variant, inhibition=inhibition, surrogate="rectangle", gamma=1.0,
               record_states=True)
    inhibit = torch.sigmoid if inhibition == "sigmoid" else fx.plan_sigmoid_float

    xn = x.clone().requires_grad_(True)
    s = n(xn)
    xr = x.clone().requires_grad_(True)
    if plif:
        w_ref = torch.tensor([-math.log(tau - 1.0)], dtype=torch.float64, requires_grad=True)
        lam = _plif_lam(w_ref)
    else:
        lam = 1.0 - 1.0 / tau
    sr, st = ref_ilif(xr, lam, mpiu=mpiu, ciu=ciu, inhibit=inhibit)

    # forward: exact spikes, states to 1e-6
    assert s.shape == x.shape
    torch.testing.assert_close(s.double(), sr.detach(), rtol=0, atol=0)
    rate = sr.mean().item()
    assert 0.2 < rate < 0.8, rate  # the inputs really exercise firing and resets
    for mine, ref in (("u", "I"), ("v", "V"), ("c", "C"), ("m", "M")):
        torch.testing.assert_close(n.states[mine].double(), st[ref].detach(), rtol=0, atol=1e-6,
                                   msg=lambda m, k=mine: f"state {k}: {m}")
    if not mpiu:
        assert (st["M"] == 0).all() and (n.states["m"] == 0).all()
    if not ciu:
        assert (n.states["c"] == 0).all()

    # backward: random readout of the spikes
    R = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    (s * R).sum().backward()
    (sr * R).sum().backward()
    assert xr.grad.abs().sum() > 0
    torch.testing.assert_close(xn.grad, xr.grad, rtol=1e-5, atol=1e-5)
    if plif:
        assert n.plif_w.grad is not None
        torch.testing.assert_close(n.plif_w.grad.double(), w_ref.grad, rtol=1e-5, atol=1e-5)
        assert w_ref.grad.abs().item() > 1e-3
        assert list(n.parameters()) == [n.plif_w]
    else:
        assert not any(p.requires_grad for p in n.parameters())  # ILIF adds no parameters


def test_random_nchw_shape():
    """[N, C, H, W, T] input gives the same as flattening the neurons."""
    x = _random_input(3, (2, 3, 4, 5, 6))
    s = Neuron(tau=1.6, inhibition="sigmoid")(x)
    sr, _ = ref_ilif(x, 1 - 1 / 1.6)  # ref_ilif: sigmoid inhibition
    assert s.shape == x.shape
    torch.testing.assert_close(s.double(), sr, rtol=0, atol=0)


def test_no_detach_gradients_flow_through_ciu_into_previous_input():
    """Spec 1.2: the CIU sends gradient into the previous step's input current (no detach)."""
    # t=0: I=1.2 -> spike (H-1 = 0.2, inside the surrogate window); t=1: H is set by C[1] = kappa * I[0]
    x = torch.tensor([[[1.2, 1.3]]], dtype=torch.float64, requires_grad=True)
    s = Neuron(tau=1.1, variant="CIU")(x)
    s[..., 1].sum().backward()
    # dS1/dI0 = g(H1-1) * d(H1)/dI0, with H1 = lam * V0 + I1 - kappa * I0 * S0, V0 = H0 - S0
    # dV0/dI0 = 1 - g(0.2) = 0, dS0/dI0 = g(0.2) = 1 -> d(kappa I0 S0)/dI0 = kappa * (S0 + I0 * 1)
    expected = -(0.03 * (1.0 + 1.2))
    assert x.grad[0, 0, 0].item() == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------------------------------
# 3. Theorem 3: the MPIU (beta = 1) carries gradient back in time where the LIF carries none
# ---------------------------------------------------------------------------------------------------------
def _grad_late_spike_wrt_first_input(variant: str, tau: float, x_vals, t_late: int) -> float:
    x = torch.tensor([[x_vals]], dtype=torch.float64, requires_grad=True)
    s = Neuron(tau=tau, variant=variant, inhibition="sigmoid", surrogate="rectangle", gamma=1.0)(x)
    s[0, 0, t_late].backward()
    return x.grad[0, 0, 0].item()


def test_theorem3_mpiu_carries_temporal_gradient_lif_does_not():
    """Why this is a real property of the dynamics (rectangle surrogate with gamma = V_th = 1, as in the paper):

    * LIF: the only temporal path is V[t] = H[t] - V_th * S[t], H[t+1] = lambda * V[t] + I[t+1], so
      dV[t]/dH[t] = 1 - V_th * S'(H[t] - V_th) = 1 - V_th / gamma = 0 whenever H[t] lies inside the surrogate
      window (|H - V_th| <= gamma/2), e.g. on a spike with a small overshoot. The soft reset cancels the identity
      path exactly, so the gradient of a late spike w.r.t. an input before such a step is exactly 0 (the
      vanishing temporal gradient of LIF, at any lambda).
    * ILIF/MPIU: M[t] = M[t-1] + S[t] * V'[t] keeps dM/dI[0] = S'(H0 - V_th) * V'[0] != 0 forever (beta = 1, the
      shortcut of Theorem 3), and every later spike injects it into V via -S[t] * sigmoid(M[t]). The spike at t
      then sees it through lambda * V[t-1] -- one factor of lambda, independent of the distance t - 0.
    * Note: the MPIU acts on later spikes only through the leak. With lambda = 0 (tau = 1) H[t] = I[t] and nothing
      (not M either) reaches a later spike, so both gradients are 0; that is asserted too. (Full ILIF keeps a tiny
      CIU path, C[t] = kappa * (C[t-1] + I[t-1] S[t-1]), that does not need the leak.)
    """
    x = [1.3] * 8   # every step fires with H in [1, 1.5]: inside the surrogate window
    tau = 1.1       # lambda = 1/11 (paper default)
    lam = 1 - 1 / tau
    g = {}
    for t_late in (2, 4, 5, 6, 7):
        assert _grad_late_spike_wrt_first_input("LIF", tau, x, t_late) == 0.0
        g[t_late] = _grad_late_spike_wrt_first_input("MPIU", tau, x, t_late)
        assert abs(g[t_late]) > 1e-3, (t_late, g[t_late])
        assert abs(_grad_late_spike_wrt_first_input("ILIF", tau, x, t_late)) > 1e-3
    # not a geometric decay through the leak: a leak-only path would shrink by lambda^3 ~ 7.5e-4 from t=4 to
    # t=7; the M shortcut keeps it of the same order (it shrinks only with sigmoid'(M) as M grows)
    assert abs(g[7]) > 0.2 * abs(g[4])
    assert abs(g[7]) > 1e3 * lam ** 7
    # control: the LIF zero is caused by the reset inside the surrogate window, not by the test set-up. When
    # H stays outside the window (|H - 1| > 0.5) at steps 0 and 1, the LIF gradient flows through the leak:
    # dS2/dI0 = g(H2 - 1) * lam * dV1/dH1 * lam * dV0/dH0 = 1 * lam * 1 * lam * 1
    x_quiet = [0.3, 0.3, 1.0] + [1.3] * 5
    g_quiet = _grad_late_spike_wrt_first_input("LIF", tau, x_quiet, 2)
    assert g_quiet == pytest.approx(lam * lam, rel=1e-6)
    # lambda = 0: no temporal path for LIF nor for the MPIU (only the CIU, kappa-weighted, would remain in ILIF)
    for variant in ("LIF", "MPIU"):
        assert _grad_late_spike_wrt_first_input(variant, 1.0, x, 4) == 0.0


# ---------------------------------------------------------------------------------------------------------
# 4. quantized path: independent integer implementation (docstring of ilif_lava/fixed_point.py)
# ---------------------------------------------------------------------------------------------------------
_MAX = 2 ** 23 - 1


def _trunc_mul_shift(x: np.ndarray, kept_num: int) -> np.ndarray:
    """trunc(x * kept_num / 4096) toward zero, on int64."""
    p = x * kept_num
    return np.sign(p) * (np.abs(p) // 4096)


def _sat(x):
    return np.clip(x, -_MAX, _MAX)


def _wrap(x):
    return np.where(x > 2 ** 23, x - 2 ** 24, np.where(x <= -(2 ** 23), x + 2 ** 24, x))


def _plan_int(m: np.ndarray) -> np.ndarray:
    a = np.abs(m)
    pos = np.where(a >= 5 * 4096, 4096,
                   np.where(a >= int(2.375 * 4096), (a >> 5) + int(0.84375 * 4096),
                            np.where(a >= 4096, (a >> 3) + int(0.625 * 4096), (a >> 2) + 2048)))
    return np.where(m < 0, 4096 - pos, pos)


def ref_int(a: np.ndarray, vth_mant: int, i_decay: int, v_decay: int, c_decay: int, m_decay: int,
            mpiu: bool, ciu: bool):
    """Integer ILIF, a [..., T] int64 synaptic input. Returns spikes and states u, v, c, m (time last)."""
    a = a.astype(np.int64)
    z = np.zeros(a.shape[:-1], dtype=np.int64)
    u = v = c = m = s = z
    vth = vth_mant << 6
    out = {k: [] for k in ("s", "u", "v", "c", "m")}
    for t in range(a.shape[-1]):
        u_prev, s_prev = u, s
        if ciu:
            c = _sat(_trunc_mul_shift(c + u_prev * s_prev, 4096 - c_decay))
        u = _wrap(_trunc_mul_shift(u_prev, 4096 - i_decay) + (a[..., t] << 6))
        h = _sat(_trunc_mul_shift(v, 4096 - v_decay) + u - (np.maximum(c, 0) if ciu else 0))
        s = (h >= vth).astype(np.int64)
        v = h - s * vth
        if mpiu:
            m = _sat(_trunc_mul_shift(m + s * v, 4096 - m_decay))
            v = _sat(v - s * _plan_int(m))
        for k, val in zip(("s", "u", "v", "c", "m"), (s, u, v, c, m)):
            out[k].append(val)
    return {k: np.stack(val, -1) for k, val in out.items()}


def _random_int_input(seed, shape=(4, 16, 12), lo=-40, hi=150):
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi, size=shape).astype(np.int64)


QUANT_CASES = [
    ("ILIF", dict(tau=1.1)),
    ("ILIF", dict(tau=2.0, kappa=0.05, beta=0.9, current_decay=0.5, threshold=1.25)),
    ("MPIU", dict(tau=1.6)),
    ("CIU", dict(tau=1.6)),
    ("LIF", dict(tau=3.0)),
    ("PLIF", dict(tau=1.6)),
    ("IPLIF", dict(tau=1.3, beta=0.95)),
]


@pytest.mark.parametrize("variant,kw", QUANT_CASES)
def test_quantized_matches_independent_integer_model(variant, kw):
    a = _random_int_input(11)
    n = Neuron(variant=variant, quantized=True, record_states=True, **kw)
    with torch.no_grad():
        s = n(torch.from_numpy(a).float() / 64)
    mpiu, ciu, plif = ref_variant(variant)
    tau = kw.get("tau", 1.1)
    lam = 1 - 1 / tau  # PLIF's initial lambda is the same, 1 - sigmoid(-ln(tau - 1)) = 1 - 1/tau
    cd = kw.get("current_decay")
    ref = ref_int(a, vth_mant=int(kw.get("threshold", 1.0) * 64),
                  i_decay=4096 if cd is None else round(4096 * cd),
                  v_decay=round(4096 * (1 - lam)), c_decay=round(4096 * (1 - kw.get("kappa", 0.03))),
                  m_decay=round(4096 * (1 - kw.get("beta", 1.0))), mpiu=mpiu, ciu=ciu)
    np.testing.assert_array_equal(s.numpy(), ref["s"].astype(np.float32))
    assert 0.1 < ref["s"].mean() < 0.9
    for k in ("u", "v", "c", "m"):
        assert n.states[k].dtype == torch.int64
        np.testing.assert_array_equal(n.states[k].numpy(), ref[k], err_msg=k)
    # and the same as looping the shared fixed-point step by hand
    p = n.int_params
    state = fx.zero_state_like(torch.from_numpy(a[..., 0]))
    for t in range(a.shape[-1]):
        state = fx.ilif_step(state, torch.from_numpy(a[..., t]), p)
        np.testing.assert_array_equal(state.s.numpy(), ref["s"][..., t])
        np.testing.assert_array_equal(state.v.numpy(), ref["v"][..., t])


def test_quantized_straight_through_gradient():
    a = _random_int_input(5)
    x = torch.from_numpy(a).double() / 64
    n = Neuron(tau=1.1, quantized=True)
    with torch.no_grad():
        s_nograd = n(x)
    xg = x.clone().requires_grad_(True)
    s = n(xg)
    assert s.requires_grad
    torch.testing.assert_close(s.detach(), s_nograd, rtol=0, atol=0)  # integer spikes in the forward
    R = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (s * R).sum().backward()
    assert (xg.grad != 0).float().mean() > 0.1
    # backward = the float dynamics with the quantized parameters and the PLAN inhibition
    p = n.int_params
    xr = x.clone().requires_grad_(True)
    sr, _ = ref_ilif(xr, lam=(4096 - p.v_decay) / 4096, beta=(4096 - p.m_decay) / 4096,
                     kappa=(4096 - p.c_decay) / 4096, inhibit=fx.plan_sigmoid_float)
    (sr * R).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-5, atol=1e-5)


def test_quantized_close_to_float():
    a = _random_int_input(21, shape=(8, 64, 16), lo=-30, hi=140)
    x = torch.from_numpy(a).double() / 64
    nq = Neuron(tau=1.1, quantized=True, record_states=True)
    nf = Neuron(tau=1.1, inhibition="plan", record_states=True)
    with torch.no_grad():
        sq, sf = nq(x), nf(x)
    assert 0.2 < sq.mean().item() < 0.8
    agree = (sq == sf).double().mean().item()
    assert agree > 0.95, agree
    # also against the paper's float neuron (true sigmoid inhibition)
    with torch.no_grad():
        s_sig = Neuron(tau=1.1, inhibition="sigmoid")(x)
    assert (sq == s_sig).double().mean().item() > 0.95
    # u is exact (a << 6 == x * 4096)
    np.testing.assert_array_equal(nq.states["u"].numpy(), (x * 4096).numpy().astype(np.int64))
    # early steps: where the spike trains agree so far, the states differ by a few LSB (1/4096) only
    same_so_far = torch.cumprod((sq == sf).double(), dim=-1).bool()
    lsb = 1 / 4096
    for t in range(3):
        mask = same_so_far[..., t]
        assert mask.float().mean() > 0.9
        for k in ("v", "c", "m"):
            d = (nq.states[k][..., t].double() * lsb - nf.states[k][..., t].double()).abs()[mask]
            assert d.max().item() <= 6 * lsb, (t, k, d.max().item() / lsb)


# ---------------------------------------------------------------------------------------------------------
# 5. parameter validation and device parameters
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs,name", [
    (dict(tau=0.9), "tau"),
    (dict(tau=0.0), "tau"),
    (dict(kappa=-0.1), "kappa"),
    (dict(kappa=1.5), "kappa"),
    (dict(beta=-0.01), "beta"),
    (dict(beta=1.01), "beta"),
    (dict(variant="ALIF"), "variant"),
    (dict(variant="ilif"), "variant"),
    (dict(inhibition="tanh"), "inhibition"),
    (dict(surrogate="triangle"), "surrogate"),
    (dict(threshold=0.0), "threshold"),
    (dict(threshold=-1.0), "threshold"),
    (dict(threshold=0.01), "threshold"),  # truncated to 1/64 steps -> effective threshold 0, vThMant 0
])
def test_invalid_parameters_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        Neuron(**kwargs)


@pytest.mark.parametrize("variant", VARIANTS)
def test_device_params(variant):
    tau, kappa = 1.1, 0.03
    dp = Neuron(tau=tau, kappa=kappa, beta=1.0, threshold=1.0, variant=variant).device_params
    assert dp["type"] == "ILIF"
    assert dp["vDecay"] == round(4096 / tau) == 3724
    assert dp["cDecay"] == round(4096 * (1 - kappa)) == 3973
    assert dp["mDecay"] == 0
    assert dp["vThMant"] == 64
    assert dp["iDecay"] == 4096  # no current memory by default
    for k in ("vDecay", "cDecay", "mDecay", "vThMant", "iDecay"):
        assert isinstance(dp[k], (int, np.integer)), k
    mpiu, ciu, _ = ref_variant(variant)
    assert bool(dp["mpiu"]) is mpiu and bool(dp["ciu"]) is ciu
    assert dp["inhibition"] == "plan"


def test_device_params_other_values():
    dp = Neuron(tau=2.0, kappa=0.05, beta=0.9, threshold=1.5, current_decay=0.25).device_params
    assert dp["vDecay"] == 2048
    assert dp["cDecay"] == round(4096 * 0.95)
    assert dp["mDecay"] == round(4096 * 0.1)
    assert dp["vThMant"] == 96
    assert dp["iDecay"] == 1024


@pytest.mark.parametrize("variant,kw", [
    ("ILIF", dict(tau=1.1)),
    ("ILIF", dict(tau=3.7, kappa=0.05, beta=0.9, threshold=1.25, current_decay=0.3)),
    ("MPIU", dict(tau=1.05, kappa=0.0)),
    ("CIU", dict(tau=2.0)),
    ("LIF", dict(tau=20.0, beta=0.5)),
    ("PLIF", dict(tau=1.6)),
    ("IPLIF", dict(tau=1.25, kappa=0.1)),
])
def test_neuron_params_from_device_round_trip(variant, kw):
    n = Neuron(variant=variant, **kw)
    dp = n.device_params
    # as read back from HDF5, strings come as bytes
    dp_h5 = {k: (v.encode() if isinstance(v, str) else v) for k, v in dp.items()}
    params = neuron_params_from_device(dp_h5)
    n2 = Neuron(**params)
    assert n2.device_params == dp
    q = 1 / 4096
    lam, lam2 = 1 - 1 / kw["tau"], 1 - 1 / params["tau"]
    assert abs(lam - lam2) <= 0.5 * q + 1e-9
    assert abs(params["kappa"] - kw.get("kappa", 0.03)) <= 0.5 * q + 1e-9
    assert abs(params["beta"] - kw.get("beta", 1.0)) <= 0.5 * q + 1e-9
    assert params["threshold"] == pytest.approx(kw.get("threshold", 1.0), abs=1 / 64)
    if "current_decay" in kw:
        assert abs(params["current_decay"] - kw["current_decay"]) <= 0.5 * q + 1e-9
    else:
        assert params["current_decay"] is None
    assert params["variant"] == variant
