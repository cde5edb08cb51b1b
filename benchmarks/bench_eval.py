"""Benchmark 6: evaluation of the paper's VGG-11-BN on the CPU, float vs bit-exact quantized.

The network is ``training.models.build_model('vgg11bn', (3, 32, 32), 10, hidden=64)`` (what ``ilif-lava train
--arch vgg11bn --hidden 64`` builds: eight conv + batch-norm + ILIF blocks with the average pools folded into the
next synapse, the first fed the analog image as graded input, an integer readout), T = 6, direct encoding (the
image at every step). Before timing, the batch norms take their statistics from the benchmark's images (train-mode
forward passes without gradients, cumulative average), so every layer fires as in a trained network.

Timed round-robin in one run (so slow drifts of a shared machine hit both alike), wall time and the calling thread's
CPU time (``time.thread_time``: with one torch thread all the work is on it, and it leaves out the time other
processes held the core), each a ``model(x)`` of one batch under ``torch.no_grad()`` in eval mode:

* ``float``: ``set_quantized(False)``, the float network (batch norm unfolded, float ILIF kernel);
* ``quantized``: ``set_quantized(True)``, the bit-exact integer twin that Lava is compared with (batch norm folded
  into 8-bit weights and the 13-bit neuron bias, integer ILIF kernel).

Checked in the same run: the quantized spikes of every layer and the readout equal those of the specification's
torch path (every neuron with ``kernel='torch'``: :func:`ilif_lava.fixed_point.ilif_step` stepped in Python).

Inputs: real CIFAR-10 test images (normalised) from ``$ILIF_LAVA_DATA`` or ``../shared/data`` (folder
``cifar10_subset``) when present, else random normal images (said so in the result).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from benchmarks.common import NUM_CLASSES, ROOT, log, ratio, round_robin

ARCH = "vgg11bn"
IN_SHAPE = (3, 32, 32)
HIDDEN = 64
STEPS = 6
CIFAR_FOLDER = "cifar10_subset"


def _images(batch: int, steps: int, seed: int = 0) -> Tuple[torch.Tensor, str]:
    """Inputs [batch, 3, 32, 32, steps] (float32) and a one-line description of where they came from."""
    base = Path(os.environ.get("ILIF_LAVA_DATA", ROOT.parent / "shared" / "data"))
    folder = base / CIFAR_FOLDER
    if folder.is_dir():
        from training.datasets import load_split
        x, _ = load_split("cifar10", "test", time_bins=steps, data_dir=str(folder), limit=batch).tensors()
        return x.float().contiguous(), f"{x.shape[0]} real CIFAR-10 test images from {folder} (normalised)"
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *IN_SHAPE, 1, generator=g).expand(-1, -1, -1, -1, steps).contiguous()
    return x, f"{batch} random normal images ({folder} not found)"


def build(x: torch.Tensor, seed: int = 0) -> torch.nn.Module:
    """The benchmarked network, its batch norms calibrated on ``x`` (see the module docstring), in eval mode."""
    from training.models import build_model
    torch.manual_seed(seed)
    model = build_model(ARCH, IN_SHAPE, NUM_CLASSES, "ILIF", hidden=HIDDEN)
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None                     # cumulative average over the calibration passes
    with torch.no_grad():
        for _ in range(2):
            model(x)
    return model.eval()


def _forward(model: torch.nn.Module, x: torch.Tensor, quantized: bool):
    def fn():
        model.set_quantized(quantized)
        with torch.no_grad():
            return model(x)
    return fn


def _set_kernel(model: torch.nn.Module, kernel: Optional[str]) -> None:
    from ilif_lava.neuron import Neuron
    for m in model.modules():
        if isinstance(m, Neuron):
            m.kernel = kernel


def _bit_exact(model: torch.nn.Module, x: torch.Tensor) -> Tuple[bool, List[int]]:
    """(identical?, mismatches per layer and readout) of the quantized forward vs the specification's torch path."""
    out_k, sp_k = _forward(model, x, True)()
    _set_kernel(model, "torch")
    try:
        out_t, sp_t = _forward(model, x, True)()
    finally:
        _set_kernel(model, None)
    counts = [int((a != b).sum()) for a, b in zip(sp_k + [out_k], sp_t + [out_t])]
    return not any(counts), counts


def run(batch: int, warmup: int, repeats: int, steps: int = STEPS) -> Dict[str, Any]:
    """Time float vs quantized evaluation of one batch (module docstring); ratios from this run only."""
    from ilif_lava import kernels
    x, source = _images(batch, steps)
    model = build(x)
    fns = {"float": _forward(model, x, False), "quantized": _forward(model, x, True)}
    log(f"eval {ARCH} hidden={HIDDEN} {tuple(x.shape)}: float vs quantized (warm-up {warmup}, {repeats} repeats; "
        f"{source})")
    res = round_robin(fns, warmup, repeats)
    used = kernels.last_used()
    _, spikes = fns["quantized"]()
    exact, mismatches = _bit_exact(model, x)
    med = {k: {c: res[k][c]["median_s"] for c in ("wall", "cpu")} for k in fns}
    fl, q = med["float"]["wall"], med["quantized"]["wall"]
    row = {"benchmark": "eval_vgg11bn", "arch": ARCH, "hidden": HIDDEN, "in_shape": list(IN_SHAPE), "T": steps,
           "batch": int(x.shape[0]), "input": source, "torch_threads": torch.get_num_threads(),
           "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
           "kernels": used, "timings": res, "float_median_s": fl, "quantized_median_s": q,
           "quantized_over_float": ratio(q, fl),
           "quantized_over_float_cpu": ratio(med["quantized"]["cpu"], med["float"]["cpu"]),
           "quantized_over_float_min": ratio(res["quantized"]["wall"]["min_s"], res["float"]["wall"]["min_s"]),
           "samples_per_s": {"float": x.shape[0] / fl, "quantized": x.shape[0] / q},
           "firing_rates_quantized": [float(s.mean()) for s in spikes],
           "bit_exact_vs_spec": exact, "mismatches_vs_spec": mismatches}
    log(f"  float {1e3 * fl:.1f} ms | quantized {1e3 * q:.1f} ms -> quantized/float {row['quantized_over_float']:.2f}x "
        f"wall, {row['quantized_over_float_cpu']:.2f}x thread CPU (kernels {used}); quantized = specification's "
        f"torch path: {'yes' if exact else 'NO'}")
    return row
