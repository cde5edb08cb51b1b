"""``torch.compile`` of a model built from ILIF blocks: eager vs compiled training step, and the compile time.

Usage: ``.venv/bin/python -m benchmarks.bench_compile [--backend inductor|aot_eager] [--steps T] [--repeats R]``.
Writes ``benchmarks/results/compile.json`` and prints a Markdown table.

The model: the conv net of ``make bench``'s whole-network section built from ``ilif_lava.block`` (conv 2->16 5x5
with 2x2 pre-pooling in the next block, conv 16->32 3x3, dense -> 10), spikes [N = 16, 2, 34, 34, T] at 5 %
density; one step = zero_grad + forward + MSE on spike rates + backward + Adam. The fused kernels run as the custom
operators of :mod:`ilif_lava.kernels.custom_ops` in both (``fullgraph=True``: no graph break). Eager and compiled
steps are timed round-robin; spikes of the first step are compared (identical is expected).
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Dict

from benchmarks import common


def _model():
    import torch
    from ilif_lava import block
    torch.manual_seed(0)
    p = {"threshold": 1.0, "tau": 2.0, "kappa": 0.25, "inhibition": "plan"}
    return torch.nn.Sequential(
        block.Conv(p, 2, 16, 5, padding=2, weight_scale=3, delay_shift=True),
        block.Conv(p, 16, 32, 3, padding=1, weight_scale=3, delay_shift=True, pre_pool=2),
        block.Flatten(),
        block.Dense(p, 32 * 17 * 17, 10, weight_scale=3, delay_shift=True),
    )


def run(backend: str = "inductor", steps: int = 16, repeats: int = 5, batch: int = 16) -> Dict[str, Any]:
    import torch
    torch.set_num_threads(1)
    x = common.spike_input(batch, (2, 34, 34), steps)
    target = torch.rand(batch, 10, generator=torch.Generator().manual_seed(1))
    nets = {"eager": _model(), "compiled": _model()}
    nets["compiled"].load_state_dict(nets["eager"].state_dict())
    fwd = {"eager": nets["eager"], "compiled": torch.compile(nets["compiled"], backend=backend, fullgraph=True)}
    opts = {k: torch.optim.Adam(n.parameters(), lr=1e-3) for k, n in nets.items()}
    first: Dict[str, Any] = {}

    def step(name: str):
        def fn():
            opts[name].zero_grad()
            out = fwd[name](x)
            first.setdefault(name, out.detach().clone())
            torch.nn.functional.mse_loss(out.mean(-1), target).backward()
            opts[name].step()
        return fn

    t0 = time.perf_counter()
    step("compiled")()
    compile_s = time.perf_counter() - t0
    step("eager")()
    timing = common.interleaved_medians({k: step(k) for k in nets}, warmup=1, repeats=repeats)
    res = {"machine": common.machine_info(), "backend": backend, "steps": steps, "batch": batch,
           "first_call_s": compile_s, "timing": timing,
           "compiled_vs_eager": common.ratio(timing["compiled"]["median_s"], timing["eager"]["median_s"]),
           "first_step_spikes_identical": bool(torch.equal(first["eager"], first["compiled"]))}
    common.write_json(common.DEFAULT_OUT, "compile.json", res)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="inductor", help="torch.compile backend (default: inductor)")
    ap.add_argument("--steps", type=int, default=16, help="time steps T (default 16)")
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per model (default 5)")
    args = ap.parse_args(argv)
    r = run(args.backend, args.steps, args.repeats)
    print(f"| torch.compile backend | T | eager ms | compiled ms | compiled/eager | first compiled call s | "
          f"spikes identical |\n|---|---|---|---|---|---|---|\n| {r['backend']} | {r['steps']} | "
          f"{r['timing']['eager']['median_s'] * 1e3:.1f} | {r['timing']['compiled']['median_s'] * 1e3:.1f} | "
          f"{r['compiled_vs_eager']:.2f} | {r['first_call_s']:.1f} | {r['first_step_spikes_identical']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
