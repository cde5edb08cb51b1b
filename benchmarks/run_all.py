"""Run all benchmarks and write ``benchmarks/results/*.json`` plus ``benchmarks/results/summary.md``.

Usage: ``.venv/bin/python -m benchmarks.run_all [--quick] [--only train lava memory] [--threads N]``
(``make bench`` runs the full set). See ``--help`` for what is measured.
"""
from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

SECTIONS = ("kernels", "train", "lava", "memory", "eval")

FULL = {"kernel_steps": [8, 32, 100], "train_steps": [8, 32, 100], "warmup": 2, "repeats": 5, "budget_s": 40.0,
        "lava_samples": 8, "lava_T": 50, "lava_repeats": 3, "eval_samples": 256, "eval_batch": 128,
        "eval_repeats": 5, "memory_steps": [8, 32, 100], "memory_models": ("ilif", "cuba", "reference"),
        "vgg_batch": 32, "vgg_repeats": 7}
QUICK = {"kernel_steps": [8, 32], "train_steps": [8, 32], "warmup": 1, "repeats": 3, "budget_s": 15.0,
         "lava_samples": 4, "lava_T": 50, "lava_repeats": 3, "eval_samples": 128, "eval_batch": 128,
         "eval_repeats": 3, "memory_steps": [8, 16, 32], "memory_models": ("ilif", "cuba"), "vgg_batch": 16,
         "vgg_repeats": 5}

TARGETS = {
    "kernel_vs_previous": "neuron fwd+bwd [16, 8192, 32]: compiled kernel >= 8x faster than the previous fused path",
    "kernel_vs_lif_loop": "neuron fwd+bwd [16, 8192, T]: compiled ILIF kernel no slower than a plain torch LIF loop "
                          "(every T)",
    "kernel_vs_floor": "neuron fwd+bwd [16, 8192, T]: within 4x of the memory-traffic floor (every T)",
    "kernel_ilif_vs_lif": "neuron fwd+bwd [16, 8192, T]: ILIF within 1.3x of the LIF variant on the same compiled "
                          "kernel (every T)",
    "kernel_combinations": "neuron fwd+bwd [16, 8192, T], compiled kernel: every inhibition x surrogate within 1.3x "
                           "of PLAN/rectangle (every T)",
    "train_vs_cuba": "ILIF training step <= 1.2x CUBA (CPU, every network and T)",
    "train_vs_reference": "ILIF training step >= 3x faster than reference-style ILIF at T=32 (CPU, both networks)",
    "quantized_vs_lava": "bit-exact quantized eval >= 500x Lava samples/s, Lava's build excluded (N-MNIST MLP, CPU)",
    "lava_vs_cuba": "Lava ILIF time per step <= 1.5x stock CUBA per step",
    "memory_linear": "training peak memory linear in T (ILIF, both networks)",
    "quantized_eval_vs_float": "bit-exact quantized eval of vgg11bn (--hidden 64, 32x32, T=6) <= 1.5x the float eval "
                               "(CPU)",
}

EPILOG = textwrap.dedent("""\
    What is measured (every figure is a ratio of two numbers measured in this same run):
      kernels 0. The ILIF neuron alone, forward + backward of [16, 8192, T] with a random readout, on the
              previous fused path (commit aed2a8a, loaded from git), today's torch path, the compiled kernel
              a plain multi-step LIF loop in eager torch and the LIF variant on the compiled kernel; the memory-traffic floor (bytes the kernel must
              move / measured one-thread copy bandwidth); the bit-exact integer forward, torch vs kernel;
              the compiled kernel for every inhibition (PLAN, sigmoid) x surrogate (rectangle, exp, sigmoid)
              against PLAN/rectangle.
      train   1+2. Training step (zero_grad + forward + MSE on spike rates + backward), median of repeats after
              warm-up, timed round-robin for three networks of the same shape: this package's ILIF
              (training.models.build_model(neuron='ILIF')), stock slayer CUBA (neuron='CUBA') and a
              reference-style ILIF (benchmarks/reference_ilif.py: single-step module with state, called T
              times, as in the authors' code). Networks: N-MNIST MLP (2x34x34 -> 128 -> 10, batch 16) and the
              small conv net 'cnn' (batch 8). CPU, plus CUDA when torch.cuda.is_available().
      lava    3+4. Lava Loihi2SimCfg fixed_pt time per simulated step, ILIF vs stock CUBA (same weights,
              exported with ilif_lava.netx.export_blocks, run with simulations.lava_run.run_network); the
              fixed cost (build, compile, start/stop) is measured by a 1-sample x 2-step run and subtracted.
              Samples/s of bit-exact evaluation with the quantized PyTorch path (set_quantized(True), batched,
              no_grad) vs Lava on the same inputs, and a check that the spikes are identical.
      memory  5. Peak extra memory of training steps for each T (CPU: peak RSS, i.e. VmHWM / ru_maxrss after
              resetting the peak mark, in a fresh subprocess per point; CUDA: torch.cuda.max_memory_allocated)
              and whether it grows linearly in T (all points within max(3 MiB, 5 %) of a least-squares
              line, or R^2 >= 0.95 with no upward bend > 1.5x).
      eval    6. Evaluation of one batch of the paper's VGG-11-BN (vgg11bn, --hidden 64, 32x32 CIFAR-10 images,
              T=6, batch norms calibrated on the images), float vs the bit-exact quantized twin, timed
              round-robin; the quantized spikes are checked equal to the specification's torch path.
    Inputs are random Bernoulli spikes at 5 % density (not real N-MNIST samples), except the eval section's
    real CIFAR-10 test images (../shared/data/cifar10_subset; random images when absent).

    Full run: T in {8, 32, 100}, 5 repeats (fewer if a case would exceed --budget seconds), Lava 8 samples x
    T=50 x 3 repeats, quantized eval of 256 samples in batches of 128; about 5-10 minutes on 2 CPU cores.
    --quick: T in {8, 32} for timing (memory uses {8, 16, 32} so that linearity can be judged, ILIF and CUBA
    only), 3 repeats, Lava 4 samples x T=50, quantized eval of 128 samples; about 1-2 minutes.

    Threads: the default --threads 1 pins torch to one intra-op thread. On a small shared machine two OpenMP
    threads competing with other jobs made steps 10-20x slower and the timings erratic; the targets are
    ratios of same-thread-count runs. Use --threads 0 for torch's default.
    """)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run_all",
        description="ILIF vs CUBA vs reference-style ILIF: training speed, Lava speed, bit-exact eval "
                    "throughput and training memory. Writes <out>/*.json and <out>/summary.md.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="smaller run: T in {8, 32}, 3 repeats, fewer Lava samples (about 1-2 min)")
    ap.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                    help=f"run only these sections, from {', '.join(SECTIONS)} (default: all)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: benchmarks/results)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1; 0 = torch default). See below")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats per case (overrides the preset)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds of timed rounds per training case before repeats are reduced (min 3 repeats)")
    ap.add_argument("--no-cuda", action="store_true", help="CPU only, even if CUDA is available")
    return ap.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------
# targets
# ---------------------------------------------------------------------------------------------------------
def _fmt(v: Optional[float], unit: str = "x", nd: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{nd}f}{unit}"


def evaluate_targets(train: Optional[Dict[str, Any]], lava: Optional[Dict[str, Any]],
                     memory: Optional[Dict[str, Any]], kern: Optional[Dict[str, Any]] = None,
                     evalb: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []

    def add(key: str, measured: Optional[float], text: str, passed: Optional[bool], detail: str = "") -> None:
        out.append({"id": key, "target": TARGETS[key], "measured": measured, "measured_text": text,
                    "pass": passed, "detail": detail})

    krows = [r for r in (kern or {}).get("rows", []) if r["device"] == "cpu" and "kernel_over_floor" in r]
    if krows:
        t32 = [r for r in krows if r["T"] == 32 and r.get("previous_over_kernel")]
        if t32:
            v = t32[0]["previous_over_kernel"]
            add("kernel_vs_previous", v, f"{v:.1f}x ({t32[0]['ms']['previous']:.1f} vs {t32[0]['ms']['cpu']:.1f} ms)",
                v >= 8.0, ", ".join(f"T={r['T']}: {r['previous_over_kernel']:.1f}x" for r in krows
                                    if r.get("previous_over_kernel")))
        else:
            add("kernel_vs_previous", None, "previous path or T=32 not run", None)
        worst = max(krows, key=lambda r: r["kernel_over_lif_loop"])
        add("kernel_vs_lif_loop", worst["kernel_over_lif_loop"],
            f"worst {worst['kernel_over_lif_loop']:.2f}x of the LIF loop's time (T={worst['T']})",
            worst["kernel_over_lif_loop"] <= 1.0,
            ", ".join(f"T={r['T']}: {r['ms']['cpu']:.1f} vs {r['ms']['lif_loop']:.1f} ms" for r in krows))
        worst = max(krows, key=lambda r: r["kernel_over_floor"])
        add("kernel_vs_floor", worst["kernel_over_floor"],
            f"worst {worst['kernel_over_floor']:.1f}x the floor (T={worst['T']})", worst["kernel_over_floor"] <= 4.0,
            ", ".join(f"T={r['T']}: {r['ms']['cpu']:.1f} ms vs floor {r['floor_ms']:.1f} ms "
                      f"({r['bandwidth_gb_s']:.1f} GB/s, {kern['traffic_bytes']} B/neuron-step)" for r in krows))
        worst = max(krows, key=lambda r: r["kernel_over_lif_kernel"])
        add("kernel_ilif_vs_lif", worst["kernel_over_lif_kernel"],
            f"worst {worst['kernel_over_lif_kernel']:.2f}x the LIF variant (T={worst['T']})",
            worst["kernel_over_lif_kernel"] <= 1.3,
            ", ".join(f"T={r['T']}: {r['ms']['cpu']:.1f} vs {r['ms']['lif_kernel']:.1f} ms" for r in krows))
    else:
        for key in ("kernel_vs_previous", "kernel_vs_lif_loop", "kernel_vs_floor", "kernel_ilif_vs_lif"):
            add(key, None, "not run (or no compiled kernel)", None)

    crows = [r for r in (kern or {}).get("combinations", []) if r["device"] == "cpu"]
    if crows:
        worst = max(crows, key=lambda r: r["worst_over_base"])
        add("kernel_combinations", worst["worst_over_base"],
            f"worst {worst['worst_over_base']:.2f}x ({worst['worst']}, T={worst['T']})",
            all(r["within_limit"] for r in crows),
            ", ".join(f"T={r['T']}: {r['worst_over_base']:.2f}x ({r['worst']})" for r in crows))
    else:
        add("kernel_combinations", None, "not run (or no compiled kernel)", None)

    if train:
        cpu = [r for r in train["rows"] if r["device"] == "cpu"]
        worst = max(cpu, key=lambda r: r["ilif_over_cuba"])
        per = ", ".join(f"{r['net']} T={r['T']}: {r['ilif_over_cuba']:.2f}x" for r in cpu)
        add("train_vs_cuba", worst["ilif_over_cuba"],
            f"worst {worst['ilif_over_cuba']:.2f}x ({worst['net']}, T={worst['T']})",
            worst["ilif_over_cuba"] <= 1.2, per)
        t32 = [r for r in cpu if r["T"] == 32]
        if t32:
            low = min(t32, key=lambda r: r["reference_over_ilif"])
            per = ", ".join(f"{r['net']}: {r['reference_over_ilif']:.2f}x" for r in t32)
            add("train_vs_reference", low["reference_over_ilif"],
                f"{low['reference_over_ilif']:.2f}x faster ({low['net']}, worst of {len(t32)})",
                low["reference_over_ilif"] >= 3.0, per)
        else:
            add("train_vs_reference", None, "T=32 not run", None)
    else:
        add("train_vs_cuba", None, "not run", None)
        add("train_vs_reference", None, "not run", None)
    if lava:
        q = lava.get("quantized_cpu_over_lava_samples_per_s_stepping") or lava["quantized_cpu_over_lava_samples_per_s_steady"]
        qs = lava["quantized_eval"]["cpu"]["samples_per_s"]
        ls = lava["lava"]["ILIF"].get("samples_per_s_stepping") or lava["lava"]["ILIF"]["samples_per_s_steady"]
        add("quantized_vs_lava", q,
            f"{q:.1f}x vs Lava's stepping ({qs:.1f} vs {ls:.2f} samples/s, {lava.get('quantized_kernel')} kernel; "
            f"bit-exact: {'yes' if lava['bit_exact'] else 'NO'})",
            q >= 500 and lava["bit_exact"],
            f"vs Lava with read-back (steady): {lava['quantized_cpu_over_lava_samples_per_s_steady']:.1f}x; "
            f"including Lava's fixed cost: {lava['quantized_cpu_over_lava_samples_per_s_total']:.1f}x")
        r = lava["lava_ilif_over_cuba_per_step_steady"]
        add("lava_vs_cuba", r,
            f"{r:.2f}x ({1e3 * lava['lava']['ILIF']['per_step_steady_s']:.2f} vs "
            f"{1e3 * lava['lava']['CUBA']['per_step_steady_s']:.2f} ms/step)",
            r <= 1.5, f"total incl. fixed cost: {lava['lava_ilif_over_cuba_per_step_total']:.2f}x")
    else:
        add("quantized_vs_lava", None, "not run", None)
        add("lava_vs_cuba", None, "not run", None)
    if memory:
        rows = [r for r in memory["rows"] if r["model"] == "ilif"]
        verdicts = [r["linear"] for r in rows]
        text = "; ".join(f"{r['device']} {r['net']}: slope {r.get('slope_mib_per_step', 0):.2f} MiB/step, "
                         f"R2 {r.get('r2', float('nan')):.3f}" for r in rows)
        passed = None if any(v is None for v in verdicts) else all(verdicts)
        add("memory_linear", None, "linear" if passed else ("not linear" if passed is False else "undecided"),
            passed, text)
    else:
        add("memory_linear", None, "not run", None)
    if evalb:
        r = evalb["quantized_over_float"]
        add("quantized_eval_vs_float", r,
            f"{r:.2f}x wall ({1e3 * evalb['quantized_median_s']:.1f} vs {1e3 * evalb['float_median_s']:.1f} ms per "
            f"batch of {evalb['batch']}), {evalb['quantized_over_float_cpu']:.2f}x thread CPU; bit-exact vs the torch "
            f"specification: {'yes' if evalb['bit_exact_vs_spec'] else 'NO'}",
            r <= 1.5 and evalb["bit_exact_vs_spec"],
            f"min/min {evalb['quantized_over_float_min']:.2f}x; kernels {evalb['kernels']}; {evalb['input']}")
    else:
        add("quantized_eval_vs_float", None, "not run", None)
    return out


# ---------------------------------------------------------------------------------------------------------
# summary.md
# ---------------------------------------------------------------------------------------------------------
def _pf(p: Optional[bool]) -> str:
    return "n/a" if p is None else ("PASS" if p else "FAIL")


def _notes(notes: List[str]) -> List[str]:
    return [line for n in notes for line in ("", f"Note: {n}")]


def write_summary(out_dir: Path, machine: Dict[str, Any], settings: Dict[str, Any], targets: List[Dict[str, Any]],
                  train, lava, memory, elapsed: float, kern: Optional[Dict[str, Any]] = None,
                  evalb: Optional[Dict[str, Any]] = None) -> Path:
    L: List[str] = ["# ILIF benchmarks", ""]
    L.append(f"Run {machine['date_utc']} ({'quick' if settings['quick'] else 'full'} run, {elapsed:.0f} s). "
             "Every figure below is measured in this run; ratios compare numbers from this run only.")
    L += ["", "## Machine", "", "| item | value |", "|---|---|"]
    for k in ("cpu_model", "cpu_count", "cpus_usable", "torch", "torch_threads", "cuda_available", "cuda_device",
              "python", "lava_dl", "lava_nc", "numpy", "platform", "git_commit", "git_modified_files",
              "load_average_at_start",
              "load_average_at_end", "date_utc"):
        L.append(f"| {k} | {machine.get(k)} |")
    L.append(f"| devices benchmarked | {', '.join(settings['devices'])} |")
    L += ["", "## Targets", "", "| target | measured | result | details |", "|---|---|---|---|"]
    for t in targets:
        L.append(f"| {t['target']} | {t['measured_text']} | {_pf(t['pass'])} | {t['detail']} |")
    L += ["", "Inputs are random Bernoulli spike tensors at 5 % density, not real N-MNIST samples."]
    if kern:
        info = kern["kernel_info"]
        L += ["", "## The ILIF neuron alone: forward + backward of [16, 8192, T], median ms", "",
              f"Kernel switch: requested `{info['requested']}`, CPU kernel {info['cpu_kernel']}, GPU kernel "
              f"{info['gpu_kernel']}; torch threads {kern['torch_threads']}. `previous` = the fused path of commit "
              f"{kern['previous_commit']} (from git); `torch` = today's fallback; `cpu`/`gpu` = compiled kernels; "
              f"`lif_loop` = a 1-state LIF loop in eager torch; `LIF kernel` = the LIF variant on the compiled "
              f"kernel. Floor = {kern['traffic_bytes']} B per neuron-step "
              "at the measured copy bandwidth.", "",
              "| device | T | previous | torch | kernel | LIF loop | LIF kernel | floor | previous/kernel | "
              "kernel/LIF loop | kernel/LIF kernel | kernel/floor | integer torch | integer kernel | "
              "integer speed-up |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in kern["rows"]:
            ms, im, kn = r["ms"], r["integer_ms"], r["kernel"]
            L.append(f"| {r['device']} | {r['T']} | {_fmt(ms.get('previous'), '', 1)} | {ms['torch']:.1f} | "
                     f"{_fmt(ms.get(kn), '', 1)} | {ms['lif_loop']:.1f} | {_fmt(ms.get('lif_kernel'), '', 1)} | "
                     f"{r['floor_ms']:.1f} | {_fmt(r.get('previous_over_kernel'))} | "
                     f"{_fmt(r.get('kernel_over_lif_loop'))} | {_fmt(r.get('kernel_over_lif_kernel'))} | "
                     f"{_fmt(r.get('kernel_over_floor'), 'x', 1)} | {im.get('torch', float('nan')):.1f} | "
                     f"{_fmt(im.get(kn), '', 1)} | {_fmt(r.get('integer_torch_over_kernel'), 'x', 1)} |")
        combos = kern.get("combinations", [])
        if combos:
            names = list(combos[0]["ms"])
            L += ["", f"### Inhibition x surrogate on the compiled kernel: median ms (x {combos[0]['base']})", "",
                  "| device | T | " + " | ".join(names) + " | worst |", "|---|---|" + "---|" * (len(names) + 1)]
            for r in combos:
                L.append(f"| {r['device']} | {r['T']} | "
                         + " | ".join(f"{r['ms'][k]:.1f} ({r['over_base'][k]:.2f}x)" for k in names)
                         + f" | {r['worst_over_base']:.2f}x |")
        L += _notes(kern["notes"])
    if train:
        L += ["", "## Training step (forward + backward), median", "",
              f"Warm-up {train['warmup']}, up to {train['repeats']} timed repeats per case (round-robin over the "
              f"three networks; fewer if a case exceeds {train['budget_s_per_case']:.0f} s), torch threads "
              f"{train['torch_threads']}. `ref/ILIF` > 1 means this package is faster than the reference style.",
              "", "| device | net | batch | T | ILIF ms | CUBA ms | reference ms | ILIF/CUBA | ref/ILIF | "
              "ILIF/CUBA (min) | ref/ILIF (min) | repeats |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in train["rows"]:
            L.append(f"| {r['device']} | {r['net']} {tuple(r['in_shape'])} | {r['batch']} | {r['T']} | "
                     f"{1e3 * r['ilif_median_s']:.1f} | {1e3 * r['cuba_median_s']:.1f} | "
                     f"{1e3 * r['reference_median_s']:.1f} | {r['ilif_over_cuba']:.2f} | "
                     f"{r['reference_over_ilif']:.2f} | {r['ilif_over_cuba_min']:.2f} | "
                     f"{r['reference_over_ilif_min']:.2f} | {r['repeats_done']} |")
        L += _notes(train["notes"]) + train.get("markdown", [])
    if lava:
        lv = lava["lava"]
        L += ["", "## Lava fixed_pt vs CUBA, and bit-exact quantized evaluation", "",
              f"N-MNIST MLP, synapse weights x{lava['weight_gain']:g} so that layers fire "
              f"(firing rates, quantized: {', '.join(f'{v:.3f}' for v in lava['firing_rates_quantized'])}); "
              f"Lava: {lava['n_lava_samples']} samples x T={lava['T']}, medians of repeats.", "",
              "| engine | fixed cost s | main run s | ms/step (steady) | ms/step (total) | samples/s (steady) | "
              "samples/s (total) |", "|---|---|---|---|---|---|---|"]
        for name in ("ILIF", "CUBA"):
            v = lv[name]
            L.append(f"| Lava {name} | {v['fixed_cost_run']['median_s']:.2f} | {v['main_run']['median_s']:.2f} | "
                     f"{1e3 * v['per_step_steady_s']:.2f} | {1e3 * v['per_step_total_s']:.2f} | "
                     f"{v['samples_per_s_steady']:.2f} | {v['samples_per_s_total']:.2f} |")
        for dev, e in lava["quantized_eval"].items():
            L.append(f"| quantized PyTorch ILIF ({dev}, batch {lava['eval_batch']}, {lava['n_eval_samples']} "
                     f"samples) | - | {e['median_s']:.3f} | - | - | {e['samples_per_s']:.1f} | - |")
        L += ["", f"Lava ILIF / CUBA per step: {lava['lava_ilif_over_cuba_per_step_steady']:.2f}x steady, "
                  f"{lava['lava_ilif_over_cuba_per_step_total']:.2f}x including the fixed cost. "
                  f"Quantized PyTorch (CPU) / Lava ILIF samples/s: "
                  f"{lava['quantized_cpu_over_lava_samples_per_s_steady']:.1f}x steady, "
                  f"{lava['quantized_cpu_over_lava_samples_per_s_total']:.1f}x including the fixed cost. "
                  f"Spikes of every layer identical on the {lava['n_lava_samples']} Lava samples: "
                  f"{'yes' if lava['bit_exact'] else 'NO'} ({lava['bit_exact_layers']}). "
                  f"The quantized PyTorch path ran with {settings['threads']} torch thread(s); Lava runs each "
                  f"process in its own OS process. 'steady' excludes Lava's fixed cost (build, compile, start/stop), "
                  f"measured by a 1-sample x 2-step run and subtracted; 'total' includes it."]
    if memory:
        L += ["", "## Training peak memory vs T", "", memory["what"] + ".", "",
              "Linear: every point within max(3 MiB, 5 % of the largest value) of the least-squares line (3 MiB "
              "~ run-to-run spread of one RSS probe), or R2 >= 0.95 with slope ratio hi/lo <= 1.5.", "",
              "| device | net | model | T | peak extra MiB | slope MiB/step | R2 | slope ratio hi/lo | "
              "max residual MiB | linear |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in memory["rows"]:
            L.append(f"| {r['device']} | {r['net']} | {r['model']} | {r['T']} | "
                     f"{[round(d, 1) for d in r['delta_mib']]} | {_fmt(r.get('slope_mib_per_step'), '')} | "
                     f"{_fmt(r.get('r2'), '', 3)} | {_fmt(r.get('slope_ratio_hi_over_lo'), '')} | "
                     f"{_fmt(r.get('max_residual_mib'), '', 1)} | {r['linear']} |")
        by = {(r["device"], r["net"], r["model"]): r for r in memory["rows"]}
        extra = []
        for (dev, net, model), r in by.items():
            if model != "ilif":
                continue
            for other in ("cuba", "reference"):
                o = by.get((dev, net, other))
                if o and o["delta_mib"][-1] > 0:
                    extra.append(f"{dev} {net} ILIF/{other} at T={r['T'][-1]}: "
                                 f"{r['delta_mib'][-1] / o['delta_mib'][-1]:.2f}x")
        if extra:
            L += ["", "Peak extra memory ratios: " + "; ".join(extra) + "."]
    if evalb:
        t = evalb["timings"]
        L += ["", f"## VGG-11-BN evaluation, float vs bit-exact quantized (CPU, {evalb['torch_threads']} torch "
                  f"thread(s))", "",
              f"`{evalb['arch']}` --hidden {evalb['hidden']}, input {evalb['in_shape']} x T={evalb['T']}, batch "
              f"{evalb['batch']} ({evalb['input']}); median of {len(t['float']['wall']['samples_s'])} round-robin "
              f"repeats; thread CPU = CPU time of the calling thread (load average {evalb['load_average']}).",
              "", "| engine | median ms | min ms | thread CPU median ms | samples/s |", "|---|---|---|---|---|"]
        for k in ("float", "quantized"):
            L.append(f"| {k} | {1e3 * t[k]['wall']['median_s']:.1f} | {1e3 * t[k]['wall']['min_s']:.1f} | "
                     f"{1e3 * t[k]['cpu']['median_s']:.1f} | {evalb['samples_per_s'][k]:.1f} |")
        L += ["", f"quantized / float: {evalb['quantized_over_float']:.2f}x (median wall), "
                  f"{evalb['quantized_over_float_min']:.2f}x (min wall), {evalb['quantized_over_float_cpu']:.2f}x "
                  f"(median thread CPU). Kernels: {evalb['kernels']}. Quantized spikes of "
                  f"every layer and the readout equal to the specification's torch path: "
                  f"{'yes' if evalb['bit_exact_vs_spec'] else 'NO'} (mismatches {evalb['mismatches_vs_spec']}). "
                  f"Quantized firing rates per layer: "
                  f"{', '.join(f'{v:.3f}' for v in evalb['firing_rates_quantized'])}."]
    path = out_dir / "summary.md"
    path.write_text("\n".join(L) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------------
def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    import torch

    from benchmarks.common import DEFAULT_OUT, configs, log, machine_info, setup_process, write_json

    t_start = time.perf_counter()
    out_dir = args.out or DEFAULT_OUT
    out_dir.mkdir(parents=True, exist_ok=True)
    preset = dict(QUICK if args.quick else FULL)
    if args.repeats is not None:
        preset["repeats"] = preset["eval_repeats"] = max(1, args.repeats)
    if args.budget is not None:
        preset["budget_s"] = args.budget
    setup_process(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_cuda else [])
    if "cuda" in devices:
        from training.train import pick_device
        pick_device("cuda")  # builds slayer's JIT kernels for this GPU's arch (slayer defaults to sm_80)
    machine = machine_info()
    settings = {"quick": args.quick, "sections": args.only, "threads": torch.get_num_threads(),
                "devices": devices, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in preset.items()}}
    log(f"benchmarks ({'quick' if args.quick else 'full'}): sections {args.only}, devices {devices}, "
        f"torch threads {torch.get_num_threads()}, CPU {machine['cpu_model']} x{machine['cpu_count']}, "
        f"load {machine['load_average_at_start']}; results -> {out_dir}")
    configs()  # resolves (and logs into notes) the conv-net input shape once
    write_json(out_dir, "machine.json", machine)

    train = lava = memory = kern = evalb = None
    if "kernels" in args.only:
        from benchmarks import bench_kernels
        log("== 0. the ILIF neuron alone: previous fused path vs torch path vs compiled kernel vs LIF loop ==")
        kern = bench_kernels.run(preset["kernel_steps"], devices, preset["warmup"], preset["repeats"],
                                 budget_s=preset["budget_s"])
        write_json(out_dir, "kernels.json", kern)
    if "train" in args.only:
        from benchmarks import bench_train
        log("== 1+2. training step: ILIF vs CUBA vs reference-style ILIF ==")
        train = bench_train.run(preset["train_steps"], devices, preset["warmup"], preset["repeats"],
                                budget_s=preset["budget_s"], quick=args.quick)
        write_json(out_dir, "train_speed.json", train)
    if "lava" in args.only:
        from benchmarks import bench_lava
        log("== 3+4. Lava per-step time (ILIF vs CUBA) and bit-exact eval throughput ==")
        lava = bench_lava.run(preset["lava_T"], preset["lava_samples"], preset["eval_samples"],
                              preset["eval_batch"], preset["eval_repeats"], devices, preset["lava_repeats"])
        write_json(out_dir, "lava_eval.json", lava)
    if "memory" in args.only:
        from benchmarks import bench_memory
        log("== 5. training peak memory vs T ==")
        memory = bench_memory.run(preset["memory_steps"], devices, args.threads,
                                  models=preset["memory_models"])
        write_json(out_dir, "memory.json", memory)

    if "eval" in args.only:
        from benchmarks import bench_eval
        log("== 6. VGG-11-BN evaluation: float vs bit-exact quantized ==")
        evalb = bench_eval.run(preset["vgg_batch"], preset["warmup"], preset["vgg_repeats"])
        write_json(out_dir, "eval_vgg11bn.json", evalb)

    machine["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    write_json(out_dir, "machine.json", machine)
    targets = evaluate_targets(train, lava, memory, kern, evalb)
    elapsed = time.perf_counter() - t_start
    write_json(out_dir, "summary.json", {"machine": machine, "settings": settings, "targets": targets,
                                         "elapsed_s": elapsed})
    path = write_summary(out_dir, machine, settings, targets, train, lava, memory, elapsed, kern, evalb)
    log(f"done in {elapsed:.0f} s; summary: {path}")
    for t in targets:
        log(f"  [{_pf(t['pass']):4}] {t['target']}: {t['measured_text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
