"""Activity and energy of a network run: firing rates, continuous firing, SOP energy (paper App. H rules).

ACs: every spike (input spikes included) costs one accumulate per outgoing synapse (exact, padding-aware
fan-out of the next synaptic layer, a folded average pool (``pre_pool``) and an integer readout included; a
spiking output layer has none). Analog (direct-encoded) input is not counted: its first layer multiplies, and the
paper counts neither ACs nor MACs for it (../shared/docs/ilif-model.md section 4). Skip synapses of fan-in layers
(residual networks, ilif_lava/graph.py) add their own ACs.
MACs: T x spiking neurons x k (k = 1 LIF/CUBA, 2 ILIF). Energies: 0.9 pJ per AC, 4.6 pJ per MAC, reported per
sample in microjoules.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from ilif_lava import metrics


def _synapse_fan_out(block: Any, in_shape: Sequence[int]) -> np.ndarray:
    """Fan-out [prod(in_shape)] that ``block``'s synapse gives each of its input neurons. A block that sum-pools
    its input ``k x k`` first (``pre_pool``): a spike reaches what its window's pooled value reaches."""
    k = int(getattr(block, "pre_pool", 1))
    if k > 1:
        c, h, w = (int(v) for v in in_shape)
        pooled = _plain_fan_out(block, (c, h // k, w // k)).reshape(c, h // k, w // k)
        return metrics.unpool(pooled, k, axes=(1, 2)).reshape(-1)
    return _plain_fan_out(block, in_shape)


def _plain_fan_out(block: Any, in_shape: Sequence[int]) -> np.ndarray:
    syn = block.synapse
    name = type(syn).__name__
    if name == "Dense":
        return metrics.fan_out_dense(syn.out_channels, int(np.prod(in_shape))).reshape(-1)
    k, s, p, d = (tuple(int(v) for v in getattr(syn, a)[:2]) for a in ("kernel_size", "stride", "padding", "dilation"))
    if name == "Pool":
        return metrics.fan_out_pool(in_shape, k, s, p, d).reshape(-1)
    return metrics.fan_out_conv(in_shape, syn.out_channels, k, s, p, d, getattr(syn, "groups", 1)).reshape(-1)


def _skip_acs(model: Any, spiking: Sequence[Any], layer_spikes: Sequence[np.ndarray]) -> float:
    """ACs of the skip synapses of fan-in layers (ilif_lava/graph.py): each source spike reaches, through a 1x1
    convolution with stride, the target channels at the output position it lands on (an identity skip: one)."""
    blocks = list(getattr(model, "blocks", ()))
    acs = 0.0
    for blk in spiking:
        for spec, syn in zip(getattr(blk, "skip_specs", ()), getattr(blk, "skips", ())):
            k = spiking.index(blocks[spec.source])
            shape = tuple(int(v) for v in blocks[spec.source].neuron.shape)
            if spec.identity:                    # one addition per spike (the paper's count for identity shortcuts)
                fo = np.ones(shape, dtype=np.int64)
            else:
                fo = metrics.fan_out_conv(shape, int(syn.out_channels), (1, 1), (spec.stride, spec.stride))
            acs += metrics.count_acs(np.asarray(layer_spikes[k]).astype(np.float32), fo.reshape(-1))
    return acs


def network_activity(model: Any, x: np.ndarray, layer_spikes: Sequence[np.ndarray], neuron: str) -> Dict[str, Any]:
    """Per-layer and overall activity and SOP energy of ``model`` on inputs ``x`` [N, C, H, W, T].

    ``layer_spikes``: spikes of each spiking block, [N, neurons, T] (flattened; not a readout's accumulator).
    ``neuron``: 'CUBA' or ILIF variant. ``input_acs_counted``: False for analog (direct-encoded) input.
    """
    x = np.asarray(x)
    n, steps = x.shape[0], x.shape[-1]
    spiking = model.spiking_blocks()
    analog = bool(x.size) and not bool(np.all((x >= 0) & (x == np.round(x))))   # direct-encoded: not counted
    acs = 0.0
    readout = getattr(model, "readout", None)
    consumers = spiking + ([readout] if readout is not None else [])
    sources: List[np.ndarray] = [x.reshape(n, -1, steps)] + [np.asarray(s) for s in layer_spikes]
    shapes = [tuple(x.shape[1:-1])] + [tuple(int(v) for v in b.neuron.shape) for b in spiking]
    for blk, src, shape in zip(consumers, sources, shapes):
        if blk is consumers[0] and analog:
            continue
        if getattr(model, "flatten_input", False) and blk is consumers[0]:
            shape = (int(np.prod(shape)),)
        acs += metrics.count_acs(src.astype(np.float32), _synapse_fan_out(blk, shape))
    acs += _skip_acs(model, spiking, layer_spikes)
    num_neurons = sum(int(np.prod(b.neuron.shape)) for b in spiking)
    macs = metrics.neuron_macs(num_neurons, steps, neuron)
    act = metrics.layer_activity({str(i): np.asarray(s, dtype=np.float32) for i, s in enumerate(layer_spikes)})
    layers = [{"layer": i, "neurons": l["neurons"], "firing_rate": l["firing_rate"],
               "continuous_firing_rate": l["continuous_firing_rate"], "spikes_per_step": l["mean_spikes_per_step"]}
              for i, l in enumerate(act["layers"].values())]
    return {"layers": layers, "firing_rate": act["firing_rate"], "continuous_firing_rate": act["continuous_firing_rate"],
            "acs_per_sample": acs, "macs_per_sample": macs, "input_acs_counted": not analog,
            "sop_energy_uj_per_sample": metrics.sop_energy_uj(acs, macs)}
