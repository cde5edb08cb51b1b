"""NeuroBench metrics with NeuroBench's definitions, for the float model and for the deployed integer model.

The `neurobench` package (2.x, an optional extra: ``pip install --no-deps neurobench snntorch``) measures
networks through PyTorch hooks on ``nn.Linear``/``nn.Conv*`` layers and snnTorch neurons; it cannot see ILIF neurons
or a netx file. This module computes the same quantities from what the pipeline has: the torch model, the netx
HDF5 file and the spikes and membrane potentials of every spiking layer ([N, neurons, T], time last). Definitions
(as in neurobench 2.3's ``metrics/static`` and ``metrics/workload``; checked equal to the package on an snnTorch
network both can measure, ``tests/test_neurobench_metrics.py``):

* **footprint** (bytes): parameters and buffers, ``numel x element size``. Float model: its torch parameters and
  buffers. Deployed model: every numeric parameter array of the netx file (weights, biases, delays, neuron
  constants), each in the narrowest integer type that holds its values (8-bit weights: 1 byte each).
* **connection sparsity**: zero weights / all weights of the connection layers (``nn.Linear``, ``nn.Conv1d/2d/3d``
  leaves; slayer's synapses are ``nn.Conv3d``). Float: the weight parameters as stored; deployed: the file's
  integer weights (quantization rounds small weights to zero). The package rounds it to 4 decimals.
* **activation sparsity**: zero activations / all activations over every spiking layer, step and sample.
* **synaptic operations** per sample: for each connection layer and step, its input binarised (non-zero -> 1)
  meets the binarised weights; **effective** ops count (non-zero input, non-zero weight) pairs (conv taps on
  padding count nothing), as ACs when that step's input holds only -1, 0, 1 (spikes) and as MACs otherwise;
  **dense** ops count every (input, weight) pair that exists, zero or not. Biases are not synaptic operations.
* **membrane updates** per sample: every neuron at the first step, then each step where a neuron's membrane
  potential (ILIF: ``v``, the state carried to the next step) differs from the previous step's.

Where NeuroBench decides AC vs MAC per forward call (a batch), this module decides per step over all samples
(the same for spike inputs). Nothing here is a hardware measurement.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from ilif_lava.netx_schema import K
import torch

from simulations import cost

PathLike = Union[str, Path]
CHUNK = 64                          # samples per batch when counting (bounds memory)
CONNECTION_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
DEPLOYED_PARAMETER_KEYS = ("weight", "bias", "delay")   # per-layer arrays of a netx file that are parameters
# the deployed neuron constants are the numeric (not bool, not text) datasets under layer/<i>/neuron/


# ---------------------------------------------------------------------------------------------------------
# static metrics
# ---------------------------------------------------------------------------------------------------------
def footprint_bytes(model: torch.nn.Module) -> int:
    """NeuroBench footprint of a torch model: bytes of all parameters and buffers (numel x element size)."""
    return int(sum(p.numel() * p.element_size() for p in model.parameters())
               + sum(b.numel() * b.element_size() for b in model.buffers()))


def narrowest_int_bytes(a: np.ndarray) -> int:
    """Bytes per element of the narrowest signed integer type (1, 2, 4, 8) holding every value of ``a``; 4 for
    values that are not integers (stored as float32)."""
    a = np.asarray(a, dtype=np.float64)
    if a.size == 0:
        return 1
    if not np.all(np.isfinite(a)) or not np.all(a == np.rint(a)):
        return 4
    lo, hi = float(a.min()), float(a.max())
    for nbytes in (1, 2, 4):
        bound = 2.0 ** (8 * nbytes - 1)
        if -bound <= lo and hi <= bound - 1:
            return nbytes
    return 8


def deployed_parameters(path: PathLike) -> List[Tuple[str, np.ndarray]]:
    """The numeric parameter arrays of a netx file, ``(HDF5 path, values)``: ``weight``, ``bias``, ``delay`` of
    every layer and the numeric neuron constants (``layer/<i>/neuron/*``; flags and names excluded).
    The file is checked as an HDF5 container before it is read."""
    from ilif_lava import hdf5_validate
    from ilif_lava.safe_hdf5 import open_checked
    hdf5_validate.check_container(path)
    out: List[Tuple[str, np.ndarray]] = []
    with open_checked(path) as f:
        for name in sorted(f[K.LAYER], key=int):
            g = f[K.LAYER][name]
            for key in DEPLOYED_PARAMETER_KEYS:
                if key in g and isinstance(g[key], h5py.Dataset):
                    out.append((f"{K.LAYER}/{name}/{key}", np.asarray(g[key][()])))
            if K.NEURON in g and isinstance(g[K.NEURON], h5py.Group):
                for key in sorted(g[K.NEURON]):
                    d = g[K.NEURON][key]
                    if isinstance(d, h5py.Dataset) and d.dtype.kind in "iuf":
                        out.append((f"{K.LAYER}/{name}/{K.NEURON}/{key}", np.asarray(d[()])))
    return out


def deployed_footprint_bytes(path: PathLike) -> int:
    """NeuroBench footprint of the deployed network: :func:`deployed_parameters`, each element in the narrowest
    integer type that holds its array (bytes)."""
    return int(sum(np.asarray(a).size * narrowest_int_bytes(a) for _, a in deployed_parameters(path)))


def torch_connection_weights(model: torch.nn.Module) -> List[np.ndarray]:
    """The ``weight`` of every leaf ``nn.Linear``/``nn.Conv1d/2d/3d`` module of ``model`` (NeuroBench's connection
    layers; modules with children are searched, not counted)."""
    return [m.weight.detach().cpu().numpy() for m in model.modules()
            if isinstance(m, CONNECTION_LAYERS) and not list(m.children())]


def connection_sparsity(weights: Sequence[np.ndarray]) -> float:
    """Zero weights / all weights over ``weights`` (0.0 for no weights). NeuroBench rounds this to 4 decimals."""
    total = sum(int(np.asarray(w).size) for w in weights)
    zeros = sum(int(np.count_nonzero(np.asarray(w) == 0)) for w in weights)
    return zeros / total if total else 0.0


# ---------------------------------------------------------------------------------------------------------
# workload metrics
# ---------------------------------------------------------------------------------------------------------
def activation_sparsity(spikes: Sequence[np.ndarray]) -> float:
    """Zero activations / all activations over every layer's output ``spikes`` ([N, neurons, T] each)."""
    total = sum(int(np.asarray(s).size) for s in spikes)
    nonzero = sum(int(np.count_nonzero(s)) for s in spikes)
    return (total - nonzero) / total if total else 0.0


def _binary(syn: cost.Synapse, all_ones: bool) -> cost.Synapse:
    w = np.ones_like(syn.weight) if all_ones else (syn.weight != 0).astype(np.int64)
    return dataclasses.replace(syn, weight=w)


def layer_synaptic_operations(syn: cost.Synapse, pre: np.ndarray) -> Dict[str, float]:
    """NeuroBench synaptic operations of one connection layer ``syn`` on its input ``pre`` [N, in, T]; totals over
    the N samples: ``effective_acs`` / ``effective_macs`` (binarised input meets binarised weight; a step counts as
    ACs when its input holds only -1, 0, 1) and ``dense`` (every existing input-weight pair, every step)."""
    pre = np.asarray(pre)
    n, _, steps = pre.shape
    out = {"effective_acs": 0.0, "effective_macs": 0.0, "dense": 0.0}
    if syn.weight is None or n == 0:
        return out
    nz = _binary(syn, all_ones=False)
    spiking = np.all((pre == 0) | (pre == 1) | (pre == -1), axis=(0, 1))             # [T]
    per_step = np.zeros(steps)
    for k in range(0, n, CHUNK):
        per_step += cost.incoming_events(nz, (pre[k:k + CHUNK] != 0).astype(np.float64)).sum(axis=(0, 1))
    out["effective_acs"] = float(per_step[spiking].sum())
    out["effective_macs"] = float(per_step[~spiking].sum())
    dense_step = float(cost.incoming_events(_binary(syn, all_ones=True), np.ones((1, pre.shape[1], 1))).sum())
    out["dense"] = dense_step * steps * n
    return out


def synaptic_operations(synapses: Sequence[cost.Synapse], pres: Sequence[np.ndarray]) -> Dict[str, Any]:
    """NeuroBench's ``SynapticOperations`` per sample (``Effective_MACs``, ``Effective_ACs``, ``Dense``) and per
    layer, for connection layers ``synapses`` with their inputs ``pres`` ([N, in, T] each)."""
    if len(synapses) != len(pres):
        raise ValueError(f"{len(synapses)} connection layers, {len(pres)} inputs")
    n = int(np.asarray(pres[0]).shape[0]) if pres else 0
    layers = []
    for syn, pre in zip(synapses, pres):
        ops = layer_synaptic_operations(syn, pre)
        layers.append({"layer": syn.layer, **{k: v / max(n, 1) for k, v in ops.items()}})
    return {"Effective_MACs": sum(l["effective_macs"] for l in layers),
            "Effective_ACs": sum(l["effective_acs"] for l in layers),
            "Dense": sum(l["dense"] for l in layers), "layers": layers}


def membrane_updates(v: np.ndarray) -> float:
    """NeuroBench membrane updates per sample of one layer from its membrane potential ``v`` [N, neurons, T]
    (the state carried between steps): all neurons at the first step, then each (neuron, step) whose value differs
    from the step before."""
    v = np.asarray(v)
    n, neurons, steps = v.shape
    if n == 0 or steps == 0:
        return 0.0
    changed = int(np.count_nonzero(v[..., 1:] != v[..., :-1]))
    return (n * neurons + changed) / n


# ---------------------------------------------------------------------------------------------------------
# the pipeline's models
# ---------------------------------------------------------------------------------------------------------
def _as_file_weight(w: np.ndarray, file_w: np.ndarray, layer: int) -> np.ndarray:
    """A float block weight ``w`` (already in the file's geometry, ``file_weight``) shaped as the file's
    ``file_w``: the same values reshaped, or a pool's single kernel repeated per channel (the file's depthwise
    conv)."""
    if w.size == file_w.size:
        return w.reshape(file_w.shape)
    try:
        return np.broadcast_to(w.reshape((1, 1) + tuple(file_w.shape[2:])), file_w.shape)
    except ValueError:
        raise ValueError(f"layer {layer}: the model's weight {list(w.shape)} does not map onto the file's "
                         f"{list(file_w.shape)}") from None


def float_synapses(model: Any, file_synapses: Sequence[cost.Synapse]) -> List[cost.Synapse]:
    """The float model's connection layers in the file's geometry: each spiking block's (and an integer readout's)
    ``synapse.weight`` (the parameter NeuroBench reads) reshaped to the file's weight shape (a pool's single kernel
    repeated per channel as the file's depthwise conv holds it; a folded average pool repeated over its window),
    and the skip synapses of fan-in layers likewise."""
    blocks = list(model.spiking_blocks())
    readout = getattr(model, "readout", None)
    if readout is not None:
        blocks.append(readout)
    if len(blocks) != len(file_synapses):
        raise ValueError(f"{len(blocks)} blocks with synapses in the model, {len(file_synapses)} in the network file")
    out = []
    for blk, syn in zip(blocks, file_synapses):
        if syn.weight is None:
            out.append(syn)
            continue
        w = blk.synapse.weight.detach().cpu().numpy().astype(np.float64)
        if hasattr(blk, "file_weight"):          # a folded average pool: each weight over its window
            w = blk.file_weight(w)
        w = _as_file_weight(w, syn.weight, syn.layer)
        skips = [(j, dataclasses.replace(s, weight=sk.weight.detach().cpu().numpy().astype(np.float64)
                                          .reshape(s.weight.shape)))
                 for (j, s), sk in zip(syn.skips, getattr(blk, "skips", ()))]
        out.append(dataclasses.replace(syn, weight=np.array(w), skips=skips))
    return out


def model_membrane_updates(model: Any, x: torch.Tensor, quantized: bool,
                           batch: int = CHUNK) -> Optional[List[float]]:
    """Membrane updates per sample of every spiking block of ``model`` on ``x`` [N, C, H, W, T] (CPU; float or
    bit-exact integer forward), from the recorded ``v`` of every batch. None when a block's neuron records no
    states (e.g. slayer's CUBA)."""
    blocks = model.spiking_blocks()
    if not all(hasattr(b.neuron, "record_states") for b in blocks):
        return None
    model.set_quantized(quantized)
    model.eval()
    model.to(torch.device("cpu"))
    n = int(x.shape[0])
    counts = np.zeros(len(blocks))
    try:
        model.set_record_states(True)
        with torch.no_grad():
            for i in range(0, n, batch):
                model(x[i:i + batch])
                for li, blk in enumerate(blocks):
                    v = blk.neuron.states["v"]
                    v = v.detach().cpu().reshape(v.shape[0], -1, v.shape[-1]).numpy()
                    counts[li] += membrane_updates(v) * v.shape[0]
    finally:
        model.set_record_states(False)
    return [float(c / max(n, 1)) for c in counts]


def engine_metrics(footprint: int, weights: Sequence[np.ndarray], synapses: Sequence[cost.Synapse],
                   x: np.ndarray, spikes: Sequence[np.ndarray],
                   membrane: Optional[Sequence[float]]) -> Dict[str, Any]:
    """The NeuroBench metrics of one engine: ``footprint`` (bytes), connection ``weights``, connection layers
    ``synapses`` fed by the input ``x`` ([N, C, H, W, T] or [N, F, T]) and the ``spikes`` of each spiking layer
    ([N, neurons, T]), and per-layer ``membrane`` updates per sample (None: not measured)."""
    x = np.asarray(x)
    n, steps = int(x.shape[0]), int(x.shape[-1])
    pres = [x.reshape(n, -1, steps)] + [np.asarray(s) for s in spikes[:-1]]
    syn = synaptic_operations(synapses, pres)
    for i, sy in enumerate(synapses):          # a fan-in layer's skip synapses, fed by their source layers' spikes
        for k, skip in sy.skips:
            ops = layer_synaptic_operations(skip, np.asarray(spikes[k]))
            row = syn["layers"][i]
            for key, name in (("effective_acs", "Effective_ACs"), ("effective_macs", "Effective_MACs"),
                              ("dense", "Dense")):
                row[key] += ops[key] / max(n, 1)
                syn[name] += ops[key] / max(n, 1)
    layers = []
    for i, (sy, s) in enumerate(zip(synapses, spikes)):
        row = syn["layers"][i]
        layers.append({"layer": sy.layer, "type": sy.type, "neurons": sy.neurons,
                       "activation_sparsity": activation_sparsity([s]),
                       "effective_acs": row["effective_acs"], "effective_macs": row["effective_macs"],
                       "dense": row["dense"],
                       # an integer readout (last layer) records no membrane here: None
                       "membrane_updates": None if membrane is None or i >= len(membrane) else membrane[i]})
    return {"footprint_bytes": int(footprint), "connection_sparsity": connection_sparsity(weights),
            "activation_sparsity": activation_sparsity(spikes),
            "synaptic_operations": {k: syn[k] for k in ("Effective_MACs", "Effective_ACs", "Dense")},
            "membrane_updates": None if membrane is None else float(sum(membrane)), "layers": layers}


def package_version() -> Optional[str]:
    """The installed ``neurobench`` package's version, or None (it is an optional extra)."""
    try:
        from importlib.metadata import version
        return version("neurobench")
    except Exception:                                        # noqa: BLE001  (not installed)
        return None


def package_static_check(model: torch.nn.Module) -> Optional[Dict[str, Any]]:
    """The package's own ``Footprint`` and ``ConnectionSparsity`` of the float torch model (both see slayer's
    synapses), or None when ``neurobench`` is not installed."""
    if package_version() is None:
        return None
    try:
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.models import TorchModel
        wrapped = TorchModel(model)
        return {"footprint_bytes": int(Footprint()(wrapped)),
                "connection_sparsity": float(ConnectionSparsity()(wrapped))}
    except Exception as exc:                                 # noqa: BLE001  (a package that cannot run here)
        return {"error": " ".join(str(exc).split()) or type(exc).__name__}


def report_entry(model: Any, net_path: PathLike, x: np.ndarray, float_spikes: Sequence[np.ndarray],
                 deployed_spikes: Sequence[np.ndarray]) -> Dict[str, Any]:
    """The compare report's ``neurobench`` entry: the metrics of the float model (its torch parameters, float
    spikes and membrane potentials) and of the deployed integer model (the netx file's integers, the integer
    engine's spikes [N, neurons, T] and membrane potentials), on the inputs ``x`` [N, C, H, W, T]. Returns
    ``{"error": one line}`` when a layer has no model here (the rest of the report is still written)."""
    try:
        x = np.asarray(x)
        xt = torch.from_numpy(x).float()
        file_syns = cost.read_synapses(net_path, tuple(int(v) for v in x.shape[1:-1]))
        flt_syns = float_synapses(model, file_syns)
        deployed_weights = [s.weight for s in file_syns if s.weight is not None]
        flt = engine_metrics(footprint_bytes(model), torch_connection_weights(model), flt_syns, x, float_spikes,
                             model_membrane_updates(model, xt, quantized=False))
        dep = engine_metrics(deployed_footprint_bytes(net_path), deployed_weights, file_syns, x, deployed_spikes,
                             model_membrane_updates(model, xt, quantized=True))
        return {"float": flt, "deployed": dep, "samples": int(x.shape[0]), "time_steps": int(x.shape[-1]),
                "package": {"version": package_version(), "float_static": package_static_check(model)}}
    except (ValueError, KeyError) as exc:
        return {"error": " ".join(str(exc).split())}


def neurobench_markdown(entry: Dict[str, Any], heading: str = "## NeuroBench metrics") -> str:
    """Markdown section of a :func:`report_entry`: float vs deployed side by side, then per layer."""
    if "error" in entry:
        return f"{heading}\n\nnot computed: {entry['error']}\n"
    f, d = entry["float"], entry["deployed"]

    def num(v: Any, fmt: str) -> str:
        return "n/a" if v is None else format(v, fmt)

    so_f, so_d = f["synaptic_operations"], d["synaptic_operations"]
    lines = [heading, "",
             f"NeuroBench's definitions (footprint, connection and activation sparsity, synaptic operations, "
             f"membrane updates; per sample over {entry['samples']} samples, T = {entry['time_steps']}). Float: "
             f"the torch model, its weights as stored and its float spikes; deployed: the netx file's integers "
             f"(each array in its narrowest integer type) and the integer engine's spikes (equal to Lava's when "
             f"the spike agreement above is 1).", "",
             "| metric | float model | deployed (integer) |", "|---|---|---|",
             f"| footprint (bytes) | {f['footprint_bytes']} | {d['footprint_bytes']} |",
             f"| connection sparsity | {f['connection_sparsity']:.4f} | {d['connection_sparsity']:.4f} |",
             f"| activation sparsity | {f['activation_sparsity']:.4f} | {d['activation_sparsity']:.4f} |",
             f"| synaptic ops: effective ACs | {so_f['Effective_ACs']:.1f} | {so_d['Effective_ACs']:.1f} |",
             f"| synaptic ops: effective MACs | {so_f['Effective_MACs']:.1f} | {so_d['Effective_MACs']:.1f} |",
             f"| synaptic ops: dense | {so_f['Dense']:.0f} | {so_d['Dense']:.0f} |",
             f"| membrane updates | {num(f['membrane_updates'], '.1f')} | {num(d['membrane_updates'], '.1f')} |",
             "", "| layer | type | neurons | activation sparsity float / deployed | effective ACs + MACs float / "
                 "deployed | membrane updates float / deployed |", "|---|---|---|---|---|---|"]
    for a, b in zip(f["layers"], d["layers"]):
        lines.append(f"| {a['layer']} | {a['type']} | {a['neurons']} | {a['activation_sparsity']:.4f} / "
                     f"{b['activation_sparsity']:.4f} | {a['effective_acs'] + a['effective_macs']:.1f} / "
                     f"{b['effective_acs'] + b['effective_macs']:.1f} | {num(a['membrane_updates'], '.1f')} / "
                     f"{num(b['membrane_updates'], '.1f')} |")
    pkg = entry.get("package") or {}
    chk = pkg.get("float_static")
    if pkg.get("version") is None:
        lines += ["", "Computed here; the `neurobench` package (optional) is not installed."]
    elif chk and "error" not in chk:
        lines += ["", f"`neurobench` {pkg['version']} on the float model: footprint {chk['footprint_bytes']} bytes, "
                      f"connection sparsity {chk['connection_sparsity']:.4f} (the package cannot see ILIF neurons: "
                      f"the workload metrics are computed here with its definitions)."]
    elif chk:
        lines += ["", f"`neurobench` {pkg['version']} could not measure the float model: {chk['error']}"]
    return "\n".join(lines) + "\n"
