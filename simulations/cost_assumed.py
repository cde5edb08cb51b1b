"""Loihi 2 cost **estimate** of a bare netx file, with no activity data: an explicit, stated activity assumption.

``ilif-lava check FILE`` uses it. Without measured spikes every neuron (the network input included) is assumed to
spike with probability ``rate`` at every one of ``steps`` steps, independently; the estimate of
:mod:`ilif_lava.loihi2_cost` is then fed the expected activity per step:

* effective synaptic operations = ``rate`` x the layer's non-zero synapses (conv taps on padding excluded);
* spikes = ``rate`` x neurons;
* active neuron updates: every neuron with at least one non-zero incoming synapse, every step (an upper bound:
  the expected number is lower), an ``input`` layer all its neurons.

It is :func:`simulations.cost.layer_activity` run on constant graded "spikes" of value ``rate``, so the cost model,
its constants and its calibration are exactly those of the ``compare`` report. Everything here is an estimate.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ilif_lava import loihi2_cost as lc
from simulations import cost

PathLike = Union[str, Path]
DEFAULT_RATE = 0.1                   # spikes per neuron per step (assumed)
DEFAULT_STEPS = 16                   # time steps per inference (assumed; the digits recipe's T)


def input_shape(path: PathLike) -> Optional[Tuple[int, ...]]:
    """The network input shape (C, H, W) or (F,) of the file's first layer: None for an ``input`` layer (it has no
    synapses); a dense layer's input features; for a conv layer the smallest H, W its output shape, stride,
    padding and dilation allow (the file does not store the input size)."""
    from ilif_lava import hdf5_validate
    from ilif_lava import netx_schema as schema
    from ilif_lava.netx_schema import K, T
    from ilif_lava.safe_hdf5 import open_checked
    hdf5_validate.check_container(path)
    with open_checked(path) as f:
        first = sorted(f[K.LAYER], key=int)
        if not first:
            raise ValueError(f"{path}: no layers")
        g = f[K.LAYER][first[0]]
        ltype = schema.text(g[K.TYPE][()], strict=False)
        if ltype in (T.INPUT, T.FLATTEN):
            return None
        w = np.asarray(g[K.WEIGHT][()]) if K.WEIGHT in g else None
        if w is None:
            raise ValueError(f"{path}: layer {first[0]} ({ltype}) has no weight to infer the input from")
        if ltype == T.DENSE:
            return (int(w.reshape(w.shape[0], -1).shape[1]),)
        if ltype != T.CONV:
            raise ValueError(f"{path}: layer {first[0]}: key '{K.TYPE}' = {ltype!r} has no cost model")
        out = [int(v) for v in np.asarray(g[K.SHAPE][()]).ravel()]       # (C, H, W), as slayer writes it
        groups = int(np.asarray(g[K.GROUPS][()]).ravel()[0]) if K.GROUPS in g else 1
        cin = int(w.shape[1]) * groups
        kh, kw = int(w.shape[2]), int(w.shape[3])

        def pair(key: str, default: int) -> Tuple[int, int]:
            if key not in g:
                return default, default
            v = np.asarray(g[key][()]).ravel().astype(int)
            return (int(v[0]), int(v[0])) if v.size == 1 else (int(v[0]), int(v[1]))
        (sh, sw), (ph, pw), (dh, dw) = pair(K.STRIDE, 1), pair(K.PADDING, 0), pair(K.DILATION, 1)
        if len(out) != 3:
            raise ValueError(f"{path}: layer {first[0]}: conv shape {out} is not (C, H, W)")
        oh, ow = out[1], out[2]
        h = (oh - 1) * sh - 2 * ph + dh * (kh - 1) + 1
        wd = (ow - 1) * sw - 2 * pw + dw * (kw - 1) + 1
        if h < 1 or wd < 1:
            raise ValueError(f"{path}: layer {first[0]}: no input size gives the output {out}")
        return (cin, h, wd)


def assumed_estimate(path: PathLike, rate: float = DEFAULT_RATE, steps: int = DEFAULT_STEPS,
                     in_shape: Optional[Sequence[int]] = None) -> lc.CostEstimate:
    """The calibrated cost estimate of one inference of the network file ``path`` under the assumed activity
    (module docstring): every neuron spikes with probability ``rate`` at each of ``steps``
    steps (0 <= rate <= 1). ``in_shape``: the network input (C, H, W) or (F,), default :func:`input_shape`."""
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate {rate}: must be in [0, 1] (spikes per neuron per step)")
    if int(steps) < 1:
        raise ValueError(f"steps {steps}: must be at least 1")
    shape = tuple(int(v) for v in in_shape) if in_shape is not None else input_shape(path)
    syns = cost.read_synapses(path, shape)
    n_in = int(np.prod(shape)) if shape is not None else 1
    x = np.full((1, n_in, 1), float(rate))                       # one step: every step is the same
    spikes = [np.full((1, s.neurons, 1), float(rate)) for s in syns]
    rows = cost.layer_activity(path, x, spikes, input_shape=shape if shape is not None else (1,))
    for r in rows:
        r.synops, r.active, r.spikes = (np.repeat(np.asarray(a, dtype=np.float64), int(steps))
                                        for a in (r.synops, r.active, r.spikes))
    return lc.estimate(rows)


def assumption_text(rate: float, steps: int) -> str:
    """One line saying what activity the estimate assumes."""
    return (f"activity assumed, not measured: every neuron (the input included) spikes with probability {rate:g} at "
            f"each of T = {steps} steps (synaptic ops = {rate:g} x non-zero synapses per step, spikes = {rate:g} x "
            f"neurons; every neuron with a non-zero synapse counted active: an upper bound); change it with "
            f"--rate and -T, or measure it with 'ilif-lava simulate' and 'compare'")


def check_entry(path: PathLike, rate: float = DEFAULT_RATE, steps: int = DEFAULT_STEPS) -> Dict[str, Any]:
    """``ilif-lava check``'s cost entry: the estimate's dict with the assumption, or ``{"error": one line}`` for a
    layer the cost model does not cover (the constraint checks are still printed)."""
    head = {"assumption": assumption_text(rate, steps), "rate": float(rate), "steps": int(steps)}
    try:
        return {**head, **assumed_estimate(path, rate, steps).to_dict()}
    except Exception as exc:                 # noqa: BLE001  (a file the cost model cannot read: say so, go on)
        return {**head, "error": " ".join(str(exc).split()) or type(exc).__name__}


def check_markdown(entry: Dict[str, Any]) -> str:
    """The Markdown section of a :func:`check_entry`."""
    heading = "## Loihi 2 cost (estimate, assumed activity)"
    if "error" in entry:
        return f"{heading}\n\nnot estimated: {entry['error']}\n"
    md = cost.cost_markdown(entry, heading=heading)
    said = entry["assumption"][0].upper() + entry["assumption"][1:]
    return md.replace(heading + "\n\n", f"{heading}\n\n{said}.\n\n", 1)
