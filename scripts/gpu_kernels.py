"""GPU kernel check and benchmark, one prepared script for a CUDA machine (the Triton kernels of ilif_lava/kernels).

Usage:  python scripts/gpu_kernels.py [--out docs/gpu_kernels_<gpu>.json] [--quick]
        TRITON_INTERPRET=1 python scripts/gpu_kernels.py --device cpu --quick   (dry run of this script on a CPU)

1. Correctness on the device: the Triton float kernel against the torch path on the same device and against the
   float64 autograd reference (every variant, inhibition, surrogate, current decay, CIU rule): spike mismatches,
   max relative gradient error (target 1e-4); the Triton integer kernel against ilif_lava.fixed_point.ilif_step on
   the CPU, including wrap/saturation cases: spike and state mismatches (target 0).
2. Benchmarks (skipped with --no-bench): benchmarks/bench_kernels.py (neuron alone, [16, 8192, T]) and
   benchmarks/bench_train.py (training step, ILIF vs slayer CUBA) on the device.
Writes one JSON; exit code 1 when a correctness target is missed.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _grad_run(n, z, kernel, reference=False):
    zz = z.detach().clone().requires_grad_(True)
    n.kernel = kernel
    s = n.reference_dynamics(zz) if reference else n.float_dynamics(zz)
    readout = torch.randn(s.shape, generator=torch.Generator().manual_seed(11)).to(s)
    params = [zz] + ([n.plif_w] if n.flags["plif"] else [])
    return s.detach(), [g.detach() for g in torch.autograd.grad((s * readout).sum(), params)]


def _rel(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def check_float(device: str, quick: bool):
    from ilif_lava.neuron import VARIANTS, Neuron
    rows = []
    shape = (2, 19, 13) if quick else (8, 4096, 64)
    for variant, inh, sg, cd, rule in itertools.product(VARIANTS, ("plan", "sigmoid"), ("rectangle", "exp", "sigmoid"),
                                                        (None, 0.25), ("pass", "block")):
        if quick and (sg != "rectangle" or cd is not None):
            continue
        n = Neuron(variant=variant, inhibition=inh, surrogate=sg, current_decay=cd, tau=2.0, kappa=0.3,
                   ciu_grad_at_zero=rule, tau_grad=0.3, scale_grad=1.0).to(device)
        g = torch.Generator().manual_seed(len(rows))
        z = (torch.randn(shape, generator=g) * 1.2 + 0.5).to(device)
        s_k, g_k = _grad_run(n, z, "gpu")
        s_t, g_t = _grad_run(n, z, "torch")
        n64 = n.double()
        s_r, g_r = _grad_run(n64, z.double(), "torch", reference=True)
        rows.append({"variant": variant, "inhibition": inh, "surrogate": sg, "current_decay": cd, "ciu_rule": rule,
                     "spike_mismatches_vs_torch_path": int((s_k != s_t).sum()),
                     "spike_mismatches_vs_float64_reference": int((s_k.double() != s_r).sum()),
                     "max_rel_grad_err_vs_torch_path": max(_rel(a, b) for a, b in zip(g_k, g_t)),
                     "max_rel_grad_err_vs_float64_reference": max(_rel(a.double(), b) for a, b in zip(g_k, g_r))})
        n.float()
    return rows


def check_integer(device: str):
    from ilif_lava import kernels
    from ilif_lava.kernels import ilif_triton
    from tests.test_kernels import INT_CASES, _int_reference
    rows = []
    for name, mag, p in INT_CASES:
        g = torch.Generator().manual_seed(len(name))
        a = torch.randint(-mag, mag + 1, (3, 37, 45), generator=g) + mag // 4
        s_ref, st_ref = _int_reference(a, p)
        s_k, st_k = kernels.integer_forward(ilif_triton, a.to(device), p, True, torch.float32)
        rows.append({"case": name, "spike_mismatches": int((s_k.cpu().long() != s_ref).sum()),
                     "state_mismatches": {k: int((st_k[k].cpu() != st_ref[k]).sum()) for k in st_ref}})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), or cpu with TRITON_INTERPRET=1 for a dry run")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default docs/gpu_kernels_<gpu>.json)")
    ap.add_argument("--quick", action="store_true", help="small shapes, fewer cases, T in {8, 32}")
    ap.add_argument("--no-bench", action="store_true", help="correctness only")
    args = ap.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_kernels: no CUDA device here; use --device cpu with TRITON_INTERPRET=1 for a dry run",
              file=sys.stderr)
        return 2
    import ilif_lava  # noqa: F401  (Lava compat)
    from benchmarks.common import machine_info
    t0 = time.perf_counter()
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu-interpreter"
    out = args.out or ROOT / "docs" / f"gpu_kernels_{name.lower().replace(' ', '_')}.json"
    res = {"machine": machine_info(), "device": name, "quick": args.quick}
    res["float"] = check_float(args.device, args.quick)
    res["integer"] = check_integer(args.device)
    worst_grad = max(r["max_rel_grad_err_vs_torch_path"] for r in res["float"])
    int_bad = sum(r["spike_mismatches"] + sum(r["state_mismatches"].values()) for r in res["integer"])
    res["summary"] = {"float_spike_mismatches_vs_torch_path": sum(r["spike_mismatches_vs_torch_path"]
                                                                   for r in res["float"]),
                      "float_max_rel_grad_err_vs_torch_path": worst_grad,
                      "integer_mismatches": int_bad, "pass": worst_grad <= 1e-4 and int_bad == 0}
    print(json.dumps(res["summary"]), flush=True)
    if not args.no_bench:
        from benchmarks import bench_kernels, bench_train
        steps = [8, 32] if args.quick else [8, 32, 100]
        res["kernels"] = bench_kernels.run(steps, [args.device], warmup=2, repeats=5 if args.quick else 10,
                                           budget_s=10.0)
        if args.device.startswith("cuda"):
            res["train"] = bench_train.run(steps, [args.device], warmup=2, repeats=10, budget_s=10.0)
    res["elapsed_s"] = time.perf_counter() - t0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2, default=str))
    tmp.replace(out)
    print(f"gpu_kernels: wrote {out} ({res['elapsed_s']:.0f} s)")
    return 0 if res["summary"]["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
