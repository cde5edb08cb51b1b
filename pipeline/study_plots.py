"""PNG plots of a study (``ilif-lava study``), all drawn from ``study['aggregates']`` (:func:`pipeline.study.aggregate`):
mean over seeds with the sample std as error bars / bands."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ilif_lava import atomic  # noqa: E402
from pipeline.study_format import format_value  # noqa: E402
from simulations.report import save_figure  # noqa: E402


def _save(fig, path: Path) -> str:
    """Write the figure at 72 dpi, PNG optimised (the study folders are committed: small files), and close it;
    written atomically (:mod:`ilif_lava.atomic`), so a link planted at ``path`` is replaced, never written
    through."""
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        save_figure(fig, fh, dpi=72, optimize=True)       # a file object: PNG (matplotlib's default format)
    return Path(path).name


def _label(r: Dict[str, Any], param: Any) -> str:
    return r["variant"] if param is None else f"{r['variant']} {param}={format_value(r['value'])}"


def _vs_param(agg: List[Dict[str, Any]], param: Any, keys: List[str], titles: List[str], ax_list) -> None:
    """One axis per metric: mean +- std per variant vs the swept value (bars per variant without a sweep)."""
    variants = list(dict.fromkeys(r["variant"] for r in agg))
    for ax, key, title in zip(ax_list, keys, titles):
        if any(r.get(key) is None for r in agg):      # e.g. the deployed accuracy of a network that cannot deploy
            ax.text(0.5, 0.5, f"{title}: not measured\n(network not deployable)", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_axis_off()
            continue
        if param is None:
            rows = [next(r for r in agg if r["variant"] == v) for v in variants]
            ax.bar(range(len(rows)), [r[key]["mean"] for r in rows], yerr=[r[key]["std"] for r in rows],
                   capsize=3, color="tab:blue", label=f"{title} (mean ± std over seeds)")
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels(variants, rotation=30)
            ax.set(xlabel="neuron variant", ylabel=title)
        else:
            for v in variants:
                rows = sorted((r for r in agg if r["variant"] == v), key=lambda r: r["value"])
                ax.errorbar([r["value"] for r in rows], [r[key]["mean"] for r in rows],
                            yerr=[r[key]["std"] for r in rows], marker="o", capsize=3, label=v)
            ax.set(xlabel=param, ylabel=title)
        ax.set_title(f"{title} vs {param or 'variant'}")
        ax.legend(fontsize=7)


def _panel_grid(n_layers: int):
    """A figure with one panel per spiking layer, 4 to a row: (figure, axes [rows, cols])."""
    cols = min(n_layers, 4)
    rows_n = -(-n_layers // cols)
    return plt.subplots(rows_n, cols, figsize=(3.0 * cols, 2.3 * rows_n), squeeze=False)


def _per_layer_panels(agg: List[Dict[str, Any]], param: Any, n_layers: int):
    """The paper's Figure 3/6 view: one panel per spiking layer, the continuous firing rate of each variant (and
    swept value) side by side, mean ± std over seeds; one legend for all panels."""
    fig, axs = _panel_grid(n_layers)
    for li, ax in enumerate(axs.flat):
        if li >= n_layers:
            ax.axis("off")
            continue
        for i, r in enumerate(agg):
            c = r["continuous_firing_rate_per_layer"]
            if li < len(c["mean"]):
                ax.bar(i, c["mean"][li], yerr=c["std"][li], capsize=2, color=f"C{i % 10}", label=_label(r, param))
        ax.set_xticks([])
        ax.set_title(f"layer {li}", fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    axs[0][0].legend(fontsize=6)
    fig.supylabel("continuous firing rate", fontsize=8)
    fig.suptitle("Continuous firing per layer (share of neurons firing on > T/2 steps; mean ± std over seeds)",
                 fontsize=9)
    return fig


def write_plots(study: Dict[str, Any], out: Path) -> List[str]:
    """Write the study's PNGs into ``out``; returns their file names."""
    agg, param = study["aggregates"], study["spec"]["sweep_param"]
    out = Path(out)
    names = []
    fig, axs = plt.subplots(1, 2, figsize=(10, 3.8))
    _vs_param(agg, param, ["float_accuracy", "deployed_accuracy"], ["float accuracy", "deployed accuracy"], axs)
    names.append(_save(fig, out / "accuracy.png"))

    fig, axs = plt.subplots(1, 3, figsize=(14, 3.8))
    _vs_param(agg, param, ["firing_rate", "continuous_firing_rate", "overactivation"],
              ["firing rate", "continuous firing rate", "share of H > 2 V_th"], axs)
    names.append(_save(fig, out / "firing.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    n_layers = max(len(r["continuous_firing_rate_per_layer"]["mean"]) for r in agg)
    w = 0.8 / len(agg)
    for i, r in enumerate(agg):
        c = r["continuous_firing_rate_per_layer"]
        ax.bar(np.arange(len(c["mean"])) - 0.4 + (i + 0.5) * w, c["mean"], w, yerr=c["std"], capsize=2,
               label=_label(r, param))
    ax.set_xticks(range(n_layers))
    ax.set(xlabel="layer", ylabel="continuous firing rate", title="Continuous firing per layer (deployed)")
    ax.legend(fontsize=6, ncol=2)
    names.append(_save(fig, out / "continuous_firing_per_layer.png"))

    names.append(_save(_per_layer_panels(agg, param, n_layers), out / "continuous_firing_panels.png"))

    fig, axs = _panel_grid(n_layers)
    for li, ax in enumerate(axs.flat):
        if li >= n_layers:
            ax.axis("off")
            continue
        for r in agg:          # a line and a band per row (errorbar artists made large grids slow to draw)
            if li >= len(r["spikes_per_step_per_layer"]):
                continue
            s = r["spikes_per_step_per_layer"][li]
            m, sd, t = np.asarray(s["mean"]), np.asarray(s["std"]), np.arange(len(s["mean"]))
            line, = ax.plot(t, m, marker=".", label=_label(r, param))
            ax.fill_between(t, m - sd, m + sd, alpha=0.15, color=line.get_color(), linewidth=0)
        ax.set_title(f"layer {li}", fontsize=8)
        ax.tick_params(labelsize=7)
    axs[0][0].legend(fontsize=6)
    fig.supxlabel("time step", fontsize=8)
    fig.supylabel("spikes per sample (layer total)", fontsize=8)
    fig.suptitle("Spikes per time step per layer (mean ± std over seeds)", fontsize=9)
    names.append(_save(fig, out / "spikes_per_step.png"))

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in agg:
        c = r["loss_curve"]
        m, sd = np.asarray(c["mean"]), np.asarray(c["std"])
        ep = np.arange(1, len(m) + 1)
        line, = ax.plot(ep, m, marker=".", label=_label(r, param))
        ax.fill_between(ep, m - sd, m + sd, alpha=0.15, color=line.get_color())
    ax.set(xlabel="epoch (float, then QAT)", ylabel="training loss", title="Training loss (mean ± std over seeds)")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    names.append(_save(fig, out / "loss_curves.png"))
    return names
