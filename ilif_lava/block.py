"""SLAYER-style blocks with ILIF neurons, mirroring ``lava.lib.dl.slayer.block.cuba``.

Usage is the same as lava-dl's CUBA blocks::

    neuron_params = {'threshold': 1.0, 'tau': 1.1, 'variant': 'ILIF'}
    blk = ilif_lava.block.Dense(neuron_params, 34 * 34 * 2, 128, weight_norm=True, delay_shift=True)

Every synapse uses the neuron's 8-bit weight pre-hook (even integer mantissas in [-256, 254] / 64), and each
block exports itself with lava-dl's ``export_hdf5`` (the neuron's ``device_params`` land in ``neuron/``).
Inputs/outputs are [N, C, H, W, T] (conv, pool) or [N, C, T] (dense), time last.

``Dense`` and ``Conv`` also take ``bias=`` (False: none, the default; True: zeros; a number or one number per
output channel [C_out]: the initial values, threshold units). As in Loihi the neuron owns the bias
(:meth:`ilif_lava.neuron.Neuron.add_bias`): one learnable value per output channel, added to the input current
of every step and quantized to its deployed 13-bit mantissa (``neuron.bias_mant``, ``neuron.bias_exp``).
With ``delay_shift=True`` (Lava's one-step synapse) a biased neuron takes the shift on its input, not its
output (:meth:`ilif_lava.neuron.Neuron.forward_delayed`): Lava's neuron integrates its bias on the step before
the first input arrives; without a bias both are the same. slayer's Dense/Conv synapses have no bias (its only
bias is a ``norm``'s, applied at the voltage step); ``Input`` keeps slayer's scalar ``weight``/``bias`` transform.

Each block's docstring (``help(ilif_lava.block.Dense)``) is composed at import time: this module's summary, then
the ``Parameters`` of slayer's own abstract block (read from ``lava.lib.dl.slayer.block.base``, as
``slayer.block.cuba`` builds its docstrings) with this project's extra arguments added, then ``Shape:``.
"""
from __future__ import annotations

import inspect
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from lava.lib.dl.slayer.axon import Delay
from lava.lib.dl.slayer.block import base
from lava.lib.dl.slayer.synapse import layer as synapse

from ilif_lava import fixed_point as fx
from ilif_lava.metrics import unpool
from ilif_lava.netx_schema import LAYER_TYPES, K
from ilif_lava.neuron import Neuron

CONV_LAYER = LAYER_TYPES["conv"]     # pools are written as depthwise convs (netx has no pool loader)

BiasArg = Any   # False/None, True, a number, or [C_out] numbers (list, numpy array, tensor)


def fold_batchnorm(weight: torch.Tensor, bias: Optional[torch.Tensor],
                   bn: torch.nn.modules.batchnorm._BatchNorm) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode ``bn`` that follows a conv/linear (``weight [out, ...]``, ``bias [out]`` or None) into
    one affine map: ``bn(conv(x)) == conv'(x)`` with ``w' = w * g / sqrt(var + eps)``,
    ``b' = (b - mean) * g / sqrt(var + eps) + beta`` (running statistics; differentiable in ``weight``, ``bias``,
    ``g`` and ``beta``). Returns ``(w' [same shape as weight], b' [out])``."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    b = torch.zeros_like(bn.running_mean) if bias is None else bias
    w = weight * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return w, (b - bn.running_mean) * scale + bn.bias


# ---------------------------------------------------------------------------------------------------------
# docstrings: slayer's parameters plus ours
# ---------------------------------------------------------------------------------------------------------
_PARAMS_HEADER = "Parameters\n----------\n"
#: what ``neuron_params`` holds in these blocks (appended to slayer's entry for it)
_NEURON_PARAMS_NOTE = ("The keyword arguments of :class:`ilif_lava.neuron.Neuron` (threshold, tau or voltage_decay, "
                       "beta, kappa, variant, inhibition, ...); ``print(block.neuron)`` shows them.")
#: this project's block arguments, as numpydoc entries: name -> (header line, description)
_OWN_ARGS: Dict[str, Tuple[str, str]] = {
    "bias": ("bias : bool, float or sequence of float, optional",
             "per-output-channel neuron bias in threshold units, owned by the neuron "
             "(:meth:`ilif_lava.neuron.Neuron.add_bias`): False or None means none, True zeros, a number or C_out "
             "numbers the initial values. Learned; quantized to its deployed 13-bit mantissa (exponent 6, steps of "
             "1/64). Defaults to False."),
    "bias_readout": ("bias : bool, float or sequence of float, optional",
                     "per-class bias of the readout, as for :class:`Dense`. Defaults to True."),
    "batch_norm": ("batch_norm : bool, optional",
                   "a batch norm between the synapse and the neuron (statistics over batch, space and time). The "
                   "float forward runs it; the quantized forward and the export fold it into the 8-bit weights and "
                   "the neuron bias (:func:`fold_batchnorm`). Not with ``bias`` or ``weight_norm``. "
                   "Defaults to False."),
    "pre_pool": ("pre_pool : int, optional",
                 "sum-pool the input spikes k x k before the synapse (an average pool folded exactly into the "
                 "weights; deployed as one convolution with kernel, stride and padding times k). Input H and W "
                 "must be multiples of k. Defaults to 1 (none)."),
    "pre_pool_readout": ("pre_pool : int, optional",
                         "sum-pool an [N, C, H, W, T] input k x k, then flatten it in C, H, W order, before the "
                         "synapse (folded into the exported weights). Defaults to 1 (none)."),
    "graded_input": ("graded_input : bool, optional",
                     "the input is analog (direct encoding, an image every step) or spikes, deployed as graded "
                     "payloads round(64 x); the neuron then adds the synaptic sums at full precision "
                     "(``neuron.input_shift = 0``). First block only, not with ``pre_pool``. Defaults to False."),
}


def _numpydoc_entries(text: str) -> List[Tuple[str, List[str]]]:
    """Split a dedented numpydoc ``Parameters`` body into ``(header line, description lines)`` entries."""
    entries: List[Tuple[str, List[str]]] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            entries.append((line, []))
        elif entries and line.strip():
            entries[-1][1].append(line)
    return entries


def _wrapped(text: str, indent: str = "    ", width: int = 76) -> List[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent)


def compose_doc(cls: type, slayer_base: type, extra: Sequence[str] = ()) -> Optional[str]:
    """The docstring of block ``cls``: its own summary (the class docstring up to ``Shape:``), the ``Parameters``
    of slayer's abstract block ``slayer_base`` (taken from slayer's docstring at import time, not copied here) with
    :data:`_OWN_ARGS` entries ``extra`` inserted before ``count_log`` and a note on ``neuron_params``, then the
    summary's ``Shape:`` / ``Example::`` part. None when docstrings are stripped (``python -OO``)."""
    own = inspect.cleandoc(cls.__doc__ or "")
    if not own:
        return None
    summary, shape_sep, rest = own.partition("\nShape:")
    theirs = inspect.cleandoc(slayer_base.__doc__ or "")
    _, sep, params = theirs.partition(_PARAMS_HEADER)
    entries = _numpydoc_entries(params) if sep else []
    names = [header.split(":")[0].strip() for header, _ in entries]
    if "neuron_params" in names:
        entries[names.index("neuron_params")][1].extend(_wrapped(_NEURON_PARAMS_NOTE))
    where = names.index("count_log") if "count_log" in names else len(entries)
    entries[where:where] = [(_OWN_ARGS[k][0], _wrapped(_OWN_ARGS[k][1])) for k in extra]
    lines = [summary.rstrip(), "", _PARAMS_HEADER.rstrip("\n")]
    for header, body in entries:
        lines += [header, *body]
    if shape_sep:
        lines += ["", "Shape:" + rest]
    return "\n".join(lines) + "\n"


class AbstractILIF(torch.nn.Module):
    """Mixin that builds the ILIF neuron from ``neuron_params`` (and the optional learnable axonal delay)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.neuron_params is not None:
            self.neuron = Neuron(**self.neuron_params)
        self.delay = Delay(max_delay=62) if kwargs.get("delay", False) is True else None
        del self.neuron_params

    def extra_repr(self) -> str:
        """``print(block)``: slayer's one-step synapse delay, and this project's options when set (``pre_pool``,
        ``graded_input``); the neuron prints its own parameters (:meth:`ilif_lava.neuron.Neuron.extra_repr`)."""
        parts = []
        if hasattr(self, "delay_shift"):
            parts.append(f"delay_shift={self.delay_shift!r}")
        if getattr(self, "pre_pool", 1) != 1:
            parts.append(f"pre_pool={self.pre_pool}")
        if getattr(self, "graded_input", False):
            parts.append("graded_input=True")
        return ", ".join(parts)

    def forward(self, x: torch.Tensor):
        """slayer's block forward; with ``count_log=True`` also the event rate (mean of output > 0, a 0-d float
        tensor), computed on floats (lava-dl's ``torch.mean(x > 0)`` fails on bool tensors in current torch).
        A neuron with a bias behind ``delay_shift=True`` runs :meth:`_forward_biased` instead."""
        counting = getattr(self, "count_log", False)
        self.count_log = False
        try:
            if getattr(self, "bn", None) is not None and not self._folded():
                out = self._forward_batchnorm(x)
            elif self._biased_shift():
                out = self._forward_biased(x)
            elif self._synapse_neuron:
                out = self._forward_plain(x)
            else:
                out = super().forward(x)
        finally:
            self.count_log = counting
        return (out, (out > 0).float().mean()) if counting else out

    #: the block's slayer forward is synapse -> neuron -> delay shift -> axonal delay (Dense, Conv, Pool)
    _synapse_neuron = False

    def _forward_plain(self, x: torch.Tensor) -> torch.Tensor:
        """slayer's Dense/Conv/Pool forward (weight mask, synapse, neuron, ``delay_shift``, axonal delay) with the
        one-step shift done by :func:`step_shift` (one copy each way instead of slayer's zero fill plus row-wise
        copy). A neuron with ``persistent_state=True`` keeps slayer's ``step_delay`` (it carries the last step of
        the previous call into step 0)."""
        mask = getattr(self, "mask", None)
        if mask is not None:
            self.synapse.weight.data *= mask
        out = self.neuron(self._synaptic_input(x))
        if self.delay_shift is True:
            out = base.step_delay(self, out) if self.neuron.persistent_state else step_shift(out)
        return self.delay(out) if self.delay is not None else out

    def _synaptic_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the neuron integrates: the synapse's output for ``x`` (a fan-in layer adds its skip synapses,
        ilif_lava/graph.py)."""
        return self.synapse(x)

    def _delayed_neuron(self, z: torch.Tensor) -> torch.Tensor:
        """The neuron behind slayer's one-step synapse delay: ``neuron(step_shift(z))``, equal to
        :meth:`ilif_lava.neuron.Neuron.forward_delayed` for this causal neuron (step t sees ``z[t-1]``, step 0 the
        bias alone) without running a T+1st step; ``forward_delayed`` itself when states are recorded (it keeps
        the states' alignment and ``lead_states``)."""
        if self.neuron.record_states:
            return self.neuron.forward_delayed(z)
        return self.neuron(step_shift(z))

    def _biased_shift(self) -> bool:
        neuron = getattr(self, "neuron", None)
        return (getattr(self, "delay_shift", False) is True and neuron is not None
                and getattr(neuron, "raw_bias", lambda: None)() is not None)

    # ---- batch norm between the synapse and the neuron (``batch_norm=True``) --------------------------------
    def _attach_batchnorm(self, batch_norm: bool, bias: BiasArg, dims: int) -> None:
        """Give the block a batch norm over the synaptic input's channels (``dims``: 1 for [N, C, T], 3 for
        [N, C, H, W, T]; statistics over batch, space and time). Its shift is the neuron's bias, so ``bias=`` is
        refused with it."""
        self.bn = None
        if not batch_norm:
            return
        if not (bias is None or (isinstance(bias, bool) and not bias)):
            raise ValueError(f"{type(self).__name__}: batch_norm=True already gives the neuron its bias (the batch "
                             f"norm's shift); do not pass bias= as well")
        if getattr(self.synapse, "weight_norm_enabled", False):
            raise ValueError(f"{type(self).__name__}: batch_norm=True with weight_norm=True is not supported")
        cls = torch.nn.BatchNorm1d if dims == 1 else torch.nn.BatchNorm3d
        self.bn = cls(self.synapse.out_channels)
        self.fold_now = False
        self.synapse.pre_hook_fx = self._folded_weight_hook
        self.neuron.bias_source = self._folded_shift

    def _folded(self) -> bool:
        """The batch norm is folded (weights x scale, shift as the neuron bias, running statistics): in the
        quantized (QAT / deployment twin) forward and while exporting. Otherwise it runs as a batch norm."""
        return bool(self.neuron.quantized or self.fold_now)

    def _folded_weight_hook(self, weight: torch.Tensor, descale: bool = False) -> torch.Tensor:
        """The synapse pre-hook: the 8-bit weight quantizer, applied to the folded weight when folded."""
        if self._folded():
            weight = fold_batchnorm(weight, None, self.bn)[0]
        return self.neuron.quantize_8bit(weight, descale=descale)

    def _folded_shift(self) -> Optional[torch.Tensor]:
        """The neuron's bias source: the folded shift [C] when folded, else None (the batch norm adds it)."""
        return fold_batchnorm(self.synapse.weight, None, self.bn)[1] if self._folded() else None

    def _forward_batchnorm(self, x: torch.Tensor) -> torch.Tensor:
        """The float forward with an unfolded batch norm: synapse (8-bit weights), batch norm (batch statistics in
        training, running ones in eval), neuron (input one step late with ``delay_shift``, as the folded network
        runs behind Lava's synapse)."""
        z = self.bn(self._synaptic_input(x))
        out = self._delayed_neuron(z) if getattr(self, "delay_shift", False) is True else self.neuron(z)
        return self.delay(out) if self.delay is not None else out

    def _forward_biased(self, x: torch.Tensor) -> torch.Tensor:
        """slayer's Dense/Conv forward with the one-step shift taken on the synaptic input instead of the output
        spikes (:meth:`ilif_lava.neuron.Neuron.forward_delayed`): identical without a bias; with one, the first
        step integrates the bias as Lava's neuron does before its synapse delivers the first input."""
        mask = getattr(self, "mask", None)
        if mask is not None:
            self.synapse.weight.data *= mask
        out = self._delayed_neuron(self._synaptic_input(x))
        return self.delay(out) if self.delay is not None else out

    def _attach(self, synapse_cls, kwargs) -> None:
        self.synapse = synapse_cls(**self.synapse_params)
        if "pre_hook_fx" not in kwargs:
            self.synapse.pre_hook_fx = self.neuron.quantize_8bit
        del self.synapse_params

    def _attach_bias(self, bias: BiasArg) -> None:
        """Give the neuron a per-output-channel bias when ``bias`` asks for one (see the module docstring)."""
        if bias is None or (isinstance(bias, bool) and not bias):
            return
        self.neuron.add_bias(self.synapse.out_channels, 0.0 if isinstance(bias, bool) else bias)

    def export_hdf5(self, handle) -> None:
        """slayer's export, plus the neuron bias: a neuron with a bias writes its 13-bit mantissas
        (``neuron.bias_mant``, int32 [C_out], one per output channel, deployed with exponent 6) under the layer's
        ``bias`` key, netx's per-neuron bias as CUBA layers use it (netx hands it to the ILIF process as
        ``bias_mant``)."""
        folding = getattr(self, "bn", None) is not None
        if folding:                       # a batch norm is written folded: weights x scale, shift as the bias
            self.fold_now = True
        try:
            super().export_hdf5(handle)
            mant = getattr(getattr(self, "neuron", None), "bias_mant", None)
        finally:
            if folding:
                self.fold_now = False
        if mant is not None:
            handle.create_dataset(K.BIAS, data=np.asarray(mant, dtype=np.int32).reshape(-1))


class Input(AbstractILIF, base.AbstractInput):
    """ILIF input block: slayer's optional scalar weight and bias on the input (8-bit quantized weight), then ILIF
    neurons when ``neuron_params`` is given (else the input passes through the affine transform only).

    Shape:
        - Input: [N, C, T] or [N, C, H, W, T] (spikes or analog values, time last).
        - Output: the same shape (spikes when it has neurons).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.neuron is not None:
            self.pre_hook_fx = self.neuron.quantize_8bit


class Flatten(base.AbstractFlatten):
    """Flatten block (slayer's): feature maps to a vector per step, in C, H, W order; exported as a netx
    ``flatten`` layer.

    Shape:
        - Input: [N, C, H, W, T].
        - Output: [N, C*H*W, T].
    """


class Dense(AbstractILIF, base.AbstractDense):
    """ILIF dense block: a dense synapse with slayer's 8-bit weights (even mantissas in [-256, 254] / 64), an
    optional batch norm, then ILIF neurons (:class:`ilif_lava.neuron.Neuron`) with an optional per-neuron bias.
    Exported as a netx ``dense`` layer (``neuron/type = ILIF``).

    Shape:
        - Input: [N, in_neurons, T] (spikes).
        - Output: [N, out_neurons, T] (spikes; with ``count_log`` also the event rate).

    Example::

        >>> import torch
        >>> from ilif_lava import block
        >>> blk = block.Dense({"threshold": 1.0, "tau": 2.0, "kernel": "torch"}, 16, 4, bias=True)
        >>> blk(torch.zeros(2, 16, 10)).shape
        torch.Size([2, 4, 10])
        >>> blk.neuron.bias_mant.shape          # one 13-bit mantissa per output neuron
        (4,)
    """

    _synapse_neuron = True

    def __init__(self, *args, bias: BiasArg = False, batch_norm: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._attach(synapse.Dense, kwargs)
        self._attach_batchnorm(batch_norm, bias, dims=1)
        self._attach_bias(bias)


def is_pipelined(blocks) -> bool:
    """True when no block has slayer's one-step synapse delay (``delay_shift=True``): the network is deployed with
    pipelined timing (``simulations/lava_run.py``; the exported file says so in its root attribute
    ``netx_schema.K.TIMING``)."""
    return not any(getattr(b, "delay_shift", False) is True for b in blocks)


class _SumPool(torch.autograd.Function):
    """Sum over non-overlapping ``k x k`` windows of [N, C, H, W, T] (contiguous, H and W multiples of k).

    Forward: k - 1 additions of contiguous row slices over H, then k - 1 over W (each addend a run of T
    contiguous steps); the backward broadcasts the gradient back over each window with one copy. Exact for spike
    counts in any order of addition (integers below 2^24). torch's average pool over a trailing time axis reads and
    zero-fills far more (its backward scatters into a zeroed tensor)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int) -> torch.Tensor:
        n, c, h, w, t = x.shape
        rows = x.view(n, c, h // k, k, w * t)
        hs = rows[:, :, :, 0] + rows[:, :, :, 1]
        for i in range(2, k):
            hs += rows[:, :, :, i]
        cols = hs.view(n, c, h // k, w // k, k, t)
        out = cols[..., 0, :] + cols[..., 1, :]
        for i in range(2, k):
            out += cols[..., i, :]
        ctx.k, ctx.in_shape = k, x.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        n, c, h, w, t = ctx.in_shape
        k = ctx.k
        g = grad.contiguous().view(n, c, h // k, 1, w // k, 1, t)
        return g.expand(n, c, h // k, k, w // k, k, t).reshape(n, c, h, w, t), None


def sum_pool(x: torch.Tensor, k: int, where: str) -> torch.Tensor:
    """Sum over non-overlapping ``k x k`` windows of every step: [N, C, H, W, T] -> [N, C, H/k, W/k, T] (exact:
    spike counts 0..k^2). H and W must be multiples of ``k`` (a remainder would be dropped by the pool but seen
    by the folded convolution, so it is refused, naming ``where``)."""
    if k == 1:
        return x
    h, w = x.shape[2], x.shape[3]
    if h % k or w % k:
        raise ValueError(f"{where}: pre_pool={k} needs input H, W divisible by {k}, got {h}x{w}")
    return _SumPool.apply(x.contiguous(), k)


class _StepShift(torch.autograd.Function):
    """The one-step delay along time: ``out[..., 0] = 0``, ``out[..., t] = x[..., t - 1]`` ([..., T], time last).

    One contiguous copy of the flattened tensor shifted by one element, then step 0 of every row zeroed (it received
    the previous row's last step); the backward is the mirror image. slayer's ``axon.delay`` zero-fills the whole
    output and copies row by row, both ways."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous()
        out = torch.empty_like(x)
        flat_in, flat_out = x.view(-1), out.view(-1)
        flat_out[1:] = flat_in[:-1]
        out[..., 0] = 0
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        out = torch.empty_like(grad)
        out.view(-1)[:-1] = grad.view(-1)[1:]
        out[..., -1] = 0
        return out


def step_shift(x: torch.Tensor) -> torch.Tensor:
    """slayer's one-step synapse delay (``delay_shift=True``): [..., T] -> [..., T], zero at step 0, ``x[..., t-1]``
    at step t (differentiable). For a causal neuron ``neuron(step_shift(z))`` equals
    :meth:`ilif_lava.neuron.Neuron.forward_delayed` ``(z)`` (the input one step late, the bias from step 0)."""
    return _StepShift.apply(x)


def _pool_arg(pre_pool: int, where: str) -> int:
    k = int(pre_pool)
    if k != pre_pool or k < 1:
        raise ValueError(f"{where}: pre_pool must be a positive integer, got {pre_pool!r}")
    return k


class Conv(AbstractILIF, base.AbstractConv):
    """ILIF convolution block: a 2D convolution synapse with slayer's 8-bit weights, an optional batch norm, then
    ILIF neurons with an optional bias per output channel. Exported as a netx ``conv`` layer.

    ``pre_pool=k`` (default 1: none): the input spikes are first average-pooled ``k x k`` (the pool of a VGG
    between two convolutions), folded exactly into this synapse: the block sums each ``k x k`` window (spike counts
    0..k^2) and the weights act on the sums, so the weights are the float network's ``W / k^2``. Deployed as one
    convolution of the spikes with each weight repeated over its ``k x k`` window (kernel ``k*K``, stride ``k*S``,
    padding ``k*P``): the same integers Lava's Conv computes, no fraction anywhere (docs/fixed-point.md).

    ``graded_input=True``: the block takes direct-encoded analog input (an image at every step) or spikes, sent to
    Lava as graded payloads ``round(64 x)`` (:func:`ilif_lava.fixed_point.direct_input`); the quantized forward
    rounds its input the same way and the neuron adds the synaptic sums at full precision (``input_shift = 0``).
    The network's first block only.

    Shape:
        - Input: [N, in_features, H, W, T] (spikes; analog values with ``graded_input``).
        - Output: [N, out_features, H', W', T] spikes, H' and W' as torch's ``Conv2d`` gives for the (pre-pooled)
          input.
    """

    _synapse_neuron = True

    def __init__(self, *args, bias: BiasArg = False, batch_norm: bool = False, pre_pool: int = 1,
                 graded_input: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.pre_pool = _pool_arg(pre_pool, type(self).__name__)
        self._attach(synapse.Conv, kwargs)
        self._attach_batchnorm(batch_norm, bias, dims=3)
        self._attach_bias(bias)
        self.graded_input = bool(graded_input)
        if self.graded_input:
            if self.pre_pool > 1:
                raise ValueError("Conv: graded_input=True with pre_pool > 1 is not supported")
            self.neuron.input_shift = 0

    def forward(self, x: torch.Tensor):
        if self.graded_input and self.neuron.quantized:
            x = (fx.direct_input(x) / fx.WEIGHT_SCALE).to(x.dtype)     # the payloads Lava receives, / 64
        if self.pre_pool > 1:
            self.input_hw = tuple(int(v) for v in x.shape[2:4])     # checked at export
            x = sum_pool(x, self.pre_pool, "Conv")
        return super().forward(x)

    def file_weight(self, w: np.ndarray) -> np.ndarray:
        """A synapse weight [out, in, kh, kw(, 1)] in the written file's geometry: with ``pre_pool`` each weight
        repeated over its k x k window ([out, in, k*kh, k*kw(, 1)])."""
        return unpool(w, self.pre_pool) if self.pre_pool > 1 else w

    def export_hdf5(self, handle) -> None:
        """slayer's conv export (plus bias / folded batch norm); with ``pre_pool`` the pool is folded into the
        written convolution (weights repeated over each ``k x k`` window; kernel, stride and padding times k)."""
        super().export_hdf5(handle)
        k = self.pre_pool
        if k == 1:
            return
        dil = np.asarray(handle[K.DILATION][()]).reshape(-1)
        if (dil != 1).any():
            raise NotImplementedError(f"Conv export: pre_pool={k} with dilation {dil.tolist()} cannot be folded")
        scaled = {K.WEIGHT: self.file_weight(np.asarray(handle[K.WEIGHT][()]))}
        for key in (K.KERNEL_SIZE, K.STRIDE, K.PADDING):
            scaled[key] = np.asarray(handle[key][()]) * k
        for key, value in scaled.items():
            del handle[key]
            handle.create_dataset(key, data=value)


class Pool(AbstractILIF, base.AbstractPool):
    """ILIF pooling block: slayer's sum-pooling synapse (one 8-bit weight) + ILIF neurons. Exported as a depthwise
    ``conv`` so that netx can load it (stride equal to the kernel, no padding, H and W multiples of the kernel).

    Shape:
        - Input: [N, C, H, W, T] (spikes).
        - Output: [N, C, H / k, W / k, T] spikes (k the kernel size).
    """

    _synapse_neuron = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._attach(synapse.Pool, kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.input_hw = tuple(int(v) for v in x.shape[2:4])  # checked at export
        return super().forward(x)

    def export_hdf5(self, handle) -> None:
        """Write a depthwise (groups = C) conv whose kernel is the pool weight; netx has no pool loader."""
        s = self.synapse
        ch = int(self.neuron.shape[0])
        k = tuple(int(v) for v in s.kernel_size[:-1])
        stride = tuple(int(v) for v in s.stride[:-1])
        pad = tuple(int(v) for v in s.padding[:-1])
        in_hw = tuple(getattr(self, "input_hw", ()))
        if stride != k or any(pad) or any(n % kk for n, kk in zip(in_hw, k)):
            # slayer's pool synapse runs conv3d on [N, 1, C*H, W, T]: a per-channel pool only in this case
            raise NotImplementedError(f"Pool export needs stride == kernel, no padding and input H, W divisible by "
                                      f"the kernel (got kernel {k}, stride {stride}, padding {pad}, input {in_hw})")
        w = s.pre_hook_fx(s.weight, descale=True).detach().cpu().numpy().reshape(-1)[0]
        handle.create_dataset(K.TYPE, (1,), "S10", [CONV_LAYER.name.encode("ascii")])
        values = {K.SHAPE: np.array(self.neuron.shape), K.IN_CHANNELS: ch, K.OUT_CHANNELS: ch,
                  K.KERNEL_SIZE: np.array(k), K.STRIDE: np.array(stride), K.PADDING: np.array(pad),
                  K.DILATION: np.array(s.dilation[:-1]), K.GROUPS: ch,
                  K.WEIGHT: np.full((ch, 1) + k, w, dtype=np.float32)}
        if self.delay is not None:
            self.delay.clamp()
            values[K.DELAY] = torch.floor(self.delay.delay).flatten().cpu().numpy()
        for key, value in values.items():
            handle.create_dataset(key, data=value)
        for key, value in self.neuron.device_params.items():
            handle.create_dataset(f"{K.NEURON}/{key}", data=value)


class Readout(AbstractILIF, base.AbstractDense):
    """A network's analog Linear head, deployable: dense synapse + an integer accumulator that never fires.

    [N, C, H, W, T] or [N, F, T] -> per-step logits [N, K, T] (``W x[t] + b``, threshold units, float; with the
    8-bit weights and the 13-bit bias, the values the deployed integers give exactly). ``pre_pool=k``: sum-pool
    the input spikes ``k x k`` first (as :class:`Conv`), then flatten (slayer's C, H, W order). ``bias``: as
    :class:`Dense` (default True: one per class). ``delay_shift`` should be False (pipelined timing; the blocks
    before it likewise).

    Deployed as a netx ``dense`` layer with ``neuron/type = READOUT`` (:func:`ilif_lava.fixed_point.readout_step`):
    the accumulator ``v`` (state units) after step t is ``4096 * sum(logits[..., :t+1])``; :meth:`integer_readout`
    computes it from the logits. The prediction is the argmax of ``v`` after the last step.

    Shape:
        - Input: [N, C, H, W, T] or [N, in_neurons, T] (spikes).
        - Output: [N, out_neurons, T] per-step logits (float, threshold units).
    """

    is_readout = True

    def __init__(self, neuron_params, in_neurons: int, out_neurons: int, *args, bias: BiasArg = True,
                 pre_pool: int = 1, **kwargs):
        super().__init__(neuron_params, in_neurons, out_neurons, *args, **kwargs)
        self.pre_pool = _pool_arg(pre_pool, type(self).__name__)
        self._attach(synapse.Dense, kwargs)
        self._attach_bias(bias)
        self.neuron.shape = torch.Size([self.synapse.out_channels])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 5:
            self.input_hw = tuple(int(v) for v in x.shape[2:4])
            if self.pre_pool > 1:
                x = sum_pool(x, self.pre_pool, "Readout")
            self.pooled_shape = tuple(int(v) for v in x.shape[1:4])
            self.flatten_before = (int(np.prod(self.input_hw)) * int(x.shape[1]),)
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        elif self.pre_pool > 1:
            raise ValueError(f"Readout: pre_pool={self.pre_pool} needs [N, C, H, W, T] input, got {tuple(x.shape)}")
        z = self.synapse(x)
        if self.delay_shift is True:
            z = step_shift(z)
        return self.neuron._biased(z)

    @staticmethod
    def integer_readout(logits: torch.Tensor) -> torch.Tensor:
        """The deployed accumulator after every step, [..., T] int64 (state units), from per-step logits
        [..., T] that are multiples of 1/64 (:func:`ilif_lava.fixed_point.readout_sequence`)."""
        a = torch.round(logits.detach().double() * fx.WEIGHT_SCALE).to(torch.int64)
        return fx.readout_sequence(a)

    def file_weight(self, w: np.ndarray) -> np.ndarray:
        """A synapse weight in the written file's geometry [out, in]: with ``pre_pool`` each weight of the pooled
        input [out, C*h*w] repeated over its k x k window ([out, C*kh*kw], C, H, W order)."""
        w = w.reshape(self.synapse.out_channels, -1)
        if self.pre_pool == 1:
            return w
        c, h, wd = self.pooled_shape
        return unpool(w.reshape(-1, c, h, wd), self.pre_pool).reshape(w.shape[0], -1)

    def export_hdf5(self, handle) -> None:
        """A netx ``dense`` layer (``neuron/type = READOUT``, layer ``bias`` = 13-bit mantissas); with
        ``pre_pool`` the pool is folded in (each weight repeated over its ``k x k`` input window)."""
        from ilif_lava.netx_schema import NEURON_TYPES, READOUT_NEURON_TYPE, T
        s = self.synapse
        w = self.file_weight(s.pre_hook_fx(s.weight, descale=True).detach().cpu().numpy())
        out = int(w.shape[0])
        handle.create_dataset(K.TYPE, (1,), "S10", [T.DENSE.encode("ascii")])
        for key, value in ((K.SHAPE, np.array([out])), (K.IN_FEATURES, int(w.shape[1])), (K.OUT_FEATURES, out),
                           (K.WEIGHT, w.astype(np.float32))):
            handle.create_dataset(key, data=value)
        for key, value in NEURON_TYPES[READOUT_NEURON_TYPE].record(variant="READOUT").items():
            handle.create_dataset(f"{K.NEURON}/{key}", data=value)
        mant = self.neuron.bias_mant
        if mant is not None:
            handle.create_dataset(K.BIAS, data=np.asarray(mant, dtype=np.int32).reshape(-1))


class Affine(AbstractILIF, base.AbstractAffine):
    """ILIF affine block: a dense synapse + leaky integration without firing (a float readout; not deployable to
    Lava: use :class:`Readout`).

    Shape:
        - Input: [N, in_neurons, T] (spikes).
        - Output: [N, out_neurons, T] membrane voltage (float, threshold units).
    """

    forward = base.AbstractAffine.forward     # count_log gives (voltage, None), as in slayer

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._attach(synapse.Dense, kwargs)
        self.neuron.shape = torch.Size([self.synapse.out_channels])


# help() shows slayer's arguments with ours (composed from slayer's docstrings, as slayer.block.cuba does)
for _cls, _base, _extra in ((Input, base.AbstractInput, ()), (Flatten, base.AbstractFlatten, ()),
                            (Dense, base.AbstractDense, ("bias", "batch_norm")),
                            (Conv, base.AbstractConv, ("bias", "batch_norm", "pre_pool", "graded_input")),
                            (Pool, base.AbstractPool, ()),
                            (Readout, base.AbstractDense, ("bias_readout", "pre_pool_readout")),
                            (Affine, base.AbstractAffine, ())):
    _cls.__doc__ = compose_doc(_cls, _base, _extra)
del _cls, _base, _extra
