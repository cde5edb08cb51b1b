"""``ilif-lava study``: a grid of (neuron variant x seed x one swept parameter) trained and measured cell by cell.

Every cell trains with the named recipe (float, then QAT: :func:`training.train.train`), then evaluates on the
test split the float model and the deployed one (the bit-exact integer model, evaluated with the same function as
``ilif-lava compare``: :func:`pipeline.run.engine_spikes`), and records activity of the deployed model
(:func:`simulations.activity.network_activity`: firing, continuous firing and spikes per step per layer, ACs, MACs,
SOP energy), the per-epoch training loss (``log.jsonl``) and the overactivation share (:func:`overactivation`).
Every network built here deploys; a cell marked not deployable (``metrics.deployable`` False, a cell written
elsewhere) is shown with "not deployable" and float activity (``metrics.activity_of``).

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
from ilif_lava.names import VARIANTS
from pipeline.run import engine_spikes
from simulations.activity import network_activity
from training.datasets import load_split
from training.losses import predict_output
from training.train import TrainConfig, load_model, pick_device, read_training_log, train
from pipeline.study_format import format_value

# swept parameter -> where it goes in TrainConfig ("neuron": neuron_overrides[name]; else the field name)
SWEEPABLE = {"gamma": "neuron", "tau": "neuron", "kappa": "neuron", "T": "time_bins"}
# aggregated scalar metrics of a cell, in table order
METRICS = ("float_accuracy", "deployed_accuracy", "firing_rate", "continuous_firing_rate", "overactivation",
           "final_loss")
# the paper's Table 5 columns, per test sample (absent from cells written before they were measured)
ENERGY = ("acs_per_sample", "macs_per_sample", "sop_energy_uj_per_sample")
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


def membrane_before_reset_float(states: Dict[str, np.ndarray], neuron: Any) -> np.ndarray:
    """The float twin of :func:`membrane_before_reset` (threshold units): ``H[t] = lam V[t-1] + I[t] - ReLU(C[t])``,
    the charge step of :meth:`ilif_lava.neuron.Neuron.reference_dynamics`, from its recorded float states (``u``
    = I, ``v`` after both resets, ``c``), with the neuron's own leak ``lam``. Returns float64 [N, neurons, T]."""
    v = np.asarray(states["v"], dtype=np.float64)
    v_prev = np.concatenate([np.zeros_like(v[..., :1]), v[..., :-1]], axis=-1)
    lam = float(neuron.lam.detach().cpu().reshape(-1)[0])
    rect = np.maximum(np.asarray(states["c"], dtype=np.float64), 0.0) if neuron.flags["ciu"] else 0.0
    return lam * v_prev + np.asarray(states["u"], dtype=np.float64) - rect


def overactivation(model: Any, states: Dict[int, Dict[str, np.ndarray]], quantized: bool = True) -> Dict[str, Any]:
    """Share of membrane-potential values H (sample, neuron, step) above 2 x threshold, per spiking layer and
    pooled over layers, in the deployed integer model (``quantized``; else in the float model, threshold units).
    ``states``: layer -> recorded states [n, neurons, T] (:func:`pipeline.run.engine_spikes` with
    ``record=True``: its first batch)."""
    per, over, total = [], 0, 0
    for li, blk in enumerate(model.spiking_blocks()):
        if li not in states:
            raise ValueError(f"layer {li}: no recorded membrane states (neuron {type(blk.neuron).__name__})")
        n = states[li]["v"].shape[0]
        if quantized:
            p = blk.neuron.int_params
            h = membrane_before_reset(states[li], p)
            limit = OVERACTIVATION_FACTOR * (int(p.vth_mant) << fx.VTH_SHIFT)
        else:
            h = membrane_before_reset_float(states[li], blk.neuron)
            limit = OVERACTIVATION_FACTOR * float(blk.neuron.threshold)
        k = int((h > limit).sum())
        per.append(k / h.size)
        over, total = over + k, total + h.size
    return {"per_layer": per, "overall": over / total if total else 0.0, "samples": int(n) if per else 0}


def run_cell(cfg: TrainConfig, train_dir: Path) -> Dict[str, Any]:
    """Train one cell (resuming from ``train_dir``'s checkpoint) and measure it; a JSON-able dict.

    Rates are spikes per neuron per step; ``layers[i]['spikes_per_step']`` is [T], spikes of the layer per test
    sample; ``overactivation`` uses the first test batch (up to 64 samples) whose states are recorded; ACs, MACs
    and SOP energy (uJ) are per test sample (:mod:`simulations.activity`)."""
    t0 = time.time()
    model_path = train(cfg, train_dir, resume=True, progress=False)
    t_train = time.time() - t0
    model = load_model(model_path)
    x, y = load_split(cfg.dataset, "test", time_bins=cfg.time_bins, data_dir=cfg.data_dir,
                      limit=cfg.limit_test).tensors()
    y = y.numpy()
    readout = getattr(model, "readout", None) is not None
    float_spikes, _ = engine_spikes(model, x, pick_device(cfg.device), quantized=False, record=False)
    float_pred = predict_output(float_spikes[-1], readout)
    del float_spikes
    spikes, states = engine_spikes(model, x, torch.device("cpu"), quantized=True, record=True)
    deployed = float((predict_output(spikes[-1], readout) == y).mean())
    if readout:
        spikes = spikes[:-1]       # the readout's accumulator is no spiking layer
    act = network_activity(model, x.numpy(), spikes, cfg.neuron)
    over = overactivation(model, states, quantized=True)
    log = read_training_log(Path(train_dir))
    return {
        "float_accuracy": float((float_pred == y).mean()),
        "deployed_accuracy": deployed,
        "deployable": True,              # every network built here deploys; cells may come from elsewhere
        "not_deployable_because": None,
        "activity_of": "deployed",
        "firing_rate": act["firing_rate"],
        "continuous_firing_rate": act["continuous_firing_rate"],
        "overactivation": over["overall"],
        "final_loss": log[-1]["loss"] if log else math.nan,
        "layers": [{"layer": l["layer"], "neurons": l["neurons"], "firing_rate": l["firing_rate"],
                    "continuous_firing_rate": l["continuous_firing_rate"],
                    "spikes_per_step": l["spikes_per_step"], "overactivation": o}
                   for l, o in zip(act["layers"], over["per_layer"])],
        "overactivation_samples": over["samples"],
        "acs_per_sample": act["acs_per_sample"],
        "macs_per_sample": float(act["macs_per_sample"]),
        "sop_energy_uj_per_sample": act["sop_energy_uj_per_sample"],
        "input_acs_counted": act["input_acs_counted"],
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
        number = not isinstance(v, bool) and isinstance(v, (int, float))
        try:
            ok = number and math.isfinite(v) and lo <= v <= hi
        except OverflowError:        # a JSON integer beyond float64
            ok = False
        if not ok:
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
            raise bad(key, f"= {shown} is not a finite number in [{lo:g}, {hi:g}]")
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
    deployable = m.get("deployable", True)
    if not isinstance(deployable, bool):
        raise bad("metrics.deployable", f"= {deployable!r} is not true or false")
    if not deployable and m.get("deployed_accuracy") is not None:
        raise bad("metrics.deployed_accuracy", "must be null when 'deployable' is false")
    for k in _UNIT:
        if k != "deployed_accuracy" or deployable:
            num(f"metrics.{k}", m.get(k), 0.0, 1.0)
    for k in ("final_loss", "sop_energy_uj_per_sample", "train_wall_s", "wall_s"):
        num(f"metrics.{k}", m.get(k))
    for k in ENERGY[:2]:            # older cells: no AC / MAC counts
        if k in m:
            num(f"metrics.{k}", m[k])
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
    text = read_regular(path, MAX_CELL_BYTES, ValueError, "a study cell file")
    try:
        cell = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:     # JSONDecodeError, or an integer of > 4300 digits
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
            dep = metrics["deployed_accuracy"]
            print(f"{head}: float {metrics['float_accuracy']:.3f} "
                  f"deployed {'-' if dep is None else format(dep, '.3f')} "
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
        for k in METRICS + ENERGY:     # None where a cell has no value (not deployable; older cells: no ACs)
            vals = [m.get(k) for m in ms]
            row[k] = None if any(v is None for v in vals) else mean_std(vals)
        best = [max((r["test_accuracy"] for r in m["loss_curve"]), default=None) for m in ms]
        row["best_epoch_accuracy"] = None if any(v is None for v in best) else mean_std(best)
        row["deployable"] = all(m.get("deployable", True) for m in ms)
        row["activity_of"] = "deployed" if row["deployable"] else "float"
        row["spikes_per_step_total"] = _columns([np.sum([l["spikes_per_step"] for l in m["layers"]], axis=0).tolist()
                                                 for m in ms])
        for k in ("firing_rate", "continuous_firing_rate", "overactivation"):
            row[f"{k}_per_layer"] = _columns([[l[k] for l in m["layers"]] for m in ms])
        row["spikes_per_step_per_layer"] = [_columns([m["layers"][li]["spikes_per_step"] for m in ms])
                                            for li in range(len(ms[0]["layers"]))]
        row["loss_curve"] = _columns([[r["loss"] for r in m["loss_curve"]] for m in ms])
        rows.append(row)
    return rows


def pm(stat: Optional[Dict[str, float]], missing: str = "-", scale: float = 1.0) -> str:
    """'mean ± std' with 4 significant digits (the table format), both divided by ``scale``; ``missing`` for
    None."""
    if stat is None:
        return missing
    return f"{stat['mean'] / scale:.4g} ± {stat['std'] / scale:.4g}"


NOT_DEPLOYABLE = "not deployable"


def _cell_text(r: Dict[str, Any], k: str) -> str:
    return pm(r[k], NOT_DEPLOYABLE if k == "deployed_accuracy" and not r.get("deployable", True) else "-")


METRIC_TITLES = {"float_accuracy": "float acc", "deployed_accuracy": "deployed acc", "firing_rate": "firing rate",
                 "continuous_firing_rate": "continuous firing", "overactivation": "H > 2 V_th",
                 "final_loss": "final loss", "best_epoch_accuracy": "best epoch acc"}


def study_markdown(study: Dict[str, Any], plots: Sequence[str] = ()) -> str:
    """study.md from ``study['aggregates']``: main table, Table 5 columns (ACs, MACs, SOP energy), spikes per time
    step, per-layer continuous firing, pivots over the sweep."""
    spec, agg = study["spec"], study["aggregates"]
    b = spec["base"]
    param = spec["sweep_param"]
    undeployable = [r for r in agg if not r.get("deployable", True)]
    lines = [f"# Study: {', '.join(spec['variants'])} on {b['dataset']} ({b['arch']})", "",
             f"Seeds {', '.join(map(str, spec['seeds']))}; "
             + (f"swept {param} = {', '.join(format_value(v) for v in spec['sweep_values'])}; " if param else "")
             + (f"T = {b['time_bins']}, " if param != "T" else "") + f"{b['epochs']} float + {b['qat_epochs']} QAT epochs, batch {b['batch_size']}, "
               f"lr {b['lr']}, {b['optimizer']}, loss {b['loss']}, hidden {b['hidden']}, "
               + (f"dropout {b['dropout']}, " if b.get("dropout") else "")
               + f"train samples {b['limit_train'] or 'all'}, test samples {b['limit_test'] or 'all'}; "
               f"neuron overrides {json.dumps(b['neuron_overrides'])}.", "",
             "Mean ± sample std (ddof 1) over seeds. Deployed = the bit-exact integer model (the Lava fixed_pt "
             "twin) on the test split; firing rates, continuous firing (share of (sample, neuron) pairs firing on "
             "more than half of the steps) and H > 2 V_th (share of membrane-potential values, before reset, above "
             "twice the threshold; first test batch of up to 64 samples) are of the deployed model; final loss = "
             "training loss of the last epoch; best epoch acc = the best test accuracy after any epoch (float "
             "epochs: float model, QAT epochs: the integer model), the paper's reported metric.", ""]
    if undeployable:
        lines += [f"{b['arch']} is **not deployable** ({undeployable[0]['variant']}: see the cells' "
                  "`not_deployable_because`): no deployed accuracy; its firing, continuous firing, H > 2 V_th, "
                  "spikes and ACs are those of the float model.", ""]
    shown = METRICS + ("best_epoch_accuracy",)
    head = ["variant"] + ([param] if param else []) + [METRIC_TITLES[k] for k in shown] + ["seeds"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in agg:
        cells = [r["variant"]] + ([format_value(r["value"])] if param else []) + [_cell_text(r, k) for k in shown]
        lines.append("| " + " | ".join(cells + [str(len(r["seeds"]))]) + " |")
    if any(r.get(k) is not None for r in agg for k in ENERGY):
        lines += ["", "### Energy per test sample (the paper's Table 5 columns)", "",
                  "ACs: every spike times its fan-out into the next synaptic layer (a folded average pool and the "
                  "readout included; analog image input not counted); MACs: T x spiking neurons x k (k = 1 LIF, "
                  "2 with an inhibitory unit); SOP = 0.9 pJ x ACs + 4.6 pJ x MACs (simulations/activity.py).", "",
                  "| " + " | ".join(["variant"] + ([param] if param else []) + ["ACs (M)", "MACs (M)", "SOP (uJ)"])
                  + " |", "|" + "---|" * (4 + bool(param))]
        for r in agg:
            lines.append("| " + " | ".join([r["variant"]] + ([format_value(r["value"])] if param else [])
                                           + [pm(r.get("acs_per_sample"), scale=1e6),
                                              pm(r.get("macs_per_sample"), scale=1e6),
                                              pm(r.get("sop_energy_uj_per_sample"))]) + " |")
    if param:
        variants = list(dict.fromkeys(r["variant"] for r in agg))
        for k in ("deployed_accuracy", "firing_rate", "continuous_firing_rate", "overactivation"):
            if k == "deployed_accuracy" and undeployable:
                k = "float_accuracy"
            lines += ["", f"### {METRIC_TITLES[k]} vs {param}", "",
                      "| " + " | ".join([param] + variants) + " |", "|" + "---|" * (len(variants) + 1)]
            for v in sorted(spec["sweep_values"]):
                by = {r["variant"]: r for r in agg if r["value"] == v}
                lines.append("| " + " | ".join([format_value(v)] + [_cell_text(by[x], k) if x in by else "-"
                                                                     for x in variants]) + " |")
    steps = max((len(r["spikes_per_step_total"]["mean"]) for r in agg if "spikes_per_step_total" in r), default=0)
    if steps:
        lines += ["", "### Spikes per time step (all spiking layers, per test sample)", "",
                  "| " + " | ".join(["variant"] + ([param] if param else []) + [f"t = {t}" for t in range(steps)])
                  + " |", "|" + "---|" * (steps + 1 + bool(param))]
        for r in agg:
            c = r["spikes_per_step_total"]
            lines.append("| " + " | ".join([r["variant"]] + ([format_value(r["value"])] if param else [])
                                           + [pm({"mean": m, "std": s}) for m, s in zip(c["mean"], c["std"])])
                         + " |")
    n_layers = max((len(r["continuous_firing_rate_per_layer"]["mean"]) for r in agg), default=0)
    lines += ["", f"### Continuous firing per layer ({'float' if undeployable else 'deployed'})", "",
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
