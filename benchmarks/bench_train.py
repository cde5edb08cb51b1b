"""Benchmarks 1 and 2: training-step time (forward + loss + backward); then the whole networks of
:mod:`benchmarks.bench_networks` (paper networks, peer frameworks; forward + backward + optimiser).

For each device (CPU, and CUDA when available), network size (N-MNIST MLP, small conv net) and T, three
networks of the same shape are timed round-robin on the same input:

* ``ilif``: ``training.models.build_model(arch, ..., neuron='ILIF')`` (this package's SLAYER ILIF blocks),
* ``cuba``: ``build_model(arch, ..., neuron='CUBA')`` (stock lava-dl slayer CUBA blocks),
* ``reference``: :mod:`benchmarks.reference_ilif` (authors' style single-step ILIF, called T times).

A step is ``zero_grad -> forward -> MSE(spike rate, target) -> backward`` (no optimizer update).
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
import torch.nn.functional as F

from benchmarks.common import NUM_CLASSES, configs, interleaved_medians, log, ratio, spike_input
from benchmarks.reference_ilif import build_reference


def _slayer_step(model, x, y):
    def step():
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        F.mse_loss(out.mean(-1), y).backward()
    return step


def _ref_step(model, x, y):
    def step():
        model.zero_grad(set_to_none=True)
        out = model.run(x)
        F.mse_loss(out.mean(-1), y).backward()
    return step


def build_models(cfg: Dict[str, Any], device, seed: int = 0) -> Dict[str, torch.nn.Module]:
    from training.models import build_model
    models = {}
    for name, neuron in (("ilif", "ILIF"), ("cuba", "CUBA")):
        torch.manual_seed(seed)
        models[name] = build_model(cfg["arch"], cfg["in_shape"], NUM_CLASSES, neuron, hidden=cfg["hidden"])
    torch.manual_seed(seed)
    models["reference"] = build_reference(cfg["arch"], cfg["in_shape"], NUM_CLASSES, hidden=cfg["hidden"])
    for m in models.values():
        m.to(device).train()
    return models


def run(steps: Sequence[int], devices: Sequence[str], warmup: int, repeats: int,
        budget_s: float = 40.0, quick: bool = False) -> Dict[str, Any]:
    """Time every (device, network, T); each case gets about ``budget_s`` of timed rounds (at least 3). Then the
    whole-network cases of :mod:`benchmarks.bench_networks` (the paper's networks ILIF vs LIF vs CUBA, and the
    block-built conv net vs SpikingJelly / snnTorch; CPU), under ``networks`` with their summary lines under
    ``markdown``."""
    rows: List[Dict[str, Any]] = []
    for device in devices:
        for cfg in configs():
            models = build_models(cfg, device)
            for T in steps:
                x = spike_input(cfg["batch"], cfg["in_shape"], T, seed=T, device=device)
                y = torch.rand(cfg["batch"], NUM_CLASSES, generator=torch.Generator().manual_seed(1)).to(device)
                fns = {"ilif": _slayer_step(models["ilif"], x, y), "cuba": _slayer_step(models["cuba"], x, y),
                       "reference": _ref_step(models["reference"], x, y)}
                reps = repeats if device == "cpu" else max(repeats, 10)
                torch.manual_seed(T)
                log(f"train step: {device} {cfg['name']} batch={cfg['batch']} T={T} "
                    f"(warm-up {warmup}, {reps} repeats x 3 networks)")
                res = interleaved_medians(fns, warmup=warmup, repeats=reps, device=device, budget_s=budget_s)
                ilif, cuba, ref = (res[k]["median_s"] for k in ("ilif", "cuba", "reference"))
                mins = {k: res[k]["min_s"] for k in res}
                row = {"device": device, "net": cfg["name"], "arch": cfg["arch"], "in_shape": list(cfg["in_shape"]),
                       "batch": cfg["batch"], "hidden": cfg["hidden"], "T": T, "timings": res,
                       "ilif_median_s": ilif, "cuba_median_s": cuba, "reference_median_s": ref,
                       "ilif_over_cuba": ratio(ilif, cuba), "reference_over_ilif": ratio(ref, ilif),
                       "repeats_done": len(res["ilif"]["samples_s"]),
                       "ilif_over_cuba_min": ratio(mins["ilif"], mins["cuba"]),
                       "reference_over_ilif_min": ratio(mins["reference"], mins["ilif"])}
                from ilif_lava import kernels
                row["kernel"] = kernels.last_used().get("float")
                rows.append(row)
                log(f"  [{row['kernel']} kernel] ILIF {1e3 * ilif:.1f} ms | CUBA {1e3 * cuba:.1f} ms | reference {1e3 * ref:.1f} ms "
                    f"-> ILIF/CUBA {row['ilif_over_cuba']:.2f}x, reference/ILIF {row['reference_over_ilif']:.2f}x")
            del models
    notes = [c["note"] for c in configs() if c["note"]]
    from benchmarks import bench_networks
    log("== whole networks: the paper's networks (ILIF vs LIF vs CUBA); blocks vs SpikingJelly / snnTorch ==")
    networks = bench_networks.run(quick, warmup, repeats, budget_s)
    return {"networks": networks, "markdown": bench_networks.markdown(networks), "benchmark": "training_step", "what": "zero_grad + forward + MSE(spike rate) + backward, median s",
            "input": "random Bernoulli spikes, density 0.05", "steps": list(steps), "warmup": warmup,
            "repeats": repeats, "budget_s_per_case": budget_s, "torch_threads": torch.get_num_threads(),
            "rows": rows, "notes": notes}
