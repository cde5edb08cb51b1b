"""Measured activity of a deployed network -> the inputs of the Loihi 2 cost estimate (:mod:`ilif_lava.loihi2_cost`).

From the netx HDF5 file (weights, conv geometry, resource estimate of :func:`ilif_lava.loihi2.estimate_resources`)
and the integer spikes of every layer ([N, neurons, T], slayer's C, H, W order, as
:func:`simulations.lava_run.run_network` returns them) it counts, per layer and step (means over samples):

* effective synaptic operations: a presynaptic spike meeting a **non-zero** weight (zero weights and taps that fall
  outside the output, e.g. on padding, cost nothing);
* active neuron updates: neurons that received at least one such event (an ``input`` layer is driven by its bias:
  all its neurons are active);
* spikes, messages (destination cores per spike) and tile hops to the next layer.

Everything it returns feeds an estimate; nothing here is a hardware measurement.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np
import torch

from ilif_lava import fixed_point as fx
from ilif_lava import hdf5_validate, loihi2
from ilif_lava import loihi2_cost as lc
from ilif_lava import netx_schema as schema
from ilif_lava.netx_schema import K, T
from ilif_lava.safe_hdf5 import open_checked

PathLike = Union[str, Path]
SAMPLE_BATCH = 16                    # samples per conv call when counting events (bounds memory)
# Neurons per core (2-word neuron) for the cost model: the densest core the Loihi 2 compiler produced for PilotNet
# LIF (ilif_lava/loihi2.py NEURONS_PER_CORE_OBSERVED_CONV), not the 8192 upper bound of the resource check; with
# it the estimate maps PilotNet to 67 cores where the compiler used 74 (docs/loihi2-cost.md).
NEURONS_PER_CORE = loihi2.NEURONS_PER_CORE_OBSERVED_CONV[1]


@dataclass
class Synapse:
    """The synaptic input of one block (a layer with neurons), from the HDF5 file.

    ``weight``: dense [out, in], conv [out, in / groups, kH, kW] (file order, integers); None for an ``input``
    layer (no synapses, bias-driven). ``in_shape`` / ``out_shape``: (C, H, W) or (F,). Conv ``stride``,
    ``padding``, ``dilation`` in (H, W) order as stored.
    """

    layer: int
    type: str
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    weight: Optional[np.ndarray] = None
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1
    # a fan-in layer's skip synapses (ilif_lava/graph.py): (index of the source block in read_synapses' list,
    # its 1x1 conv as a Synapse from the source's shape)
    skips: List[Tuple[int, "Synapse"]] = field(default_factory=list)

    @property
    def neurons(self) -> int:
        return int(np.prod(self.out_shape))


def _pair(g: h5py.Group, key: str, default: int) -> Tuple[int, int]:
    if key not in g:
        return default, default
    v = np.asarray(g[key][()]).ravel().astype(int)
    return (int(v[0]), int(v[0])) if v.size == 1 else (int(v[0]), int(v[1]))


def _skips(g: h5py.Group, shape: Tuple[int, ...], earlier: Sequence[Synapse]) -> List[Tuple[int, Synapse]]:
    """The skip synapses of a (validated) fan-in layer ``g`` (``skip/<j>``) as (source's index in ``earlier``,
    1x1 conv :class:`Synapse` from the source's output shape)."""
    if K.SKIP not in g:
        return []
    where = {syn.layer: k for k, syn in enumerate(earlier)}
    out = []
    for j in sorted(g[K.SKIP], key=int):
        sg = g[K.SKIP][j]
        k = where[int(np.asarray(sg[K.SOURCE][()]))]
        w = np.rint(np.asarray(sg[K.WEIGHT][()], dtype=np.float64)).astype(np.int64)
        out.append((k, Synapse(earlier[k].layer, T.CONV, earlier[k].out_shape, shape, w[:, :, None, None],
                               _pair(sg, K.STRIDE, 1))))
    return out


def read_synapses(path: PathLike, input_shape: Optional[Sequence[int]] = None) -> List[Synapse]:
    """One :class:`Synapse` per block of the file, in order (flatten layers folded into the next block's input
    shape). ``input_shape`` (C, H, W) or (F,): the network input when layer 0 is not an ``input`` layer.
    The file is checked as an HDF5 container (links, sizes) before anything is read."""
    hdf5_validate.check_container(path)
    out: List[Synapse] = []
    with open_checked(path) as f:
        prev: Optional[Tuple[int, ...]] = tuple(int(v) for v in input_shape) if input_shape is not None else None
        for name in sorted(f[K.LAYER], key=int):
            g = f[K.LAYER][name]
            ltype = schema.text(g[K.TYPE][()], strict=False)
            shape = tuple(int(v) for v in np.asarray(g[K.SHAPE][()]).ravel())
            if ltype == T.FLATTEN:
                prev = (int(np.prod(prev if prev is not None else shape)),)
                continue
            if ltype == T.INPUT:
                out.append(Synapse(int(name), ltype, shape, shape))
            elif ltype == T.DENSE:
                w = np.rint(np.asarray(g[K.WEIGHT][()], dtype=np.float64)).astype(np.int64)
                w = w.reshape(int(np.prod(shape)), -1)
                out.append(Synapse(int(name), ltype, prev if prev is not None else (w.shape[1],), shape, w))
            elif ltype == T.CONV:
                w = np.rint(np.asarray(g[K.WEIGHT][()], dtype=np.float64)).astype(np.int64)
                w = w.reshape(w.shape[:4])
                groups = int(np.asarray(g[K.GROUPS][()]).ravel()[0]) if K.GROUPS in g else 1
                cin = w.shape[1] * groups
                if prev is None or len(prev) != 3 or prev[0] != cin:
                    raise ValueError(f"{path}: layer {name}: input shape {prev} unknown or not [C={cin}, H, W]; give "
                                     f"input_shape")
                out.append(Synapse(int(name), ltype, prev, shape, w, _pair(g, K.STRIDE, 1), _pair(g, K.PADDING, 0),
                                   _pair(g, K.DILATION, 1), groups, _skips(g, shape, out)))
            else:
                raise ValueError(f"{path}: layer {name}: key '{K.TYPE}' = {ltype!r} has no cost model (dense, conv, "
                                 f"input, flatten)")
            prev = shape
    return out


def incoming_events(syn: Synapse, pre: np.ndarray) -> np.ndarray:
    """Effective synaptic events arriving at each neuron of ``syn``'s layer: [N, neurons, T] (float64) for
    presynaptic events ``pre`` [N, in_neurons, T] (0/1 spikes, or expected rates). Zero weights and
    conv taps outside the output cost nothing."""
    pre = np.asarray(pre, dtype=np.float64)
    n, _, steps = pre.shape
    if syn.weight is None:
        return np.zeros((n, syn.neurons, steps))
    nz = (syn.weight != 0).astype(np.float64)
    if syn.type == "dense":
        return np.einsum("ji,nit->njt", nz, pre, optimize=True)
    kern = torch.from_numpy(nz)
    c, h, w = syn.in_shape
    outs = []
    for k in range(0, n, SAMPLE_BATCH):
        blk = torch.from_numpy(pre[k:k + SAMPLE_BATCH]).reshape(-1, c, h, w, steps).permute(0, 4, 1, 2, 3)
        y = torch.nn.functional.conv2d(blk.reshape(-1, c, h, w), kern, stride=syn.stride, padding=syn.padding,
                                       dilation=syn.dilation, groups=syn.groups)
        m = blk.shape[0]
        y = y.reshape(m, steps, -1).permute(0, 2, 1)
        outs.append(y.numpy())
    ev = np.concatenate(outs)
    if ev.shape[1] != syn.neurons:
        raise ValueError(f"layer {syn.layer}: the conv gives {ev.shape[1]} outputs, the file's shape "
                         f"{list(syn.out_shape)} has {syn.neurons}")
    return ev


def nonzero_fan_out(syn: Synapse) -> float:
    """Mean number of non-zero synapses leaving one presynaptic neuron of ``syn`` (its effective fan-out)."""
    if syn.weight is None:
        return 0.0
    n_in = int(np.prod(syn.in_shape))
    ones = np.ones((1, n_in, 1))
    return float(incoming_events(syn, ones).sum() / n_in)


def _state_words(resources: Sequence[Any]) -> List[int]:
    return [max(int(r.state_words_per_neuron), 1) for r in resources]


def layer_activity(path: PathLike, x: np.ndarray, spikes: Sequence[np.ndarray],
                   input_shape: Optional[Sequence[int]] = None,
                   neurons_per_core: int = NEURONS_PER_CORE) -> List[lc.LayerActivity]:
    """Per-layer inputs of the estimate for the network file ``path`` run on ``x`` ([N, C, H, W, T] or
    [N, F, T]; unused when layer 0 is an ``input`` layer) with integer spikes ``spikes`` per block
    ([N, neurons, T] each). Means over the N samples. Cores per layer: :func:`ilif_lava.loihi2.estimate_resources`
    with ``neurons_per_core`` (for a 2-word neuron; ILIF's 4 words halve it there)."""
    x = np.asarray(x)
    in_shape = tuple(input_shape) if input_shape is not None else tuple(int(v) for v in x.shape[1:-1])
    syns = read_synapses(path, in_shape)
    from ilif_lava.netx import file_takes_graded_input
    graded = file_takes_graded_input(path)
    res = loihi2.estimate_resources(path, neurons_per_core=int(neurons_per_core))
    if len(syns) != len(spikes) or len(res) != len(spikes):
        raise ValueError(f"{path}: {len(syns)} blocks in the file ({len(res)} in the resource estimate), "
                         f"{len(spikes)} spike arrays given")
    n = int(spikes[0].shape[0])
    words = _state_words(res)
    cores = [max(int(r.cores), 1) for r in res]
    starts = np.cumsum([0] + cores)
    cpt = int(lc.const("cores_per_tile"))
    rows: List[lc.LayerActivity] = []
    for i, (syn, s) in enumerate(zip(syns, spikes)):
        # a spike (0/1) or an expected rate in [0, 1] as given; a graded payload (a READOUT layer's accumulator)
        # is one message: at most 1 event per neuron and step
        s = np.minimum(np.abs(np.asarray(s, dtype=np.float64)), 1.0)
        if s.shape[1] != syn.neurons:
            raise ValueError(f"{path}: layer {syn.layer}: {s.shape[1]} neurons in the spikes, {syn.neurons} in "
                             f"the file")
        if syn.type == "input":
            synops = np.zeros(s.shape[-1])
            active = np.full(s.shape[-1], float(syn.neurons))
        else:
            if i > 0:
                pre = np.minimum(np.abs(np.asarray(spikes[i - 1], dtype=np.float64)), 1.0)
            elif graded:          # direct-encoded input: one event per non-zero graded payload round(64 x)
                pre = (fx.direct_input(x.reshape(n, -1, x.shape[-1])) != 0).astype(np.float64)
            else:
                pre = x.reshape(n, -1, x.shape[-1])
            ev = incoming_events(syn, pre)
            for k, skip in syn.skips:         # a fan-in layer: its skip synapses' events too
                ev = ev + incoming_events(skip, np.minimum(np.abs(np.asarray(spikes[k], dtype=np.float64)), 1.0))
            synops = ev.sum(axis=1).mean(axis=0)
            active = (ev > 0).sum(axis=1).mean(axis=0)
        msgs, hops = 0.0, 0.0
        if i + 1 < len(syns):
            nxt = syns[i + 1]
            per_core = math.ceil(nxt.neurons / cores[i + 1])
            msgs = float(min(cores[i + 1], max(1, math.ceil(nonzero_fan_out(nxt) / per_core))))
            hops = lc.mean_tile_hops(range(starts[i], starts[i + 1]), range(starts[i + 1], starts[i + 2]), cpt)
        rows.append(lc.LayerActivity(layer=syn.layer, type=syn.type, neurons=syn.neurons, state_words=words[i],
                                     cores=cores[i], synapse_words=int(res[i].synapse_words), synops=synops,
                                     active=active, spikes=s.sum(axis=1).mean(axis=0), messages_per_spike=msgs,
                                     hops=hops))
    return rows


def estimate_run(path: PathLike, x: np.ndarray, spikes: Sequence[np.ndarray], calibrated: bool = True,
                 input_shape: Optional[Sequence[int]] = None,
                 neurons_per_core: int = NEURONS_PER_CORE) -> lc.CostEstimate:
    """The Loihi 2 cost estimate of one inference of the network ``path`` from its measured spikes."""
    return lc.estimate(layer_activity(path, x, spikes, input_shape, neurons_per_core), calibrated=calibrated)


# ---------------------------------------------------------------------------------------------------------
# calibration on the public Loihi 2 PilotNet LIF measurement
# ---------------------------------------------------------------------------------------------------------
PILOTNET_LAYERS = ("input", "conv-0", "conv-1", "conv-2", "conv-3", "conv-4", "fc-0", "fc-1", "fc-2")


def pilotnet_dir() -> Path:
    """lava-dl's shipped PilotNet LIF folder (network.net and the spikes of every layer on one real frame), in
    the installed wheel's ``tests/lava/lib/dl/netx/gts/pilotnet_lif``."""
    import sysconfig
    return Path(sysconfig.get_paths()["purelib"]) / "tests" / "lava" / "lib" / "dl" / "netx" / "gts" / "pilotnet_lif"


def pilotnet_spikes(folder: Optional[Path] = None, steps: Optional[int] = None) -> List[np.ndarray]:
    """PilotNet LIF spikes per block, [1, neurons, steps] in C, H, W order, from lava-dl's shipped files
    (``<layer>.npy``, Lava's X, Y, Z (W, H, C) order, time last); the output neuron (never fires: vThMant
    2**17 - 1) gets zeros. ``steps`` (default: the measurement's steps per sample) keeps the first steps."""
    from simulations.gold import read_npy
    folder = Path(folder) if folder is not None else pilotnet_dir()
    steps = int(steps or lc.PILOTNET_MEASURED["steps_per_sample"])
    out = []
    for name in PILOTNET_LAYERS:
        a = read_npy(folder / f"{name}.npy", max_bytes=64 << 20)
        if a.ndim == 4:
            a = a.transpose(2, 1, 0, 3)
        if a.shape[-1] < steps:
            raise ValueError(f"{folder / (name + '.npy')}: {a.shape[-1]} steps, fewer than {steps}")
        out.append(a.reshape(-1, a.shape[-1])[None, :, :steps].astype(np.int8))
    out.append(np.zeros((1, 1, steps), dtype=np.int8))
    return out


def calibrate_pilotnet(folder: Optional[Path] = None,
                       spikes: Optional[Sequence[np.ndarray]] = None) -> Dict[str, Any]:
    """Uncalibrated estimate of PilotNet LIF from its activity vs the Loihi 2 measurement: both, the relative
    errors ((estimate - measured) / measured) and the calibration factors (measured / estimate) for time per
    step and dynamic energy per inference. ``spikes`` default: lava-dl's shipped spikes (:func:`pilotnet_spikes`)."""
    folder = Path(folder) if folder is not None else pilotnet_dir()
    net = folder / "network.net"
    if not net.is_file():
        raise FileNotFoundError(f"{net}: lava-dl's PilotNet LIF network file is not installed")
    sp = list(spikes) if spikes is not None else pilotnet_spikes(folder)
    steps = int(sp[0].shape[-1])
    est = estimate_run(net, np.zeros((1, 1, steps)), sp, calibrated=False)
    m = lc.PILOTNET_MEASURED
    pairs = {"cores": (est.cores, m["cores"]),
             "time_per_step_us": (est.time_per_step_us, m["time_per_step_us"]),
             "dynamic_energy_per_inference_mj": (est.dynamic_energy_uj / 1000.0, m["dynamic_energy_per_inference_mj"])}
    return {"estimate": est.to_dict(),
            "rows": {k: {"estimate": float(e), "measured": float(v), "error": float((e - v) / v)}
                     for k, (e, v) in pairs.items()},
            "time_calibration": m["time_per_step_us"] / est.time_per_step_us,
            "energy_calibration": m["dynamic_energy_per_inference_mj"] / (est.dynamic_energy_uj / 1000.0)}


# ---------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------
def cost_markdown(est: Dict[str, Any], heading: str = "## Loihi 2 cost (estimate)") -> str:
    """Markdown section of a :meth:`~ilif_lava.loihi2_cost.CostEstimate.to_dict`: the summary, one row per layer
    and the calibration note. Every number is an estimate."""
    lines = [heading, "", lc.calibration_note() + ".", "",
             "| quantity (estimate) | value |", "|---|---|",
             f"| cores / chips | {est['cores']} / {est['chips']} |",
             f"| time per step | {est['time_per_step_us']:.3f} us ({est['bound']} bound, slowest layer "
             f"{est['slowest_layer']}, barrier {est['barrier_us']:.3f} us) |",
             f"| latency per sample (T + depth = {est['steps']} + {est['depth']} steps) | "
             f"{est['latency_per_sample_us']:.2f} us |",
             f"| throughput | {est['inferences_per_s']:.0f} inferences/s |",
             f"| energy per inference (dynamic + static) | {est['energy_per_inference_uj']:.3f} uJ "
             f"({est['dynamic_energy_uj']:.3f} + {est['static_energy_uj']:.3f}) |",
             f"| effective synaptic ops / neuron updates / spikes per inference | {est['synops']:.0f} / "
             f"{est['neuron_updates']:.0f} / {est['spikes']:.0f} |", "",
             "| layer | type | neurons | cores | SynMem words/core | synops | active updates | spikes | "
             "dynamic energy (uJ) | compute / message time per step (us) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in est["layers"]:
        e = r["energy_synops_uj"] + r["energy_neurons_uj"] + r["energy_messages_uj"]
        lines.append(f"| {r['layer']} | {r['type']} | {r['neurons']} | {r['cores']} | "
                     f"{r['synmem_words_per_core']:.0f} | {r['synops']:.0f} | {r['active_updates']:.0f} | "
                     f"{r['spikes']:.0f} | {e:.4f} | {r['compute_us_per_step']:.3f} / "
                     f"{r['message_us_per_step']:.3f} |")
    return "\n".join(lines) + "\n"


def report_entry(path: PathLike, x: np.ndarray, spikes: Sequence[np.ndarray]) -> Dict[str, Any]:
    """The compare report's ``loihi2_cost`` entry: the calibrated estimate's dict, or ``{"error": one line}`` when
    the network has a layer the cost model does not cover (the rest of the report is still written)."""
    try:
        return estimate_run(path, x, spikes).to_dict()
    except ValueError as exc:
        return {"error": " ".join(str(exc).split())}
