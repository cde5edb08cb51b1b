"""The ILIF integer arithmetic, defined once.

Both the PyTorch quantized path (:mod:`ilif_lava.neuron`, int64 torch tensors, CPU or CUDA) and the Lava
``fixed_pt`` process model (:mod:`ilif_lava.lava_proc.models`, int64 numpy arrays) call :func:`ilif_step`.
Every helper here works on torch tensors and numpy arrays alike, so the two engines cannot drift apart.

Units (Loihi conventions, see docs/fixed-point.md for the full table):

* Synaptic input ``a`` per step: integer sum of 8-bit weights (``w * 64``, even integers in [-256, 254]).
  The current gets ``a << 6`` so one threshold unit of the float model is ``1 << 12 = 4096`` state units.
* Direct (analog) input: the image enters as graded payloads ``x_mant = round(64 x)`` (:func:`direct_input`,
  16-bit), so the first layer's sum ``a = sum(w_mant * x_mant)`` is already in state units and enters the current
  with ``input_shift = 0`` (``a << 0``) instead of 6 (:attr:`ILIFParams.input_shift`; the weight exponent Loihi
  applies in the dendrite, held by the neuron because Lava's CPU Conv model ignores ``weight_exp``).
* Decays are 12-bit integers ``d`` in [0, 4096]; "decay by d" multiplies by ``(4096 - d)`` and shifts right
  by 12 with truncation toward zero (sign-magnitude), as Loihi does.
* Neuron bias (per neuron): ``bias_mant`` (13-bit signed, [-4096, 4095]) and ``bias_exp`` (3-bit, [0, 7]), Loihi's
  form; it adds ``bias_mant << bias_exp`` to the input current ``u`` every step (step 2 below), so a folded batch
  norm, which shifts the synaptic input, is exact (docs/fixed-point.md, "The neuron bias"). The neuron exports
  ``bias_exp = 6`` (the value netx fixes): then the bias is ``bias_mant / 64`` threshold units, a weight's scale.
* Threshold ``vThMant`` (17 bits); the effective threshold is ``vThMant << 6``; a spike fires when
  ``h >= vThMant << 6`` (the paper's Heaviside at ``H >= V_th``).
* States are 24-bit signed: ``u`` (current) wraps like Lava's LIF ``u``; ``v``, ``c`` (CIU) and ``m``
  (MPIU) saturate to [-(2**23 - 1), 2**23 - 1]. The MPIU never decays with beta = 1, so it must saturate.
* The inhibition function maps ``m`` to about ``4096 * sigmoid(m / 4096)`` with PLAN (piecewise-linear
  approximation with power-of-two slopes: shifts and adds only).

Step order (docs/neuron.md, the float model), per neuron, with ``u`` the raw input current:

1. ``c = sat(trunc((c + u_prev * s_prev) * (4096 - cDecay) >> 12))``          (CIU, previous current/spike)
2. ``u = wrap(trunc(u_prev * (4096 - iDecay) >> 12) + (a << input_shift) + (bias_mant << bias_exp))``  (shift 6;
   iDecay = 4096: no memory)
3. ``h = sat(trunc(v * (4096 - vDecay) >> 12) + u - max(c, 0))``              (leaky charge)
4. ``s = h >= vThMant << 6``
5. ``v' = h - s * (vThMant << 6)``                                            (soft reset)
6. ``m = sat(trunc((m + s * v') * (4096 - mDecay) >> 12))``                   (MPIU, post-reset potential)
7. ``v = sat(v' - s * plan(m))``                                              (inhibitory reset)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, NamedTuple, Tuple, Union

import numpy as np

# the Loihi 2 word widths (decay 12, state 24, threshold mantissa 17, bias mantissa 13 bits) have one home
from ilif_lava.netx_schema.rules import (BIAS_EXP, BIAS_MANT_BITS, DECAY_BITS, INTEGER_INHIBITIONS, STATE_BITS,
                                         VTH_MANT_MAX, WEIGHT_MANT_MAX, WEIGHT_MANT_MIN)

try:  # torch is optional for the numpy (Lava) side
    import torch
except ImportError:  # pragma: no cover
    torch = None  # type: ignore

Array = Any  # torch.Tensor or np.ndarray holding int64

DECAY_ONE = 1 << DECAY_BITS            # 4096: a decay of 4096 empties the state each step
WEIGHT_SCALE = 1 << 6                  # float weight * 64 = integer weight mantissa
ACT_SHIFT = 6                          # synaptic input enters the current as a << 6
VTH_SHIFT = 6                          # effective threshold = vThMant << 6
STATE_SCALE = 1 << 12                  # one float threshold unit in state units (64 << 6)
STATE_MAX = (1 << (STATE_BITS - 1)) - 1   # 8388607
STATE_MIN = -STATE_MAX                    # saturating states are symmetric, as Lava's v
BIAS_MANT_MIN = -(1 << (BIAS_MANT_BITS - 1))        # -4096
BIAS_MANT_MAX = (1 << (BIAS_MANT_BITS - 1)) - 1     # 4095
BIAS_EXP_MIN, BIAS_EXP_MAX = 0, 7      # 3-bit unsigned bias exponent
# BIAS_EXP (6, from the schema): the exponent netx fixes and the neuron uses: bias_mant / 64 thresholds
WEIGHT_MIN, WEIGHT_MAX = WEIGHT_MANT_MIN, WEIGHT_MANT_MAX    # 8-bit mantissa, even (x2 mixed sign)
INHIBITIONS = INTEGER_INHIBITIONS      # integer inhibition functions available to fixed point


# ---------------------------------------------------------------------------------------------------------
# backend-neutral primitives (torch int64 tensor or numpy int64 array)
# ---------------------------------------------------------------------------------------------------------
def _is_torch(x: Array) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _where(cond: Array, a: Array, b: Array) -> Array:
    return torch.where(cond, a, b) if _is_torch(cond) else np.where(cond, a, b)


def _abs(x: Array) -> Array:
    return x.abs() if _is_torch(x) else np.abs(x)


def _clip(x: Array, lo: int, hi: int) -> Array:
    return x.clamp(lo, hi) if _is_torch(x) else np.clip(x, lo, hi)


def shift_right_to_zero(x: Array, bits: int) -> Array:
    """Arithmetic right shift that truncates toward zero (sign-magnitude), as Loihi decays do."""
    mag = _abs(x) >> bits
    return _where(x < 0, -mag, mag)


def decay(x: Array, d: Union[int, Array]) -> Array:
    """``trunc(x * (4096 - d) / 4096)`` toward zero; ``d`` is a 12-bit decay in [0, 4096]."""
    return shift_right_to_zero(x * (DECAY_ONE - d), DECAY_BITS)


def saturate(x: Array) -> Array:
    """Clip to the 24-bit symmetric range [-(2**23 - 1), 2**23 - 1] (v, c, m)."""
    return _clip(x, STATE_MIN, STATE_MAX)


def wrap(x: Array) -> Array:
    """24-bit two's-complement wrap, as Lava's fixed-point LIF does for ``u``.

    Lava maps values above 2**23 down by 2**24 and values at or below -2**23 up by 2**24; for the
    magnitudes a single step can produce this equals the modular wrap into (-2**23, 2**23].
    """
    span = 1 << STATE_BITS
    half = 1 << (STATE_BITS - 1)
    return ((x + half - 1) % span) - half + 1


def plan_sigmoid_int(m: Array) -> Array:
    """Integer PLAN sigmoid: about ``4096 * sigmoid(m / 4096)`` using shifts and adds only.

    PLAN (Amin, Curtis, Hayes-Gill 1997) on |x| = |m| / 4096:
    |x| >= 5: 1;  2.375 <= |x| < 5: |x|/32 + 0.84375;  1 <= |x| < 2.375: |x|/8 + 0.625;  else |x|/4 + 0.5.
    Negative inputs use sigmoid(-x) = 1 - sigmoid(x). Result in [0, 4096].
    """
    a = _abs(m)
    pos = _where(a >= 5 * 4096, a * 0 + 4096,
                 _where(a >= 9728, (a >> 5) + 3456,
                        _where(a >= 4096, (a >> 3) + 2560, (a >> 2) + 2048)))
    return _where(m < 0, 4096 - pos, pos)


def plan_sigmoid_float(x: Any) -> Any:
    """The same PLAN approximation in float (threshold units); torch (differentiable a.e.) or numpy."""
    a = _abs(x)
    pos = _where(a >= 5, a * 0 + 1.0,
                 _where(a >= 2.375, a / 32 + 0.84375,
                        _where(a >= 1, a / 8 + 0.625, a / 4 + 0.5)))
    return _where(x < 0, 1 - pos, pos)


INHIBITION_INT = {"plan": plan_sigmoid_int}


# ---------------------------------------------------------------------------------------------------------
# parameters and state
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ILIFParams:
    """Integer ILIF parameters of one layer (Loihi units). Decays may be scalars or per-neuron arrays."""

    vth_mant: int                 # threshold mantissa, effective threshold vth_mant << 6
    i_decay: int = DECAY_ONE      # current decay; 4096 = no current memory (paper default)
    v_decay: int = 3724           # membrane decay; round(4096 / tau), tau = 1.1 -> lambda = 372 / 4096
    c_decay: int = 3973           # CIU decay; round(4096 * (1 - kappa)), kappa = 0.03
    m_decay: int = 0              # MPIU decay; beta = 1 -> 0
    mpiu: bool = True             # MPIU inhibition (steps 6, 7) on
    ciu: bool = True              # CIU (steps 1, 3's -max(c, 0)) on
    inhibition: str = "plan"
    input_shift: int = 6          # the synaptic input enters the current as a << input_shift (0: graded input)

    def validate(self, where: str = "ILIF") -> None:
        for f in ("i_decay", "v_decay", "c_decay", "m_decay"):
            val = np.asarray(getattr(self, f))
            if val.dtype.kind not in "iub" or (val < 0).any() or (val > DECAY_ONE).any():
                raise ValueError(f"{where}: {f} must be integers in [0, {DECAY_ONE}], got {val.min()}..{val.max()}")
        if not (0 < int(self.vth_mant) <= VTH_MANT_MAX):
            raise ValueError(f"{where}: vth_mant must be in [1, {VTH_MANT_MAX}], got {self.vth_mant}")
        if not (isinstance(self.input_shift, (int, np.integer)) and 0 <= int(self.input_shift) <= ACT_SHIFT):
            raise ValueError(f"{where}: input_shift must be an integer in [0, {ACT_SHIFT}], got {self.input_shift!r}")
        if self.inhibition not in INHIBITION_INT:
            raise ValueError(f"{where}: inhibition {self.inhibition!r} has no integer form; use one of {INHIBITIONS}")


class ILIFState(NamedTuple):
    """Integer states of one layer, each shaped like the neurons (any leading batch dims)."""

    u: Array   # input current (before inhibition), 24-bit wrapping
    v: Array   # membrane potential after both resets, 24-bit saturating
    c: Array   # CIU state, 24-bit saturating
    m: Array   # MPIU state, 24-bit saturating
    s: Array   # previous output spike, 0/1


STATE_NAMES = ("u", "v", "c", "m")


def zero_state_like(x: Array) -> ILIFState:
    """All-zero int64 state shaped like ``x``."""
    if _is_torch(x):
        z = torch.zeros_like(x, dtype=torch.int64)
        return ILIFState(z, z.clone(), z.clone(), z.clone(), z.clone())
    z = np.zeros(np.shape(x), dtype=np.int64)
    return ILIFState(z, z.copy(), z.copy(), z.copy(), z.copy())


def ilif_step(state: ILIFState, a_in: Array, p: ILIFParams, bias: Union[int, Array] = 0) -> ILIFState:
    """Advance one time step. ``a_in`` is the integer synaptic input (sum of weight mantissas), int64.

    ``bias`` is the neuron bias in state units, :func:`effective_bias` of ``(bias_mant, bias_exp)``: an int64
    scalar or array broadcastable to ``a_in`` (per neuron). It joins the input current (step 2), which wraps.
    Returns the new state; ``state.s`` of the result is this step's output spike (0/1 int64).
    """
    u_prev, v, c, m, s_prev = state
    if p.ciu:
        c = saturate(decay(c + u_prev * s_prev, p.c_decay))
        rect = _where(c > 0, c, c * 0)
    else:
        rect = 0
    u = wrap(decay(u_prev, p.i_decay) + (a_in << p.input_shift) + bias)
    h = saturate(decay(v, p.v_decay) + u - rect)
    vth = int(p.vth_mant) << VTH_SHIFT
    spk = (h >= vth).to(torch.int64) if _is_torch(h) else (h >= vth).astype(np.int64)
    v = h - spk * vth
    if p.mpiu:
        m = saturate(decay(m + spk * v, p.m_decay))
        v = saturate(v - spk * INHIBITION_INT[p.inhibition](m))
    return ILIFState(u, v, c, m, spk)



DIRECT_INPUT_BITS = 16                 # graded payload of a direct-encoded (analog) input value, signed
DIRECT_INPUT_MAX = (1 << (DIRECT_INPUT_BITS - 1)) - 1


def direct_input(x: Array) -> Array:
    """Analog input (threshold-free units, e.g. a normalised pixel) -> graded payload ``round(64 x)`` (half to even,
    as torch and numpy round), clipped to 16-bit signed [-32767, 32767]; int64, torch or numpy like ``x``. A spike
    (1) becomes 64, so a layer fed this way with ``input_shift = 0`` computes exactly what binary input with
    ``input_shift = 6`` computes."""
    if _is_torch(x):   # x * 64 is exact in float32 and float64 alike (a power of two), so no float64 copy for them
        xf = x if x.dtype in (torch.float32, torch.float64) else x.double()
        return torch.round(xf * WEIGHT_SCALE).clamp(-DIRECT_INPUT_MAX, DIRECT_INPUT_MAX).to(torch.int64)
    scaled = np.round(np.asarray(x, dtype=np.float64) * WEIGHT_SCALE)
    return np.clip(scaled, -DIRECT_INPUT_MAX, DIRECT_INPUT_MAX).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# the integer readout: a neuron that integrates and never fires (a network's analog Linear head)
# ---------------------------------------------------------------------------------------------------------
def readout_step(v: Array, a_in: Array, bias: Union[int, Array] = 0) -> Array:
    """One step of the readout accumulator: ``v' = sat(v + (a << 6) + bias)`` (state units, 24-bit saturating).

    ``a_in``: the integer synaptic input (sum of weight mantissas) of this step; ``bias``: :func:`effective_bias`.
    No leak, no threshold, no reset: after ``T`` steps ``v / 4096`` is the sum of the per-step logits
    ``W x[t] + b`` of the quantized network (exact while ``|v| < 2**23``; beyond that it saturates). The Lava
    ``Readout`` process sends ``v`` every step as a graded (24-bit) payload.
    """
    return saturate(v + (a_in << ACT_SHIFT) + bias)


def readout_sequence(a: Array, bias: Union[int, Array] = 0) -> Array:
    """:func:`readout_step` over the last (time) axis of ``a`` [..., T] (int64) from ``v = 0``; returns ``v``
    after every step, [..., T] int64 (torch or numpy like ``a``)."""
    v = a[..., 0] * 0
    out = []
    for t in range(a.shape[-1]):
        v = readout_step(v, a[..., t], bias)
        out.append(v)
    return torch.stack(out, dim=-1) if _is_torch(a) else np.stack(out, axis=-1)

# ---------------------------------------------------------------------------------------------------------
# float <-> integer conversions of parameters (the only place these roundings are defined)
# ---------------------------------------------------------------------------------------------------------
def decay_to_int(factor_kept: float) -> int:
    """12-bit decay for a multiplier ``factor_kept`` in [0, 1]: round(4096 * (1 - factor_kept))."""
    if not 0.0 <= factor_kept <= 1.0:
        raise ValueError(f"decay multiplier must lie in [0, 1], got {factor_kept}")
    return int(round(DECAY_ONE * (1.0 - factor_kept)))


def kept_from_int(d: int) -> float:
    """The multiplier a 12-bit decay applies: (4096 - d) / 4096."""
    return (DECAY_ONE - d) / DECAY_ONE


def threshold_to_mant(threshold: float) -> int:
    """vThMant = int(threshold * 64), truncating as slayer does."""
    return int(threshold * WEIGHT_SCALE)


# ---------------------------------------------------------------------------------------------------------
# the neuron bias: Loihi's bias_mant << bias_exp, added to the input current (docs/fixed-point.md)
# ---------------------------------------------------------------------------------------------------------
def bias_step(bias_exp: int = BIAS_EXP) -> float:
    """Threshold units of one bias mantissa LSB: ``2**bias_exp / 4096`` (1/64 for ``bias_exp = 6``)."""
    return float(2.0 ** (int(bias_exp) - DECAY_BITS))


def effective_bias(bias_mant: Array, bias_exp: Union[int, Array] = BIAS_EXP) -> Array:
    """The bias in state units, ``bias_mant << bias_exp`` (int64; torch or numpy; exponent in [0, 7]).

    ``bias_mant`` is 13-bit, so the result is at most 4095 << 7 = 524160 in magnitude, far inside 24 bits.
    """
    if _is_torch(bias_mant):
        return bias_mant.to(torch.int64) << int(bias_exp)
    return np.left_shift(np.asarray(bias_mant, dtype=np.int64), np.asarray(bias_exp, dtype=np.int64))


def bias_as_input(bias_mant: Array, bias_exp: int = BIAS_EXP, input_shift: int = ACT_SHIFT) -> Array:
    """The bias in synaptic-input units: ``b`` with ``b << input_shift == bias_mant << bias_exp`` (exponent from
    ``input_shift`` to 7; :attr:`ILIFParams.input_shift`, 6 for spikes, 0 for graded input).

    Then ``(a << input_shift) + effective_bias == (a + b) << input_shift`` exactly, so a fused kernel that takes
    ``a`` computes the biased step unchanged when given ``a + b``. Exponents below ``input_shift`` give biases that
    are not whole input units.
    """
    bias_exp, input_shift = int(bias_exp), int(input_shift)
    if not 0 <= input_shift <= ACT_SHIFT:
        raise ValueError(f"input_shift must be an integer in [0, {ACT_SHIFT}], got {input_shift}")
    if not input_shift <= bias_exp <= BIAS_EXP_MAX:
        raise ValueError(f"bias_exp {bias_exp} is not a whole number of input units; use {input_shift}..{BIAS_EXP_MAX}")
    shift = bias_exp - input_shift
    if _is_torch(bias_mant):
        return bias_mant.to(torch.int64) << shift
    return np.asarray(bias_mant, dtype=np.int64) << shift


def bias_to_mant(bias: Array, bias_exp: int = BIAS_EXP) -> Array:
    """Float bias (threshold units) -> mantissa: ``round(bias / bias_step)`` (half to even, as torch and numpy
    round), clipped to the 13-bit range [-4096, 4095]. int64, torch or numpy like the input."""
    scaled = bias / bias_step(bias_exp)
    if _is_torch(scaled):
        return torch.round(scaled).clamp(BIAS_MANT_MIN, BIAS_MANT_MAX).to(torch.int64)
    return np.clip(np.round(np.asarray(scaled, dtype=np.float64)), BIAS_MANT_MIN, BIAS_MANT_MAX).astype(np.int64)


def bias_to_float(bias_mant: Array, bias_exp: Union[int, Array] = BIAS_EXP) -> Array:
    """Mantissa -> float bias in threshold units, ``bias_mant * 2**bias_exp / 4096`` (exact in float64)."""
    if _is_torch(bias_mant):
        return bias_mant.to(torch.float64) * bias_step(int(bias_exp))
    return np.asarray(bias_mant, dtype=np.float64) * np.exp2(np.asarray(bias_exp, dtype=np.float64) - DECAY_BITS)


def check_bias(bias_mant: Any, bias_exp: Any, shape: Any, where: str = "ILIF") -> Tuple[np.ndarray, int]:
    """Validate a layer's bias; returns ``(bias_mant broadcast to shape as int64, bias_exp as int)``.

    ``bias_mant``: finite integer values in [-4096, 4095] (13-bit), a scalar or an array that broadcasts to the
    layer ``shape`` (e.g. per channel along the last axis). ``bias_exp``: one integer in [0, 7] (3-bit).
    Raises ValueError, one line naming ``where`` and the key.
    """
    exp = np.asarray(bias_exp)
    if exp.size != 1 or exp.dtype.kind not in "iuf" or not np.isfinite(exp).all() or exp.reshape(-1)[0] % 1 \
            or not BIAS_EXP_MIN <= exp.reshape(-1)[0] <= BIAS_EXP_MAX:
        raise ValueError(f"{where}: bias_exp must be one integer in [{BIAS_EXP_MIN}, {BIAS_EXP_MAX}], "
                         f"got {np.array2string(exp.reshape(-1)[:4])}")
    mant = np.asarray(bias_mant)
    if mant.dtype.kind not in "biuf":
        raise ValueError(f"{where}: bias_mant must be integers, got dtype {mant.dtype}")
    if mant.size and (not np.isfinite(mant).all() or (mant % 1 != 0).any()):
        raise ValueError(f"{where}: bias_mant must be finite integers (13-bit mantissas), got non-integer values")
    if mant.size and (mant.min() < BIAS_MANT_MIN or mant.max() > BIAS_MANT_MAX):
        raise ValueError(f"{where}: bias_mant must lie in [{BIAS_MANT_MIN}, {BIAS_MANT_MAX}] (13-bit), "
                         f"got {mant.min():g}..{mant.max():g}")
    try:
        full = np.broadcast_to(mant.astype(np.int64), tuple(shape)).copy()
    except ValueError:
        raise ValueError(f"{where}: bias_mant of shape {mant.shape} does not broadcast to the layer shape "
                         f"{tuple(shape)}") from None
    return full, int(exp.reshape(-1)[0])
