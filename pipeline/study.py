"""``ilif-lava study``: a grid of (neuron variant x seed x one swept parameter) trained and measured cell by cell.

Every cell trains with the named recipe (float, then QAT: :func:`training.train.train`), then evaluates on the
test split the float model and the deployed one (the bit-exact integer model, evaluated with the same function as
``ilif-lava compare``: :func:`pipeline.run.engine_spikes`), and records activity of the deployed model
(:func:`simulations.activity.network_activity`), the per-epoch training loss (``log.jsonl``) and the
overactivation share (:func:`overactivation`).

Folder layout of ``out``:
  cells/<cell>.json   one finished cell (written atomically; a cell whose file exists is never run again)
  study.json          the spec, every cell, and the aggregates (:func:`aggregate`)
  study.md            tables of mean +- std over seeds (from the same aggregates)
  *.png               plots (:mod:`pipeline.study_plots`)
Training folders (model.pt, checkpoint.pt, log.jsonl) go to ``work_dir/<cell>/`` (default ``out/train``); an
interrupted cell resumes from its last epoch checkpoint there.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import stat
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ilif_lava import atomic
from ilif_lava import fixed_point as fx
from pipeline.run import engine_spikes
from simulations.activity import network_activity
from training.datasets import load_split
from training.losses import predict
from training.train import TrainConfig, load_model, pick_device, read_training_log, train
from pipeline.study_format import format_value

VARIANTS = ("LIF", "MPIU", "CIU", "ILIF", "PLIF", "IPLIF")
# swept parameter -> where it goes in TrainConfig ("neuron": neuron_overrides[name]; else the field name)
SWEEPABLE = {"gamma": "neuron", "tau": "neuron", "kappa": "neuron", "T": "time_bins"}
# aggregated scalar metrics of a cell, in table order
METRICS = ("float_accuracy", "deployed_accuracy", "firing_rate", "continuous_firing_rate", "overactivation",
           "final_loss")
OVERACTIVATION_FACTOR = 2.0   # membrane potential above 2 x threshold (issue 13; ../shared/docs/field-anchors.md)


@dataclass
class StudySpec:
    """A study: the base training config (the recipe with the user's flags), the grid axes and the folders."""

    base: TrainConfig
    variants: List[str]
    seeds: List[int]
    sweep_param: Optional[str] = None
    sweep_values: List[float] = field(default_factory=list)
    out: Path = Path("runs/study")
    work_dir: Optional[Path] = None

    def values(self) -> List[Optional[float]]:
        return list(self.sweep_values) if self.sweep_param else [None]

    def cells(self) -> List[Tuple[str, int, Optional[float]]]:
        """(variant, seed, swept value) of every cell, in run order (value, then variant, then seed)."""
        return [(v, s, x) for x in self.values() for v in self.variants for s in self.seeds]

    def to_dict(self) -> Dict[str, Any]:
        return {"base": asdict(self.base), "variants": list(self.variants), "seeds": list(self.seeds),
                "sweep_param": self.sweep_param, "sweep_values": list(self.sweep_values)}


def cell_id(variant: str, seed: int, param: Optional[str], value: Optional[float]) -> str:
    """File-safe cell name, e.g. ``ILIF-gamma2-seed0``."""
    mid = "" if param is None else f"-{param}{format_value(value)}"
    return f"{variant}{mid}-seed{seed}"


def cell_config(base: TrainConfig, variant: str, seed: int, param: Optional[str],
                value: Optional[float]) -> TrainConfig:
    """The training config of one cell: ``base`` with the variant, the seed and the swept value set."""
    d = asdict(base)
    d.update(neuron=variant, seed=int(seed), neuron_overrides=dict(base.neuron_overrides))
    if param is not None:
        if SWEEPABLE[param] == "neuron":
            d["neuron_overrides"][param] = float(value)
        else:
            d[SWEEPABLE[param]] = int(value)
    cfg = TrainConfig(**d)
    cfg.validate()
    return cfg


def membrane_before_reset(states: Dict[str, np.ndarray], p: fx.ILIFParams) -> np.ndarray:
    """The membrane potential H each step compares with the threshold (after integration, before the soft reset
    and the MPIU inhibition), in integer state units: ``H[t] = saturate(decay(v[t-1]) + u[t] - max(c[t], 0))``,
    the ``h`` line of :func:`ilif_lava.fixed_point.ilif_step`, from the recorded states (v after both resets,
    current u, CIU c after its update). ``states[k]``: int [N, neurons, T]. Returns int64 [N, neurons, T]."""
    v = np.asarray(states["v"], dtype=np.int64)
    v_prev = np.concatenate([np.zeros_like(v[..., :1]), v[..., :-1]], axis=-1)
    rect = np.maximum(np.asarray(states["c"], dtype=np.int64), 0) if p.ciu else 0
    return np.asarray(fx.saturate(fx.decay(v_prev, p.v_decay) + np.asarray(states["u"], dtype=np.int64) - rect))


def overactivation(model: Any, states: Dict[int, Dict[str, np.ndarray]]) -> Dict[str, Any]:
    """Share of membrane-potential values H (sample, neuron, step) above 2 x threshold, per spiking layer and
    pooled over layers, in the deployed integer model. ``states``: layer -> recorded integer states
    [n, neurons, T] (:func:`pipeline.run.engine_spikes` with ``record=True``: its first batch)."""
    per, over, total = [], 0, 0
    for li, blk in enumerate(model.spiking_blocks()):
        if li not in states:
            raise ValueError(f"layer {li}: no recorded membrane states (neuron {type(blk.neuron).__name__})")
        p = blk.neuron.int_params
        n = states[li]["v"].shape[0]
        h = membrane_before_reset(states[li], p)
        limit = OVERACTIVATION_FACTOR * (int(p.vth_mant) << fx.VTH_SHIFT)
        k = int((h > limit).sum())
        per.append(k / h.size)
        over, total = over + k, total + h.size
    return {"per_layer": per, "overall": over / total if total else 0.0, "samples": int(n) if per else 0}


def run_cell(cfg: TrainConfig, train_dir: Path) -> Dict[str, Any]:
    """Train one cell (resuming from ``train_dir``'s checkpoint) and measure it; a JSON-able dict.

    Rates are spikes per neuron per step; ``layers[i]['spikes_per_step']`` is [T], spikes of the layer per test
    sample; ``overactivation`` uses the first test batch (up to 64 samples) whose states are recorded."""
    t0 = time.time()
    model_path = train(cfg, train_dir, resume=True, progress=False)
    t_train = time.time() - t0
    model = load_model(model_path)
    x, y = load_split(cfg.dataset, "test", time_bins=cfg.time_bins, data_dir=cfg.data_dir,
                      limit=cfg.limit_test).tensors()
    y = y.numpy()
    float_spikes, _ = engine_spikes(model, x, pick_device(cfg.device), quantized=False, record=False)
    quant_spikes, quant_states = engine_spikes(model, x, torch.device("cpu"), quantized=True, record=True)
    act = network_activity(model, x.numpy(), quant_spikes, cfg.neuron)
    over = overactivation(model, quant_states)
    log = read_training_log(Path(train_dir))
    return {
        "float_accuracy": float((predict(float_spikes[-1]) == y).mean()),
        "deployed_accuracy": float((predict(quant_spikes[-1]) == y).mean()),
        "firing_rate": act["firing_rate"],
        "continuous_firing_rate": act["continuous_firing_rate"],
        "overactivation": over["overall"],
        "final_loss": log[-1]["loss"] if log else math.nan,
        "layers": [{"layer": l["layer"], "neurons": l["neurons"], "firing_rate": l["firing_rate"],
                    "continuous_firing_rate": l["continuous_firing_rate"],
                    "spikes_per_step": l["spikes_per_step"], "overactivation": o}
                   for l, o in zip(act["layers"], over["per_layer"])],
        "overactivation_samples": over["samples"],
        "sop_energy_uj_per_sample": act["sop_energy_uj_per_sample"],
        "loss_curve": [{"epoch": r["epoch"], "phase": r["phase"], "loss": r["loss"],
                        "test_accuracy": r["test_accuracy"]} for r in log],
        "test_samples": int(len(y)), "train_wall_s": t_train, "wall_s": time.time() - t0,
    }


MAX_CELL_BYTES = 16 << 20      # a cell is a few KiB (T values per layer and epoch)
_UNIT = ("float_accuracy", "deployed_accuracy", "firing_rate", "continuous_firing_rate", "overactivation")


def check_cell(path: Path, cell: Any) -> None:
    """Validate a cell read back from ``path`` (written by :func:`run_study`, or by someone else): types, finite
    values and ranges of every field that the aggregates, tables and plots use. Rates and accuracies lie in
    [0, 1], losses, energies and wall times are finite and >= 0, spikes per step lie in [0, neurons] with one
    value per time step, the loss curve has epochs 1, 2, ... in order. One ``ValueError`` line naming the file
    and the key."""
    def bad(key: str, problem: str) -> ValueError:
        return ValueError(f"{path}: key {key!r} {problem}")

    def num(key: str, v: Any, lo: float = 0.0, hi: float = math.inf) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise bad(key, f"= {v!r} is not a finite number in [{lo:g}, {hi:g}]")
        return float(v)

    def integer(key: str, v: Any, lo: int = 0) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise bad(key, f"= {v!r} is not an integer >= {lo}")
        return v

    def obj(key: str, v: Any, kind: type) -> Any:
        if not isinstance(v, kind):
            raise bad(key, f"is a {type(v).__name__}, expected a {kind.__name__}")
        return v

    obj("(cell)", cell, dict)
    for k in ("id", "variant", "seed", "param", "value", "config", "metrics"):
        if k not in cell:
            raise ValueError(f"{path}: not a study cell file (key {k!r} missing)")
    obj("id", cell["id"], str)
    if cell["variant"] not in VARIANTS:
        raise bad("variant", f"= {cell['variant']!r} is not one of {', '.join(VARIANTS)}")
    integer("seed", cell["seed"])
    if cell["param"] is not None and cell["param"] not in SWEEPABLE:
        raise bad("param", f"= {cell['param']!r} is not one of {', '.join(SWEEPABLE)} or null")
    if (cell["param"] is None) != (cell["value"] is None):
        raise bad("value", "must be given exactly when 'param' is")
    if cell["value"] is not None:
        num("value", cell["value"], -math.inf)
    cfg = obj("config", cell["config"], dict)
    steps = integer("config.time_bins", cfg.get("time_bins"), 1)
    m = obj("metrics", cell["metrics"], dict)
    for k in _UNIT:
        num(f"metrics.{k}", m.get(k), 0.0, 1.0)
    for k in ("final_loss", "sop_energy_uj_per_sample", "train_wall_s", "wall_s"):
        num(f"metrics.{k}", m.get(k))
    integer("metrics.test_samples", m.get("test_samples"), 1)
    integer("metrics.overactivation_samples", m.get("overactivation_samples"))
    layers = obj("metrics.layers", m.get("layers"), list)
    if not layers:
        raise bad("metrics.layers", "is empty")
    for i, layer in enumerate(layers):
        key = f"metrics.layers[{i}]"
        obj(key, layer, dict)
        n = integer(f"{key}.neurons", layer.get("neurons"), 1)
        for k in ("firing_rate", "continuous_firing_rate", "overactivation"):
            num(f"{key}.{k}", layer.get(k), 0.0, 1.0)
        sps = obj(f"{key}.spikes_per_step", layer.get("spikes_per_step"), list)
        if len(sps) != steps:
            raise bad(f"{key}.spikes_per_step", f"has {len(sps)} values, expected one per time step ({steps})")
        for t, v in enumerate(sps):
            num(f"{key}.spikes_per_step[{t}]", v, 0.0, n)
    curve = obj("metrics.loss_curve", m.get("loss_curve"), list)
    for i, r in enumerate(curve):
        key = f"metrics.loss_curve[{i}]"
        obj(key, r, dict)
        if r.get("epoch") != i + 1 or isinstance(r.get("epoch"), bool):
            raise bad(f"{key}.epoch", f"= {r.get('epoch')!r}, expected {i + 1} (epochs in order, once each)")
        if r.get("phase") not in ("float", "qat"):
            raise bad(f"{key}.phase", f"= {r.get('phase')!r} is not 'float' or 'qat'")
        num(f"{key}.loss", r.get("loss"))
        num(f"{key}.test_accuracy", r.get("test_accuracy"), 0.0, 1.0)


def check_cell_ids(spec: StudySpec) -> None:
    """Refuse (one line naming ``--sweep``) swept values that give one cell id (e.g. 1.0000001 and 1.0000002 both
    format as ``1``): the study could never finish, each value overwriting the other's cell."""
    seen: Dict[str, Any] = {}
    for v in spec.values():
        name = format_value(v)
        if name in seen:
            raise ValueError(f"--sweep {spec.sweep_param}: values {seen[name]!r} and {v!r} both give cell ids "
                             f"'...-{spec.sweep_param}{name}-...'; use values that differ in 6 significant digits")
        seen[name] = v


@contextlib.contextmanager
def study_lock(out: Path) -> Iterator[None]:
    """Hold ``out/.study.lock`` (an exclusive ``flock``) while a study runs in ``out``; a second study on the same
    folder stops at once with one line naming it (two writers would interleave one cell's training log)."""
    lock = Path(out) / ".study.lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                     0o666)
    except OSError as exc:
        raise ValueError(f"{lock}: cannot open the study lock ({exc.strerror or exc})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{lock}: is not a regular file; cannot lock the study folder")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{out}: another 'ilif-lava study' is running on this folder (it holds {lock}); "
                             "wait for it or use another --out") from None
        yield
    finally:
        os.close(fd)


def _cell_path(spec: StudySpec, cid: str) -> Path:
    return Path(spec.out) / "cells" / f"{cid}.json"


def load_cell(path: Path, cfg: Optional[TrainConfig] = None,
              expect: Optional[Tuple[str, int, Optional[str], Optional[float]]] = None) -> Dict[str, Any]:
    """A finished cell's JSON, validated (:func:`check_cell`); with ``cfg``, refuses a cell
    trained with other settings; with ``expect`` = (variant, seed, param, value), a cell of another grid point.
    Every refusal is one ``ValueError`` line naming the file. A link out of the cells folder or a FIFO is refused
    before it is opened."""
    from ilif_lava.safe_read import read_regular
    path = Path(path)
    atomic.check_input(path, what="study cell")
    try:
        cell = json.loads(read_regular(path, MAX_CELL_BYTES, ValueError, "a study cell file").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a study cell file ({' '.join(str(exc).split())})") from None
    check_cell(path, cell)
    if expect is not None:
        got = (cell["variant"], cell["seed"], cell["param"], cell["value"])
        if got != tuple(expect) or cell["id"] != cell_id(*expect):
            raise ValueError(f"{path}: holds cell {cell['id']!r} ({got}), expected {cell_id(*expect)!r}")
    if cfg is not None and cell["config"] != asdict(cfg):
        diff = sorted(k for k in set(cell["config"]) | set(asdict(cfg))
                      if cell["config"].get(k) != asdict(cfg).get(k))
        raise ValueError(f"{path}: was written with other settings ({', '.join(diff)} differ); use a new --out "
                         "or delete the file")
    return cell


def run_study(spec: StudySpec, train_cells: bool = True, progress: bool = True) -> Dict[str, Any]:
    """Run every unfinished cell of ``spec`` (unless ``train_cells`` is False), then write study.json, study.md
    and the plots from all finished cells. Returns the study dict (``trained``/``skipped``/``missing`` counts)."""
    out = Path(spec.out)
    check_cell_ids(spec)
    out.mkdir(parents=True, exist_ok=True)
    with study_lock(out):
        return _run_study(spec, out, train_cells, progress)


def _run_study(spec: StudySpec, out: Path, train_cells: bool, progress: bool) -> Dict[str, Any]:
    if (out / "cells").is_symlink():
        raise ValueError(f"{out / 'cells'}: is a symbolic link; the cells of a study live in its own folder")
    (out / "cells").mkdir(exist_ok=True)
    work = Path(spec.work_dir) if spec.work_dir else out / "train"
    grid = spec.cells()
    cells, trained, skipped, missing = [], 0, 0, []
    t_start = time.time()
    for i, (variant, seed, value) in enumerate(grid, 1):
        cid = cell_id(variant, seed, spec.sweep_param, value)
        cfg = cell_config(spec.base, variant, seed, spec.sweep_param, value)
        path = _cell_path(spec, cid)
        head = f"[{i}/{len(grid)}] {cid}"
        if path.exists() or path.is_symlink():
            cells.append(load_cell(path, cfg, (variant, seed, spec.sweep_param, value)))
            skipped += 1
            if progress:
                print(f"{head}: done before, skipped", flush=True)
            continue
        if not train_cells:
            missing.append(cid)
            continue
        metrics = run_cell(cfg, work / cid)
        cell = {"id": cid, "variant": variant, "seed": int(seed), "param": spec.sweep_param, "value": value,
                "config": asdict(cfg), "metrics": metrics}
        atomic.write_json(path, cell, separators=(",", ":"))
        cells.append(cell)
        trained += 1
        if progress:
            print(f"{head}: float {metrics['float_accuracy']:.3f} deployed {metrics['deployed_accuracy']:.3f} "
                  f"firing {metrics['firing_rate']:.4f} cont. {metrics['continuous_firing_rate']:.4f} "
                  f"over-2th {metrics['overactivation']:.4f} loss {metrics['final_loss']:.4f} "
                  f"({metrics['wall_s']:.0f} s)", flush=True)
    study = {"spec": spec.to_dict(), "cells": cells, "aggregates": aggregate(cells),
             "trained": trained, "skipped": skipped, "missing": missing, "wall_s_this_run": time.time() - t_start,
             "cell_wall_s_total": sum(c["metrics"]["wall_s"] for c in cells)}
    write_outputs(study, out)
    if progress:
        print(f"study: {trained} cells trained, {skipped} skipped (done before)"
              + (f", {len(missing)} not run yet" if missing else "") + f"; results in {out}", flush=True)
    return study


# ---------------------------------------------------------------------------------------------------------
# aggregates: the one computation behind study.json and study.md
# ---------------------------------------------------------------------------------------------------------
def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value) of ``values``."""
    vals = [float(v) for v in values]
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}


def _columns(rows: Sequence[Sequence[float]]) -> Dict[str, List[float]]:
    """Per-position mean and std of equally long rows (e.g. one per seed): {'mean': [...], 'std': [...]}."""
    stats = [mean_std(col) for col in zip(*rows)]
    return {"mean": [s["mean"] for s in stats], "std": [s["std"] for s in stats]}


def aggregate(cells: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Group cells by (variant, swept value) and give mean +- std over seeds of every metric, per-layer
    continuous firing / firing / overactivation, spikes per step per layer [layer][T] and the loss curve per
    epoch. Groups keep the order the cells come in."""
    groups: Dict[Tuple[str, Any], List[Dict[str, Any]]] = {}
    for c in cells:
        groups.setdefault((c["variant"], c["value"]), []).append(c)
    rows = []
    for (variant, value), cs in groups.items():
        ms = [c["metrics"] for c in cs]
        row: Dict[str, Any] = {"variant": variant, "param": cs[0]["param"], "value": value,
                               "seeds": [c["seed"] for c in cs]}
        for k in METRICS:
            row[k] = mean_std([m[k] for m in ms])
        for k in ("firing_rate", "continuous_firing_rate", "overactivation"):
            row[f"{k}_per_layer"] = _columns([[l[k] for l in m["layers"]] for m in ms])
        row["spikes_per_step_per_layer"] = [_columns([m["layers"][li]["spikes_per_step"] for m in ms])
                                            for li in range(len(ms[0]["layers"]))]
        row["loss_curve"] = _columns([[r["loss"] for r in m["loss_curve"]] for m in ms])
        rows.append(row)
    return rows


def pm(stat: Dict[str, float]) -> str:
    """'mean ± std' with 4 significant digits (the table format)."""
    return f"{stat['mean']:.4g} ± {stat['std']:.4g}"


METRIC_TITLES = {"float_accuracy": "float acc", "deployed_accuracy": "deployed acc", "firing_rate": "firing rate",
                 "continuous_firing_rate": "continuous firing", "overactivation": "H > 2 V_th",
                 "final_loss": "final loss"}


def study_markdown(study: Dict[str, Any], plots: Sequence[str] = ()) -> str:
    """study.md from ``study['aggregates']``: main table, per-layer continuous firing, pivots over the sweep."""
    spec, agg = study["spec"], study["aggregates"]
    b = spec["base"]
    param = spec["sweep_param"]
    lines = [f"# Study: {', '.join(spec['variants'])} on {b['dataset']} ({b['arch']})", "",
             f"Seeds {', '.join(map(str, spec['seeds']))}; "
             + (f"swept {param} = {', '.join(format_value(v) for v in spec['sweep_values'])}; " if param else "")
             + (f"T = {b['time_bins']}, " if param != "T" else "") + f"{b['epochs']} float + {b['qat_epochs']} QAT epochs, batch {b['batch_size']}, "
               f"lr {b['lr']}, {b['optimizer']}, loss {b['loss']}, hidden {b['hidden']}, "
               f"train samples {b['limit_train'] or 'all'}, test samples {b['limit_test'] or 'all'}; "
               f"neuron overrides {json.dumps(b['neuron_overrides'])}.", "",
             "Mean ± sample std (ddof 1) over seeds. Deployed = the bit-exact integer model (the Lava fixed_pt "
             "twin) on the test split; firing rates, continuous firing (share of (sample, neuron) pairs firing on "
             "more than half of the steps) and H > 2 V_th (share of membrane-potential values, before reset, above "
             "twice the threshold; first test batch of up to 64 samples) are of the deployed model; final loss = "
             "training loss of the last (QAT) epoch.", ""]
    head = ["variant"] + ([param] if param else []) + [METRIC_TITLES[k] for k in METRICS] + ["seeds"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in agg:
        cells = [r["variant"]] + ([format_value(r["value"])] if param else []) + [pm(r[k]) for k in METRICS]
        lines.append("| " + " | ".join(cells + [str(len(r["seeds"]))]) + " |")
    if param:
        variants = list(dict.fromkeys(r["variant"] for r in agg))
        for k in ("deployed_accuracy", "firing_rate", "continuous_firing_rate", "overactivation"):
            lines += ["", f"### {METRIC_TITLES[k]} vs {param}", "",
                      "| " + " | ".join([param] + variants) + " |", "|" + "---|" * (len(variants) + 1)]
            for v in spec["sweep_values"]:
                by = {r["variant"]: r for r in agg if r["value"] == v}
                lines.append("| " + " | ".join([format_value(v)] + [pm(by[x][k]) if x in by else "-"
                                                                     for x in variants]) + " |")
    n_layers = max((len(r["continuous_firing_rate_per_layer"]["mean"]) for r in agg), default=0)
    lines += ["", "### Continuous firing per layer (deployed)", "",
              "| " + " | ".join(["variant"] + ([param] if param else []) + [f"layer {i}" for i in range(n_layers)])
              + " |", "|" + "---|" * (n_layers + 1 + bool(param))]
    for r in agg:
        c = r["continuous_firing_rate_per_layer"]
        lines.append("| " + " | ".join([r["variant"]] + ([format_value(r["value"])] if param else [])
                                       + [pm({"mean": m, "std": s}) for m, s in zip(c["mean"], c["std"])]) + " |")
    if study.get("missing"):
        lines += ["", f"Not run yet: {', '.join(study['missing'])}."]
    lines += ["", f"Cells: {len(study['cells'])}; summed cell wall time {study['cell_wall_s_total']:.0f} s."]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_outputs(study: Dict[str, Any], out: Path) -> None:
    """study.json, the PNG plots and study.md (atomic writes)."""
    from pipeline.study_plots import write_plots
    out = Path(out)
    plots = write_plots(study, out) if study["cells"] else []
    atomic.write_json(out / "study.json", study, separators=(",", ":"))
    atomic.write_text(out / "study.md", study_markdown(study, plots))
