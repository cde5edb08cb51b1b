"""Activity and energy of a network run: firing rates, continuous firing, SOP energy (paper App. H rules).

ACs: every spike (input spikes included) costs one accumulate per outgoing synapse (exact, padding-aware
fan-out of the next synaptic layer; the output layer has none). MACs: T x spiking neurons x k (k = 1 LIF/CUBA,
2 ILIF). Energies: 0.9 pJ per AC, 4.6 pJ per MAC, reported per sample in microjoules.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import numpy as np

from ilif_lava import metrics


def _synapse_fan_out(block: Any, in_shape: Sequence[int]) -> np.ndarray:
    """Fan-out [prod(in_shape)] that ``block``'s synapse gives each of its input neurons."""
    syn = block.synapse
    name = type(syn).__name__
    if name == "Dense":
        return metrics.fan_out_dense(syn.out_channels, int(np.prod(in_shape))).reshape(-1)
    k, s, p, d = (tuple(int(v) for v in getattr(syn, a)[:2]) for a in ("kernel_size", "stride", "padding", "dilation"))
    if name == "Pool":
        return metrics.fan_out_pool(in_shape, k, s, p, d).reshape(-1)
    return metrics.fan_out_conv(in_shape, syn.out_channels, k, s, p, d, getattr(syn, "groups", 1)).reshape(-1)


def network_activity(model: Any, x: np.ndarray, layer_spikes: Sequence[np.ndarray], neuron: str) -> Dict[str, Any]:
    """Per-layer and overall activity and SOP energy of ``model`` on inputs ``x`` [N, C, H, W, T].

    ``layer_spikes``: spikes of each spiking block, [N, neurons, T] (flattened). ``neuron``: 'CUBA' or ILIF variant.
    """
    x = np.asarray(x)
    n, steps = x.shape[0], x.shape[-1]
    spiking = model.spiking_blocks()
    sources: List[np.ndarray] = [x.reshape(n, -1, steps)] + [np.asarray(s) for s in layer_spikes[:-1]]
    shapes = [tuple(x.shape[1:-1])] + [tuple(int(v) for v in b.neuron.shape) for b in spiking[:-1]]
    acs = 0.0
    for blk, src, shape in zip(spiking, sources, shapes):
        if getattr(model, "flatten_input", False) and blk is spiking[0]:
            shape = (int(np.prod(shape)),)
        acs += metrics.count_acs(src.astype(np.float32), _synapse_fan_out(blk, shape))
    num_neurons = sum(int(np.prod(b.neuron.shape)) for b in spiking)
    macs = metrics.neuron_macs(num_neurons, steps, neuron)
    act = metrics.layer_activity({str(i): np.asarray(s, dtype=np.float32) for i, s in enumerate(layer_spikes)})
    layers = [{"layer": i, "neurons": l["neurons"], "firing_rate": l["firing_rate"],
               "continuous_firing_rate": l["continuous_firing_rate"], "spikes_per_step": l["mean_spikes_per_step"]}
              for i, l in enumerate(act["layers"].values())]
    return {"layers": layers, "firing_rate": act["firing_rate"], "continuous_firing_rate": act["continuous_firing_rate"],
            "acs_per_sample": acs, "macs_per_sample": macs,
            "sop_energy_uj_per_sample": metrics.sop_energy_uj(acs, macs)}
