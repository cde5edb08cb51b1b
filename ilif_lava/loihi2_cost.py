"""Loihi 2 cost **estimate** from measured activity: the constants table and the pure arithmetic.

Every number this module returns is an estimate. The real Loihi 2 mapper and profiler are closed (INRC only), so
the model below combines published per-operation figures of Loihi (Davies et al. 2018; Loihi 2 has no public
table), the per-layer resource estimate of :mod:`ilif_lava.loihi2` (cores, SynMem words, state words), and the
activity a deployed network really had (per layer and step: effective synaptic operations, neurons that received
input, spikes), measured by the integer engine (:mod:`simulations.cost` builds the inputs). It is calibrated on
the one public Loihi 2 measurement of a lava-dl network (PilotNet LIF; ``PILOTNET_MEASURED``), see
docs/loihi2-cost.md for the calibration and its error.

Model, per step t and layer l (``LayerActivity`` holds the inputs):

* dynamic energy = synops x E_synop + (active x E_active + inactive x E_inactive) x words / 2
  + spikes x messages_per_spike x (E_spike + hops x E_hop)
  (``words``: 24-bit state words per neuron, ILIF 4, LIF/CUBA 2; Davies' figures are for a 2-word neuron)
* compute time of one core = (synops x t_synop + (active x t_active + inactive x t_inactive) x words / 2) / cores
* message time of one core = (messages in + messages out) / cores x t_spike + hops x t_hop
* time per step = max over layers of max(compute, message) of its (evenly loaded) cores + barrier(tiles)
* latency per sample = (T + depth) x mean step time; throughput = 1 / (T x mean step time)
* static energy per inference = chips x P_static x T x mean step time

Pure arithmetic on numpy arrays; imports numpy and the capacity constants of :mod:`ilif_lava.loihi2` only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ilif_lava.file_limits import CHIP_CORES
from ilif_lava.loihi2 import REFERENCE_STATE_WORDS

DAVIES = "Davies et al. 2018, 'Loihi: a neuromorphic manycore processor with on-chip learning', IEEE Micro 38(1), " \
         "Table 2 (Loihi, 14 nm)"
PILOTNET_NOTEBOOK = "lava-dl tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb (Loihi 2, Oheo Gulch, " \
                    "lava-loihi profiler output)"


@dataclass(frozen=True)
class Constant:
    """One constant of the cost model: value, unit and where it comes from."""

    value: float
    unit: str
    source: str


# The one public Loihi 2 measurement of a lava-dl network (PilotNet LIF, single frame repeated, reset every 16
# steps). Time per step = 1e6 / 408.91 / 16 us (the notebook's inference_rate formula inverted).
PILOTNET_MEASURED: Dict[str, Any] = {
    "source": PILOTNET_NOTEBOOK,
    "cores": 74,
    "steps_per_sample": 16,
    "inferences_per_s": 408.91,
    "time_per_step_us": 1e6 / 408.91 / 16,
    "total_power_w": 0.679234,
    "static_power_w": 0.232078,
    "dynamic_power_w": 0.447156,
    "energy_per_inference_mj": 1.661103,
    "dynamic_energy_per_inference_mj": 1.093544,
}


# THE table: every constant of the cost model, with its source. Nothing else in the repository holds these values.
CONSTANTS: Dict[str, Constant] = {
    "e_synop_pj": Constant(23.6, "pJ per synaptic op", f"{DAVIES}: energy per synaptic spike op (min)"),
    "e_neuron_active_pj": Constant(81.0, "pJ per neuron update", f"{DAVIES}: energy per neuron update, active"),
    "e_neuron_inactive_pj": Constant(52.0, "pJ per neuron update", f"{DAVIES}: energy per neuron update, inactive"),
    "e_spike_pj": Constant(1.7, "pJ per spike message", f"{DAVIES}: within-tile spike energy"),
    "e_hop_pj": Constant(3.5, "pJ per tile hop", f"{DAVIES}: energy per tile hop, mean of E-W 3.0 and N-S 4.0"),
    "t_synop_ns": Constant(3.5, "ns per synaptic op", f"{DAVIES}: time per synaptic spike op (max)"),
    "t_neuron_active_ns": Constant(8.4, "ns per neuron update", f"{DAVIES}: time per neuron update, active"),
    "t_neuron_inactive_ns": Constant(5.3, "ns per neuron update", f"{DAVIES}: time per neuron update, inactive"),
    "t_spike_ns": Constant(2.1, "ns per spike message", f"{DAVIES}: within-tile spike latency"),
    "t_hop_ns": Constant(5.3, "ns per tile hop", f"{DAVIES}: latency per tile hop, mean of E-W 4.1 and N-S 6.5"),
    "t_barrier_1_tile_ns": Constant(113.0, "ns", f"{DAVIES}: mesh-wide barrier sync time, 1 tile"),
    "t_barrier_32_tiles_ns": Constant(465.0, "ns", f"{DAVIES}: mesh-wide barrier sync time, 32 tiles"),
    "cores_per_tile": Constant(4.0, "cores", f"{DAVIES}: 128 cores, barrier quoted for 1-32 tiles (128 / 32)"),
    "p_static_w_per_chip": Constant(PILOTNET_MEASURED["static_power_w"], "W per chip", f"{PILOTNET_NOTEBOOK}: static power (one chip)"),
    # Calibration factors (estimate / measured on PilotNet LIF): recomputed by simulations.cost.calibrate_pilotnet
    # from lava-dl's shipped PilotNet file and its shipped spikes; tests/test_cost_estimate.py checks these values.
    "time_calibration": Constant(0.417, "x", "PilotNet LIF: measured time per step (PILOTNET_MEASURED) / "
                                             "uncalibrated estimate from lava-dl's shipped spikes, first 16 steps "
                                             "(simulations/cost.py calibrate_pilotnet)"),
    "energy_calibration": Constant(0.913, "x", "PilotNet LIF: measured dynamic energy per inference "
                                               "(PILOTNET_MEASURED) / uncalibrated estimate, same activity"),
}
# The uncalibrated model's error on PilotNet LIF, (estimate - measured) / measured, as
# simulations/cost.py calibrate_pilotnet computes it (tests/test_cost_estimate.py checks these values). With a
# single measured network the calibrated estimate meets it by construction: these are the honest errors.
CALIBRATION_ERRORS: Dict[str, float] = {"cores": -0.095, "time_per_step_us": 1.400,
                                        "dynamic_energy_per_inference_mj": 0.095}


def calibration_note() -> str:
    """One line for reports: what the estimate is calibrated on and the uncalibrated errors there."""
    e = CALIBRATION_ERRORS
    return (f"estimate; calibrated on the one public Loihi 2 measurement of a lava-dl network (PilotNet LIF, "
            f"{PILOTNET_MEASURED['cores']} cores), where the uncalibrated model was off by "
            f"{e['time_per_step_us']:+.0%} in time per step, {e['dynamic_energy_per_inference_mj']:+.1%} in "
            f"dynamic energy and {e['cores']:+.1%} in cores; no second measurement validates it "
            f"(docs/loihi2-cost.md)")


def const(name: str, constants: Optional[Dict[str, Constant]] = None) -> float:
    """The value of constant ``name`` from ``constants`` (default :data:`CONSTANTS`)."""
    return float((constants or CONSTANTS)[name].value)


@dataclass
class LayerActivity:
    """Inputs of the estimate for one layer (all per-step arrays are [T], means over samples).

    ``synops``: effective synaptic operations arriving at this layer (a presynaptic spike meeting a non-zero
    weight); ``active``: neurons that received at least one such event (or are driven by a bias); ``spikes``:
    spikes this layer sent; ``messages_per_spike``: destination cores one spike is sent to; ``hops``: mean tile
    hops of a message to the next layer. ``cores``, ``synapse_words`` from the resource estimate.
    """

    layer: int
    type: str
    neurons: int
    state_words: int
    cores: int
    synapse_words: int
    synops: np.ndarray
    active: np.ndarray
    spikes: np.ndarray
    messages_per_spike: float = 0.0
    hops: float = 0.0


@dataclass
class LayerCost:
    """Per-layer estimate, per inference (T steps) unless named per step. Energies in uJ, times in us."""

    layer: int
    type: str
    neurons: int
    cores: int
    synmem_words_per_core: float
    synops: float
    neuron_updates: float
    active_updates: float
    spikes: float
    messages: float
    hops: float
    energy_synops_uj: float
    energy_neurons_uj: float
    energy_messages_uj: float
    compute_us_per_step: float
    message_us_per_step: float
    estimate: bool = True


@dataclass
class CostEstimate:
    """Whole-network estimate (per inference = T steps, one sample), with its per-layer rows."""

    steps: int
    depth: int
    cores: int
    chips: int
    time_per_step_us: float
    slowest_layer: int
    bound: str                       # 'compute' or 'message': what sets the slowest core's time
    barrier_us: float
    latency_per_sample_us: float
    inferences_per_s: float
    dynamic_energy_uj: float
    static_energy_uj: float
    energy_per_inference_uj: float
    synops: float
    neuron_updates: float
    spikes: float
    layers: List[LayerCost] = field(default_factory=list)
    calibrated: bool = False
    estimate: bool = True

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(r) for r in self.layers]
        return d


def barrier_us(tiles: int, constants: Optional[Dict[str, Constant]] = None) -> float:
    """Barrier synchronisation time (us) for ``tiles`` tiles: linear between the published 1- and 32-tile
    values, the 32-tile value beyond (estimate)."""
    lo, hi = const("t_barrier_1_tile_ns", constants), const("t_barrier_32_tiles_ns", constants)
    frac = min(max(int(tiles), 1) - 1, 31) / 31.0
    return (lo + (hi - lo) * frac) / 1000.0


def mean_tile_hops(src_cores: Sequence[int], dst_cores: Sequence[int], cores_per_tile: int) -> float:
    """Mean tile distance |tile(a) - tile(b)| over all (source core, destination core) pairs, cores placed one
    after another along a snake through the mesh (an estimate of the mapper's placement)."""
    a = np.asarray(src_cores, dtype=np.int64) // int(cores_per_tile)
    b = np.asarray(dst_cores, dtype=np.int64) // int(cores_per_tile)
    if not a.size or not b.size:
        return 0.0
    return float(np.abs(a[:, None] - b[None, :]).mean())


def estimate(layers: Sequence[LayerActivity], constants: Optional[Dict[str, Constant]] = None,
             calibrated: bool = True) -> CostEstimate:
    """The cost estimate of one inference from per-layer activity (module docstring for the model).

    ``calibrated``: multiply times and dynamic energy by the PilotNet calibration factors of the table.
    """
    c = constants or CONSTANTS
    if not layers:
        raise ValueError("no layers to estimate")
    steps = int(len(layers[0].synops))
    k_t = const("time_calibration", c) if calibrated else 1.0
    k_e = const("energy_calibration", c) if calibrated else 1.0
    ref_words = float(REFERENCE_STATE_WORDS)        # Davies' neuron update: a CUBA compartment (u, v)
    rows: List[LayerCost] = []
    per_step_core = np.zeros((len(layers), steps))
    bound_is_msg = np.zeros((len(layers), steps), dtype=bool)
    dyn_uj = 0.0
    for i, l in enumerate(layers):
        syn, act, spk = (np.asarray(a, dtype=np.float64) for a in (l.synops, l.active, l.spikes))
        if syn.shape != (steps,) or act.shape != (steps,) or spk.shape != (steps,):
            raise ValueError(f"layer {l.layer}: per-step arrays must all have {steps} steps")
        cores = max(int(l.cores), 1)
        w = l.state_words / ref_words
        inact = l.neurons - act
        msgs_out = spk * l.messages_per_spike
        msgs_in = (np.asarray(layers[i - 1].spikes, dtype=np.float64) * layers[i - 1].messages_per_spike
                   if i > 0 else np.zeros(steps))
        e_syn = syn * const("e_synop_pj", c)
        e_neu = (act * const("e_neuron_active_pj", c) + inact * const("e_neuron_inactive_pj", c)) * w
        e_msg = msgs_out * (const("e_spike_pj", c) + l.hops * const("e_hop_pj", c))
        t_cmp = (syn * const("t_synop_ns", c) + (act * const("t_neuron_active_ns", c)
                                                 + inact * const("t_neuron_inactive_ns", c)) * w) / cores / 1000.0
        t_msg = ((msgs_in + msgs_out) / cores * const("t_spike_ns", c)
                 + (msgs_out > 0) * l.hops * const("t_hop_ns", c)) / 1000.0
        per_step_core[i] = np.maximum(t_cmp, t_msg) * k_t
        bound_is_msg[i] = t_msg > t_cmp
        e_layer = (e_syn.sum() + e_neu.sum() + e_msg.sum()) * 1e-6 * k_e
        dyn_uj += e_layer
        rows.append(LayerCost(
            layer=l.layer, type=l.type, neurons=l.neurons, cores=cores,
            synmem_words_per_core=l.synapse_words / cores, synops=float(syn.sum()),
            neuron_updates=float(l.neurons * steps), active_updates=float(act.sum()), spikes=float(spk.sum()),
            messages=float(msgs_out.sum()), hops=float(l.hops), energy_synops_uj=float(e_syn.sum() * 1e-6 * k_e),
            energy_neurons_uj=float(e_neu.sum() * 1e-6 * k_e), energy_messages_uj=float(e_msg.sum() * 1e-6 * k_e),
            compute_us_per_step=float(t_cmp.mean() * k_t), message_us_per_step=float(t_msg.mean() * k_t)))
    cores = sum(r.cores for r in rows)
    chips = max(1, math.ceil(cores / CHIP_CORES))
    tiles = math.ceil(cores / const("cores_per_tile", c))
    bar = barrier_us(tiles, c) * k_t
    slowest = per_step_core.argmax(axis=0)                                  # [T]
    step_us = per_step_core.max(axis=0) + bar                               # [T]
    mean_step = float(step_us.mean())
    worst = int(np.bincount(slowest, minlength=len(rows)).argmax())
    msg_share = float(bound_is_msg[slowest, np.arange(steps)].mean()) if steps else 0.0
    static_uj = chips * const("p_static_w_per_chip", c) * steps * mean_step
    return CostEstimate(
        steps=steps, depth=len(rows), cores=cores, chips=chips, time_per_step_us=mean_step,
        slowest_layer=rows[worst].layer, bound="message" if msg_share > 0.5 else "compute", barrier_us=bar,
        latency_per_sample_us=(steps + len(rows)) * mean_step, inferences_per_s=1e6 / (steps * mean_step),
        dynamic_energy_uj=dyn_uj, static_energy_uj=static_uj, energy_per_inference_uj=dyn_uj + static_uj,
        synops=sum(r.synops for r in rows), neuron_updates=sum(r.neuron_updates for r in rows),
        spikes=sum(r.spikes for r in rows), layers=rows, calibrated=calibrated)


def constants_markdown(constants: Optional[Dict[str, Constant]] = None) -> str:
    """The constants table as Markdown (name, value, unit, source)."""
    lines = ["| constant | value | unit | source |", "|---|---|---|---|"]
    for k, v in (constants or CONSTANTS).items():
        lines.append(f"| {k} | {v.value:g} | {v.unit} | {v.source} |")
    return "\n".join(lines) + "\n"
