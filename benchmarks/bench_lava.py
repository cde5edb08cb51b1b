"""Benchmarks 3 and 4: Lava CPU (``Loihi2SimCfg`` fixed_pt) time per step, ILIF vs stock CUBA, and the
throughput of bit-exact evaluation with the quantized PyTorch twin vs Lava on the same inputs.

Network: the N-MNIST MLP (2312 -> 128 -> 10, ``build_model('mlp', (2, 34, 34), 10, ...)``). The ILIF network's
synapse weights are multiplied by ``WEIGHT_GAIN`` so the layers actually fire on 5 %-density random inputs; the
CUBA network gets a copy of the same weights. Both are exported with ``ilif_lava.netx.export_blocks`` and run
with ``simulations.lava_run.run_network``.

Lava timing: per repeat and network, one tiny run (1 sample x 2 steps) measures the fixed cost (build the netx
network, compile, start and stop the runtime); the main run (``n`` samples x ``T`` steps) is timed the same way.
``per_step_steady = (main - tiny) / (n*T - 2)``; ``per_step_total = main / (n*T)``. Medians over repeats.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, List, Sequence

import numpy as np
import torch

from benchmarks.common import (INPUT_DENSITY, MLP_HIDDEN, NMNIST_SHAPE, NUM_CLASSES, interleaved_medians, log,
                               ratio, spike_input, summarise, timed)

WEIGHT_GAIN = 4.0


def build_pair(seed: int = 0):
    """ILIF and CUBA N-MNIST MLPs with identical (8-bit quantizable) synapse weights."""
    from training.models import build_model
    torch.manual_seed(seed)
    ilif = build_model("mlp", NMNIST_SHAPE, NUM_CLASSES, "ILIF", hidden=MLP_HIDDEN)
    cuba = build_model("mlp", NMNIST_SHAPE, NUM_CLASSES, "CUBA", hidden=MLP_HIDDEN)
    with torch.no_grad():
        for bi, bc in zip(ilif.blocks, cuba.blocks):
            bi.synapse.weight.mul_(WEIGHT_GAIN)
            bc.synapse.weight.copy_(bi.synapse.weight)
    return ilif.eval(), cuba.eval()


def _flat(s: torch.Tensor) -> np.ndarray:
    return s.detach().cpu().reshape(s.shape[0], -1, s.shape[-1]).numpy().astype(np.int8)


def quantized_forward(model, x: torch.Tensor, batch: int) -> List[np.ndarray]:
    """Bit-exact (integer) forward of ``x`` in batches, no grad. Spikes per layer [N, neurons, T]."""
    model.set_quantized(True)
    outs: List[List[np.ndarray]] = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            _, sp = model(x[i:i + batch])
            outs.append([_flat(s) for s in sp])
    return [np.concatenate(layer) for layer in zip(*outs)]


def run(steps: int, n_lava: int, n_eval: int, eval_batch: int, repeats: int, devices: Sequence[str],
        lava_repeats: int) -> Dict[str, Any]:
    from ilif_lava.netx import export_blocks
    from simulations.lava_run import run_network

    ilif, cuba = build_pair()
    x = spike_input(n_eval, NMNIST_SHAPE, steps, seed=123)
    x_np = x.numpy()
    result: Dict[str, Any] = {
        "benchmark": "lava_and_quantized_eval", "network": "mlp (2,34,34) -> 128 -> 10",
        "input": f"random Bernoulli spikes, density {INPUT_DENSITY}, T={steps}",
        "weight_gain": WEIGHT_GAIN, "n_lava_samples": n_lava, "n_eval_samples": n_eval, "eval_batch": eval_batch,
        "T": steps,
    }

    # ---- quantized PyTorch evaluation (bit-exact twin) ------------------------------------------------------
    q_spikes = quantized_forward(ilif, x, eval_batch)
    result["firing_rates_quantized"] = [float(s.mean()) for s in q_spikes]
    evals: Dict[str, Any] = {}
    for device in devices:
        xd = x.to(device)
        ilif.to(device)
        fns = {"quantized": lambda: quantized_forward(ilif, xd, eval_batch)}
        log(f"quantized eval: {device}, {n_eval} samples x T={steps}, batch {eval_batch}, {repeats} repeats")
        res = interleaved_medians(fns, warmup=1, repeats=repeats, device=device)["quantized"]
        res["samples_per_s"] = n_eval / res["median_s"]
        evals[device] = res
        log(f"  {res['samples_per_s']:.1f} samples/s ({1e3 * res['median_s'] / n_eval:.2f} ms/sample)")
    ilif.to("cpu")
    ilif.set_quantized(False)
    result["quantized_eval"] = evals

    # ---- Lava fixed_pt ----------------------------------------------------------------------------------
    times: Dict[str, Dict[str, List[float]]] = {k: {"tiny": [], "main": []} for k in ("ILIF", "CUBA")}
    phases: Dict[str, List[Dict[str, float]]] = {k: [] for k in ("ILIF", "CUBA")}
    lava_spikes = None
    with tempfile.TemporaryDirectory(prefix="ilif-bench-") as tmp:
        paths = {"ILIF": export_blocks(list(ilif.blocks), Path(tmp) / "ilif.net"),
                 "CUBA": export_blocks(list(cuba.blocks), Path(tmp) / "cuba.net")}
        tiny = x_np[:1, ..., :2]
        main = x_np[:n_lava]
        for rep in range(lava_repeats):
            for name, path in paths.items():
                log(f"Lava {name}: repeat {rep + 1}/{lava_repeats}: fixed-cost run (1x2 steps), "
                    f"then {n_lava} samples x {steps} steps")
                times[name]["tiny"].append(timed(lambda: run_network(path, tiny)))
                holder: Dict[str, Any] = {}
                times[name]["main"].append(timed(lambda: holder.update(r=run_network(path, main))))
                phases[name].append(dict(holder["r"].timings))
                if name == "ILIF" and lava_spikes is None:
                    lava_spikes = holder["r"].spikes
                log(f"  fixed {times[name]['tiny'][-1]:.2f} s, main {times[name]['main'][-1]:.2f} s")
    lava: Dict[str, Any] = {}
    n_steps = n_lava * steps
    for name, t in times.items():
        tiny_s, main_s = summarise(t["tiny"]), summarise(t["main"])
        run_s = max(main_s["median_s"] - tiny_s["median_s"], 1e-9)
        lava[name] = {"fixed_cost_run": tiny_s, "main_run": main_s,
                      "per_step_steady_s": run_s / (n_steps - 2), "per_step_total_s": main_s["median_s"] / n_steps,
                      "samples_per_s_steady": n_lava / run_s, "samples_per_s_total": n_lava / main_s["median_s"]}
        # Lava's own phases (simulations.lava_run.LavaResult.timings): pure stepping of samples 2..n, without
        # build, compile, first sample, read-back and stop
        ph = {k: float(np.median([p.get(k, 0.0) for p in phases[name]])) for k in phases[name][0]}
        lava[name]["phases_median_s"] = ph
        if n_lava > 1 and ph.get("stepping", 0) > 0:
            lava[name]["per_step_stepping_s"] = ph["stepping"] / ((n_lava - 1) * steps)
            lava[name]["samples_per_s_stepping"] = (n_lava - 1) / ph["stepping"]
    result["lava"] = lava
    result["lava_ilif_over_cuba_per_step_steady"] = ratio(lava["ILIF"]["per_step_steady_s"],
                                                          lava["CUBA"]["per_step_steady_s"])
    result["lava_ilif_over_cuba_per_step_total"] = ratio(lava["ILIF"]["per_step_total_s"],
                                                         lava["CUBA"]["per_step_total_s"])

    # ---- bit-exactness on the samples Lava ran ------------------------------------------------------------
    per_layer = [bool(np.array_equal(q[:n_lava], l.astype(np.int8))) for q, l in zip(q_spikes, lava_spikes)]
    result["bit_exact_layers"] = per_layer
    result["bit_exact"] = all(per_layer) and len(per_layer) == len(q_spikes)
    result["firing_rates_lava"] = [float(s.mean()) for s in lava_spikes]
    q_cpu = evals["cpu"]["samples_per_s"]
    result["quantized_cpu_over_lava_samples_per_s_steady"] = ratio(q_cpu, lava["ILIF"]["samples_per_s_steady"])
    result["quantized_cpu_over_lava_samples_per_s_total"] = ratio(q_cpu, lava["ILIF"]["samples_per_s_total"])
    if "samples_per_s_stepping" in lava["ILIF"]:
        result["quantized_cpu_over_lava_samples_per_s_stepping"] = ratio(q_cpu, lava["ILIF"]["samples_per_s_stepping"])
    from ilif_lava import kernels
    result["quantized_kernel"] = kernels.last_used().get("integer")
    if "cuda" in evals:
        result["quantized_cuda_over_lava_samples_per_s_steady"] = ratio(evals["cuda"]["samples_per_s"],
                                                                        lava["ILIF"]["samples_per_s_steady"])
    log(f"  Lava per step (steady): ILIF {1e3 * lava['ILIF']['per_step_steady_s']:.2f} ms, "
        f"CUBA {1e3 * lava['CUBA']['per_step_steady_s']:.2f} ms -> "
        f"{result['lava_ilif_over_cuba_per_step_steady']:.2f}x; bit-exact: {result['bit_exact']}; "
        f"quantized/Lava samples/s: {result['quantized_cpu_over_lava_samples_per_s_steady']:.1f}x")
    return result
