"""Benchmark 0: the ILIF neuron alone, forward + backward over [16, 8192, T], on every kernel path.

Implementations, timed round-robin in one run (so every ratio compares numbers of the same run):

* ``previous``: the fused ``ILIFSequence`` of commit ``PREVIOUS_COMMIT`` (the last one before the kernels), loaded
  from git history, not copied into the tree. Skipped with a note when git or that commit is absent.
* ``torch``: today's torch path (:class:`ilif_lava.dynamics.ILIFSequence`, the fallback).
* ``cpu`` / ``gpu``: the compiled CPU kernel / the Triton kernel (:mod:`ilif_lava.kernels`).
* ``lif_loop``: a plain multi-step LIF (one state) written in eager torch with autograd, the speed a 4-state ILIF
  should match.
* ``lif_kernel``: the LIF variant (no MPIU, no CIU) on the same compiled kernel: ``kernel / lif_kernel`` is what
  the inhibitory units cost.

The memory-traffic floor is ``TRAFFIC_BYTES`` per neuron-step divided by a copy bandwidth measured here (one
thread, ``dst.copy_(src)`` of 256 MiB). The integer (bit-exact) forward is timed on the torch path and the kernel.

:func:`run_combinations` times the compiled kernel for every inhibition x surrogate (``COMBINATIONS``) against
PLAN/rectangle, round-robin in one run (``python -m benchmarks.bench_kernels`` runs it alone).
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import subprocess
import sys
import time
import types
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from benchmarks.common import ROOT, interleaved_medians, log, ratio, sync

PREVIOUS_COMMIT = "aed2a8a"
SHAPE = (16, 8192)
# Bytes per neuron-step the compiled ILIF kernel must move (float32): forward reads z and writes spikes, h, m (4 B
# each) and the sign of C (2 bits); backward reads grad, h, m, sign of C, z (or its saved copy) and writes grad z.
TRAFFIC_BYTES = 4 + 4 + 4 + 4 + 0.25 + 4 + 4 + 4 + 0.25 + 4 + 4


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
        lif_cfg = cfg._replace(mpiu=False, ciu=False)
        fns["lif_kernel"] = step(lambda zz: ilif_sequence(zz, lam, lif_cfg, compiled))
    except kernels.KernelUnavailable as exc:
        log(f"  {compiled} kernel unavailable: {exc}")
    fns["lif_loop"] = step(lambda zz: _lif_loop(zz, float(lam), cfg.threshold, spike_fn))
    return fns


def _check_equal(fns: Dict[str, Callable[[], Any]]) -> Dict[str, bool]:
    """Input gradients of each ILIF path vs the torch path (to 1e-5): the benchmark times the same function."""
    ref = fns["torch"]()
    return {k: bool(torch.allclose(fn(), ref, rtol=1e-4, atol=1e-5)) for k, fn in fns.items()
            if k not in ("torch", "lif_loop", "lif_kernel")}


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


COMBINATIONS: List[Tuple[str, str]] = list(itertools.product(("plan", "sigmoid"), ("rectangle", "exp", "sigmoid")))
BASE_COMBINATION = ("plan", "rectangle")
COMBINATION_LIMIT = 1.3   # every combination within this factor of PLAN/rectangle


def _combination_cases(z: torch.Tensor, readout: torch.Tensor,
                       device: str) -> Dict[str, Callable[[], Any]]:
    """ILIF forward + backward on the compiled kernel, one callable per 'inhibition/surrogate'."""
    from ilif_lava import kernels
    from ilif_lava.dynamics import ilif_sequence
    from ilif_lava.neuron import Neuron

    compiled = "gpu" if device.startswith("cuda") else "cpu"
    kernels.select(z, compiled)  # raises KernelUnavailable when it cannot run
    fns: Dict[str, Callable[[], Any]] = {}
    for inh, sg in COMBINATIONS:
        n = Neuron(variant="ILIF", inhibition=inh, surrogate=sg).to(device)
        cfg = kernels.FloatConfig(n.beta, n.kappa, 0.0, float(n.threshold), True, True, inh, n.surrogate_cfg,
                                  n.ciu_grad_at_zero == "pass")
        lam = n.lam.detach().to(device)

        def run(cfg=cfg, lam=lam):
            zz = z.detach().requires_grad_(True)
            (ilif_sequence(zz, lam, cfg, compiled) * readout).sum().backward()
            return zz.grad
        fns[f"{inh}/{sg}"] = run
    return fns


def run_combinations(steps_list: Sequence[int], device: str, warmup: int, repeats: int,
                     budget_s: float) -> List[Dict[str, Any]]:
    """Per T: median ms of every inhibition x surrogate on the compiled kernel and its ratio to PLAN/rectangle.

    The six cases are timed round-robin (so a shared machine's drifts hit all alike). Empty when the compiled
    kernel cannot run on ``device``.
    """
    from ilif_lava import kernels

    rows: List[Dict[str, Any]] = []
    base = "/".join(BASE_COMBINATION)
    for steps in steps_list:
        g = torch.Generator().manual_seed(steps)
        z = (torch.rand(SHAPE + (steps,), generator=g) * 1.5).to(device)
        readout = torch.randn(z.shape, generator=g).to(device)
        try:
            fns = _combination_cases(z, readout, device)
        except kernels.KernelUnavailable as exc:
            log(f"  combinations: compiled kernel unavailable on {device}: {exc}")
            return rows
        res, cpu = _interleaved_wall_and_cpu(fns, warmup, repeats, device, budget_s)
        ms = {k: 1e3 * statistics.median(v) for k, v in res.items()}
        over = {k: ratio(ms[k], ms[base]) for k in ms}
        worst = max((k for k in over if k != base), key=lambda k: over[k])
        row: Dict[str, Any] = {"device": device, "T": steps, "ms": ms,
                               "ms_min": {k: 1e3 * min(v) for k, v in res.items()},
                               "over_base": over, "base": base, "worst": worst, "worst_over_base": over[worst],
                               "within_limit": over[worst] <= COMBINATION_LIMIT,
                               "repeats": len(next(iter(res.values()))), "torch_threads": torch.get_num_threads()}
        if cpu is not None:
            cpu_ms = {k: 1e3 * statistics.median(v) for k, v in cpu.items()}
            row["cpu_ms"] = cpu_ms
            row["cpu_over_base"] = {k: ratio(cpu_ms[k], cpu_ms[base]) for k in cpu_ms}
        rows.append(row)
        log(f"  {device} T={steps} combinations (ms, x {base}): "
            + ", ".join(f"{k} {ms[k]:.1f} ({over[k]:.2f}x)" for k in ms)
            + ("" if cpu is None else "; CPU time of this thread: "
               + ", ".join(f"{k} {row['cpu_ms'][k]:.1f} ({row['cpu_over_base'][k]:.2f}x)" for k in ms)))
    return rows


def _interleaved_wall_and_cpu(fns: Dict[str, Callable[[], Any]], warmup: int, repeats: int, device: str,
                              budget_s: float) -> Tuple[Dict[str, List[float]], Optional[Dict[str, List[float]]]]:
    """Round-robin timing like :func:`benchmarks.common.interleaved_medians`, recording per call the wall time
    and, on the CPU with one torch thread, the calling thread's CPU time (time.thread_time): on a machine shared
    with other work that second figure leaves out the time other processes held the core."""
    use_cpu = device == "cpu" and torch.get_num_threads() == 1
    round_s = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        for fn in fns.values():
            fn()
        sync(device)
        round_s = time.perf_counter() - t0
    if round_s > 0:
        repeats = max(3, min(repeats, int(budget_s // round_s)))
    wall: Dict[str, List[float]] = {k: [] for k in fns}
    cpu: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync(device)
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            sync(device)
            wall[k].append(time.perf_counter() - w0)
            cpu[k].append(time.thread_time() - c0)
    return wall, (cpu if use_cpu else None)


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
                row["kernel_over_lif_kernel"] = ratio(km, res["lif_kernel"]["median_s"])
                row["kernel_over_floor"] = ratio(km, floor_s)
            if compiled in ires:
                row["integer_torch_over_kernel"] = ratio(ires["torch"]["median_s"], ires[compiled]["median_s"])
            rows.append(row)
            log("  " + ", ".join(f"{k} {v:.1f} ms" for k, v in row["ms"].items())
                + f"; floor {row['floor_ms']:.1f} ms; integer " + ", ".join(f"{k} {v:.1f} ms"
                                                                        for k, v in row["integer_ms"].items()))
    result["rows"] = rows
    result["combination_limit"] = COMBINATION_LIMIT
    result["combinations"] = [r for device in devices
                              for r in run_combinations(steps_list, device, warmup, repeats, budget_s / 2)]
    result["kernel_info"] = kernels.describe()
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Time the inhibition x surrogate combinations alone and print them (the full section: ``make bench``)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--steps", type=int, nargs="+", default=[8, 32, 100])
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--budget", type=float, default=40.0, help="seconds per T (repeats are lowered to fit)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    from benchmarks.common import setup_process
    setup_process(args.threads)
    rows = run_combinations(args.steps, "cpu", args.warmup, args.repeats, args.budget)
    print(f"| T | time | {' | '.join('/'.join(c) for c in COMBINATIONS)} | worst / {'/'.join(BASE_COMBINATION)} |")
    print("|---" * (len(COMBINATIONS) + 3) + "|")
    for r in rows:
        timings = (("wall", r["ms"], r["over_base"]), ("thread CPU", r.get("cpu_ms"), r.get("cpu_over_base")))
        for label, ms, over in timings:
            if ms is None:
                continue
            cells = " | ".join(f"{ms[k]:.1f} ({over[k]:.2f}x)" for k in ms)
            worst = max((k for k in over if k != r["base"]), key=lambda k: over[k])
            print(f"| {r['T']} | {label} | {cells} | {over[worst]:.2f}x ({worst}) |")
    return 0 if rows and all(r["within_limit"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
