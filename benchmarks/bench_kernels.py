"""Benchmark 0: the ILIF neuron alone, forward + backward over [16, 8192, T], on every kernel path.

Implementations, timed round-robin in one run (so every ratio compares numbers of the same run):

* ``previous``: the fused ``ILIFSequence`` of commit ``PREVIOUS_COMMIT`` (the last one before the kernels), loaded
  from git history, not copied into the tree. Skipped with a note when git or that commit is absent.
* ``torch``: today's torch path (:class:`ilif_lava.dynamics.ILIFSequence`, the fallback).
* ``cpu`` / ``gpu``: the compiled CPU kernel / the Triton kernel (:mod:`ilif_lava.kernels`).
* ``lif_loop``: a plain multi-step LIF (one state) written in eager torch with autograd, the speed a 4-state ILIF
  should match.

The memory-traffic floor is ``TRAFFIC_BYTES`` per neuron-step divided by a copy bandwidth measured here (one
thread, ``dst.copy_(src)`` of 256 MiB). The integer (bit-exact) forward is timed on the torch path and the kernel.
"""
from __future__ import annotations

import subprocess
import time
import types
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from benchmarks.common import ROOT, interleaved_medians, log, ratio, sync

PREVIOUS_COMMIT = "aed2a8a"
SHAPE = (16, 8192)
# Bytes per neuron-step the compiled ILIF kernel must move (float32): forward reads z and writes spikes, h, m (4 B
# each) and the sign of C (1 B); backward reads grad, h, m, sign of C, z and writes grad z.
TRAFFIC_BYTES = 4 + 4 + 4 + 4 + 1 + 4 + 4 + 4 + 1 + 4 + 4


def previous_sequence() -> Optional[Any]:
    """``ILIFSequence`` as it was at ``PREVIOUS_COMMIT`` (from ``git show``), or None."""
    try:
        src = subprocess.run(["git", "show", f"{PREVIOUS_COMMIT}:ilif_lava/dynamics.py"], cwd=ROOT,
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    mod = types.ModuleType("ilif_previous_dynamics")
    exec(compile(src, f"{PREVIOUS_COMMIT}:ilif_lava/dynamics.py", "exec"), mod.__dict__)  # noqa: S102 - our own history
    return mod.ILIFSequence


def copy_bandwidth(device: str = "cpu", mib: int = 256) -> float:
    """Bytes per second of ``dst.copy_(src)`` (read + write counted), best of 5."""
    n = mib * (1 << 20) // 4
    src = torch.ones(n, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(5):
        sync(device)
        t0 = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n * 4 / best


def _lif_loop(z: torch.Tensor, lam: float, th: float, spike_fn: Callable) -> torch.Tensor:
    v = torch.zeros_like(z[..., 0])
    out = []
    for t in range(z.shape[-1]):
        v = lam * v + z[..., t]
        s = spike_fn(v - th)
        v = v - s * th
        out.append(s)
    return torch.stack(out, dim=-1)


def _cases(z: torch.Tensor, readout: torch.Tensor, device: str) -> Dict[str, Callable[[], Any]]:
    from ilif_lava import kernels
    from ilif_lava.dynamics import ILIFSequence, ilif_sequence
    from ilif_lava.neuron import Neuron
    from ilif_lava.surrogate import make_spike_fn

    n = Neuron(variant="ILIF", inhibition="plan", surrogate="rectangle").to(device)
    lam = n.lam.detach().to(device)
    # CIU rule 'block' (relu), the previous path's behaviour, so that every path computes the same gradients
    cfg = kernels.FloatConfig(n.beta, n.kappa, 0.0, float(n.threshold), True, True, "plan", n.surrogate_cfg, False)
    spike_fn = make_spike_fn("rectangle")

    def step(fn):
        def run():
            zz = z.detach().requires_grad_(True)
            (fn(zz) * readout).sum().backward()
            return zz.grad
        return run

    fns: Dict[str, Callable[[], Any]] = {}
    prev = previous_sequence()
    if prev is not None:
        fns["previous"] = step(lambda zz: prev.apply(zz, lam, cfg.beta, cfg.kappa, 0.0, cfg.threshold, True, True,
                                                     "plan", n.surrogate_cfg))
    fns["torch"] = step(lambda zz: ILIFSequence.apply(zz, lam, cfg))
    compiled = "gpu" if device.startswith("cuda") else "cpu"
    try:
        kernels.select(z, compiled)
        fns[compiled] = step(lambda zz: ilif_sequence(zz, lam, cfg, compiled))
    except kernels.KernelUnavailable as exc:
        log(f"  {compiled} kernel unavailable: {exc}")
    fns["lif_loop"] = step(lambda zz: _lif_loop(zz, float(lam), cfg.threshold, spike_fn))
    return fns


def _check_equal(fns: Dict[str, Callable[[], Any]]) -> Dict[str, bool]:
    """Input gradients of each ILIF path vs the torch path (to 1e-5): the benchmark times the same function."""
    ref = fns["torch"]()
    return {k: bool(torch.allclose(fn(), ref, rtol=1e-4, atol=1e-5)) for k, fn in fns.items()
            if k not in ("torch", "lif_loop")}


def _integer_cases(steps: int, device: str) -> Dict[str, Callable[[], Any]]:
    from ilif_lava import kernels
    from ilif_lava.neuron import Neuron

    n = Neuron(variant="ILIF", quantized=True).to(device)
    g = torch.Generator().manual_seed(1)
    z = (torch.randint(-96, 160, SHAPE + (steps,), generator=g).float() / 64).to(device)
    compiled = "gpu" if device.startswith("cuda") else "cpu"
    out: Dict[str, Callable[[], Any]] = {}
    for name in ("torch", compiled):
        try:
            if name != "torch":
                kernels.select(z, name, integer=True)
        except kernels.KernelUnavailable:
            continue

        def run(name=name):
            n.kernel = name
            with torch.no_grad():
                return n.integer_dynamics(z)
        out[name] = run
    return out


def run(steps_list: Sequence[int], devices: Sequence[str], warmup: int, repeats: int,
        budget_s: float) -> Dict[str, Any]:
    from ilif_lava import kernels

    rows: List[Dict[str, Any]] = []
    result: Dict[str, Any] = {"benchmark": "neuron_kernels", "shape": list(SHAPE), "traffic_bytes": TRAFFIC_BYTES,
                              "previous_commit": PREVIOUS_COMMIT, "torch_threads": torch.get_num_threads(),
                              "kernel_info": kernels.describe(), "notes": []}
    if previous_sequence() is None:
        result["notes"].append(f"git history with commit {PREVIOUS_COMMIT} not found: 'previous' not timed")
    for device in devices:
        bw = copy_bandwidth(device)
        log(f"{device}: copy bandwidth {bw / 1e9:.1f} GB/s (one thread)")
        for steps in steps_list:
            g = torch.Generator().manual_seed(steps)
            z = (torch.rand(SHAPE + (steps,), generator=g) * 1.5).to(device)
            readout = torch.randn(z.shape, generator=g).to(device)
            fns = _cases(z, readout, device)
            same = _check_equal(fns)
            log(f"{device} T={steps}: float fwd+bwd, {', '.join(fns)}; gradients equal to torch path: {same}")
            res = interleaved_medians(fns, warmup, repeats, device, budget_s=budget_s)
            ints = _integer_cases(steps, device)
            ires = interleaved_medians(ints, warmup, repeats, device, budget_s=budget_s / 2)
            floor_s = TRAFFIC_BYTES * z.numel() / bw
            compiled = "gpu" if device.startswith("cuda") else "cpu"
            row: Dict[str, Any] = {"device": device, "T": steps, "ms": {k: 1e3 * v["median_s"] for k, v in res.items()},
                                   "ms_min": {k: 1e3 * v["min_s"] for k, v in res.items()},
                                   "integer_ms": {k: 1e3 * v["median_s"] for k, v in ires.items()},
                                   "gradients_equal": same, "floor_ms": 1e3 * floor_s,
                                   "bandwidth_gb_s": bw / 1e9, "kernel": compiled if compiled in res else "torch"}
            k = res.get(compiled)
            if k is not None:
                km = k["median_s"]
                row["previous_over_kernel"] = ratio(res["previous"]["median_s"], km) if "previous" in res else None
                row["torch_over_kernel"] = ratio(res["torch"]["median_s"], km)
                row["kernel_over_lif_loop"] = ratio(km, res["lif_loop"]["median_s"])
                row["kernel_over_floor"] = ratio(km, floor_s)
            if compiled in ires:
                row["integer_torch_over_kernel"] = ratio(ires["torch"]["median_s"], ires[compiled]["median_s"])
            rows.append(row)
            log("  " + ", ".join(f"{k} {v:.1f} ms" for k, v in row["ms"].items())
                + f"; floor {row['floor_ms']:.1f} ms; integer " + ", ".join(f"{k} {v:.1f} ms"
                                                                        for k, v in row["integer_ms"].items()))
    result["rows"] = rows
    result["kernel_info"] = kernels.describe()
    return result
