"""Engine comparison: float model vs quantized PyTorch twin vs Lava fixed_pt, per layer and time step.

Conventions: spikes per layer are arrays [N, neurons, T] (neurons flattened in slayer C, H, W order); integer
states are in Loihi units (one threshold = 4096); float states are in threshold units and compared after
scaling by 4096. Lava states are recorded one step later than the PyTorch ones (lava[..., t + 1] == torch[..., t];
lava[..., 0] is the step before the first input: the lead state of a biased neuron, else rest), which
:func:`twin_states_on_lava_steps` puts the twin's states on.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ilif_lava import fixed_point as fx

StateDict = Dict[int, Dict[str, np.ndarray]]  # layer -> state name -> [N, neurons, T]


@dataclass
class Divergence:
    """Where two engines first differ: the earliest time step, then the lowest layer, then sample and neuron."""

    layer: int
    time_step: int
    sample: int
    neuron: int
    what: str              # 'spike' or a state name: 'u', 'v', 'c' (CIU), 'm' (MPIU)
    value_a: float
    value_b: float

    def to_dict(self) -> dict:
        return asdict(self)


def twin_states_on_lava_steps(states: StateDict, lead: Optional[Dict[int, Dict[str, np.ndarray]]] = None
                              ) -> StateDict:
    """The quantized twin's states on Lava's steps, for comparison with Lava's recorded states as they are.

    ``states``: layer -> name -> [N, neurons, T], the twin's blocks' states (``states[..., t]`` after synaptic
    input ``t``); ``lead``: layer -> name -> [N, neurons], the state of the step before the first input arrives
    (:attr:`ilif_lava.neuron.Neuron.lead_states`, set for neurons with a bias behind ``delay_shift``). Lava's
    neuron runs that step first (its synapse delivers input ``t`` on step ``t + 2``), so Lava's recorded
    ``[..., 0]`` is the lead state (zeros, rest, for a layer without one: nothing has arrived) and ``[..., t + 1]``
    is the twin's ``[..., t]``. Returned arrays are [N, neurons, T] on Lava's steps; index ``j`` is also the
    step whose spikes Lava's sink holds at ``j`` (the blocks' spike index), so a state difference and the spike
    difference it causes carry the same time step. Every step is compared; nothing is left out."""
    out: StateDict = {}
    for layer, per in states.items():
        out[layer] = {}
        for k, arr in per.items():
            first = (lead or {}).get(layer, {}).get(k)
            shifted = np.zeros_like(arr)
            shifted[..., 1:] = arr[..., :-1]
            if first is not None:
                shifted[..., 0] = np.asarray(first).reshape(arr.shape[:-1])
            out[layer][k] = shifted
    return out


def first_divergence(spikes_a: Sequence[np.ndarray], spikes_b: Sequence[np.ndarray],
                     states_a: Optional[StateDict] = None, states_b: Optional[StateDict] = None,
                     valid_steps: Optional[int] = None) -> Optional[Divergence]:
    """Earliest (time step, layer) where spikes or (if given) states differ; None when identical.

    ``valid_steps`` limits the state comparison to the first steps (the last aligned Lava step is not observed).
    At the same (time, layer) a state difference is reported before the spike difference it causes, in the order
    u (input current), c (CIU), v (membrane), m (MPIU).
    """
    best = None
    for layer, (a, b) in enumerate(zip(spikes_a, spikes_b)):
        cands = []
        if states_a is not None and states_b is not None and layer in states_a and layer in states_b:
            for k in ("u", "c", "v", "m"):
                if k in states_a[layer] and k in states_b[layer]:
                    sa, sb = states_a[layer][k], states_b[layer][k]
                    steps = valid_steps if valid_steps is not None else sa.shape[-1]
                    cands.append((k, sa[..., :steps], sb[..., :steps]))
        cands.append(("spike", a, b))
        for order, (what, x, y) in enumerate(cands):
            diff = np.asarray(x) != np.asarray(y)
            if not diff.any():
                continue
            t_any = np.nonzero(diff.any(axis=(0, 1)))[0][0]
            n_idx, j_idx = np.nonzero(diff[..., t_any])
            key = (int(t_any), layer, order)
            if best is None or key < best[0]:
                best = (key, Divergence(layer=layer, time_step=int(t_any), sample=int(n_idx[0]),
                                        neuron=int(j_idx[0]), what=what,
                                        value_a=float(np.asarray(x)[n_idx[0], j_idx[0], t_any]),
                                        value_b=float(np.asarray(y)[n_idx[0], j_idx[0], t_any])))
    return None if best is None else best[1]


def spike_agreement(spikes_a: Sequence[np.ndarray], spikes_b: Sequence[np.ndarray]) -> List[Dict[str, object]]:
    """Per layer: mismatching spike count (overall and per time step), agreement fraction overall and per time
    step, firing-rate difference."""
    rows = []
    for layer, (a, b) in enumerate(zip(spikes_a, spikes_b)):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            raise ValueError(f"layer {layer}: spike shapes differ: {a.shape} vs {b.shape}")
        eq = a == b
        rows.append({"layer": layer, "mismatches": int((~eq).sum()), "agreement": float(eq.mean()),
                     "agreement_per_step": eq.mean(axis=(0, 1)).tolist(),
                     "mismatches_per_step": (~eq).sum(axis=(0, 1)).astype(int).tolist(),
                     "firing_rate_a": float(a.mean()), "firing_rate_b": float(b.mean()),
                     "firing_rate_diff": float(b.mean() - a.mean())})
    return rows


def prediction_agreement(pred_a: np.ndarray, pred_b: np.ndarray) -> float:
    return float((np.asarray(pred_a) == np.asarray(pred_b)).mean())


def lsb_error_histogram(float_states: StateDict, int_states: StateDict,
                        bins: Sequence[int] = (0, 1, 2, 4, 8, 16, 64, 256, 4096, 1 << 30)) -> Dict[str, object]:
    """|float * 4096 - int| in LSB, pooled per state over layers; histogram with the given bin edges."""
    out = {}
    for k in fx.STATE_NAMES:
        errs = [np.abs(np.asarray(float_states[l][k], dtype=np.float64) * fx.STATE_SCALE - int_states[l][k]).ravel()
                for l in int_states if k in int_states[l] and l in float_states and k in float_states[l]]
        e = np.concatenate(errs) if errs else np.zeros(0)
        if not e.size:                 # no state samples recorded (simulate --state-samples 0)
            continue
        counts, edges = np.histogram(e, bins=np.asarray(bins, dtype=np.float64))
        out[k] = {"bin_edges_lsb": [float(v) for v in edges], "counts": counts.tolist(),
                  "max_lsb": float(e.max()), "mean_lsb": float(e.mean()), "median_lsb": float(np.median(e))}
    return out
