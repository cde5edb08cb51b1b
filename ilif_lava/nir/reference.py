"""The float semantics of a NIR graph as NIR states them, ignoring all metadata (docs/nir.md, "Conventions").

This is the "consumer that ignores metadata": LIF / CubaLIF / IF fire when ``v > v_threshold`` and reset ``v``
to ``v_reset`` (NIR 1.0.8 has no other reset); time is stepped with forward Euler at ``dt`` (the membrane uses
the updated synaptic current); ``Delay`` holds values for ``delay / dt`` steps. Graphs must be chains from
one ``Input`` to one ``Output`` (nested graphs too); anything else raises :class:`NIRSemanticsError` naming the
node. An ilif_lava composite (ILIF/MPIU/CIU layer) is such a failure on purpose: its output is not driven by
its input, because NIR has no primitive for the inhibitory units.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import nir
import numpy as np
import torch
import torch.nn.functional as F

from ilif_lava.nir.convention import NIRConversionError, node_error, pair as _pair, steps_of_delay

COMPOSITE_KEY = "ilif_lava_composite"      # metadata key marking an ILIF/MPIU/CIU composite (value: the variant)


class NIRSemanticsError(NIRConversionError):
    """The graph cannot be run as NIR defines it (not a chain, an undriven output, an unknown node)."""


def graph_chain(graph: nir.NIRGraph, where: str = "graph") -> List[str]:
    """Node names from the single ``Input`` to the single ``Output``; refuses branches, recurrence, loose nodes."""
    nodes = graph.nodes
    succ: Dict[str, List[str]] = {}
    pred: Dict[str, List[str]] = {}
    for a, b in graph.edges:
        for end in (a, b):
            if end not in nodes:
                raise NIRSemanticsError(f"{where}: edge ({a!r}, {b!r}) names a node that does not exist")
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRSemanticsError(f"{where}: has {len(inputs)} Input nodes {inputs}; expected exactly one")
    order, cur = [inputs[0]], inputs[0]
    while not isinstance(nodes[cur], nir.Output):
        nxt = succ.get(cur, [])
        if len(nxt) != 1:
            raise NIRSemanticsError(f"{where}: node {cur!r} ({type(nodes[cur]).__name__}) feeds {len(nxt)} nodes "
                                    f"{nxt}; only chains Input -> ... -> Output are supported")
        cur = nxt[0]
        if cur in order or len(pred.get(cur, [])) != 1:
            raise NIRSemanticsError(f"{where}: node {cur!r} ({type(nodes[cur]).__name__}) has "
                                    f"{len(pred.get(cur, []))} inputs or closes a loop; only chains are supported")
        order.append(cur)
    loose = [k for k in nodes if k not in order]
    if loose:
        raise NIRSemanticsError(f"{where}: node {loose[0]!r} ({type(nodes[loose[0]]).__name__}) is not on the path "
                                f"from the Input to the Output")
    return order


def _t(a: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


class _Neuron:
    """LIF / CubaLIF / IF of NIR: Euler step, fire on ``v > v_threshold``, reset to ``v_reset``."""

    def __init__(self, node: nir.NIRNode, dt: float) -> None:
        self.node, self.dt = node, dt
        self.v: Optional[torch.Tensor] = None
        self.i: Optional[torch.Tensor] = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, dt = self.node, self.dt
        if self.v is None:
            self.v, self.i = torch.zeros_like(x), torch.zeros_like(x)
        if isinstance(n, nir.IF):
            self.v = self.v + dt * _t(n.r) * x
        elif isinstance(n, nir.LIF):
            self.v = self.v + dt / _t(n.tau) * (_t(n.v_leak) - self.v + _t(n.r) * x)
        else:                                              # CubaLIF
            self.i = self.i + dt / _t(n.tau_syn) * (-self.i + _t(n.w_in) * x)
            self.v = self.v + dt / _t(n.tau_mem) * (_t(n.v_leak) - self.v + _t(n.r) * self.i)
        s = self.v > _t(n.v_threshold)
        self.v = torch.where(s, _t(n.v_reset).expand_as(self.v), self.v)
        return s.to(x.dtype)


def neuron_semantics(node: nir.NIRNode, z: torch.Tensor, dt: float) -> torch.Tensor:
    """NIR's spikes of a LIF / CubaLIF / IF ``node`` for input ``z`` [N, ..., T] (parameters broadcast over the
    neuron dimensions). Used by the lossiness check on a probe input."""
    run = _Neuron(node, dt)
    return torch.stack([run(z[..., t]) for t in range(z.shape[-1])], dim=-1)


class _Delay:
    def __init__(self, steps: int) -> None:
        self.steps, self.buf = steps, []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.buf.append(x)
        return self.buf.pop(0) if len(self.buf) > self.steps else torch.zeros_like(x)


class _Chain:
    """One graph (or nested graph) as a list of per-step callables; ``record`` collects every node's output."""

    def __init__(self, graph: nir.NIRGraph, dt: float, prefix: str = "") -> None:
        where = f"NIR node {prefix[:-1]!r} (NIRGraph)" if prefix else "NIR graph"
        try:
            self.order = graph_chain(graph, where)
        except NIRSemanticsError as exc:
            variant = (graph.metadata or {}).get(COMPOSITE_KEY) if isinstance(graph.metadata, dict) else None
            if variant:
                raise NIRSemanticsError(f"{where}: an ilif_lava {variant} composite, which NIR cannot run: its "
                                        f"output is not driven by its input (the MPIU/CIU have no NIR primitive; "
                                        f"its parameters are in the node's metadata; read it with "
                                        f"ilif_lava.nir.from_nir)") from None
            raise
        self.steps = [(prefix + k, self._make(prefix + k, graph.nodes[k], dt)) for k in self.order]

    @staticmethod
    def _make(name: str, node: nir.NIRNode, dt: float):
        if isinstance(node, (nir.Input, nir.Output)):
            return lambda x: x
        if isinstance(node, (nir.Linear, nir.Affine)):
            w = _t(node.weight)
            b = _t(node.bias) if isinstance(node, nir.Affine) else None
            return lambda x: F.linear(x, w, b)
        if isinstance(node, nir.Scale):
            s = _t(node.scale)
            return lambda x: x * s
        if isinstance(node, nir.Conv2d):
            w, b = _t(node.weight), _t(node.bias)
            pad = node.padding if isinstance(node.padding, str) else _pair(node.padding)
            stride, dil, groups = _pair(node.stride), _pair(node.dilation), int(np.asarray(node.groups))
            return lambda x: F.conv2d(x, w, b, stride, pad, dil, groups)
        if isinstance(node, nir.SumPool2d):
            k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            return lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=True) * (k[0] * k[1])
        if isinstance(node, nir.Flatten):
            start, end = int(np.asarray(node.start_dim)), int(np.asarray(node.end_dim))
            return lambda x: torch.flatten(x, start + 1 if start >= 0 else start, end + 1 if end >= 0 else end)
        if isinstance(node, (nir.LIF, nir.CubaLIF, nir.IF)):
            return _Neuron(node, dt)
        if isinstance(node, nir.Threshold):
            th = _t(node.threshold)
            return lambda x: (x > th).to(x.dtype)
        if isinstance(node, nir.Delay):
            return _Delay(steps_of_delay(name, node, dt))
        if isinstance(node, nir.NIRGraph):
            return _Chain(node, dt, prefix=name + ".")
        raise NIRSemanticsError(str(node_error(name, node, "is not a node type this simulator runs")))

    def __call__(self, x: torch.Tensor, record: Optional[Dict[str, List[torch.Tensor]]] = None) -> torch.Tensor:
        for name, step in self.steps:
            x = step(x, record) if isinstance(step, _Chain) else step(x)
            if record is not None:
                record.setdefault(name, []).append(x)
        return x


def simulate_nir(graph: nir.NIRGraph, x: np.ndarray, dt: float = 1.0) -> Dict[str, np.ndarray]:
    """Run ``x`` [N, *input shape, T] through ``graph`` with NIR's float semantics (metadata ignored).

    Returns every node's output over time, ``{name: [N, *shape, T]}`` (nested nodes as ``outer.inner``), float64;
    neuron nodes give 0/1 spikes. Raises :class:`NIRSemanticsError` for what NIR cannot run."""
    chain = _Chain(graph, dt)
    x_t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    shape = np.asarray(graph.nodes[chain.order[0]].input_type.get("input")).ravel().tolist()
    if list(x_t.shape[1:-1]) != [int(s) for s in shape]:
        raise NIRSemanticsError(f"input shape {list(x_t.shape[1:-1])} does not match the graph's Input {shape}")
    rec: Dict[str, List[torch.Tensor]] = {}
    with torch.no_grad():
        for t in range(x_t.shape[-1]):
            chain(x_t[..., t], rec)
    return {k: torch.stack(v, dim=-1).numpy() for k, v in rec.items()}
