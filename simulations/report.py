"""Write the comparison report folder: report.json, report.md and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ilif_lava import atomic, kernels  # noqa: E402


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _plots(r: Dict[str, Any], out: Path) -> List[str]:
    names = []
    sq, fq = r["spikes"]["quantized_vs_lava"], r["spikes"]["float_vs_quantized"]
    layers = [row["layer"] for row in sq]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    w = 0.25
    ax.bar(np.array(layers) - w, [row["firing_rate_a"] for row in fq], w, label="float")
    ax.bar(np.array(layers), [row["firing_rate_a"] for row in sq], w, label="quantized")
    ax.bar(np.array(layers) + w, [row["firing_rate_b"] for row in sq], w, label="Lava fixed_pt")
    if "baseline" in r:
        base = [l["firing_rate"] for l in r["baseline"]["activity"]["layers"]]
        ax.plot(layers[:len(base)], base, "k^--", label=f"{r['baseline']['neuron']} baseline (quantized)")
    ax.set_xticks(layers)
    ax.set(xlabel="layer", ylabel="firing rate", title="Firing rate per layer")
    ax.legend(fontsize=8)
    names.append(_save(fig, out / "firing_rate_per_layer.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for l in r["activity"]["layers"]:
        ax.plot(l["spikes_per_step"], label=f"layer {l['layer']} ({r['config']['neuron']})")
    if "baseline" in r:
        for l in r["baseline"]["activity"]["layers"]:
            ax.plot(l["spikes_per_step"], "--", label=f"layer {l['layer']} ({r['baseline']['neuron']})")
    ax.set(xlabel="time step", ylabel="spikes per sample", title="Spikes per time step (deployed network)")
    ax.legend(fontsize=7)
    names.append(_save(fig, out / "spikes_per_step.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for row in sq:
        ax.plot(row["agreement_per_step"], label=f"quant vs Lava, layer {row['layer']}")
    for row in fq:
        ax.plot(row["agreement_per_step"], "--", label=f"float vs quant, layer {row['layer']}")
    ax.set(xlabel="time step", ylabel="spike agreement", ylim=(0, 1.02), title="Spike agreement per time step")
    ax.legend(fontsize=7)
    names.append(_save(fig, out / "spike_agreement_per_step.png"))

    hist = r.get("state_error_lsb_float_vs_fixed") or {}
    if hist:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        k = len(hist)
        for j, (name, h) in enumerate(hist.items()):
            x = np.arange(len(h["counts"]))
            ax.bar(x + (j - k / 2) * 0.2, h["counts"], 0.2, label=name)
        edges = next(iter(hist.values()))["bin_edges_lsb"]
        ax.set_xticks(range(len(edges) - 1))
        ax.set_xticklabels([f"[{int(a)},{int(b) if b < 1e9 else 'inf'})" for a, b in zip(edges, edges[1:])],
                           rotation=45, fontsize=7)
        ax.set(ylabel="count", yscale="log", title="|float x 4096 - fixed| (LSB) per state")
        ax.legend(fontsize=8)
        names.append(_save(fig, out / "state_error_lsb.png"))

    log = r.get("training_log") or []
    if log:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ep = [e["epoch"] for e in log]
        ax.plot(ep, [e["loss"] for e in log], "o-", label="train loss")
        ax2 = ax.twinx()
        ax2.plot(ep, [e["test_accuracy"] for e in log], "s-", color="tab:green", label="test accuracy")
        ax.set(xlabel="epoch", ylabel="loss", title="Training (float, then QAT)")
        ax2.set_ylabel("test accuracy")
        names.append(_save(fig, out / "training_curves.png"))
    return names


def _kernels_text(info: Dict[str, Any]) -> str:
    used = info.get("last_used") or {}
    if not used:
        return "none recorded"
    return ", ".join(f"{path} `{name}`" for path, name in sorted(used.items())) + \
        f" (requested `{info.get('requested', 'auto')}`, {info.get('threads', '?')} torch threads)"


def _md(r: Dict[str, Any], plots: List[str], check_markdown: str) -> str:
    acc, pa = r["accuracy"], r["prediction_agreement"]
    lines = [f"# ilif-lava report: {r['config']['neuron']} {r['config']['arch']} on {r['config']['dataset']}",
             "", f"{r['samples']} test samples, T = {r['time_steps']}; float engine on `{r['device_float']}`; "
             f"Lava CPU fixed_pt wall time {r['lava_wall_s']:.1f} s. ILIF kernels that ran in this process: "
             f"{_kernels_text(r.get('kernels', {}))}.", "",
             "## Accuracy and prediction agreement", "",
             "| engine | accuracy |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in acc.items()]
    lines += ["", "| pair | prediction agreement |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.4f} |" for k, v in pa.items()]
    lines += ["", "## Spikes per layer", "",
              "| layer | quant vs Lava mismatches | agreement | float vs quant mismatches | agreement | "
              "rate float | rate quant | rate Lava |", "|---|---|---|---|---|---|---|---|"]
    for a, b in zip(r["spikes"]["quantized_vs_lava"], r["spikes"]["float_vs_quantized"]):
        lines.append(f"| {a['layer']} | {a['mismatches']} | {a['agreement']:.6f} | {b['mismatches']} | "
                     f"{b['agreement']:.6f} | {b['firing_rate_a']:.4f} | {a['firing_rate_a']:.4f} | "
                     f"{a['firing_rate_b']:.4f} |")
    lines += ["", "## First divergence", ""]
    for k, d in r["first_divergence"].items():
        if d is None:
            lines.append(f"- {k.replace('_', ' ')}: none (identical)")
        else:
            lines.append(f"- {k.replace('_', ' ')}: layer {d['layer']}, time step {d['time_step']}, sample "
                         f"{d['sample']}, neuron {d['neuron']}, in `{d['what']}` ({d['value_a']} vs {d['value_b']})")
    hist = r.get("state_error_lsb_float_vs_fixed") or {}
    if hist:
        lines += ["", f"## State error float vs fixed ({r['state_samples']} samples, LSB = 1/4096 threshold)", "",
                  "| state | max | mean | median |", "|---|---|---|---|"]
        lines += [f"| {k} | {h['max_lsb']:.1f} | {h['mean_lsb']:.2f} | {h['median_lsb']:.1f} |" for k, h in hist.items()]
    a = r["activity"]
    lines += ["", "## Activity and SOP energy (deployed network, per sample)", "",
              "| network | firing rate | continuous firing rate | ACs | MACs | SOP energy (uJ) |",
              "|---|---|---|---|---|---|",
              f"| {r['config']['neuron']} (Lava) | {a['firing_rate']:.4f} | {a['continuous_firing_rate']:.4f} | "
              f"{a['acs_per_sample']:.0f} | {a['macs_per_sample']} | {a['sop_energy_uj_per_sample']:.4f} |"]
    if "baseline" in r:
        b = r["baseline"]["activity"]
        lines.append(f"| {r['baseline']['neuron']} baseline (quantized, acc {r['baseline']['accuracy_quantized']:.4f}) | "
                     f"{b['firing_rate']:.4f} | {b['continuous_firing_rate']:.4f} | {b['acs_per_sample']:.0f} | "
                     f"{b['macs_per_sample']} | {b['sop_energy_uj_per_sample']:.4f} |")
    lines += ["", "## Loihi 2 checks and resource estimate", "", check_markdown, "", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(report: Dict[str, Any], out_dir: Path, check_markdown: str = "") -> Path:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(report, out)
    report["plots"] = plots
    report.setdefault("kernels", kernels.describe())
    atomic.write_text(out / "report.json", json.dumps(report, indent=2, default=float))
    atomic.write_text(out / "report.md", _md(report, plots, check_markdown))
    return out
