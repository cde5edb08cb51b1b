"""Memory a training run needs for its network, estimated before anything is allocated (issue 25 item 5).

The data's share is checked where the data are loaded (:func:`training.datasets.check_memory`); this module adds
the network: it is built on PyTorch's ``meta`` device (shapes only, no storage), then one forward pass on a
``meta`` input of the per-process batch and ``SHORT_T`` time steps counts the elements every leaf module
outputs. Activations grow linearly with time steps (every tensor carries ``T`` last), so the count is scaled by
``T / SHORT_T``. The estimate, in bytes (float32, 4 bytes per value):

    need = parameters x 4 x PARAM_COPIES  +  activations x 4 x ACTIVATION_COPIES

(weights, gradients and two optimizer moments; every module output and about as much kept by autograd inside
the neurons). It is a lower bound of what training allocates, so a refusal never stops a run that would fit.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Sequence, Tuple

import torch

SHORT_T = 2
PARAM_COPIES = 4
ACTIVATION_COPIES = 2
MEMORY_FRACTION = 0.8


def network_elements(arch: str, in_shape: Sequence[int], num_classes: int, neuron: str, overrides: Any,
                     hidden: int, batch: int, time_bins: int, dropout: float = 0.0) -> Tuple[int, int]:
    """(parameters, activation values of one training forward pass of ``batch`` samples x ``time_bins`` steps),
    counted on the ``meta`` device (nothing allocated). Counts are remembered per process for the network
    (a study trains one network shape many times)."""
    short = min(int(time_bins), SHORT_T)
    key = json.dumps([arch, list(in_shape), num_classes, neuron, overrides, hidden, batch, short, dropout],
                     sort_keys=True, default=str)
    params, acts = _count(key)
    return params, acts * int(time_bins) // short


@functools.lru_cache(maxsize=64)
def _count(key: str) -> Tuple[int, int]:
    """(parameters, activation values at ``short`` steps) of the network described by ``key`` (JSON)."""
    from training.models import build_model

    arch, in_shape, num_classes, neuron, overrides, hidden, batch, short, dropout = json.loads(key)
    with torch.device("meta"):
        model = build_model(arch, in_shape, num_classes, neuron, overrides, hidden, dropout=dropout)
    params = sum(p.numel() for p in model.parameters())
    total = [0]

    def count(_mod: torch.nn.Module, _inp: Any, out: Any) -> None:
        for o in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(o, torch.Tensor):
                total[0] += o.numel()

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    hooks = [m.register_forward_hook(count) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros((int(batch), *in_shape, short), device="meta"))
    finally:
        for h in hooks:
            h.remove()
    return int(params), int(total[0])


def check_network_memory(cfg: Any, in_shape: Sequence[int], num_classes: int, batch: int, device: torch.device,
                         available: int) -> None:
    """Raise ``ValueError`` (one line naming --arch, --hidden, -T and --batch-size) before the network is built
    when the estimate of the module docstring exceeds ``MEMORY_FRACTION`` of ``available`` bytes (the machine's
    RAM, or the GPU's memory on CUDA)."""
    try:
        params, acts = network_elements(cfg.arch, in_shape, num_classes, cfg.neuron, cfg.neuron_overrides,
                                        cfg.hidden, batch, cfg.time_bins, cfg.dropout)
    except (RuntimeError, NotImplementedError, TypeError, ValueError):
        return          # not countable on 'meta': the real build reports its own problem
    need = params * 4 * PARAM_COPIES + acts * 4 * ACTIVATION_COPIES
    have = int(available * MEMORY_FRACTION)
    if need > have:
        where = "this GPU's" if device.type == "cuda" else "this machine's"
        raise ValueError(f"--arch {cfg.arch} --hidden {cfg.hidden} -T {cfg.time_bins} --batch-size {cfg.batch_size}"
                         f": the network ({params / 1e6:.1f} M parameters) and its activations ({acts / 1e9:.2f} G "
                         f"values per batch of {batch}) need at least {need / 2 ** 30:.1f} GiB, more than "
                         f"{have / 2 ** 30:.1f} GiB ({MEMORY_FRACTION:.0%} of {where} memory); lower --hidden, -T "
                         f"or --batch-size")
