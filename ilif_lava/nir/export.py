"""Our network -> ``nir.NIRGraph``, with a lossiness check on every export (docs/nir.md).

Per spiking block ``i`` (``ilif_lava.block`` Dense / Conv / Pool; Flatten blocks become ``nir.Flatten``):

* synapse: ``layer{i}.linear`` (``nir.Linear``, weight [out, in]), ``layer{i}.conv`` (``nir.Conv2d``, zero bias)
  or ``layer{i}.pool`` (``nir.SumPool2d``) + ``layer{i}.scale`` (``nir.Scale``, the pool weight); weights are
  the effective ones the block computes with (after the 8-bit pre-hook), in threshold units;
* neuron: LIF / PLIF -> ``layer{i}.lif`` (``nir.LIF``, ``nir.CubaLIF`` with a current decay, ``nir.IF`` without
  leak: :func:`ilif_lava.nir.convention.neuron_node`); ILIF / MPIU / CIU / IPLIF -> ``layer{i}.ilif``, a nested
  ``nir.NIRGraph`` composite: ``input -> core`` (the LIF part as above) and an ``output`` that nothing drives,
  because NIR has no primitive for the MPIU and CIU. NIR's own type inference refuses such a graph, so a
  consumer that reads it with ``nir.read`` fails at once instead of running a plain LIF;
* ``delay_shift`` (one step of latency per block) -> ``layer{i}.delay`` (``nir.Delay`` of ``dt``).

Every neuron node's ``metadata['ilif_lava']`` holds the full parameter set, so :func:`ilif_lava.nir.from_nir`
restores the block exactly; the lossiness report is in ``graph.metadata['ilif_lava_lossiness']`` (JSON).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import nir
import numpy as np
import torch

from ilif_lava import block as ilif_block
from ilif_lava.neuron import Neuron
from ilif_lava.nir.convention import NIRConversionError, neuron_node
from ilif_lava.nir.files import write_graph
from ilif_lava.nir.reference import COMPOSITE_KEY, neuron_semantics

FORMAT = 1
LOSSINESS_KEY = "ilif_lava_lossiness"
PROBE_SAMPLES, PROBE_NEURONS, PROBE_STEPS = 4, 64, 32


def neuron_record(neuron: Neuron) -> Dict[str, Any]:
    """Every parameter of ``neuron`` as plain values (the constructor's keywords plus the decay state)."""
    sg = neuron.surrogate_cfg
    rec: Dict[str, Any] = {"format": FORMAT, "variant": neuron.variant, "threshold": float(neuron.threshold),
                           "tau": float(neuron.tau), "beta": neuron.beta, "kappa": neuron.kappa,
                           "inhibition": neuron.inhibition, "surrogate": sg.kind, "gamma": sg.gamma,
                           "tau_grad": sg.tau, "scale_grad": sg.scale, "alpha": sg.alpha,
                           "ciu_grad_at_zero": neuron.ciu_grad_at_zero}
    if neuron.current_decay is not None:
        rec["current_decay"] = float(neuron.current_decay)
    if neuron.flags["plif"]:
        rec["plif_w"] = float(neuron.plif_w.detach().cpu()[0])
    else:
        rec["requires_grad"] = bool(neuron.voltage_decay.requires_grad)
        rec["voltage_decay"] = float(neuron.voltage_decay.detach().cpu()[0])
    return rec


def export_layers(model: Any) -> Tuple[List[torch.nn.Module], Tuple[int, ...], bool]:
    """(blocks, input shape without batch/time, flatten_input) of a ``SpikingNet``-like model or a block list."""
    blocks = list(getattr(model, "blocks", model))
    meta = getattr(model, "meta", {}) or {}
    shape = tuple(int(v) for v in meta.get("in_shape", ()))
    flatten = bool(getattr(model, "flatten_input", False))
    if not shape:
        first = next((b for b in blocks if getattr(b, "neuron", None) is not None), None)
        if isinstance(first, ilif_block.Dense):
            shape = (int(first.synapse.in_channels),)
        else:
            raise NIRConversionError("the model's input shape is unknown: pass a SpikingNet (meta['in_shape']) "
                                     "or a list of blocks starting with a Dense block")
    return blocks, shape, flatten


def _weight(blk: torch.nn.Module) -> np.ndarray:
    s = blk.synapse
    with torch.no_grad():
        return s.pre_hook_fx(s.weight).detach().cpu().double().numpy()


def _synapse_nodes(i: int, blk: torch.nn.Module, shape: Tuple[int, ...]) -> List[Tuple[str, nir.NIRNode]]:
    s = blk.synapse
    if isinstance(blk, ilif_block.Dense):
        if len(shape) != 1 or shape[0] != s.in_channels:
            raise NIRConversionError(f"block {i} (Dense): input shape {shape} is not [{s.in_channels}]")
        return [(f"layer{i}.linear", nir.Linear(weight=_weight(blk).reshape(s.out_channels, s.in_channels)))]
    if isinstance(blk, ilif_block.Conv):
        w = _weight(blk)[..., 0]
        return [(f"layer{i}.conv", nir.Conv2d(input_shape=tuple(shape[1:]), weight=w, stride=tuple(s.stride[:-1]),
                                              padding=tuple(s.padding[:-1]), dilation=tuple(s.dilation[:-1]),
                                              groups=int(s.groups), bias=np.zeros(w.shape[0])))]
    if isinstance(blk, ilif_block.Pool):
        k, stride, pad = (tuple(int(v) for v in a[:-1]) for a in (s.kernel_size, s.stride, s.padding))
        if stride != k or any(pad) or any(n % kk for n, kk in zip(shape[1:], k)):
            raise NIRConversionError(f"block {i} (Pool): only stride == kernel, no padding and H, W divisible by "
                                     f"the kernel are per-channel sum pools (got kernel {k}, stride {stride}, "
                                     f"padding {pad}, input {shape})")
        w = float(_weight(blk).reshape(-1)[0])
        return [(f"layer{i}.pool", nir.SumPool2d(kernel_size=np.array(k), stride=np.array(stride),
                                                 padding=np.array(pad))),
                (f"layer{i}.scale", nir.Scale(scale=np.full(tuple(int(v) for v in blk.neuron.shape), w)))]
    raise NIRConversionError(f"block {i} ({type(blk).__name__}) has no NIR export (Dense, Conv, Pool, Flatten)")


def _is_composite(neuron: Neuron) -> bool:
    return neuron.flags["mpiu"] or neuron.flags["ciu"]


def _neuron_nodes(i: int, neuron: Neuron, dt: float) -> Tuple[str, nir.NIRNode, nir.NIRNode]:
    """(name, node placed in the graph, the primitive a metadata-blind consumer would run)."""
    shape = tuple(int(v) for v in neuron.shape)
    lam = float(neuron.lam.detach().cpu()[0])
    rec = neuron_record(neuron)
    if not _is_composite(neuron):
        node = neuron_node(lam, neuron.current_decay, neuron.threshold, shape, dt, {"ilif_lava": rec})
        return f"layer{i}.lif", node, node
    core = neuron_node(lam, neuron.current_decay, neuron.threshold, shape, dt,
                       {"ilif_lava_role": "the LIF part of the layer (no inhibition); not its output"})
    comp = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array(shape)), "core": core,
                               "output": nir.Output(output_type=np.array(shape))},
                        edges=[("input", "core")], metadata={COMPOSITE_KEY: neuron.variant, "ilif_lava": rec},
                        type_check=False)
    return f"layer{i}.ilif", comp, core


def _differences(neuron: Neuron, composite: bool) -> List[str]:
    out = ["reset: NIR's LIF/CubaLIF/IF set v to v_reset = 0 after a spike (NIR 1.0.8 has no reset mode); ours "
           "subtracts V_th (soft reset), kept only in metadata",
           "firing: NIR fires when v > v_threshold, ours when v >= V_th (differs only when v equals V_th exactly)"]
    if neuron.flags["mpiu"]:
        out.append(f"MPIU (beta = {neuron.beta:g}, inhibition {neuron.inhibition}): the extra reset S * g(M) on "
                   f"every spike has no NIR primitive; metadata only")
    if neuron.flags["ciu"]:
        out.append(f"CIU (kappa = {neuron.kappa:g}): the current inhibition max(C, 0) has no NIR primitive; "
                   f"metadata only")
    if neuron.flags["plif"]:
        out.append("PLIF decay: exported as its current value (learnability is metadata only)")
    if composite:
        out.append("the composite's output is undriven: NIR type inference (nir.read default) refuses the file, "
                   "and a runner that skips it cannot produce this layer's spikes")
    return out


def _probe(neuron: Neuron, dt: float) -> Dict[str, Any]:
    """Spikes of our neuron vs NIR's semantics of its primitive (the node, or a composite's core) on one seeded
    probe current [4, <=64 neurons, 32 steps] in threshold units."""
    n = min(PROBE_NEURONS, int(np.prod(tuple(neuron.shape))))
    g = torch.Generator().manual_seed(0)
    z = float(neuron.threshold) * 1.6 * torch.rand(PROBE_SAMPLES, n, PROBE_STEPS, generator=g, dtype=torch.float64)
    lam = float(neuron.lam.detach().cpu()[0])
    probe_node = neuron_node(lam, neuron.current_decay, neuron.threshold, (n,), dt, {})
    with torch.no_grad():
        ours = neuron.float_dynamics(z.float()).double()
        blind = neuron_semantics(probe_node, z, dt)
    return {"samples": PROBE_SAMPLES, "neurons": n, "steps": PROBE_STEPS, "input": "uniform [0, 1.6 V_th), seed 0",
            "spike_mismatch": float((ours != blind).double().mean()), "rate_ours": float(ours.mean()),
            "rate_nir": float(blind.mean())}


def to_nir(model: Any, dt: float = 1.0) -> nir.NIRGraph:
    """Our network (``SpikingNet`` or a list of ``ilif_lava.block`` blocks) as a NIR graph; the lossiness report
    (:func:`lossiness_report`) is computed and stored in ``graph.metadata`` on every call.

    ``dt`` (> 0) is the NIR time of one of our steps (docs/nir.md, "Conventions"); the float model is exported
    (a quantized model's integer twin is re-derived on import). Raises :class:`NIRConversionError` (one line)
    for blocks without a NIR form (learnable axonal delays, readouts, stock lava-dl blocks)."""
    if not dt > 0:
        raise NIRConversionError(f"dt must be > 0, got {dt}")
    blocks, shape, flatten = export_layers(model)
    nodes: Dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    chain, report, composite_any = ["input"], [], False

    def add(name: str, node: nir.NIRNode) -> None:
        nodes[name] = node
        chain.append(name)

    if flatten and len(shape) > 1:
        add("flatten_input", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
        shape = (int(np.prod(shape)),)
    for i, blk in enumerate(blocks):
        if isinstance(blk, ilif_block.Flatten):
            add(f"layer{i}.flatten", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
            shape = (int(np.prod(shape)),)
            continue
        neuron = getattr(blk, "neuron", None)
        if not isinstance(neuron, Neuron) or isinstance(blk, ilif_block.Affine):
            raise NIRConversionError(f"block {i} ({type(blk).__module__}.{type(blk).__name__}) has no NIR export: "
                                     f"only ilif_lava.block Dense, Conv, Pool and Flatten")
        if getattr(blk, "delay", None) is not None:
            raise NIRConversionError(f"block {i} ({type(blk).__name__}): learnable axonal delays are not exported")
        if getattr(blk, "skip_sources", None):
            raise NIRConversionError(f"block {i} ({type(blk).__name__}): skip synapses from earlier blocks (a fan-in "
                                     f"layer of a residual network) are not exported to NIR yet")
        if getattr(blk, "bn", None) is not None or neuron.bias is not None:
            raise NIRConversionError(f"block {i} ({type(blk).__name__}): the neuron bias (bias= or a batch norm's "
                                     f"folded shift, which joins the input current) is not exported to NIR yet")
        if getattr(blk, "pre_pool", 1) > 1 or getattr(blk, "graded_input", False):
            raise NIRConversionError(f"block {i} ({type(blk).__name__}): a folded average pool (pre_pool) or graded "
                                     f"direct-encoded input is not exported to NIR yet")
        if neuron.shape is None:
            raise NIRConversionError(f"block {i} ({type(blk).__name__}): neuron shape unknown (run one forward "
                                     f"pass first)")
        for name, node in _synapse_nodes(i, blk, shape):
            add(name, node)
        name, node, core = _neuron_nodes(i, neuron, dt)
        add(name, node)
        composite = _is_composite(neuron)
        composite_any |= composite
        shape = tuple(int(v) for v in neuron.shape)
        report.append({"layer": len(report), "block": i, "node": name, "variant": neuron.variant,
                       "nir": f"NIRGraph (ilif_lava {neuron.variant} composite around a {type(core).__name__} core)"
                       if composite else type(node).__name__,
                       "exact": "leak, current decay, threshold value, weights (effective 8-bit values), "
                                "one-step latency (nir.Delay)",
                       "metadata_blind": ("cannot run this layer (refused at nir.read type inference; the "
                                          "composite output is undriven)" if composite else
                                          f"runs a plain {type(node).__name__} with a hard reset"),
                       "differences": _differences(neuron, composite), "probe": _probe(neuron, dt)})
        if getattr(blk, "delay_shift", False):
            add(f"layer{i}.delay", nir.Delay(delay=np.full(shape, float(dt))))
    nodes["output"] = nir.Output(output_type=np.array(shape))
    chain.append("output")
    meta = {"ilif_lava": {"format": FORMAT, "dt": float(dt)}, LOSSINESS_KEY: json.dumps(report)}
    return nir.NIRGraph(nodes=nodes, edges=list(zip(chain[:-1], chain[1:])), metadata=meta,
                        type_check=not composite_any)


def lossiness_report(graph: nir.NIRGraph) -> List[Dict[str, Any]]:
    """The per-layer lossiness report stored by :func:`to_nir` (empty for graphs written elsewhere)."""
    raw = (graph.metadata or {}).get(LOSSINESS_KEY) if isinstance(graph.metadata, dict) else None
    return json.loads(raw) if raw else []


def lossiness_markdown(report: Sequence[Dict[str, Any]]) -> str:
    """The report as Markdown: one section per layer."""
    lines = ["# NIR export: what a consumer that ignores metadata computes differently", ""]
    for r in report:
        p = r["probe"]
        lines += [f"## layer {r['layer']} (block {r['block']}, {r['variant']}) -> `{r['node']}`: {r['nir']}", "",
                  f"* exact: {r['exact']}", f"* a metadata-blind consumer {r['metadata_blind']}"]
        lines += [f"* {d}" for d in r["differences"]]
        what = "ours vs its LIF core alone" if "composite" in r["nir"] else "ours vs NIR's semantics of the node"
        lines += [f"* probe, {what} ({p['samples']} x {p['neurons']} neurons x {p['steps']} steps, {p['input']}): "
                  f"spike mismatch {p['spike_mismatch']:.3f} (rate ours {p['rate_ours']:.3f}, NIR "
                  f"{p['rate_nir']:.3f})", ""]
    return "\n".join(lines)


def write_nir(model: Any, path: Union[str, Path], dt: float = 1.0) -> Tuple[Path, List[Dict[str, Any]]]:
    """:func:`to_nir` written to ``path`` (atomically); returns (path, lossiness report)."""
    graph = to_nir(model, dt=dt)
    return write_graph(graph, path), lossiness_report(graph)
