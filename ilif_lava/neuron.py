"""ILIF neuron for SLAYER (lava-dl ``slayer.neuron.base.Neuron`` subclass), time as the last dimension.

Float path: the authors' step order (docs/api.md, Background) with a surrogate gradient, no detach anywhere.
Quantized path (``quantized=True``): the forward evaluates :func:`ilif_lava.fixed_point.ilif_step` on int64
tensors (bit-identical to the Lava ``fixed_pt`` model); the backward uses the float dynamics evaluated with
the quantized parameters (straight-through estimator), so the quantized network can be fine-tuned.

Bias (optional, :meth:`Neuron.add_bias`, added by the blocks' ``bias=`` argument): one float per channel [C],
threshold units, added to the input current of every step in every path (float, reference, quantized, readout):
``I[t] = k_I I[t-1] + z[t] + b``. It is always quantized to its deployed value (multiples of 1/64, 13-bit mantissa
with ``bias_exp = 6``; straight-through gradient), as the synapse pre-hook quantizes the weights; the integer path
adds exactly ``bias_mant << 6`` to the current (:func:`ilif_lava.fixed_point.ilif_step`), the rule Lava's
``fixed_pt`` ILIF model computes.

Variants (paper Table 2/3): ``ILIF`` (MPIU + CIU), ``MPIU`` (MPIU only), ``CIU`` (CIU only), ``LIF`` (a true LIF:
no inhibition step at all, see docs/api.md), ``PLIF`` (LIF with a learnable per-layer decay),
``IPLIF`` (ILIF with the PLIF decay).
"""
from __future__ import annotations

import math
import warnings
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from lava.lib.dl.slayer.neuron import base

from ilif_lava import fixed_point as fx
from ilif_lava import kernels
from ilif_lava.dynamics import check_ciu_rule, ciu_rectify, ilif_sequence
from ilif_lava.kernels import FloatConfig
from ilif_lava.names import VARIANTS  # noqa: F401  (read here as ilif_lava.neuron.VARIANTS)
from ilif_lava.netx_schema import ILIF_NEURON_TYPE, NEURON_TYPES
from ilif_lava.surrogate import make_spike_fn, make_surrogate

INHIBITION_FLOAT = ("sigmoid", "plan")
NEURON_TYPE = ILIF_NEURON_TYPE            # HDF5 neuron/type
ILIF_SCHEMA = NEURON_TYPES[NEURON_TYPE]   # its netx keys (ilif_lava/netx_schema/tables.py)


def variant_flags(variant: str) -> Dict[str, bool]:
    """Which units a variant uses: mpiu, ciu, learnable decay (plif)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ILIF variant {variant!r}; choose one of {VARIANTS}")
    return {"mpiu": variant in ("ILIF", "MPIU", "IPLIF"),
            "ciu": variant in ("ILIF", "CIU", "IPLIF"),
            "plif": variant in ("PLIF", "IPLIF")}


DEFAULT_TAU = 1.1  # the authors' released default (lambda = 0.0909)


def membrane_tau(tau: Optional[float] = None, voltage_decay: Optional[float] = None) -> float:
    """The one mapping between the paper's ``tau`` and lava-dl CUBA's ``voltage_decay`` (fraction of v removed per
    step): ``voltage_decay = 1 / tau``, i.e. lambda = 1 - voltage_decay = 1 - 1/tau; voltage_decay = 0 is tau = inf
    (no leak). Neither given: tau = 1.1. Both given: they must agree to half a 12-bit step (1/8192)."""
    if voltage_decay is not None and not 0.0 <= voltage_decay <= 1.0:
        raise ValueError(f"voltage_decay must lie in [0, 1] (fraction of v removed per step), got {voltage_decay}")
    if tau is not None and not tau >= 1.0:
        raise ValueError(f"tau must be >= 1 (lambda = 1 - 1/tau in [0, 1]), got {tau}")
    if tau is None:
        return DEFAULT_TAU if voltage_decay is None else (math.inf if voltage_decay == 0 else 1.0 / voltage_decay)
    if voltage_decay is not None and abs(voltage_decay - 1.0 / tau) > 0.5 / fx.DECAY_ONE:
        raise ValueError(f"tau={tau} and voltage_decay={voltage_decay} disagree: voltage_decay = 1/tau = "
                         f"{1.0 / tau:.6g}; give only one of them")
    return float(tau)


class Neuron(base.Neuron):
    r"""ILIF neuron: LIF with a membrane-potential inhibitory unit (MPIU, state M) and a current inhibitory unit
    (CIU, state C); time is the last dimension, as in slayer (docs/neuron.md, the float model; docs/fixed-point.md,
    the integer one).

    Per neuron and step (threshold units; every state starts at 0; ``b`` the optional bias, :meth:`add_bias`):

    .. math::
        C[t] &= \kappa\,(C[t-1] + I[t-1]\,S[t-1]) \\
        I[t] &= k_I\,I[t-1] + z[t] + b \\
        H[t] &= \lambda\,V[t-1] + I[t] - \max(C[t], 0) \\
        S[t] &= H[t] \geq \vartheta \\
        V'[t] &= H[t] - S[t]\,\vartheta \\
        M[t] &= \beta\,(M[t-1] + S[t]\,V'[t]) \\
        V[t] &= V'[t] - S[t]\,g(M[t])

    with :math:`\lambda = 1 - 1/\tau` (lava-dl's ``voltage_decay = 1/tau``), :math:`k_I = 1 - \text{current\_decay}`
    (0 without ``current_decay``), :math:`\vartheta` the threshold and ``g`` the inhibition map (``plan`` or
    ``sigmoid``). Variants drop units: ``MPIU`` keeps the M steps only, ``CIU`` the C steps only, ``LIF`` neither
    (a true LIF: ``H = lambda V + I``, soft reset); ``PLIF``/``IPLIF`` are LIF/ILIF with a learned
    :math:`\lambda = 1 - \text{sigmoid}(w)`. The backward pass replaces the Heaviside by the surrogate.

    Parameters
    ----------
    threshold: V_th in float units (truncated to 1/64 steps as slayer does). Default 1.0.
    tau: membrane time constant; lambda = 1 - 1/tau (released code default 1.1 -> 0.0909).
    voltage_decay: lava-dl CUBA's name for the same leak: fraction of v removed per step, = 1/tau (give either;
        both must agree, see :func:`membrane_tau`). Stored as CUBA stores it: ``self.voltage_decay`` = 4096 x
        the fraction (a Parameter when learnable, else a buffer); exported ``vDecay`` = round(4096 / tau).
    beta: MPIU multiplier (1 = no decay, the paper's value).
    kappa: CIU multiplier (0.03; 0.05 for DVSGesture).
    current_decay: CUBA's current decay (fraction of u removed per step; iDecay = round(4096 x it)); None (= 1.0)
        means no current memory, the paper's neuron. Kept as given (a float), not learned.
    requires_grad: learn the voltage decay (``self.voltage_decay``, clipped to [0, 4096] before each use, as CUBA).
        PLIF/IPLIF always learn their decay through ``plif_w`` (lambda = 1 - sigmoid(plif_w)) and ignore it.
    variant: one of VARIANTS. inhibition: 'plan' (default: the integer-friendly PLAN approximation, identical to
        what fixed point computes, so the deployed network is the trained one) or 'sigmoid' (the paper's map).
    surrogate: 'rectangle' (gamma = full support width), 'exp' (slayer; tau_grad, scale_grad) or 'sigmoid' (alpha).
    quantized: evaluate the integer arithmetic in the forward pass (bit-exact with Lava fixed_pt).
    ciu_grad_at_zero: gradient of the CIU rectifier max(C, 0) at exactly C = 0: 'pass' (default; the authors'
        ``clamp(C, min=0)``, which sends gradient into the previous spike before a neuron's first spike) or
        'block' (relu, gradient 0). Forward values are the same.
    kernel: 'torch' | 'cpu' | 'gpu' | 'auto' for this neuron; None follows ``$ILIF_LAVA_KERNEL`` (default auto),
        see ilif_lava/kernels/__init__.py.
    norm, dropout, persistent_state, shared_param, tau_grad, scale_grad: as slayer's ``neuron.base.Neuron``.
    record_states: keep the states of the last forward in ``self.states`` (``u, v, c, m``, each [N, ..., T]).

    Shape:
        - Input ``z``: [N, C, T] or [N, C, H, W, T], the synaptic input current of every step (threshold units;
          the quantized path rounds it to multiples of 1/64, the weights' grid).
        - Output: spikes, the same shape and dtype as ``z`` (0.0 or 1.0).
        - ``bias`` (optional): [C], threshold units; ``states``: each the shape of ``z``.

    Example::

        >>> import torch
        >>> from ilif_lava.neuron import Neuron
        >>> neuron = Neuron(threshold=1.0, tau=2.0, kappa=0.25, inhibition="plan", kernel="torch")
        >>> neuron  # doctest: +NORMALIZE_WHITESPACE
        Neuron(variant='ILIF', threshold=1.0, tau=2.0, kappa=0.25, beta=1.0, inhibition='plan',
               surrogate='rectangle', kernel='torch', quantized=False)
        >>> z = torch.tensor([[[0.6, 0.6, 0.6, 1.5, 0.0, 1.2, 0.6, 0.6]]])    # [N=1, C=1, T=8]
        >>> neuron(z)
        tensor([[[0., 0., 1., 1., 0., 0., 0., 1.]]])
        >>> Neuron(threshold=1.0, tau=2.0, variant="LIF", kernel="torch")(z)   # no inhibition: fires at t=5
        tensor([[[0., 0., 1., 1., 0., 1., 0., 0.]]])
        >>> neuron.quantized = True                  # the integer rule Lava's fixed_pt model runs: same spikes
        >>> neuron(z)
        tensor([[[0., 0., 1., 1., 0., 0., 0., 1.]]])
        >>> neuron.int_params.v_decay, neuron.int_params.c_decay, neuron.int_params.vth_mant
        (2048, 3072, 64)
    """

    def __init__(self, threshold: float = 1.0, tau: Optional[float] = None, beta: float = 1.0, kappa: float = 0.03,
                 current_decay: Optional[float] = None, variant: str = "ILIF", inhibition: str = "plan",
                 surrogate: str = "rectangle", gamma: float = 1.0, alpha: float = 4.0,
                 tau_grad: float = 1.0, scale_grad: float = 1.0, quantized: bool = False,
                 norm=None, dropout=None, persistent_state: bool = False, shared_param: bool = True,
                 requires_grad: bool = False, record_states: bool = False, ciu_grad_at_zero: str = "pass",
                 kernel: Optional[str] = None, voltage_decay: Optional[float] = None) -> None:
        super().__init__(threshold=threshold, tau_grad=tau_grad, scale_grad=scale_grad,
                         p_scale=fx.DECAY_ONE, w_scale=fx.WEIGHT_SCALE, s_scale=fx.STATE_SCALE,
                         norm=norm, dropout=dropout, persistent_state=persistent_state,
                         shared_param=shared_param, requires_grad=requires_grad)
        tau = membrane_tau(tau, voltage_decay)
        for name, val in (("beta", beta), ("kappa", kappa)):
            if not 0.0 <= val <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {val}")
        if current_decay is not None and not 0.0 <= current_decay <= 1.0:
            raise ValueError(f"current_decay must lie in [0, 1] or be None, got {current_decay}")
        if inhibition not in INHIBITION_FLOAT:
            raise ValueError(f"unknown inhibition {inhibition!r}; choose one of {INHIBITION_FLOAT}")
        if threshold <= 0 or self.threshold <= 0:  # slayer truncates to 1/64 steps: (0, 1/64) would become 0
            raise ValueError(f"threshold must be >= 1/64 (> 0 after truncation to 1/64 steps), got {threshold}")
        check_ciu_rule(ciu_grad_at_zero)
        if kernel is not None:
            kernels.requested(kernel)
        self.ciu_grad_at_zero = ciu_grad_at_zero
        self.kernel = kernel
        self.variant = variant
        self.flags = variant_flags(variant)
        self.tau, self.beta, self.kappa = float(tau), float(beta), float(kappa)
        self.current_decay = current_decay
        self.inhibition = inhibition
        self.surrogate = surrogate
        self.surrogate_cfg = make_surrogate(surrogate, gamma=gamma, tau=tau_grad, scale=scale_grad, alpha=alpha)
        self.spike_fn = make_spike_fn(*self.surrogate_cfg)
        self.quantized = quantized
        self.record_states = record_states
        self.states: Dict[str, torch.Tensor] = {}
        self.register_parameter("bias", None)     # [C] threshold units, see add_bias
        if self.flags["plif"]:
            if not tau > 1.0:
                raise ValueError(f"tau must be > 1 for {variant} (initial w = -ln(tau - 1)), got {tau}")
            # spikingjelly ParametricLIF: lambda = 1 - sigmoid(w), w0 = -ln(tau - 1)
            self.plif_w = torch.nn.Parameter(torch.tensor([-math.log(tau - 1.0)]), requires_grad=True)
        elif requires_grad:
            self.voltage_decay = torch.nn.Parameter(torch.tensor([self.p_scale / tau]), requires_grad=True)
        else:
            self.register_buffer("voltage_decay", torch.tensor([self.p_scale / tau]))
        if requires_grad and current_decay not in (None, 1.0):
            warnings.warn("requires_grad=True learns the voltage decay only; current_decay stays fixed "
                          "(the fused ILIF sequence has no gradient for it)", stacklevel=2)

    def extra_repr(self) -> str:
        """What ``print(neuron)`` shows inside ``Neuron(...)``: variant, threshold, tau (its current value, marked
        ``(learned)`` when the decay learns), kappa, beta, current_decay (when set), inhibition, surrogate,
        ciu_grad_at_zero (when not 'pass'), kernel, quantized, the bias (its channel count C; a batch norm's folded
        shift) and input_shift (when not 6). Reads the parameters only: nothing is clamped or computed."""
        parts = [f"variant={self.variant!r}", f"threshold={float(self.threshold)!r}"]
        learned = self._decay_learned()
        parts.append(f"tau={self._tau_now()!r} (learned)" if learned else f"tau={self.tau!r}")
        parts += [f"kappa={self.kappa!r}", f"beta={self.beta!r}"]
        if self.current_decay is not None:
            parts.append(f"current_decay={self.current_decay!r}")
        parts += [f"inhibition={self.inhibition!r}", f"surrogate={self.surrogate!r}"]
        if self.ciu_grad_at_zero != "pass":
            parts.append(f"ciu_grad_at_zero={self.ciu_grad_at_zero!r}")
        parts += [f"kernel={self.kernel!r}", f"quantized={bool(self.quantized)!r}"]
        if self.bias is not None:
            parts.append(f"bias={int(self.bias.shape[0])}")
        elif self.bias_source is not None:
            parts.append("bias='batch_norm'")
        if self.input_shift != fx.ACT_SHIFT:
            parts.append(f"input_shift={int(self.input_shift)}")
        return ", ".join(parts)

    def _decay_learned(self) -> bool:
        """The membrane decay is a trained parameter (PLIF/IPLIF's ``plif_w``, or ``requires_grad=True``)."""
        return bool(self.flags["plif"] or self.voltage_decay.requires_grad)

    def _tau_now(self) -> float:
        """tau = 1 / (1 - lambda) of the current decay (inf without leak), rounded to 4 significant digits; read
        without clamping the parameter in place (unlike :attr:`lam`)."""
        with torch.no_grad():
            if self.flags["plif"]:
                removed = float(torch.sigmoid(self.plif_w.detach().cpu()).reshape(-1)[0])
            else:
                removed = float(self.voltage_decay.detach().cpu().clamp(0, self.p_scale).reshape(-1)[0]) / self.p_scale
        return math.inf if removed == 0 else float(f"{1.0 / removed:.4g}")

    # ---- parameters -------------------------------------------------------------------------------------
    bias_exp: int = fx.BIAS_EXP   # the bias exponent this neuron deploys with (netx fixes 6)
    #: the synaptic input enters the integer current as ``a << input_shift``: 6 for spikes, 0 for a layer fed
    #: graded direct-encoded input (its synaptic sums are already in state units; ``ilif_lava.block``'s
    #: ``graded_input=True`` sets it)
    input_shift: int = fx.ACT_SHIFT

    def add_bias(self, channels: int, init: Union[float, Sequence[float], torch.Tensor, np.ndarray] = 0.0) -> None:
        """Give the neuron a learnable bias, one value per channel (``channels`` = C of the input [N, C, ..., T]),
        in threshold units, initialised to ``init`` (a number or C numbers); it enters the input current."""
        channels = int(channels)
        if channels < 1:
            raise ValueError(f"bias: channels must be >= 1, got {channels}")
        if self.bias is not None:
            raise ValueError("bias: this neuron already has a bias")
        like = next(iter(self.parameters()), None)
        like = self.voltage_decay if like is None else like      # the neuron's dtype/device (after .double() etc.)
        init_t = torch.as_tensor(np.asarray(init, dtype=np.float64) if not isinstance(init, torch.Tensor)
                                 else init.detach(), dtype=like.dtype, device=like.device)
        if init_t.ndim > 1 or init_t.numel() not in (1, channels):
            raise ValueError(f"bias: init must be one number or {channels} numbers, got shape {tuple(init_t.shape)}")
        if init_t.device.type != "meta" and not torch.isfinite(init_t).all():    # meta: shapes only (RAM estimate)
            raise ValueError("bias: init must be finite")
        self.bias = torch.nn.Parameter(init_t.reshape(-1).expand(channels).clone())

    #: optional callable returning the float bias [C] (threshold units, with gradients) in place of ``bias``, or
    #: None for "no bias now": a block with a batch norm sets it to the folded shift (:mod:`ilif_lava.block`)
    bias_source = None

    def raw_bias(self) -> Optional[torch.Tensor]:
        """The float bias [C] before quantization (threshold units): ``bias_source()`` when set, else ``bias``;
        None without a bias."""
        return self.bias if self.bias_source is None else self.bias_source()

    @property
    def quantized_bias(self) -> Optional[torch.Tensor]:
        """The deployed bias as floats [C] (threshold units): clipped to the 13-bit mantissa range, rounded to
        :func:`ilif_lava.fixed_point.bias_to_mant`'s step (1/64); the gradient passes straight through inside the
        range and is 0 outside (as slayer's weight quantizer). None without a bias."""
        raw = self.raw_bias()
        if raw is None:
            return None
        step = fx.bias_step(self.bias_exp)
        b = raw.clamp(fx.BIAS_MANT_MIN * step, fx.BIAS_MANT_MAX * step)
        q = fx.bias_to_mant(b.detach(), self.bias_exp).to(b.dtype) * step
        return b + (q - b.detach())

    @property
    def bias_mant(self) -> Optional[np.ndarray]:
        """The integer bias mantissas [C] (int64 numpy, in [-4096, 4095]) that go with ``bias_exp``, in the form
        the Lava ILIF process takes (``ILIF(bias_mant=..., bias_exp=...)`` broadcasts [C] over the last axis of its
        shape, netx's conv layout) and netx stores under a layer's ``bias`` key. None without a bias."""
        q = self.quantized_bias
        if q is None:
            return None
        return fx.bias_to_mant(q.detach().cpu().double().numpy(), self.bias_exp)

    def _bias_view(self, z: torch.Tensor) -> Optional[torch.Tensor]:
        """The quantized bias shaped to broadcast over z [N, C, ..., T]: [1, C, 1, ..., 1]; None without one."""
        b = self.quantized_bias
        if b is None:
            return None
        if z.ndim < 3 or z.shape[1] != b.shape[0]:
            raise ValueError(f"bias: the neuron has a bias for {b.shape[0]} channels but its input has shape "
                             f"{tuple(z.shape)} ([N, C, ..., T] expected)")
        return b.reshape((1, -1) + (1,) * (z.ndim - 2))

    def _biased(self, z: torch.Tensor) -> torch.Tensor:
        """z + bias (the input current's synaptic part plus the bias), [N, C, ..., T]."""
        b = self._bias_view(z)
        return z if b is None else z + b.to(device=z.device, dtype=z.dtype)

    @property
    def lam(self) -> torch.Tensor:
        """Membrane multiplier lambda = 1 - voltage_decay / 4096 (kept fraction per step), float tensor [1]."""
        if self.flags["plif"]:
            return 1.0 - torch.sigmoid(self.plif_w)
        if self.voltage_decay.requires_grad:
            self.clamp()
        return 1.0 - self.voltage_decay / self.p_scale

    def clamp(self) -> None:
        """Clip a learnable ``voltage_decay`` to its valid range [0, 4096] in place (slayer CUBA's ``clamp``)."""
        if not self.flags["plif"]:
            self.voltage_decay.data.clamp_(0, self.p_scale)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        old = state_dict.pop(prefix + "lam_buf", None)        # checkpoints from before voltage_decay
        if old is not None and not self.flags["plif"]:
            state_dict[prefix + "voltage_decay"] = self.p_scale * (1.0 - old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def int_params(self) -> fx.ILIFParams:
        """The integer parameters this neuron deploys with (Loihi units)."""
        lam = float(self.lam.detach().cpu()[0])
        return fx.ILIFParams(
            vth_mant=fx.threshold_to_mant(self.threshold),
            i_decay=fx.DECAY_ONE if self.current_decay is None else fx.decay_to_int(1.0 - self.current_decay),
            v_decay=fx.decay_to_int(lam), c_decay=fx.decay_to_int(self.kappa), m_decay=fx.decay_to_int(self.beta),
            mpiu=self.flags["mpiu"], ciu=self.flags["ciu"], inhibition="plan", input_shift=self.input_shift)

    @property
    def device_params(self) -> Dict[str, object]:
        """Everything a deployment needs; written verbatim to ``neuron/<key>`` in netx HDF5 (the keys and defaults
        of the ILIF table, :mod:`ilif_lava.netx_schema.tables`)."""
        p = self.int_params
        return ILIF_SCHEMA.record(vth=p.vth_mant, i_decay=p.i_decay, v_decay=p.v_decay, c_decay=p.c_decay,
                                  m_decay=p.m_decay, inhibition=p.inhibition, mpiu=p.mpiu, ciu=p.ciu,
                                  variant=self.variant, input_shift=p.input_shift)

    def _float_multipliers(self):
        """(lam, beta, kappa, current kept) used by the float dynamics; quantized mode uses the integer values."""
        if not self.quantized:
            cur = 0.0 if self.current_decay is None else 1.0 - self.current_decay
            return self.lam, self.beta, self.kappa, cur
        p = self.int_params
        lam = self.lam if (self.flags["plif"] or self.lam.requires_grad) else fx.kept_from_int(p.v_decay)
        return lam, fx.kept_from_int(p.m_decay), fx.kept_from_int(p.c_decay), fx.kept_from_int(p.i_decay)

    # ---- dynamics -----------------------------------------------------------------------------------------
    def _inhibit(self, m: torch.Tensor) -> torch.Tensor:
        if self.inhibition == "plan" or self.quantized:
            return fx.plan_sigmoid_float(m)
        return torch.sigmoid(m)

    def float_dynamics(self, z: torch.Tensor) -> torch.Tensor:
        """Float ILIF over time. z [N, ..., T] -> spikes [N, ..., T].

        ``z`` is the synaptic input; the bias (if any) is added here. Uses the fused sequence function
        (:class:`ilif_lava.dynamics.ILIFSequence`, analytic backward) unless
        states are being recorded, which the step-by-step :meth:`reference_dynamics` does.
        """
        if self.record_states:
            return self.reference_dynamics(z)
        z = self._biased(z)
        lam, beta, kappa, cur_kept = self._float_multipliers()
        lam_t = lam if isinstance(lam, torch.Tensor) else torch.tensor([lam])
        inhibition = "plan" if (self.inhibition == "plan" or self.quantized) else "sigmoid"
        cfg = FloatConfig(float(beta), float(kappa), float(cur_kept), float(self.threshold), self.flags["mpiu"],
                          self.flags["ciu"], inhibition, self.surrogate_cfg, self.ciu_grad_at_zero == "pass")
        return ilif_sequence(z, lam_t.to(z.dtype).to(z.device), cfg, self.kernel)

    def reference_dynamics(self, z: torch.Tensor) -> torch.Tensor:
        """Float ILIF step by step with autograd through every operation (the authors' equations; the reference
        the fused path is tested against). z [N, ..., T] -> spikes [N, ..., T]; records states when asked.
        The bias (if any) joins the input current: ``I[t] = k_I I[t-1] + z[t] + b``."""
        z = self._biased(z)
        lam, beta, kappa, cur_kept = self._float_multipliers()
        th = self.threshold
        mpiu, ciu = self.flags["mpiu"], self.flags["ciu"]
        zero = torch.zeros_like(z[..., 0])
        i_prev, s_prev, v, m, c = zero, zero, zero, zero, zero
        out, rec = [], {k: [] for k in fx.STATE_NAMES} if self.record_states else None
        for t in range(z.shape[-1]):
            if ciu:
                c = kappa * (c + i_prev * s_prev)
            i_t = z[..., t] if cur_kept == 0 else cur_kept * i_prev + z[..., t]
            h = lam * v + (i_t - ciu_rectify(c, self.ciu_grad_at_zero) if ciu else i_t)
            s = self.spike_fn(h - th)
            v = h - s * th
            if mpiu:
                m = beta * (m + s * v)
                v = v - s * self._inhibit(m)
            i_prev, s_prev = i_t, s
            out.append(s)
            if rec is not None:
                for k, val in zip(fx.STATE_NAMES, (i_t, v, c, m)):
                    rec[k].append(val.detach())
        if rec is not None:
            self.states = {k: torch.stack(vals, dim=-1) for k, vals in rec.items()}
        return torch.stack(out, dim=-1)

    def integer_dynamics(self, z: torch.Tensor) -> torch.Tensor:
        """Bit-exact integer ILIF. z [N, ..., T] (multiples of 1/64) -> spikes as float 0/1 [N, ..., T].

        The synaptic sums are ``a = round(z * 2**(12 - input_shift))`` (half to even). The bias enters as
        :func:`ilif_lava.fixed_point.ilif_step`'s ``bias`` (``bias_mant << 6``) on the torch path; the fused kernels
        take the equal input ``a + (bias_mant << (6 - input_shift))`` (:func:`ilif_lava.fixed_point.bias_as_input`)
        and shift it by :attr:`input_shift` as the step does; the CPU kernel rounds ``z`` itself
        (:func:`ilif_lava.kernels.integer_forward_float`).
        """
        scale = 1 << (fx.DECAY_BITS - self.input_shift)
        zd = z.detach()
        b = self._bias_view(zd)
        mant = None if b is None else fx.bias_to_mant(b.detach(), self.bias_exp).to(zd.device)
        p = self.int_params
        name = kernels.choose(zd, self.kernel, integer=True)
        if name != "torch" and not kernels.scalar_params(p):
            name = "torch"
        kernels.note_used("integer", name)
        if name != "torch":
            b_in = None if mant is None else fx.bias_as_input(mant.reshape(-1), self.bias_exp, p.input_shift)
            spikes, states = kernels.integer_forward_float(name, zd, scale, b_in, p, self.record_states, z.dtype)
            if states is not None:
                self.states = states
            return spikes
        a = torch.round(zd * scale).to(torch.int64)
        bias = 0 if mant is None else fx.effective_bias(mant, self.bias_exp)[..., 0]
        state = fx.zero_state_like(a[..., 0])
        out, rec = [], {k: [] for k in fx.STATE_NAMES} if self.record_states else None
        for t in range(a.shape[-1]):
            state = fx.ilif_step(state, a[..., t], p, bias)
            out.append(state.s)
            if rec is not None:
                for k in fx.STATE_NAMES:
                    rec[k].append(getattr(state, k))
        if rec is not None:
            self.states = {k: torch.stack(vals, dim=-1) for k, vals in rec.items()}
        return torch.stack(out, dim=-1).to(z.dtype)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.shape is None:
            self.shape = z.shape[1:-1]
            self.num_neurons = math.prod(self.shape)
        if not self.quantized:
            s = self.float_dynamics(z)
        else:
            s_int = self.integer_dynamics(z)
            raw = self.raw_bias()
            bias_learns = raw is not None and raw.requires_grad
            if torch.is_grad_enabled() and (z.requires_grad or bias_learns):
                record, self.record_states = self.record_states, False
                s_float = self.float_dynamics(z)
                self.record_states = record
                s = s_float + (s_int - s_float).detach()  # straight-through: integer forward, float backward
            else:
                s = s_int
        if self.drop is not None:
            s = self.drop(s)
        return s

    def forward_delayed(self, z: torch.Tensor) -> torch.Tensor:
        """The neuron as Lava runs it behind a synapse: the synaptic input ``z`` [N, ..., T] arrives one step late,
        so step 0 sees no input (only the bias) and step t sees ``z[t-1]``. Returns spikes [N, ..., T].

        This is slayer's ``delay_shift`` (output shifted by one step, 0 first) for a neuron without a bias; with
        a bias the first step is not at rest (it integrates the bias and may fire), and this models it exactly.
        Recorded states keep the blocks' alignment: ``states[..., t]`` after the input ``z[t]`` (Lava's states
        after its step t + 2); the first step's states (Lava's after step 1) go to ``lead_states`` [N, ...].
        """
        s = self.forward(torch.cat([torch.zeros_like(z[..., :1]), z], dim=-1))
        if self.record_states and self.states:
            self.lead_states = {k: v[..., 0] for k, v in self.states.items()}
            self.states = {k: v[..., 1:] for k, v in self.states.items()}
        return s[..., :-1]

    def dynamics(self, z: torch.Tensor):
        """Leaky integration without firing (readout): returns (current, voltage), each [N, ..., T]; the current
        includes the bias (if any)."""
        z = self._biased(z)
        lam = self._float_multipliers()[0]
        v = torch.zeros_like(z[..., 0])
        vs = []
        for t in range(z.shape[-1]):
            v = lam * v + z[..., t]
            vs.append(v)
        return z, torch.stack(vs, dim=-1)


def neuron_params_from_device(device_params: Mapping[str, object]) -> Dict[str, object]:
    """Rebuild ``neuron_params`` (float units) from exported ``device_params`` (inverse of ``device_params``;
    values may be as h5py reads them: bytes, numpy scalars)."""
    p = ILIF_SCHEMA.values(device_params.__getitem__)
    return {"threshold": p["vth"] / fx.WEIGHT_SCALE,
            "tau": 1.0 / (1.0 - fx.kept_from_int(p["v_decay"])) if p["v_decay"] > 0 else math.inf,
            "beta": fx.kept_from_int(p["m_decay"]), "kappa": fx.kept_from_int(p["c_decay"]),
            "current_decay": None if p["i_decay"] == fx.DECAY_ONE else 1.0 - fx.kept_from_int(p["i_decay"]),
            "variant": p["variant"], "inhibition": "plan"}
