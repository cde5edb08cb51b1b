"""``ilif-lava nir``: NIR interchange on the command line (docs/nir.md). Loaded by pipeline/cli.py as a plug-in.

* ``nir export RUN``: ``RUN/train/model.pt`` -> ``RUN/network.nir`` + ``network.nir.lossiness.json/.md``;
* ``nir import FILE --run-dir DIR``: a NIR graph -> our blocks -> the export stage (netx HDF5 + Loihi 2 checks,
  ``DIR/network.net``) -> Lava ``fixed_pt`` on seeded random input spikes, compared with the float NIR semantics,
  our float model and its quantized twin -> ``DIR/report/nir_import.json/.md``.

Nothing heavy is imported at module level: the parser is built before torch or Lava are imported.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List

from pipeline.cli_types import bounded_int, existing, nonneg_int, positive_float, unit_float
from ilif_lava.names import MAX_BATCH, MAX_TIME_BINS

MEMORY_FRACTION = 0.8     # refuse an import run whose spike arrays would take more than this share of RAM


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nir", help="NIR interchange: export a run as NIR, import a NIR graph into Lava",
                              description="Neuromorphic Intermediate Representation (nir 1.0.8) in both "
                                          "directions; the mapping and its limits: docs/nir.md.")
    sub = p.add_subparsers(dest="nir_cmd", required=True)
    e = sub.add_parser("export", help="RUN/train/model.pt -> RUN/network.nir + lossiness report",
                       description="Writes RUN/network.nir and RUN/network.nir.lossiness.{json,md}: per layer what "
                                   "a NIR consumer that ignores metadata computes differently.")
    e.add_argument("run_dir", type=existing, help="run folder holding train/model.pt")
    e.add_argument("--out", default=None, help="NIR file (default RUN/network.nir)")
    e.add_argument("--dt", type=positive_float, default=1.0, help="NIR time of one step (default 1.0)")
    i = sub.add_parser("import", help="NIR graph -> our blocks -> netx HDF5 -> Lava fixed_pt, with a report",
                       description="Converts FILE (LIF/CubaLIF/IF/Affine/Linear/Conv2d/Flatten/SumPool2d/Scale/"
                                   "Delay nodes, or a file from 'nir export'), exports DIR/network.net, runs it in "
                                   "Lava fixed_pt on seeded random spikes and writes DIR/report/nir_import.{json,md}: "
                                   "float NIR semantics vs our float model vs quantized vs Lava, per layer.")
    i.add_argument("file", type=existing, help="NIR file (HDF5; bounded checks before it is parsed)")
    i.add_argument("--run-dir", required=True, help="output folder")
    i.add_argument("--dt", type=positive_float, default=1.0,
                   help="the exporter's time step (1.0: ilif-lava, SpikingJelly; snnTorch 1e-4; Norse 1e-3)")
    i.add_argument("--samples", type=bounded_int(1, MAX_BATCH), default=4,
                   help=f"random input samples (default 4, at most {MAX_BATCH})")
    i.add_argument("--steps", type=bounded_int(1, MAX_TIME_BINS), default=16,
                   help=f"time steps per sample (default 16, at most {MAX_TIME_BINS}, like -T)")
    i.add_argument("--rate", type=unit_float, default=0.3, help="input spike probability per step (default 0.3)")
    i.add_argument("--seed", type=nonneg_int, default=0)
    i.add_argument("--force", action="store_true", help="export even if the Loihi 2 checks fail")


def run(args: argparse.Namespace) -> int:
    if args.nir_cmd == "export":
        return _export(args)
    return _import(args)


def _export(args: argparse.Namespace) -> int:
    from ilif_lava import atomic
    from ilif_lava.nir import write_nir
    from ilif_lava.nir.export import lossiness_markdown
    from training.train import load_model
    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: is not a run folder")
    out = Path(args.out) if args.out else run_dir / "network.nir"
    atomic.check_outputs(_nir_outputs(out), [("RUN/train/model.pt", run_dir / "train" / "model.pt")])
    model = load_model(run_dir / "train" / "model.pt")
    path, report = write_nir(model, out, dt=args.dt)
    atomic.write_json(path.with_name(path.name + ".lossiness.json"), report, indent=2)
    atomic.write_text(path.with_name(path.name + ".lossiness.md"), lossiness_markdown(report))
    print(f"wrote {path} ({len(report)} spiking layers, dt = {args.dt:g}); lossiness report "
          f"{path.name}.lossiness.md:")
    for r in report:
        print(f"  layer {r['layer']} {r['variant']} -> {r['nir']}: a metadata-blind consumer {r['metadata_blind']};"
              f" probe spike mismatch {r['probe']['spike_mismatch']:.3f}")
    return 0


def _nir_outputs(out: Path) -> List[Path]:
    """The files ``nir export`` writes for the NIR file ``out``."""
    return [out, out.with_name(out.name + ".lossiness.json"), out.with_name(out.name + ".lossiness.md")]


def import_outputs(run_dir: Path) -> List[Path]:
    """The files ``nir import`` writes into ``run_dir`` (the export stage's two, the report's two)."""
    return [run_dir / "network.net", run_dir / "network.net.loihi2.json", run_dir / "report" / "nir_import.json",
            run_dir / "report" / "nir_import.md"]


def check_import_memory(samples: int, steps: int, neurons: int, where: str) -> None:
    """Refuse (one line naming the flags) a run whose spike arrays would not fit in memory, before allocating:
    ``neurons`` (input + every layer) x ``samples`` x ``steps`` values, counted as float32 for each of the four
    engines (float, quantized, Lava, NIR reference) plus the input."""
    from training.datasets import physical_memory
    need = int(samples) * int(steps) * int(neurons) * 4 * 5
    have = int(physical_memory() * MEMORY_FRACTION)
    if need > have:
        raise ValueError(f"{where}: --samples {samples} x --steps {steps} x {neurons} neurons need "
                         f"{need / 2 ** 30:.1f} GiB of spike arrays, more than {have / 2 ** 30:.1f} GiB "
                         f"({MEMORY_FRACTION:.0%} of this machine's memory); lower --samples or --steps")


def _import(args: argparse.Namespace) -> int:
    from pipeline.cli_types import check_output_dir
    check_output_dir(Path(args.run_dir))
    report = import_and_compare(Path(args.file), Path(args.run_dir), dt=args.dt, samples=args.samples,
                                steps=args.steps, rate=args.rate, seed=args.seed, force=args.force)
    q = report["spikes"]["quantized_vs_lava"]
    ref = report["spikes"].get("nir_float_vs_lava")
    print(f"imported {args.file}: {len(report['layers'])} spiking layers -> {report['network']}; quantized vs "
          f"Lava: {sum(r['mismatches'] for r in q)} spike mismatches; NIR float semantics vs Lava: "
          + (f"agreement {min(r['agreement'] for r in ref):.3f} (worst layer)" if ref else
             f"not runnable ({report['nir_float_error']})")
          + f"; report in {report['report']}")
    return 0


def import_and_compare(path: Path, run_dir: Path, dt: float = 1.0, samples: int = 4, steps: int = 16,
                       rate: float = 0.3, seed: int = 0, force: bool = False) -> Dict[str, Any]:
    """The ``nir import`` stage: NIR file -> blocks -> netx HDF5 (export stage) -> Lava fixed_pt, compared with
    the NIR float semantics (metadata-blind, :func:`ilif_lava.nir.simulate_nir`), our float model and the
    quantized twin on seeded random input spikes [samples, *input shape, steps + latency]. Returns the report."""
    import numpy as np
    import torch

    from ilif_lava import atomic
    from ilif_lava.nir import NIRSemanticsError, from_nir, read_nir, simulate_nir
    from export.export_net import export_model
    from pipeline.run import engine_spikes
    from simulations.compare import first_divergence, prediction_agreement, spike_agreement
    from simulations.lava_run import run_network
    from training.losses import predict
    from training.models import SpikingNet

    atomic.check_outputs(import_outputs(run_dir), [("FILE", path)])     # never replace the file being imported
    graph = read_nir(path)
    imp = from_nir(graph, dt=dt)
    sizes = [int(np.prod(imp.input_shape))] + [int(np.prod(blk.neuron.shape)) for blk in imp.blocks
                                                if getattr(blk, "neuron", None) is not None]
    check_import_memory(samples, steps + len(imp.layers) + 1, sum(sizes), str(path))
    model = SpikingNet(imp.blocks, flatten_input=imp.flatten_input,
                       meta={"in_shape": list(imp.input_shape), "source": f"nir:{path.name}"})
    run_dir.mkdir(parents=True, exist_ok=True)
    net_path, check = export_model(model, run_dir / "network.net", force=force)
    lags = imp.lags
    pad = max(lags + [0])
    g = np.random.default_rng(seed)
    x = (g.random((samples, *imp.input_shape, steps)) < rate).astype(np.float32)
    x_run = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,), np.float32)], axis=-1)   # room for the latency
    xt = torch.from_numpy(x_run)
    float_sp, _ = engine_spikes(model, xt, torch.device("cpu"), quantized=False, record=False)
    quant_sp, _ = engine_spikes(model, xt, torch.device("cpu"), quantized=True, record=False)
    lava_sp = run_network(net_path, x_run).spikes
    report: Dict[str, Any] = {
        "file": str(path), "network": str(net_path), "dt": dt, "samples": samples, "steps": steps,
        "input": f"Bernoulli spikes p = {rate}, seed {seed}, plus {pad} zero steps for the latency",
        "input_shape": list(imp.input_shape), "layers": imp.layers, "lags": lags,
        "loihi2_ok": bool(check.ok),
        "spikes": {"quantized_vs_lava": spike_agreement(quant_sp, lava_sp),
                   "float_vs_quantized": spike_agreement(float_sp, quant_sp)},
        "first_divergence": {k: (None if d is None else d.to_dict()) for k, d in (
            ("quantized_vs_lava", first_divergence(quant_sp, lava_sp)),
            ("float_vs_quantized", first_divergence(float_sp, quant_sp)))},
        "prediction_agreement": {"quantized_vs_lava": prediction_agreement(predict(quant_sp[-1]),
                                                                           predict(lava_sp[-1]))},
    }
    try:
        ref = simulate_nir(graph, x, dt=dt)
    except NIRSemanticsError as exc:
        report["nir_float_error"] = str(exc)
    else:
        ref_sp = _aligned_reference(ref, imp.layers, lags, lava_sp, steps)
        lava_win = [s[..., lag:lag + steps] for s, lag in zip(lava_sp, lags)]
        float_win = [s[..., lag:lag + steps] for s, lag in zip(float_sp, lags)]
        report["spikes"]["nir_float_vs_lava"] = spike_agreement(ref_sp, lava_win)
        report["spikes"]["nir_float_vs_float"] = spike_agreement(ref_sp, float_win)
        div = first_divergence(ref_sp, lava_win)
        report["first_divergence"]["nir_float_vs_lava"] = None if div is None else div.to_dict()
        report["prediction_agreement"]["nir_float_vs_lava"] = prediction_agreement(predict(ref_sp[-1]),
                                                                                   predict(lava_win[-1]))
    out = run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    report["report"] = str(out / "nir_import.md")
    atomic.write_json(out / "nir_import.json", report, indent=2, default=str)
    atomic.write_text(out / "nir_import.md", _markdown(report))
    return report


def _aligned_reference(ref: Dict[str, Any], layers: List[Dict[str, Any]], lags: List[int], lava: List[Any],
                       steps: int) -> List[Any]:
    """NIR reference spikes of each layer's neuron node as [N, neurons, steps] int8 (C, H, W flattened, the order
    of the other engines)."""
    import numpy as np
    out = []
    for layer, ours in zip(layers, lava):
        s = ref[layer["node"]]
        out.append(np.asarray(s).reshape(s.shape[0], -1, s.shape[-1])[..., :steps].astype(np.int8))
        if out[-1].shape[1] != ours.shape[1]:
            raise ValueError(f"layer {layer['node']}: NIR has {out[-1].shape[1]} neurons, the deployed network "
                             f"{ours.shape[1]}")
    return out


def _markdown(rep: Dict[str, Any]) -> str:
    lines = [f"# NIR import: {rep['file']}", "",
             f"Deployed: `{rep['network']}` (Loihi 2 checks {'passed' if rep['loihi2_ok'] else 'FAILED (forced)'}); "
             f"dt = {rep['dt']:g}; input: {rep['samples']} samples x {rep['steps']} steps, {rep['input']}.", "",
             "| layer | NIR node | converted from | threshold scale | NIR float vs Lava | float vs quantized | "
             "quantized vs Lava (mismatches) | lag (steps) |", "|---|---|---|---|---|---|---|---|"]
    sp = rep["spikes"]
    for i, layer in enumerate(rep["layers"]):
        ref = sp.get("nir_float_vs_lava")
        lines.append(f"| {i} | `{layer['node']}` ({layer['type']}) | {layer['source']} | "
                     f"{layer['threshold_scale']:.4g} | {ref[i]['agreement']:.4f} |" if ref else
                     f"| {i} | `{layer['node']}` ({layer['type']}) | {layer['source']} | "
                     f"{layer['threshold_scale']:.4g} | not runnable |")
        lines[-1] += (f" {sp['float_vs_quantized'][i]['agreement']:.4f} | {sp['quantized_vs_lava'][i]['mismatches']}"
                      f" | {rep['lags'][i]} |")
    lines.append("")
    if "nir_float_error" in rep:
        lines += [f"NIR float semantics: {rep['nir_float_error']}", ""]
    notes = sorted({n for layer in rep["layers"] for n in layer.get("notes", [])})
    lines += [f"* {n}" for n in notes]
    lines += ["", "First divergence: " + json.dumps(rep["first_divergence"]), ""]
    return "\n".join(lines)
