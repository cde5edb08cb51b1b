"""Write the comparison report folder: report.json, report.md and PNG plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from ilif_lava import atomic, kernels  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 110, optimize: bool = False) -> str:
    """Lay out, write (PNG at ``dpi``; ``optimize``: smaller file) and close ``fig``; returns the file name."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, pil_kwargs={"optimize": True} if optimize else None)
    plt.close(fig)
    return path.name



def _firing_plot(r: Dict[str, Any], out: Path) -> str:
    sq, fq = r["spikes"]["quantized_vs_lava"], r["spikes"]["float_vs_quantized"]
    if "readout" in r:                    # the integer readout's values are not spikes
        sq, fq = sq[:-1], fq[:-1]
    layers = np.array([row["layer"] for row in sq])
    series = [("float", [row["firing_rate_a"] for row in fq]), ("quantized", [row["firing_rate_a"] for row in sq]),
              ("Lava fixed_pt", [row["firing_rate_b"] for row in sq])]
    if "baseline" in r:
        base = [l["firing_rate"] for l in r["baseline"]["activity"]["layers"]][:len(layers)]
        series.append((f"{r['baseline']['neuron']} baseline (quantized)", base))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    w = 0.8 / len(series)
    for j, (label, vals) in enumerate(series):
        ax.bar(layers[:len(vals)] + (j - (len(series) - 1) / 2) * w, vals, w, label=label,
               hatch="//" if "baseline" in label else None)
    ax.set_xticks(layers)
    ax.set(xlabel="layer", ylabel="firing rate (spikes / neuron / step)",
           title=f"Firing rate per layer ({r['config']['neuron']})")
    ax.legend(fontsize=8)
    return save_figure(fig, out / "firing_rate_per_layer.png")


def _mismatch_plot(r: Dict[str, Any], out: Path) -> str:
    """Mismatching spikes per layer and time step on a symmetric-log count axis, so 0 and 1 both show."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    totals = []
    for pair, style in (("quantized_vs_lava", "-"), ("float_vs_quantized", "--")):
        for row in r["spikes"][pair]:
            per = row["mismatches_per_step"]
            ax.step(range(len(per)), per, style, where="mid",
                    label=f"{pair.replace('_vs_', ' vs ').replace('_', ' ')}, layer {row['layer']} "
                          f"({row['mismatches']} total)")
            totals.append(max(per) if per else 0)
    ax.set_yscale("symlog", linthresh=1)
    ax.set_ylim(0, 10 * max(1, max(totals or [0])))
    ax.set(xlabel="time step", ylabel="mismatching spikes (count, all samples)",
           title="Spike mismatches per time step")
    if not any(totals):
        ax.text(0.5, 0.5, "0 mismatches in every layer and step", transform=ax.transAxes, ha="center")
    ax.legend(fontsize=7)
    return save_figure(fig, out / "spike_mismatches_per_step.png")


def _training_plot(r: Dict[str, Any], out: Path) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax2 = ax.twinx()
    runs = [(r["config"]["neuron"], r.get("training_log") or [], "-")]
    if r.get("baseline", {}).get("training_log"):
        runs.append((f"{r['baseline']['neuron']} baseline", r["baseline"]["training_log"], ":"))
    handles = []
    for name, log, style in runs:
        ep = [e["epoch"] for e in log]
        handles += ax.plot(ep, [e["loss"] for e in log], "o" + style, color="tab:blue", label=f"{name} train loss")
        handles += ax2.plot(ep, [e["test_accuracy"] for e in log], "s" + style, color="tab:green",
                            label=f"{name} test accuracy")
    qat = [e["epoch"] for e in runs[0][1] if e.get("phase") == "qat"]
    if qat:
        handles.append(ax.axvline(min(qat) - 0.5, color="gray", linestyle="--", label="QAT starts"))
    ax.set(xlabel="epoch", ylabel="training loss", title="Training (float, then quantization-aware)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.set_ylabel("test accuracy (model as trained)")
    ax.legend(handles=handles, fontsize=7, loc="center right")
    return save_figure(fig, out / "training_curves.png")


def _plots(r: Dict[str, Any], out: Path) -> List[str]:
    names = [_firing_plot(r, out)]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for l in r["activity"]["layers"]:
        ax.plot(l["spikes_per_step"], label=f"layer {l['layer']} ({r['config']['neuron']})")
    if "baseline" in r:
        for l in r["baseline"]["activity"]["layers"]:
            ax.plot(l["spikes_per_step"], "--", label=f"layer {l['layer']} ({r['baseline']['neuron']})")
    ax.set(xlabel="time step", ylabel="spikes per sample", title="Spikes per time step (deployed network)")
    ax.legend(fontsize=7)
    names.append(save_figure(fig, out / "spikes_per_step.png"))
    names.append(_mismatch_plot(r, out))

    hist = r.get("state_error_lsb_float_vs_fixed") or {}
    if hist:
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        k = len(hist)
        for j, (name, h) in enumerate(hist.items()):
            x = np.arange(len(h["counts"]))
            ax.bar(x + (j - k / 2) * 0.2, h["counts"], 0.2, label=name)
        edges = next(iter(hist.values()))["bin_edges_lsb"]
        ax.set_xticks(range(len(edges) - 1))
        ax.set_xticklabels([f"[{int(a)},{int(b) if b < 1e9 else 'inf'})" for a, b in zip(edges, edges[1:])],
                           rotation=45, fontsize=7)
        ax.set(xlabel="|float x 4096 - fixed| (LSB = 1/4096 threshold)", ylabel="state values (count)",
               yscale="log", title="State error float vs fixed point, per state")
        ax.legend(fontsize=8, title="state")
        names.append(save_figure(fig, out / "state_error_lsb.png"))

    if r.get("training_log"):
        names.append(_training_plot(r, out))
    return names


def _kernels_text(info: Dict[str, Any]) -> str:
    used = info.get("last_used") or {}
    if not used:
        return "none recorded"
    return ", ".join(f"{path} `{name}`" for path, name in sorted(used.items())) + \
        f" (requested `{info.get('requested', 'auto')}`, {info.get('threads', '?')} torch threads)"


def _accuracy_lines(acc: Dict[str, float], agreement: Dict[str, float]) -> List[str]:
    """The report's "Accuracy and prediction agreement" section (markdown lines): accuracy per engine, agreement
    per pair of engines."""
    return (["## Accuracy and prediction agreement", "", "| engine | accuracy |", "|---|---|"]
            + [f"| {k} | {v:.4f} |" for k, v in acc.items()]
            + ["", "| pair | prediction agreement |", "|---|---|"]
            + [f"| {k.replace('_', ' ')} | {v:.4f} |" for k, v in agreement.items()])


def _md(r: Dict[str, Any], plots: List[str], check_markdown: str) -> str:
    acc, pa = r["accuracy"], r["prediction_agreement"]
    lines = [f"# ilif-lava report: {r['config']['neuron']} {r['config']['arch']} on {r['config']['dataset']}",
             "", f"Data: {r.get('data_description', 'the run configuration test split')}.", "",
             f"{r['samples']} test samples, T = {r['time_steps']}; float engine on `{r['device_float']}`; "
             f"Lava CPU fixed_pt wall time {r['lava_wall_s']:.1f} s. ILIF kernels that ran in this process: "
             f"{_kernels_text(r.get('kernels', {}))}.", "",
             *_accuracy_lines(acc, pa)]
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
    lines += ["", "## Loihi 2 checks and resource estimate", "", check_markdown, ""]
    if "loihi2_cost" in r:                         # simulations/cost.py (issue 21): estimate from measured activity
        from simulations.cost import cost_markdown
        c = r["loihi2_cost"]
        lines += [f"## Loihi 2 cost (estimate)\n\nnot estimated: {c['error']}\n" if "error" in c else cost_markdown(c)]
    if "neurobench" in r:                          # simulations/neurobench_metrics.py: float vs deployed
        from simulations.neurobench_metrics import neurobench_markdown
        lines += [neurobench_markdown(r["neurobench"])]
    if "gold_pack" in r:
        lines += [_gold_markdown(r["gold_pack"])]
    lines += ["## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


GOLD_MANIFEST_MAX_BYTES = 1 << 20


def gold_pack_summary(folder: Path) -> Dict[str, Any]:
    """What ``<folder>/gold/`` (the ``ilif-lava gold`` pack of this run or evaluation) holds: ``present``, and
    from its manifest (read bounded, no links followed) samples, steps, state samples and file count. The files
    themselves are verified by ``ilif-lava gold --check``, not here."""
    path = Path(folder) / "gold" / "manifest.json"
    info: Dict[str, Any] = {"folder": str(path.parent), "present": False}
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > GOLD_MANIFEST_MAX_BYTES:
            return info
        m = json.loads(path.read_text(encoding="utf-8"))
        info.update(present=True, samples=int(m["samples"]), steps=int(m["steps"]),
                    state_samples=int(m.get("state_samples", 0)), files=len(m["files"]))
    except (OSError, ValueError, KeyError, TypeError):
        info.update(present=True, error="manifest.json unreadable; run 'ilif-lava gold --check'")
    return info


def _gold_markdown(g: Dict[str, Any]) -> str:
    lines = ["## Gold-vector pack", ""]
    if not g.get("present"):
        lines.append(f"not written yet: `ilif-lava gold RUN` writes `{g['folder']}` (input, every layer's Lava "
                     f"spikes and states, manifest, `test_gold.py`); `ilif-lava gold --check RUN` replays it.")
    elif "error" in g:
        lines.append(f"`{g['folder']}`: {g['error']}.")
    else:
        lines.append(f"`{g['folder']}`: {g['samples']} samples x {g['steps']} steps, states of "
                     f"{g['state_samples']} samples, {g['files']} files (SHA-256 in manifest.json); "
                     f"`ilif-lava gold --check RUN` replays it in Lava.")
    return "\n".join(lines) + "\n"


def write_report(report: Dict[str, Any], out_dir: Path, check_markdown: str = "") -> Path:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.setdefault("gold_pack", gold_pack_summary(out.parent))
    plots = _plots(report, out)
    report["plots"] = plots
    report.setdefault("kernels", kernels.describe())
    atomic.write_text(out / "report.json", json.dumps(report, indent=2, default=float))
    atomic.write_text(out / "report.md", _md(report, plots, check_markdown))
    return out


def write_lava_report(net_path: Path, data: Any, labels: np.ndarray, pred: np.ndarray, spikes: List[np.ndarray],
                      wall_s: float, out_dir: Path) -> Path:
    """Report of a bare netx file run in Lava (no float model to compare with): the data used (``data`` an
    :class:`pipeline.evaluation.EvalData`-like object with ``to_dict``/``describe``), accuracy, firing rate per
    layer ([N, neurons, T] spikes) and the Lava wall time. Writes ``report.json`` and ``report.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels, pred = np.asarray(labels), np.asarray(pred)
    layers = [{"layer": i, "neurons": int(s.shape[1]), "firing_rate": float(np.asarray(s).mean()),
               "spikes_per_sample": float(np.asarray(s).sum() / max(1, s.shape[0]))} for i, s in enumerate(spikes)]
    rep = {"network": str(Path(net_path).absolute()), "data": data.to_dict(), "data_description": data.describe(),
           "accuracy": {"lava": float((pred == labels).mean()) if len(labels) else float("nan")},
           "samples": int(len(labels)), "time_steps": int(spikes[0].shape[-1]) if spikes else 0,
           "lava_wall_s": float(wall_s), "layers": layers, "kernels": kernels.describe()}
    lines = [f"# ilif-lava report: {Path(net_path).name} in Lava fixed_pt", "",
             f"Data: {data.describe()}.", "",
             f"Network file `{rep['network']}`, no trained run folder, so no float or quantized model to compare "
             f"with: Lava's results alone. Lava CPU fixed_pt wall time {wall_s:.1f} s.", "",
             f"Accuracy (Lava fixed_pt): {rep['accuracy']['lava']:.4f} on {rep['samples']} samples.", "",
             "| layer | neurons | firing rate | spikes per sample |", "|---|---|---|---|"]
    lines += [f"| {l['layer']} | {l['neurons']} | {l['firing_rate']:.4f} | {l['spikes_per_sample']:.1f} |"
              for l in layers]
    atomic.write_text(out / "report.json", json.dumps(rep, indent=2, default=float))
    atomic.write_text(out / "report.md", "\n".join(lines) + "\n")
    return out


def write_engines_report(report: Dict[str, Any], out_dir: Path) -> Path:
    """Report of a trained run evaluated without Lava (the run has no ``network.net``): ``report`` holds config,
    data, accuracy and prediction agreement of the float and quantized engines, spikes per layer float vs quantized
    (:func:`simulations.compare.spike_agreement` rows), the first divergence and ``lava = {'ran': False,
    'reason': ...}``. Writes ``report.json`` and ``report.md`` into ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report.setdefault("kernels", kernels.describe())
    cfg, acc = report["config"], report["accuracy"]
    lines = [f"# ilif-lava report: {cfg['neuron']} {cfg['arch']} on {cfg['dataset']} (float and quantized engines)",
             "", f"Data: {report['data_description']}.", "",
             f"{report['samples']} test samples, T = {report['time_steps']}; float engine on "
             f"`{report['device_float']}`, quantized (bit-exact integer) engine on the CPU. ILIF kernels that ran in "
             f"this process: {_kernels_text(report['kernels'])}.", "",
             f"**Lava was not run**: {report['lava']['reason']}.", "",
             *_accuracy_lines(acc, report["prediction_agreement"])]
    lines += ["", "## Spikes per layer", "", "| layer | float vs quant mismatches | agreement | rate float | "
              "rate quant |", "|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['mismatches']} | {r['agreement']:.6f} | {r['firing_rate_a']:.4f} | "
              f"{r['firing_rate_b']:.4f} |" for r in report["spikes"]["float_vs_quantized"]]
    d = report["first_divergence"]["float_vs_quantized"]
    lines += ["", "## First divergence", "",
              "- float vs quantized: " + ("none (identical)" if d is None else
                                          f"layer {d['layer']}, time step {d['time_step']}, sample {d['sample']}, "
                                          f"neuron {d['neuron']} ({d['value_a']} vs {d['value_b']})")]
    atomic.write_text(out / "report.json", json.dumps(report, indent=2, default=float))
    atomic.write_text(out / "report.md", "\n".join(lines) + "\n")
    return out
