"""Activity and energy metrics of the ILIF paper (definitions in docs/api.md, Background): firing rates, spike counts,
fan-out, accumulate (AC) and multiply-accumulate (MAC) counts and the SOP energy estimate.

Conventions:

* Spike tensors are shaped ``[N, *neuron_shape, T]`` (samples first, **time last**), as SLAYER blocks emit
  them (``[N, C, H, W, T]`` for conv layers, ``[N, F, T]`` for dense layers). Torch tensors (any device)
  and numpy arrays are both accepted; torch is never imported by this module, tensors are reduced with their
  own methods so GPU tensors stay on the GPU until the final scalar.
* Counts are absolute numbers (not millions); energies are in microjoules (uJ).
* Fan-out helpers return numpy arrays shaped like the *input* neurons of a layer (the neurons whose spikes
  trigger the layer's synaptic events).

This module depends on numpy only (torch tensors are duck-typed), so :mod:`ilif_lava.loihi2` can reuse the
fan-out helpers without importing torch.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

# Energy per operation at 45 nm, 0.9 V: 32-bit float add 0.9 pJ, 32-bit float multiply 3.7 pJ
# (MAC = add + multiply = 4.6 pJ). Source: M. Horowitz, ISSCC 2014, as quoted by Han et al. 2015
# ("Learning both Weights and Connections for Efficient Neural Networks", NeurIPS 2015); these are the
# values the ILIF paper uses in App. H, Eqs. 49-51.
E_AC_PJ = 0.9
E_MAC_PJ = 4.6

# Multiplies per neuron per time step in the neuron update (the "k" in SNN #MAC = T * neurons * k).
# The paper only defines LIF (k = 1, the leak multiply lambda * V) and ILIF (k = 2); Table 5 reproduces with
# exactly these. Our choice for the variants the paper does not count:
# * PLIF and CUBA-as-LIF: k = 1 (one leak multiply; CUBA with a current decay has a second decay, but with
#   iDecay = 4096 as exported by this project the current has no memory, so it is counted like LIF).
# * IPLIF: k = 2 (ILIF with a learnable leak, same operations as ILIF).
# * MPIU-only and CIU-only: k = 2. ILIF's k = 2 (not 3) shows the paper does not add one multiply per
#   mechanism; we read the second MAC as "the inhibition state update" (CIU: the kappa decay of C; MPIU: the
#   sigma(M)-gated update, beta = 1 needs no multiply). Either mechanism alone has such an update, so it is
#   counted like full ILIF. This is our assumption, not the paper's.
NEURON_MAC_FACTOR: Dict[str, int] = {
    "LIF": 1, "PLIF": 1, "CUBA": 1,
    "ILIF": 2, "IPLIF": 2, "MPIU": 2, "CIU": 2,
}

Shape = Union[int, Sequence[int]]


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def _is_tensor(x: Any) -> bool:
    """True for torch tensors (duck-typed, torch is not imported)."""
    return hasattr(x, "detach") and hasattr(x, "dim")


def _as_float(x: Any) -> Any:
    """float64 view for reductions: a torch tensor stays a tensor (same device), anything else -> ndarray."""
    if _is_tensor(x):
        return x.detach().double()
    return np.asarray(x, dtype=np.float64)


def _to_numpy(x: Any) -> np.ndarray:
    if _is_tensor(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_time_last(x: Any, name: str = "spikes") -> None:
    if len(tuple(x.shape)) < 2:
        raise ValueError(f"{name} must be shaped [N, ..., T] (time last), got shape {tuple(x.shape)}")


def _pair(v: Shape) -> Tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return int(v), int(v)
    t = tuple(int(a) for a in v)
    if len(t) == 1:
        return t[0], t[0]
    if len(t) != 2:
        raise ValueError(f"expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------
# firing rates and spike counts
# ---------------------------------------------------------------------------------------------------------
def firing_rate(spikes: Any) -> float:
    """Mean of ``spikes`` over samples, neurons and time steps (spikes per neuron per step).

    ``spikes``: [N, ..., T]. For binary spikes this is the fraction of (sample, neuron, step) with a spike.
    """
    _check_time_last(spikes)
    return float(_as_float(spikes).mean())


def continuous_firing_rate(spikes: Any) -> float:
    """Fraction of (sample, neuron) pairs that fire on more than half of the steps (count > T / 2).

    ``spikes``: [N, ..., T] with binary entries; the paper's "activated for more than half the time" (docs/api.md).
    """
    _check_time_last(spikes)
    x = _as_float(spikes)
    t = int(x.shape[-1])
    counts = (x != 0).sum(-1) if _is_tensor(x) else (x != 0).sum(axis=-1)
    active = counts > (t / 2.0)
    return float(active.double().mean()) if _is_tensor(active) else float(np.mean(active))


def spikes_per_step(spikes: Any) -> np.ndarray:
    """Total spikes per time step, summed over samples and neurons: float64 ndarray [T]."""
    _check_time_last(spikes)
    x = _as_float(spikes)
    t = int(x.shape[-1])
    flat = x.reshape(-1, t)
    return _to_numpy(flat.sum(0) if _is_tensor(flat) else flat.sum(axis=0)).astype(np.float64)


def mean_spikes_per_step(spikes: Any) -> np.ndarray:
    """Spikes per time step per sample (``spikes_per_step / N``): float64 ndarray [T]."""
    return spikes_per_step(spikes) / float(spikes.shape[0])


def layer_activity(layer_spikes: Mapping[str, Any]) -> Dict[str, Any]:
    """Per-layer activity summary (JSON-able plain Python types).

    ``layer_spikes``: layer name -> spikes [N, ..., T]. Returns ``{"layers": {name: {...}}, "neurons": total,
    "firing_rate": ..., "continuous_firing_rate": ...}`` where the overall rates are weighted by each layer's
    neuron count (``prod(shape[1:-1])``). Per layer: ``neurons``, ``samples``, ``steps``, ``firing_rate``,
    ``continuous_firing_rate``, ``spikes_per_step`` (list [T], all samples) and ``mean_spikes_per_step``
    (list [T], per sample).
    """
    layers: Dict[str, Dict[str, Any]] = {}
    total_neurons = 0
    fr_acc = 0.0
    cfr_acc = 0.0
    for name, s in layer_spikes.items():
        _check_time_last(s, f"layer {name!r}")
        shape = tuple(int(d) for d in s.shape)
        neurons = int(np.prod(shape[1:-1], dtype=np.int64))
        fr = firing_rate(s)
        cfr = continuous_firing_rate(s)
        sps = spikes_per_step(s)
        layers[name] = {
            "neurons": neurons,
            "samples": shape[0],
            "steps": shape[-1],
            "firing_rate": fr,
            "continuous_firing_rate": cfr,
            "spikes_per_step": [float(v) for v in sps],
            "mean_spikes_per_step": [float(v) for v in sps / shape[0]],
        }
        total_neurons += neurons
        fr_acc += fr * neurons
        cfr_acc += cfr * neurons
    return {
        "layers": layers,
        "neurons": total_neurons,
        "firing_rate": fr_acc / total_neurons if total_neurons else 0.0,
        "continuous_firing_rate": cfr_acc / total_neurons if total_neurons else 0.0,
    }


# ---------------------------------------------------------------------------------------------------------
# fan-out (number of output neurons each input neuron connects to)
# ---------------------------------------------------------------------------------------------------------
def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of one convolution axis (PyTorch/SLAYER formula)."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out < 1:
        raise ValueError(f"empty output: size={size} kernel={kernel} stride={stride} padding={padding} "
                         f"dilation={dilation}")
    return out


def _axis_fan_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """For each input index along one axis: number of (output index, kernel tap) pairs that read it. int64 [size]."""
    out = conv_output_size(size, kernel, stride, padding, dilation)
    o = np.arange(out)[:, None]
    k = np.arange(kernel)[None, :]
    pos = (o * stride - padding + k * dilation).ravel()
    pos = pos[(pos >= 0) & (pos < size)]          # taps on the zero padding connect to nothing
    return np.bincount(pos, minlength=size).astype(np.int64)


def unpool(a: np.ndarray, k: int, axes: Tuple[int, int] = (2, 3)) -> np.ndarray:
    """Each entry of ``a`` repeated over its ``k x k`` window along the two spatial ``axes``: what a value attached
    to a pooled position (a folded pool's weight, a pooled input's fan-out) is for each unpooled one."""
    return np.repeat(np.repeat(a, k, axis=axes[0]), k, axis=axes[1])


def fan_out_dense(out_features: int, in_features: Optional[int] = None) -> np.ndarray:
    """Fan-out of a dense layer: every input neuron reaches all ``out_features`` outputs.

    Returns an int64 array [in_features], or a 0-d array (broadcasts in :func:`count_acs`) without ``in_features``.
    """
    if in_features is None:
        return np.asarray(int(out_features), dtype=np.int64)
    return np.full((int(in_features),), int(out_features), dtype=np.int64)


def fan_out_conv(in_shape: Sequence[int], out_channels: int, kernel: Shape, stride: Shape = 1,
                 padding: Shape = 0, dilation: Shape = 1, groups: int = 1) -> np.ndarray:
    """Exact, padding-aware fan-out of a 2-D convolution for each input neuron. int64 ndarray [C, H, W].

    ``in_shape`` = (C, H, W). An input neuron (c, y, x) reaches ``out_channels / groups`` output channels at every
    output position whose receptive field covers (y, x). A conv separates over the two spatial axes, so the
    count is ``(out_channels // groups) * n_y[y] * n_x[x]`` with ``n_y[y]`` the number of (output row, kernel row)
    pairs that read input row y; this equals the input gradient of ``sum(conv(x, ones))`` (a transposed
    convolution of ones).
    """
    c, h, w = (int(v) for v in in_shape)
    groups = int(groups)
    if c % groups or int(out_channels) % groups:
        raise ValueError(f"channels {c} -> {out_channels} not divisible by groups={groups}")
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    ny = _axis_fan_out(h, kh, sh, ph, dh)
    nx = _axis_fan_out(w, kw, sw, pw, dw)
    per_pos = (int(out_channels) // groups) * np.outer(ny, nx)
    return np.broadcast_to(per_pos, (c, h, w)).copy()


def fan_out_pool(in_shape: Sequence[int], kernel: Shape, stride: Optional[Shape] = None, padding: Shape = 0,
                 dilation: Shape = 1) -> np.ndarray:
    """Fan-out of a 2-D (sum/average) pooling layer: a depthwise conv with one output per channel. int64 [C, H, W].

    ``stride`` defaults to ``kernel``, as in SLAYER and PyTorch pooling.
    """
    c = int(in_shape[0])
    return fan_out_conv(in_shape, c, kernel, kernel if stride is None else stride, padding, dilation, groups=c)


def conv_connections(in_shape: Sequence[int], out_channels: int, kernel: Shape, stride: Shape = 1,
                     padding: Shape = 0, dilation: Shape = 1, groups: int = 1) -> Tuple[int, int]:
    """(real synaptic connections, ANN MACs) of a 2-D conv.

    Real connections = ``fan_out_conv(...).sum()`` (taps on padding excluded); ANN MACs = output neurons times
    fan-in ``(C / groups) * kh * kw``, taps on padding included, as MAC counters (thop, the paper's 549.13 M)
    count them.
    """
    c, h, w = (int(v) for v in in_shape)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    real = int(fan_out_conv(in_shape, out_channels, kernel, stride, padding, dilation, groups).sum())
    ann = int(out_channels) * oh * ow * (c // int(groups)) * kh * kw
    return real, ann


# ---------------------------------------------------------------------------------------------------------
# operation counts and energy
# ---------------------------------------------------------------------------------------------------------
def count_acs(spikes: Any, fan_out: Any) -> float:
    """Mean accumulate operations per sample: ``sum_t sum_i fan_out[i] * s[n, i, t]``, averaged over n.

    ``spikes``: [N, *neuron_shape, T] (e.g. [N, C, H, W, T] or [N, F, T]); ``fan_out``: array shaped
    ``neuron_shape`` (a scalar broadcasts). Graded spikes are weighted by their value; pass ``spikes != 0`` to
    count events instead.
    """
    _check_time_last(spikes)
    x = _as_float(spikes)
    neuron_shape = tuple(int(d) for d in x.shape[1:-1])
    fo = np.asarray(_to_numpy(fan_out), dtype=np.float64)
    if fo.ndim and fo.shape != neuron_shape:
        raise ValueError(f"fan_out shape {fo.shape} does not match the neuron shape {neuron_shape}")
    n = int(x.shape[0])
    per_neuron = x.sum(-1).sum(0) if _is_tensor(x) else x.sum(axis=-1).sum(axis=0)   # spikes per neuron
    if _is_tensor(per_neuron):
        fo_t = per_neuron.new_tensor(fo)
        total = float((per_neuron * fo_t).sum())
    else:
        total = float((per_neuron * fo).sum())
    return total / n


def neuron_macs(num_neurons: int, T: int, neuron: str = "LIF", k: Optional[int] = None) -> int:
    """Multiplies of the neuron updates: ``T * num_neurons * k`` (see :data:`NEURON_MAC_FACTOR`).

    ``neuron`` is one of LIF, PLIF, CUBA (k = 1), ILIF, IPLIF, MPIU, CIU (k = 2), case-insensitive; an explicit
    ``k`` overrides the table.
    """
    if k is None:
        key = str(neuron).upper()
        if key not in NEURON_MAC_FACTOR:
            raise ValueError(f"unknown neuron {neuron!r}; known: {sorted(NEURON_MAC_FACTOR)} (or pass k=)")
        k = NEURON_MAC_FACTOR[key]
    return int(T) * int(num_neurons) * int(k)


def sop_energy_uj(acs: float, macs: float, e_ac_pj: float = E_AC_PJ, e_mac_pj: float = E_MAC_PJ) -> float:
    """SOP energy in microjoules: ``(e_ac_pj * acs + e_mac_pj * macs) * 1e-6`` (counts are absolute numbers).

    With counts in millions (as in the paper's Table 5) the same formula gives ``0.9 * ACs_M + 4.6 * MACs_M`` uJ.
    """
    return (float(e_ac_pj) * float(acs) + float(e_mac_pj) * float(macs)) * 1e-6
