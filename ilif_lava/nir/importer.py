"""NIR graph -> our blocks (``ilif_lava.block`` Dense / Conv / Pool / Flatten), ready for quantization, netx
export and Lava ``fixed_pt`` (docs/nir.md, "Import").

The graph must be a chain ``Input -> ... -> Output`` in which every neuron node (LIF, CubaLIF, IF, or an ilif_lava
composite) follows one synapse node (Linear, Affine with zero bias, Conv2d with zero bias, SumPool2d), optionally
scaled by a ``Scale``; ``Flatten`` may stand between blocks; a ``Delay`` of one step may follow a neuron.

* Nodes written by :func:`ilif_lava.nir.to_nir` (``metadata['ilif_lava']``) are restored exactly: every neuron
  parameter, and the weights as exported.
* Other nodes are converted with :func:`ilif_lava.nir.convention.dynamics_of` at the given ``dt``: NIR's input
  gain is folded into the weights, and per layer weights and threshold are multiplied by one factor (a multiple
  of 1/64) so that the largest weight uses the 8-bit range. With ``v_leak = v_reset = 0`` the NIR dynamics are
  homogeneous, so this changes no float spike. Our neuron resets by subtraction: NIR's reset to 0 is not
  reproduced (the import report measures the difference).
* Every block has one step of latency (``delay_shift=True``, what Lava computes); a NIR ``Delay`` of one step
  after a neuron is that latency, otherwise our layer ``l`` lags the NIR graph by ``l + 1`` steps
  (:attr:`NIRImport.lags`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import nir
import numpy as np
import torch

from ilif_lava import block as ilif_block
from ilif_lava import fixed_point as fx
from ilif_lava.file_limits import current_limits
from ilif_lava.hdf5_validate import conv_out     # Lava's conv output size, defined there
from ilif_lava.nir.convention import (NIRConversionError, checked_pair, dynamics_of, int_field, node_error,
                                      real_field, steps_of_delay, tau_from_lam)
from ilif_lava.nir.files import read_nir
from ilif_lava.nir.reference import COMPOSITE_KEY, graph_chain

SUPPORTED = ("Input", "Output", "Linear", "Affine", "Conv2d", "SumPool2d", "Scale", "Flatten", "LIF", "CubaLIF",
             "IF", "Delay", "NIRGraph (ilif_lava composite)")
NEURON_KEYS = ("threshold", "tau", "beta", "kappa", "current_decay", "variant", "inhibition", "surrogate", "gamma",
               "alpha", "tau_grad", "scale_grad", "requires_grad", "ciu_grad_at_zero")
MAX_WEIGHT = fx.WEIGHT_MAX / fx.WEIGHT_SCALE          # 254/64: the largest 8-bit weight in threshold units
MIN_WEIGHT = fx.WEIGHT_MIN / fx.WEIGHT_SCALE          # -256/64: the most negative one
HALF_LSB = 0.5 / fx.WEIGHT_SCALE                      # a weight this far beyond the range would saturate


@dataclass
class NIRImport:
    """What :func:`from_nir` built. ``blocks`` run on [N, *input_shape, T] (flattened first when
    ``flatten_input``); ``layers[l]`` describes spiking block ``l``: the NIR node, how it was converted."""

    blocks: List[torch.nn.Module]
    input_shape: Tuple[int, ...]
    flatten_input: bool
    layers: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def lags(self) -> List[int]:
        """Steps by which our spiking layer ``l`` lags the NIR graph's neuron node of the same layer."""
        out, lag = [], 0
        for layer in self.layers:
            lag += 1 - layer["nir_delay_steps"]
            out.append(lag)
        return out


def _plain(v: Any) -> Any:
    """HDF5 round trip values (numpy scalars, bytes) -> Python values."""
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray) and v.ndim == 0:
        v = v[()]
    if isinstance(v, np.generic):
        return v.item()
    return v


def _ours(node: nir.NIRNode) -> Optional[Dict[str, Any]]:
    rec = (node.metadata or {}).get("ilif_lava") if isinstance(node.metadata, dict) else None
    return {k: _plain(v) for k, v in rec.items()} if isinstance(rec, dict) else None


def _restore(neuron: Any, rec: Dict[str, Any]) -> None:
    """Set the decay state of a neuron built from ``rec`` to the exported value (learned decays)."""
    with torch.no_grad():
        if "plif_w" in rec:
            neuron.plif_w.fill_(float(rec["plif_w"]))
        elif "voltage_decay" in rec:
            neuron.voltage_decay.fill_(float(rec["voltage_decay"]))


class _Builder:
    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.blocks: List[torch.nn.Module] = []
        self.layers: List[Dict[str, Any]] = []
        self.pending: Optional[Dict[str, Any]] = None
        self.shape: Tuple[int, ...] = ()
        self.flatten_input = False

    @staticmethod
    def _weight(name: str, node: nir.NIRNode, ndim: int) -> np.ndarray:
        """``node.weight`` checked (:func:`~ilif_lava.nir.convention.real_field`, counted at float64 against the
        active per-dataset byte limit) with ``ndim`` dimensions, none empty."""
        w = real_field(name, node, "weight", max_bytes=current_limits().max_dataset_bytes)
        if w.ndim != ndim or 0 in w.shape:
            raise node_error(name, node, f"weight has shape {list(w.shape)}; expected {ndim} non-empty dimensions")
        return w

    def bounded(self, name: str, node: nir.NIRNode, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """``shape`` if it holds at most the active file limits' neurons per layer (nothing is allocated before)."""
        limit = current_limits().max_neurons_per_layer
        if any(int(v) <= 0 for v in shape) or int(np.prod([int(v) for v in shape], dtype=object)) > limit:
            raise node_error(name, node, f"shape {list(shape)} is empty or holds more than {limit} neurons")
        return tuple(int(v) for v in shape)

    # ---- synapses -------------------------------------------------------------------------------------
    def synapse(self, name: str, node: nir.NIRNode) -> None:
        if self.pending is not None:
            raise node_error(name, node, f"follows the synapse node {self.pending['name']!r} without a neuron in "
                                         f"between (our blocks are synapse + neurons)")
        if isinstance(node, (nir.Linear, nir.Affine)):
            w = self._weight(name, node, 2)
            if isinstance(node, nir.Affine) and np.any(real_field(name, node, "bias") != 0):
                raise node_error(name, node, "nonzero bias is not supported (ILIF neurons have no bias)")
            if w.ndim != 2 or len(self.shape) != 1 or w.shape[1] != self.shape[0]:
                raise node_error(name, node, f"weight {list(w.shape)} does not take the input shape "
                                             f"{list(self.shape)} (a Flatten is needed before a Linear on [C, H, W])")
            self.pending = {"name": name, "node": node, "kind": "dense", "weight": w, "out": (w.shape[0],)}
        elif isinstance(node, nir.Conv2d):
            w = self._weight(name, node, 4)
            if np.any(real_field(name, node, "bias") != 0):
                raise node_error(name, node, "nonzero bias is not supported (ILIF neurons have no bias)")
            groups = int_field(name, node, "groups", 1, size=(1,))[0]
            if w.ndim != 4 or len(self.shape) != 3 or w.shape[1] * groups != self.shape[0]:
                raise node_error(name, node, f"weight {list(w.shape)} (groups {groups}) does not take the input "
                                             f"shape {list(self.shape)}")
            k, s, d = (w.shape[2], w.shape[3]), checked_pair(name, node, "stride", 1), checked_pair(name, node,
                                                                                                "dilation", 1)
            if isinstance(node.padding, str) and node.padding not in ("same", "valid"):
                raise node_error(name, node, f"padding {node.padding[:20]!r} is not 'same', 'valid' or numbers")
            if isinstance(node.padding, str):
                if node.padding == "same" and (s != (1, 1) or k[0] % 2 == 0 or k[1] % 2 == 0):
                    raise node_error(name, node, "padding 'same' is supported with stride 1 and odd kernels only")
                p = ((d[0] * (k[0] - 1)) // 2, (d[1] * (k[1] - 1)) // 2) if node.padding == "same" else (0, 0)
            else:
                p = checked_pair(name, node, "padding", 0)
            out = (w.shape[0],) + tuple(conv_out(self.shape[1 + j], k[j], s[j], p[j], d[j]) for j in range(2))
            if min(out[1:]) < 1:
                raise node_error(name, node, f"output {list(out)} is empty (kernel {k}, stride {s}, padding {p}, "
                                             f"dilation {d} on input {list(self.shape)})")
            self.pending = {"name": name, "node": node, "kind": "conv", "weight": w, "stride": s, "padding": p,
                            "dilation": d, "groups": groups, "out": out}
        else:                                                           # SumPool2d
            k, s = checked_pair(name, node, "kernel_size", 1), checked_pair(name, node, "stride", 1)
            p = checked_pair(name, node, "padding", 0)
            if len(self.shape) != 3 or s != k or any(p) or self.shape[1] % k[0] or self.shape[2] % k[1]:
                raise node_error(name, node, f"only stride == kernel, no padding and H, W divisible by the kernel "
                                             f"are supported (kernel {k}, stride {s}, padding {p}, input "
                                             f"{list(self.shape)})")
            self.pending = {"name": name, "node": node, "kind": "pool", "weight": np.array(1.0), "kernel": k,
                            "out": (self.shape[0], self.shape[1] // k[0], self.shape[2] // k[1])}

    def scale(self, name: str, node: nir.Scale) -> None:
        p = self.pending
        if p is None:
            raise node_error(name, node, "must follow a Linear, Affine, Conv2d or SumPool2d node")
        scale = real_field(name, node, "scale", max_bytes=current_limits().max_dataset_bytes)
        try:
            s = np.broadcast_to(scale, p["out"])
        except ValueError:
            raise node_error(name, node, f"scale {list(np.shape(node.scale))} does not fit the shape "
                                         f"{list(p['out'])} of {p['name']!r}") from None
        if p["kind"] == "dense":
            p["weight"] = p["weight"] * s[:, None]
            return
        per = s.reshape(s.shape[0], -1)
        if not np.all(per == per[:, :1]) or (p["kind"] == "pool" and not np.all(per == per[0, 0])):
            raise node_error(name, node, "a scale after a convolution must be constant per channel (after a pool: "
                                         "one value)")
        p["weight"] = p["weight"] * (per[:, 0].reshape(-1, 1, 1, 1) if p["kind"] == "conv" else per[0, 0])

    # ---- neurons ------------------------------------------------------------------------------------------
    def neuron(self, name: str, node: nir.NIRNode) -> None:
        p = self.pending
        if p is None:
            raise node_error(name, node, "must follow a synapse node (Linear, Affine, Conv2d, SumPool2d)")
        self.bounded(p["name"], node, p["out"])
        rec = _ours(node)
        if rec is not None:
            params = {k: rec[k] for k in NEURON_KEYS if k in rec}
            weight, layer = p["weight"], {"source": "ilif_lava", "threshold_scale": 1.0, "input_gain": 1.0}
            _representable(p["name"], p["node"], weight, "as exported (threshold units)")
        elif isinstance(node, nir.NIRGraph):
            raise node_error(name, node, "nested graphs other than ilif_lava composites (e.g. snnTorch's recurrent "
                                         "RLeaky/RSynaptic subgraphs) are not supported")
        else:
            lam, current_decay, gain, vth = dynamics_of(name, node, self.dt)
            with np.errstate(over="ignore"):                             # an overflow is refused below
                w = p["weight"] * gain / vth                             # threshold units, threshold 1
            m = float(np.abs(w).max()) if w.size else 0.0
            with np.errstate(over="ignore"):        # weights so small that the ratio overflows: the largest theta
                room = np.float64(MAX_WEIGHT) / m * fx.WEIGHT_SCALE if m > 0 else np.float64(fx.WEIGHT_SCALE)
            theta = math.floor(room) / fx.WEIGHT_SCALE if math.isfinite(room) else fx.VTH_MANT_MAX / fx.WEIGHT_SCALE
            theta = min(max(theta, 1.0 / fx.WEIGHT_SCALE), fx.VTH_MANT_MAX / fx.WEIGHT_SCALE)
            params = {"threshold": theta, "tau": tau_from_lam(lam), "current_decay": current_decay,
                      "variant": "LIF"}
            weight = w * theta
            _representable(p["name"], p["node"], weight, f"x input gain {gain:g} / v_threshold {vth:g} x the largest "
                                                    f"threshold scale {theta:g}")
            layer = {"source": "nir", "threshold_scale": theta / vth, "input_gain": gain,
                     "notes": ["reset: NIR resets v to 0, ours subtracts the threshold (soft reset)",
                               "firing: NIR v > v_threshold, ours v >= threshold"]}
        blk = self._block(p, weight, params)
        if rec is not None:
            _restore(blk.neuron, rec)
        self.blocks.append(blk)
        self.layers.append({"node": name, "type": type(node).__name__, "synapse": p["name"], "nir_delay_steps": 0,
                            "variant": params.get("variant", "ILIF"), **layer})
        self.pending, self.shape = None, tuple(int(v) for v in p["out"])

    def _block(self, p: Dict[str, Any], weight: np.ndarray, params: Dict[str, Any]) -> torch.nn.Module:
        w = torch.as_tensor(np.asarray(weight), dtype=torch.float32)
        if p["kind"] == "dense":
            blk = ilif_block.Dense(params, w.shape[1], w.shape[0], weight_scale=1, delay_shift=True)
            w = w.reshape(blk.synapse.weight.shape)
        elif p["kind"] == "conv":
            blk = ilif_block.Conv(params, self.shape[0], w.shape[0], tuple(w.shape[2:]), stride=p["stride"],
                                  padding=p["padding"], dilation=p["dilation"], groups=p["groups"], weight_scale=1,
                                  delay_shift=True)
            w = w[..., None]
        else:
            blk = ilif_block.Pool(params, p["kernel"], stride=p["kernel"], delay_shift=True)
            w = torch.full(blk.synapse.weight.shape, float(w))
        with torch.no_grad():
            blk.synapse.weight.copy_(w)
        return blk

    # ---- the rest -----------------------------------------------------------------------------------------
    def flatten(self, name: str, node: nir.Flatten) -> None:
        if self.pending is not None:
            raise node_error(name, node, f"stands between the synapse {self.pending['name']!r} and its neuron")
        flat = (int(np.prod(self.shape)),)
        if self.blocks:
            self.blocks.append(ilif_block.Flatten())
        else:
            self.flatten_input = True
        self.shape = flat

    def delay(self, name: str, node: nir.Delay) -> None:
        last = self.layers[-1] if self.layers else None
        steps = steps_of_delay(name, node, self.dt)
        if self.pending is not None or last is None or last["nir_delay_steps"] or steps != 1:
            raise node_error(name, node, "only a Delay of one step directly after a neuron is supported (our "
                                         "block latency)")
        last["nir_delay_steps"] = 1


def _representable(name: str, node: nir.NIRNode, weight: np.ndarray, how: str) -> None:
    """Refuse (one line naming the synapse node) weights that the 8-bit weights cannot hold: non-finite after
    the conversion, beyond [MIN_WEIGHT, MAX_WEIGHT] by more than half a step (they would import silently
    saturated), or not all zero but every one below half a step (they would import silently as zeros)."""
    w = np.asarray(weight, dtype=np.float64)
    if not np.all(np.isfinite(w)):
        raise node_error(name, node, f"weights {how} overflow to a non-finite value")
    if w.size and np.any(w != 0) and np.abs(w).max() < HALF_LSB:
        raise node_error(name, node, f"weights {how} are at most {np.abs(w).max():.4g} threshold units, less than "
                                     f"half the 8-bit weight step ({2 * HALF_LSB:g}): every one would round to 0")
    if w.size and (w.max() > MAX_WEIGHT + HALF_LSB or w.min() < MIN_WEIGHT - HALF_LSB):
        raise node_error(name, node, f"weights {how} reach {w.min():.4g} .. {w.max():.4g}; 8-bit weights hold "
                                     f"{MIN_WEIGHT:g} .. {MAX_WEIGHT:g} threshold units, so they cannot be "
                                     f"represented (they would saturate)")


def from_nir(graph: Union[nir.NIRGraph, str, Path], dt: float = 1.0) -> NIRImport:
    """Our blocks for a NIR graph (or a NIR file, read with :func:`ilif_lava.nir.read_nir`'s bounds).

    ``dt``: the exporter's time step (1.0 for ilif_lava and SpikingJelly; snnTorch writes 1e-4, Norse 1e-3).
    Raises :class:`NIRConversionError` with one line naming the node and its type for anything unsupported."""
    if not isinstance(graph, nir.NIRGraph):
        graph = read_nir(graph)
    if not dt > 0:
        raise NIRConversionError(f"dt must be > 0, got {dt}")
    b = _Builder(dt)
    for name in graph_chain(graph):
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            types = node.input_type if isinstance(node.input_type, dict) else {}
            if "input" not in types:
                raise node_error(name, node, "input_type has no 'input' shape")
            b.shape = b.bounded(name, node, int_field(name, node, "input_type['input']", 1, types["input"],
                                                      size=(1, 2, 3)))
            input_shape = b.shape
        elif isinstance(node, nir.Output):
            if b.pending is not None:
                raise node_error(b.pending["name"], graph.nodes[b.pending["name"]], "is not followed by a neuron "
                                 "(an output without neurons is a readout, which Lava fixed_pt does not deploy)")
        elif isinstance(node, (nir.Linear, nir.Affine, nir.Conv2d, nir.SumPool2d)):
            b.synapse(name, node)
        elif isinstance(node, nir.Scale):
            b.scale(name, node)
        elif isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF)) or (
                isinstance(node, nir.NIRGraph) and COMPOSITE_KEY in (node.metadata or {})):
            b.neuron(name, node)
        elif isinstance(node, nir.Flatten):
            b.flatten(name, node)
        elif isinstance(node, nir.Delay):
            b.delay(name, node)
        elif isinstance(node, nir.NIRGraph):
            raise node_error(name, node, "nested graphs other than ilif_lava composites (e.g. snnTorch's "
                                         "recurrent RLeaky/RSynaptic subgraphs) are not supported")
        else:
            raise node_error(name, node, f"is not supported; supported nodes: {', '.join(SUPPORTED)}")
    if not b.blocks:
        raise NIRConversionError("the NIR graph has no neuron layer")
    shape = input_shape
    _initialise(b.blocks, shape, b.flatten_input)
    return NIRImport(blocks=b.blocks, input_shape=shape, flatten_input=b.flatten_input, layers=b.layers)


def _initialise(blocks: List[torch.nn.Module], shape: Tuple[int, ...], flatten: bool) -> None:
    """One zero input through the blocks so that every neuron knows its shape (slayer sets it on first use)."""
    x = torch.zeros(1, *shape, 2)
    if flatten:
        x = x.reshape(1, -1, 2)
    with torch.no_grad():
        for blk in blocks:
            x = blk(x)
