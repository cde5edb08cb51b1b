"""Benchmark 5: peak memory of one training step vs T.

CPU: every (network, model, T) runs in a fresh subprocess (``python -m benchmarks.bench_memory --probe ...``).
The probe builds the model and the input, resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` = 5;
importing lava/torch leaves a transient peak ~300 MiB above the settled RSS, which would otherwise hide the
step), runs two training steps and reads the peak (VmHWM, the value ``ru_maxrss`` reports); peak minus the RSS
before the steps is the step's peak extra memory (activations saved for backward, gradients, temporaries).
tracemalloc cannot see torch's allocations, hence RSS. Without clear_refs it falls back to plain ``ru_maxrss``. CUDA (when available):
``torch.cuda.max_memory_allocated`` minus the allocation before the step, in this process.

Linearity: a least-squares line ``delta = a + b*T`` over the measured T (b > 0); the growth counts as linear
when every point lies within max(3 MiB, 5 % of the largest delta) of the line (3 MiB: the run-to-run spread of
one RSS probe, which dominates for the small MLP), or when R^2 >= 0.95 and the slope between the two largest T
is at most 1.5x the slope between the two smallest (no upward bend).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from typing import Any, Dict, List, Sequence

from benchmarks.common import NUM_CLASSES, ROOT, configs, log

MODELS = ("ilif", "cuba", "reference")
NOISE_MIB = 3.0  # run-to-run spread of one RSS probe seen on the 2-core dev machine (about +-2 MiB)


def _build(arch: str, model: str, in_shape, hidden: int):
    import torch
    from training.models import build_model
    from benchmarks.reference_ilif import build_reference
    torch.manual_seed(0)
    if model == "reference":
        return build_reference(arch, in_shape, NUM_CLASSES, hidden=hidden)
    return build_model(arch, in_shape, NUM_CLASSES, "ILIF" if model == "ilif" else "CUBA", hidden=hidden)


def _step(net, model: str, x, y) -> None:
    import torch.nn.functional as F
    net.zero_grad(set_to_none=True)
    out = net.run(x) if model == "reference" else net(x)[0]
    F.mse_loss(out.mean(-1), y).backward()


def probe(arch: str, model: str, in_shape: Sequence[int], batch: int, hidden: int, steps: int,
          threads: int, device: str = "cpu") -> Dict[str, Any]:
    """Peak extra memory (MiB) of a training step; run in a fresh process for CPU."""
    import torch
    from benchmarks.common import spike_input
    if threads > 0:
        torch.set_num_threads(threads)
    net = _build(arch, model, in_shape, hidden).to(device).train()
    x = spike_input(batch, in_shape, steps, seed=steps, device=device)
    y = torch.rand(batch, NUM_CLASSES, generator=torch.Generator().manual_seed(1)).to(device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(2):
            _step(net, model, x, y)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"delta_mib": (peak - before) / 2 ** 20, "baseline_mib": before / 2 ** 20, "method": "cuda"}
    import gc
    gc.collect()
    reset = _reset_peak_rss()
    peak_before = _status_kib("VmHWM") * 1024
    rss_before = _status_kib("VmRSS") * 1024
    for _ in range(2):
        _step(net, model, x, y)
    peak = max(_status_kib("VmHWM"), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss if not reset else 0) * 1024
    # Without the peak reset, a step's peak is only seen if it raised the process peak (imports have a large
    # transient peak); ``peak_raised`` False then means the delta is only an upper bound.
    return {"delta_mib": (peak - rss_before) / 2 ** 20, "baseline_mib": rss_before / 2 ** 20,
            "method": "VmHWM after clear_refs" if reset else "ru_maxrss", "peak_raised": reset or peak > peak_before}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux >= 4.0: clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _probe_subprocess(arch: str, model: str, in_shape, batch: int, hidden: int, steps: int,
                      threads: int) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--probe", "--arch", arch, "--model", model,
           "--in-shape", ",".join(str(v) for v in in_shape), "--batch", str(batch), "--hidden", str(hidden),
           "--T", str(steps), "--threads", str(threads)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"memory probe failed ({' '.join(cmd)}):\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def linearity(ts: Sequence[int], deltas: Sequence[float]) -> Dict[str, Any]:
    n = len(ts)
    if n < 3:
        return {"linear": None, "reason": "fewer than 3 values of T"}
    mt, md = sum(ts) / n, sum(deltas) / n
    sxx = sum((t - mt) ** 2 for t in ts)
    b = sum((t - mt) * (d - md) for t, d in zip(ts, deltas)) / sxx
    a = md - b * mt
    ss_res = sum((d - (a + b * t)) ** 2 for t, d in zip(ts, deltas))
    ss_tot = sum((d - md) ** 2 for d in deltas)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    slope_lo = (deltas[1] - deltas[0]) / (ts[1] - ts[0])
    slope_hi = (deltas[-1] - deltas[-2]) / (ts[-1] - ts[-2])
    curvature = slope_hi / slope_lo if slope_lo > 0 else None
    max_resid = max(abs(d - (a + b * t)) for t, d in zip(ts, deltas))
    tol = max(NOISE_MIB, 0.05 * max(deltas))
    linear = b > 0 and (max_resid <= tol or (r2 >= 0.95 and (curvature is None or curvature <= 1.5)))
    return {"linear": bool(linear), "slope_mib_per_step": b, "intercept_mib": a, "r2": r2,
            "slope_ratio_hi_over_lo": curvature, "max_residual_mib": max_resid, "tolerance_mib": tol}


def run(steps: Sequence[int], devices: Sequence[str], threads: int,
        models: Sequence[str] = MODELS) -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = []
    for device in devices:
        for cfg in configs():
            for model in models:
                deltas, raised = [], []
                for T in steps:
                    log(f"memory: {device} {cfg['name']} {model} T={T}"
                        f"{' (fresh subprocess)' if device == 'cpu' else ''}")
                    args = (cfg["arch"], model, cfg["in_shape"], cfg["batch"], cfg["hidden"], T, threads)
                    res = _probe_subprocess(*args) if device == "cpu" else probe(*args, device=device)
                    deltas.append(res["delta_mib"])
                    raised.append(res.get("peak_raised", True))
                    log(f"  peak extra {res['delta_mib']:.1f} MiB (process baseline {res['baseline_mib']:.0f} MiB)")
                lin = linearity(list(steps), deltas)
                rows.append({"device": device, "net": cfg["name"], "model": model, "batch": cfg["batch"],
                             "in_shape": list(cfg["in_shape"]), "T": list(steps), "delta_mib": deltas,
                             "method": res["method"], "peak_raised": raised, **lin})
    return {"benchmark": "training_peak_memory", "steps": list(steps), "rows": rows,
            "what": "peak extra memory of 2 training steps (forward + backward) over the state after building "
                    "model and input; CPU: peak RSS (VmHWM after resetting it via /proc/self/clear_refs) minus "
                    "RSS before the steps, in a fresh subprocess per point"}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="memory probe (internal; use python -m benchmarks.run_all)")
    ap.add_argument("--probe", action="store_true", required=True)
    ap.add_argument("--arch", required=True)
    ap.add_argument("--model", choices=MODELS, required=True)
    ap.add_argument("--in-shape", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--T", type=int, required=True)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    shape = tuple(int(v) for v in a.in_shape.split(","))
    print(json.dumps(probe(a.arch, a.model, shape, a.batch, a.hidden, a.T, a.threads)), flush=True)


if __name__ == "__main__":
    main()
