"""The pipeline stages as functions working on files in a run folder, so users can stop and resume anywhere.

Run folder layout (default ``runs/<dataset>-<neuron>``):
  train/            model.pt, checkpoint.pt, log.jsonl, config.json   (stage ``train``)
  network.net       netx HDF5 + network.net.loihi2.json               (stage ``export``)
  lava_test.npz     Lava spikes per layer (+ states of a few samples)  (stage ``simulate``)
  report/           report.md, report.json, *.png                      (stage ``compare``)
  baseline-lif/     the LIF baseline trained with the same recipe      (``--baseline lif``)
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ilif_lava import fixed_point as fx
from ilif_lava import atomic, loihi2
from ilif_lava.progress import bar
from export.export_net import export_model
from pipeline import evaluation
from simulations.activity import network_activity
from simulations.compare import (first_divergence, lsb_error_histogram, prediction_agreement, spike_agreement,
                                 twin_states_on_lava_steps)
from simulations.cost import report_entry as loihi2_cost_entry
from simulations.neurobench_metrics import report_entry as neurobench_entry
from simulations.lava_run import LAVA_PHASES, run_network
from simulations.report import write_engines_report, write_lava_report, write_report
from training.datasets import load_split
from training.losses import predict, predict_output
from training.train import TrainConfig, load_config, load_model, pick_device, read_training_log
from ilif_lava.errors import IlifLavaError
from pipeline.cli_train import stage_train


def _flat(s: torch.Tensor) -> np.ndarray:
    """[N, C, H, W, T] or [N, F, T] -> [N, neurons, T] numpy."""
    return s.detach().cpu().reshape(s.shape[0], -1, s.shape[-1]).numpy()


def stage_export(run_dir: Path, force: bool = False, max_cores: Optional[int] = None) -> Path:
    model = load_model(Path(run_dir) / "train" / "model.pt")
    path, report = export_model(model, Path(run_dir) / "network.net", force=force, max_cores=max_cores)
    print(f"exported {path} ({report.total_neurons} neurons, est. {report.total_cores} Loihi 2 cores on "
          f"{report.chips} chip(s); "
          f"checks {'passed' if report.ok else 'FAILED (forced)'})")
    return path


def _eval_inputs(data: evaluation.EvalData):
    """Inputs [N, C, H, W, T], labels [N] and the filled-in :class:`EvalData` of an evaluation."""
    ds = load_split(data.dataset, data.split, time_bins=data.time_bins, data_dir=data.data_dir, limit=data.limit)
    x, y = ds.tensors()
    return x, y, replace(data, samples=int(x.shape[0]), sha256=evaluation.fingerprint(x.numpy(), y.numpy()))


def _run_config(run_dir: Optional[Path]) -> Optional[TrainConfig]:
    return None if run_dir is None else load_config(Path(run_dir) / "train" / "config.json")


def stage_simulate(run_dir: Optional[Path], net_path: Optional[Path] = None, limit: Optional[int] = None,
                   state_samples: int = 2, progress: bool = True, dataset: Optional[str] = None,
                   data_dir: Optional[str] = None, time_bins: Optional[int] = None,
                   out_dir: Optional[Path] = None) -> Path:
    """Run the exported network in Lava (fixed_pt) on a test split; record states of ``state_samples`` samples.

    By default the run's own test data (``train/config.json``); ``dataset`` / ``data_dir`` / ``time_bins``
    evaluate on other data, and ``run_dir=None`` with ``net_path`` and ``dataset`` evaluates a bare netx file
    (see :mod:`pipeline.evaluation` for where results go). Returns the written ``lava_test.npz``.
    """
    run_dir = None if run_dir is None else Path(run_dir)
    cfg = _run_config(run_dir)
    conf = None if cfg is None else asdict(cfg)
    want = evaluation.requested(conf, dataset, data_dir, time_bins, limit)
    out_dir = evaluation.output_dir(run_dir, net_path, want, evaluation.is_default(conf, dataset, data_dir,
                                                                                   time_bins), out_dir)
    x, y, data = _eval_inputs(want)
    print(f"data: {data.describe()}", flush=True)
    net_path = Path(net_path) if net_path else run_dir / "network.net"
    t0 = time.time()
    res = run_network(net_path, x.numpy(), progress=progress)
    wall = time.time() - t0
    arrays: Dict[str, np.ndarray] = {f"spikes_{i}": s for i, s in enumerate(res.spikes)}
    if state_samples > 0:
        st = run_network(net_path, x[:state_samples].numpy(), record_states=True, progress=progress,
                         desc="Lava state recording")
        for layer, per in st.states.items():
            for k, arr in per.items():
                arrays[f"state_{layer}_{k}"] = arr
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / evaluation.LAVA_RESULTS
    record = json.dumps({**data.to_dict(), "network": str(net_path.absolute())})
    pred = predict_output(res.spikes[-1], res.readout)
    with atomic.atomic_path(out) as tmp, open(tmp, "wb") as fh:     # temp file removed on failure
        np.savez_compressed(fh, labels=y.numpy(), pred=pred, wall_s=wall, steps=x.shape[-1],
                            data_json=np.array(record), readout=res.readout, lava_steps=res.lava_steps,
                            latency_steps=res.latency_steps,
                            lava_phase_s=np.array([res.timings.get(k, 0.0) for k in LAVA_PHASES]), **arrays)
    atomic.write_text(out_dir / evaluation.DATA_RECORD, record)
    print(f"Lava fixed_pt: {x.shape[0]} samples x {x.shape[-1]} steps ({res.lava_steps} Lava steps, latency "
          f"{res.latency_steps} steps per sample) in {wall:.1f} s ({1000 * wall / max(res.lava_steps, 1):.2f} "
          f"ms/step); results in {out}")
    print("Lava phases: " + ", ".join(f"{k.replace('_', ' ')} {res.timings.get(k, 0.0):.1f} s"
                                      for k in LAVA_PHASES))
    if cfg is None:      # a bare network file: no float model to compare with, so the report is Lava's alone
        rep = write_lava_report(net_path, data, y.numpy(), pred, res.spikes, wall, out_dir / "report")
        print(f"accuracy (Lava fixed_pt): {float((pred == y.numpy()).mean()):.4f}; report in {rep}")
    return out


class _Members(dict):
    """The arrays of a results file, with ``np.load``'s ``files`` list."""

    @property
    def files(self) -> List[str]:
        return list(self)


def _load_lava(path: Path):
    from simulations.lava_results import read_lava_results
    if not Path(path).exists():
        raise ValueError(f"{path}: no such file (run 'ilif-lava simulate' first)")
    z = _Members(read_lava_results(path))      # memory bounded and checked before decompressing (one line)
    n_layers = len([k for k in z.files if k.startswith("spikes_")])
    spikes = [z[f"spikes_{i}"] for i in range(n_layers)]
    states: Dict[int, Dict[str, np.ndarray]] = {}
    for k in z.files:
        if k.startswith("state_"):
            _, layer, name = k.split("_")
            states.setdefault(int(layer), {})[name] = z[k]
    return spikes, states, z


def engine_spikes(model, x: torch.Tensor, device: torch.device, quantized: bool, record: bool, batch: int = 64,
            progress: bool = False, desc: str = "model", lead_out: Optional[Dict[int, Dict[str, np.ndarray]]] = None):
    """Spikes per layer [N, neurons, T] (numpy) and, with ``record``, states of the first batch. A network ending
    in an integer readout (:class:`ilif_lava.block.Readout`) gets one more entry: the readout's accumulator after
    every step (int64, state units; :meth:`~ilif_lava.block.Readout.integer_readout` of its logits).

    ``lead_out`` (a dict, filled in): per layer whose neuron has a bias behind ``delay_shift``, the states of the
    step before its first input (:attr:`ilif_lava.neuron.Neuron.lead_states`, [N, neurons]; Lava's first step)."""
    model.set_quantized(quantized)
    model.eval()
    model.to(device)
    spikes: Optional[List[np.ndarray]] = None
    states: Dict[int, Dict[str, np.ndarray]] = {}
    with torch.no_grad():
        for i in bar(range(0, x.shape[0], batch), desc=desc, unit="batch", enabled=progress):
            model.set_record_states(record and i == 0)
            out, sp = model(x[i:i + batch].to(device))
            sp = [_flat(s).astype(np.int8) for s in sp]
            if getattr(model, "readout", None) is not None:
                sp.append(type(model.readout).integer_readout(out).cpu().numpy())
            spikes = sp if spikes is None else [np.concatenate([a, b]) for a, b in zip(spikes, sp)]
            if record and i == 0:
                for li, blk in enumerate(model.spiking_blocks()):
                    if getattr(blk.neuron, "states", None):
                        states[li] = {k: _flat(v).astype(np.float64 if not quantized else np.int64)
                                      for k, v in blk.neuron.states.items()}
                    lead = getattr(blk.neuron, "lead_states", None) if lead_out is not None else None
                    if lead:
                        lead_out[li] = {k: v.detach().cpu().reshape(v.shape[0], -1).numpy().astype(
                            np.float64 if not quantized else np.int64) for k, v in lead.items()}
    model.set_record_states(False)
    return spikes, states


def _simulated_data(z: Any, folder: Path, cfg: TrainConfig, n: int) -> evaluation.EvalData:
    """The data ``simulate`` ran on (its record in the npz; results written before records existed: the run's
    own test split, first ``n`` samples)."""
    if "data_json" in z.files:
        try:
            raw = json.loads(str(z["data_json"]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{folder / evaluation.LAVA_RESULTS}: damaged data record ({exc})") from None
        return evaluation.EvalData.from_dict(raw if isinstance(raw, dict) else {}, str(folder))
    return evaluation.EvalData(cfg.dataset, cfg.data_dir, cfg.time_bins, n)


class DeploymentMismatchError(IlifLavaError, RuntimeError):
    """The deployed (Lava) network differs from its quantized PyTorch twin; the message says where first."""

    exit_code = 1


def check_deployment(report: Dict[str, Any], report_dir: Path) -> None:
    """Raise :class:`DeploymentMismatchError` (one line: the mismatch count, the first divergence, the report
    folder) unless the quantized model and Lava agree on every spike of every layer and step, on every
    prediction, and on every recorded state (u, v, c, m of the state samples on every Lava step, the first
    included). The report is written before this is called, so the user can read where and why."""
    rows = report["spikes"]["quantized_vs_lava"]
    spikes = sum(int(r["mismatches"]) for r in rows)
    pred = float(report["prediction_agreement"]["quantized_vs_lava"])
    state_div = report["first_divergence"].get("quantized_vs_lava_with_states")
    if spikes == 0 and pred == 1.0 and state_div is None:
        return
    found = [d for d in (report["first_divergence"]["quantized_vs_lava"], state_div) if d is not None]
    # the earliest (step, layer); at the same place the state difference, which causes the spike difference
    div = min(found, key=lambda d: (d["time_step"], d["layer"], d.get("what") == "spike")) if found else None
    label = "" if div is None or div.get("what", "spike") == "spike" else f"state {div['what']}: "
    where = ("" if div is None else f"; first at layer {div['layer']}, step {div['time_step']}, sample "
             f"{div['sample']}, neuron {div['neuron']} ({label}quantized {div['value_a']:g}, "
             f"Lava {div['value_b']:g})")
    raise DeploymentMismatchError(f"the Lava network differs from its quantized twin: {spikes} spike mismatches, "
                                  f"prediction agreement {pred:.3f}{where}; report in {report_dir}")


def stage_compare(run_dir: Path, baseline_dir: Optional[Path] = None, device: str = "auto",
                  eval_dir: Optional[Path] = None, progress: bool = True, strict: bool = True) -> Dict[str, Any]:
    """Compare float (CUDA if present), quantized PyTorch and Lava fixed_pt on the samples ``simulate`` ran
    (``eval_dir``: the evaluation folder, default the run folder); write ``<eval_dir>/report/``.

    ``strict`` (default): after the report is written, any quantized-vs-Lava difference raises
    :class:`DeploymentMismatchError` (the CLI's exit code 1)."""
    run_dir = Path(run_dir)
    folder = Path(eval_dir) if eval_dir is not None else run_dir
    cfg = load_config(run_dir / "train" / "config.json")
    lava_spikes, lava_states, z = _load_lava(folder / evaluation.LAVA_RESULTS)
    n = lava_spikes[0].shape[0]
    simulated = _simulated_data(z, folder, cfg, n)
    x, y, data = _eval_inputs(simulated)
    if simulated.sha256 is not None and not simulated.same_samples(data):
        raise ValueError(f"{folder / evaluation.LAVA_RESULTS}: simulated on other samples than "
                         f"{data.describe()} gives now (the data changed); run 'ilif-lava simulate' again")
    y = y.numpy()
    dev = pick_device(device)
    model = load_model(run_dir / "train" / "model.pt")
    float_spikes, float_states = engine_spikes(model, x, dev, quantized=False, record=True, progress=progress,
                                         desc="float model")
    quant_lead: Dict[int, Dict[str, np.ndarray]] = {}
    quant_spikes, quant_states = engine_spikes(model, x, torch.device("cpu"), quantized=True, record=True,
                                               progress=progress, desc="quantized model", lead_out=quant_lead)
    k_states = next(iter(lava_states.values()))["u"].shape[0] if lava_states else 0
    trim = lambda st, k: {l: {n_: a[:k] for n_, a in per.items()} for l, per in st.items()}  # noqa: E731
    steps = x.shape[-1]
    readout = getattr(model, "readout", None) is not None
    pipelined = bool(getattr(model, "pipelined", False))
    preds = {"float": predict_output(float_spikes[-1], readout), "quantized": predict_output(quant_spikes[-1], readout),
             "lava": z["pred"]}
    qs, ls = [s[:k_states] for s in quant_spikes], [s[:k_states] for s in lava_spikes]
    div_q_lava = first_divergence(quant_spikes, lava_spikes)
    # delayed timing: every Lava step, the first included (a biased neuron's lead step; rest for the others);
    # pipelined timing: Lava's states are read on each layer's own window, the twin's steps exactly
    twin = (trim(quant_states, k_states) if pipelined
            else twin_states_on_lava_steps(trim(quant_states, k_states), trim(quant_lead, k_states)))
    spiking_lava = lava_spikes[:-1] if readout else lava_spikes
    div_q_lava_states = first_divergence(qs, ls, twin, trim(lava_states, k_states)) if k_states else None
    div_f_q = first_divergence(float_spikes, quant_spikes)
    div_f_q_states = first_divergence([s[:k_states] for s in float_spikes], qs,
                                      _scaled(trim(float_states, k_states)), trim(quant_states, k_states))
    activity = network_activity(model, x.numpy(), spiking_lava, cfg.neuron)
    check = loihi2.check_network(run_dir / "network.net", state_maxabs=_state_maxabs(quant_states))
    report: Dict[str, Any] = {
        "config": asdict(cfg), "data": data.to_dict(), "data_description": data.describe(),
        "samples": int(n), "time_steps": int(steps),
        "device_float": str(dev),
        "accuracy": {k: float((v == y).mean()) for k, v in preds.items()},
        "prediction_agreement": {"float_vs_quantized": prediction_agreement(preds["float"], preds["quantized"]),
                                 "quantized_vs_lava": prediction_agreement(preds["quantized"], preds["lava"]),
                                 "float_vs_lava": prediction_agreement(preds["float"], preds["lava"])},
        "spikes": {"quantized_vs_lava": spike_agreement(quant_spikes, lava_spikes),
                   "float_vs_quantized": spike_agreement(float_spikes, quant_spikes)},
        "first_divergence": {
            "quantized_vs_lava": None if div_q_lava is None else div_q_lava.to_dict(),
            "quantized_vs_lava_with_states": None if div_q_lava_states is None else div_q_lava_states.to_dict(),
            "float_vs_quantized": None if div_f_q is None else div_f_q.to_dict(),
            "float_vs_quantized_with_states": None if div_f_q_states is None else div_f_q_states.to_dict()},
        "state_samples": int(k_states),
        "state_error_lsb_float_vs_fixed": lsb_error_histogram(trim(float_states, k_states),
                                                              trim(quant_states, k_states)),
        "lava_wall_s": float(z["wall_s"]),
        "activity": activity,
        "loihi2": check.to_dict(),
        "loihi2_cost": loihi2_cost_entry(run_dir / "network.net", x.numpy(), lava_spikes),
        "neurobench": neurobench_entry(model, run_dir / "network.net", x.numpy(), float_spikes, quant_spikes),
        "training_log": read_training_log(run_dir / "train"),
        "timing": {"pipelined": pipelined, "lava_steps": int(z["lava_steps"]) if "lava_steps" in z.files else None,
                   "latency_steps": int(z["latency_steps"]) if "latency_steps" in z.files else int(steps)},
    }
    if readout:
        report["readout"] = readout_agreement(quant_spikes[-1], lava_spikes[-1])
    if baseline_dir is not None and (Path(baseline_dir) / "train" / "model.pt").exists():
        report["baseline"] = _baseline_activity(Path(baseline_dir), x, y)
    write_report(report, folder / "report", check_markdown=check.to_markdown())
    if strict:
        check_deployment(report, folder / "report")
    return report


def engine_outputs(model, x: torch.Tensor, device: torch.device, quantized: bool, batch: int = 64,
                   progress: bool = False, desc: str = "model"):
    """Predictions [N] (argmax of the outputs summed over time: spike counts, or logits; training's rule,
    :func:`training.losses.predict`) and spikes per layer [N, neurons, T] (int8 numpy) of one engine."""
    model.set_quantized(quantized)
    model.eval()
    model.to(device)
    preds: List[np.ndarray] = []
    spikes: Optional[List[np.ndarray]] = None
    with torch.no_grad():
        for i in bar(range(0, x.shape[0], batch), desc=desc, unit="batch", enabled=progress):
            out, sp = model(x[i:i + batch].to(device))
            preds.append(predict(out))
            sp = [_flat(s).astype(np.int8) for s in sp]
            spikes = sp if spikes is None else [np.concatenate([a, b]) for a, b in zip(spikes, sp)]
    return np.concatenate(preds) if preds else np.zeros(0, np.int64), spikes or []


def lava_not_run_reason(run_dir: Path) -> str:
    """Why an evaluation of ``run_dir`` has no Lava engine (the run has no ``network.net``), in one sentence."""
    return (f"{Path(run_dir) / 'network.net'} does not exist; 'ilif-lava export {run_dir}' then 'ilif-lava simulate "
            f"{run_dir}' (with the same data flags) add the Lava engine")


def stage_compare_engines(run_dir: Path, dataset: Optional[str] = None, data_dir: Optional[str] = None,
                          time_bins: Optional[int] = None, out_dir: Optional[Path] = None, device: str = "auto",
                          progress: bool = True) -> Dict[str, Any]:
    """Evaluate a trained run that has no ``network.net`` (a network netx cannot express, e.g. ``resnet18``, or
    one not exported yet) with the float and quantized engines only, on its own test split or on other data
    (``dataset`` / ``data_dir`` / ``time_bins``, folders as :mod:`pipeline.evaluation` chooses them).

    Writes ``<eval folder>/report/`` (report.json, report.md): the data used, accuracy of both engines, their
    prediction agreement, spikes per layer float vs quantized, the first divergence, and that Lava was not run
    with the reason (:func:`lava_not_run_reason`). Returns the report dict."""
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "train" / "config.json")
    conf = asdict(cfg)
    want = evaluation.requested(conf, dataset, data_dir, time_bins)
    folder = evaluation.output_dir(run_dir, None, want, evaluation.is_default(conf, dataset, data_dir, time_bins),
                                   out_dir)
    x, y, data = _eval_inputs(want)
    print(f"data: {data.describe()}", flush=True)
    y = y.numpy()
    model = load_model(run_dir / "train" / "model.pt")
    reason = lava_not_run_reason(run_dir)
    dev = pick_device(device)
    pred_f, spikes_f = engine_outputs(model, x, dev, False, progress=progress, desc="float model")
    pred_q, spikes_q = engine_outputs(model, x, torch.device("cpu"), True, progress=progress, desc="quantized model")
    div = first_divergence(spikes_f, spikes_q)
    report: Dict[str, Any] = {
        "config": conf, "data": data.to_dict(), "data_description": data.describe(),
        "samples": int(x.shape[0]), "time_steps": int(x.shape[-1]), "device_float": str(dev),
        "engines": ["float", "quantized"], "lava": {"ran": False, "reason": reason},
        "accuracy": {"float": float((pred_f == y).mean()), "quantized": float((pred_q == y).mean())},
        "prediction_agreement": {"float_vs_quantized": prediction_agreement(pred_f, pred_q)},
        "spikes": {"float_vs_quantized": spike_agreement(spikes_f, spikes_q)},
        "first_divergence": {"float_vs_quantized": None if div is None else div.to_dict()},
        "training_log": read_training_log(run_dir / "train"),
    }
    write_engines_report(report, folder / "report")
    return report


def readout_agreement(quant: np.ndarray, lava: np.ndarray) -> Dict[str, Any]:
    """Per class: mismatching readout integers (accumulator after every step, state units) quantized vs Lava, and
    the largest difference in LSB; ``quant`` / ``lava`` [N, K, T] int64."""
    q, l_ = np.asarray(quant, dtype=np.int64), np.asarray(lava, dtype=np.int64)
    diff = np.abs(q - l_)
    return {"classes": int(q.shape[1]), "mismatches": int((diff > 0).sum()),
            "mismatches_per_class": (diff > 0).sum(axis=(0, 2)).astype(int).tolist(),
            "max_abs_diff_lsb": int(diff.max()) if diff.size else 0,
            "final_value_range_lsb": [int(q[..., -1].min()), int(q[..., -1].max())] if q.size else [0, 0]}


def _scaled(states: Dict[int, Dict[str, np.ndarray]]) -> Dict[int, Dict[str, np.ndarray]]:
    """Float states (threshold units) -> nearest integer state units, for first-divergence of float vs fixed."""
    return {l: {k: np.rint(a * fx.STATE_SCALE).astype(np.int64) for k, a in per.items()} for l, per in states.items()}


def _state_maxabs(states: Dict[int, Dict[str, np.ndarray]]) -> Dict[tuple, int]:
    return {(l, k): int(np.abs(a).max()) for l, per in states.items() for k, a in per.items()}


def _baseline_activity(base_dir: Path, x: torch.Tensor, y: np.ndarray) -> Dict[str, Any]:
    cfg = load_config(base_dir / "train" / "config.json")
    model = load_model(base_dir / "train" / "model.pt")
    spikes, _ = engine_spikes(model, x, torch.device("cpu"), quantized=True, record=False)
    readout = getattr(model, "readout", None) is not None
    pred = predict_output(spikes[-1], readout)
    return {"neuron": cfg.neuron, "accuracy_quantized": float((pred == y).mean()),
            "activity": network_activity(model, x.numpy(), spikes[:-1] if readout else spikes, cfg.neuron),
            "training_log": read_training_log(base_dir / "train")}


def run_pipeline(cfg: TrainConfig, run_dir: Path, baseline: Optional[str] = "lif", force: bool = False,
                 state_samples: int = 2, progress: bool = True) -> Dict[str, Any]:
    """train -> (baseline) -> export -> simulate -> compare. Returns the report dict."""
    run_dir = Path(run_dir)
    t0 = time.time()
    print(f"[1/5] train {cfg.neuron} {cfg.arch} on {cfg.dataset} (T={cfg.time_bins}, {cfg.epochs} float + "
          f"{cfg.qat_epochs} QAT epochs)", flush=True)
    stage_train(cfg, run_dir, progress=progress)
    base_dir = None
    if baseline:
        base_cfg = TrainConfig(**{**asdict(cfg), "neuron": baseline.upper()})
        base_dir = run_dir / f"baseline-{baseline.lower()}"
        print(f"[2/5] train the {baseline.upper()} baseline with the same recipe", flush=True)
        stage_train(base_cfg, base_dir, progress=progress)
    print("[3/5] export netx HDF5 + Loihi 2 checks", flush=True)
    stage_export(run_dir, force=force)
    print("[4/5] simulate in Lava (CPU, fixed_pt)", flush=True)
    stage_simulate(run_dir, state_samples=state_samples, progress=progress)
    print("[5/5] compare engines and write the report", flush=True)
    report = stage_compare(run_dir, baseline_dir=base_dir)
    report["pipeline_wall_s"] = time.time() - t0
    acc = report["accuracy"]
    sq = report["spikes"]["quantized_vs_lava"]
    print(f"accuracy: float {acc['float']:.3f} | quantized {acc['quantized']:.3f} | Lava {acc['lava']:.3f}; "
          f"quantized vs Lava: {sum(r['mismatches'] for r in sq)} spike mismatches, prediction agreement "
          f"{report['prediction_agreement']['quantized_vs_lava']:.3f}; report in {run_dir / 'report'} "
          f"({report['pipeline_wall_s']:.0f} s)", flush=True)
    return report
