"""``ilif-lava``: the command line. Parses arguments and calls the stage functions; no logic of its own.

Invalid values give a one-line error and exit code 2 (no traceback).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import importlib
import os
import sys
from pathlib import Path
from typing import Any, List, Optional

import ilif_lava  # noqa: F401  (Lava Python 3.11 shim first)
from pipeline.cli_types import check_output_dir
from pipeline.cli_types import Parser as _Parser, device as _device, existing as _existing
from pipeline.cli_types import bounded_int as _bounded_int, nonneg_int as _nonneg_int, positive_int as _positive_int
from pipeline.cli_types import unit_float as _unit_float
from ilif_lava import host_memory
from ilif_lava.progress import on_terminal
from ilif_lava.names import DATASETS, MAX_TIME_BINS
from pipeline.cli_train import add_train_args as _add_train_args, train_config as _config

# Subcommands defined in their own modules: each has ``add_parser(subparsers)`` and ``run(args) -> int`` and
# imports nothing heavy at module level (the parser is built before torch or Lava are imported).
PLUGIN_COMMANDS = {"study": "pipeline.study_cli", "nir": "pipeline.nir_cli", "gold": "pipeline.gold_cli"}


def _plugin(cmd: str):
    """The module of a plugin subcommand, or None when it is not installed in this checkout."""
    try:
        return importlib.import_module(PLUGIN_COMMANDS[cmd])
    except ModuleNotFoundError as exc:
        if exc.name == PLUGIN_COMMANDS[cmd]:
            return None
        raise


def _quiet_imports() -> None:
    """Import slayer (and torch) once the arguments are valid; its start-up notices are silenced by
    ``ilif_lava.compat`` for every import, library use included."""
    import lava.lib.dl.slayer  # noqa: F401


def _add_limit_args(p: argparse.ArgumentParser) -> None:
    from ilif_lava.file_limits import DEFAULT_LIMITS as L
    g = p.add_argument_group("network file limits (checked from HDF5 metadata before any array is read; "
                             "defaults: one Loihi 2 chip)")
    g.add_argument("--max-layers", type=_positive_int, default=None, help=f"default {L.max_layers}")
    g.add_argument("--max-neurons", type=_positive_int, default=None,
                   help=f"per layer and in total, default {L.max_neurons}")
    g.add_argument("--max-synapses", type=_positive_int, default=None, help=f"default {L.max_synapses}")
    g.add_argument("--max-bytes", type=_positive_int, default=None,
                   help=f"per dataset and in total, default {L.max_dataset_bytes}")


def _add_eval_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation data (default: the run's own test split)")
    g.add_argument("--dataset", choices=DATASETS, default=None, help="evaluate on this dataset's test split")
    g.add_argument("--data-dir", default=None, help="folder with the dataset files")
    g.add_argument("-T", "--time-bins", type=_bounded_int(1, MAX_TIME_BINS), default=None,
                   help="time steps per sample (default: the run's, or the dataset's recipe)")
    g.add_argument("--out", default=None, help="evaluation folder (default: the run folder for its own data, "
                                               "else <run>/eval-<dataset>-<folder>-T<T>)")


def _limits(args: argparse.Namespace):
    from ilif_lava.file_limits import DEFAULT_LIMITS
    n, b = getattr(args, "max_neurons", None), getattr(args, "max_bytes", None)
    return DEFAULT_LIMITS.scaled(max_layers=getattr(args, "max_layers", None), max_neurons=n,
                                 max_neurons_per_layer=n, max_synapses=getattr(args, "max_synapses", None),
                                 max_dataset_bytes=b, max_total_bytes=b)


def _run_dir(args: argparse.Namespace) -> Path:
    if getattr(args, "run_dir", None):
        return Path(args.run_dir)
    return Path("runs") / f"{args.dataset}-{args.neuron.lower()}-{args.arch}"


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(
        prog="ilif-lava",
        description="Train ILIF spiking networks with lava-dl SLAYER blocks, export netx HDF5, run them bit-exact "
                    "in Lava fixed point (CPU), check Loihi 2 limits and compare float vs deployed. "
                    "Each stage works on files the previous stage wrote in a run folder.",
        epilog=f"Every command keeps freed host memory for reuse (large tensors then skip the page faults of fresh "
               f"mappings on every training step, for more resident memory); {host_memory.ENV}=0 keeps the C "
               f"library's defaults.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("pipeline", help="train -> QAT -> export -> Lava -> compare report (the main job)",
                       description="Run every stage and write <run-dir>/report/ (report.md, report.json, PNGs).")
    _add_train_args(p)
    p.add_argument("--run-dir", default=None, help="output folder (default runs/<dataset>-<neuron>-<arch>)")
    p.add_argument("--baseline", default="lif", help="train this neuron with the same recipe for comparison "
                                                     "(default lif; 'none' to skip)")
    p.add_argument("--force", action="store_true", help="export even if the Loihi 2 checks fail")
    p.add_argument("--state-samples", type=_nonneg_int, default=2,
                   help="test samples whose states (u, v, CIU, MPIU) Lava records step by step (slow)")

    p = sub.add_parser("train", help="train a network (float, then QAT); resumable",
                       description="Writes <run-dir>/train/{model.pt,checkpoint.pt,log.jsonl,config.json}.")
    _add_train_args(p)
    p.add_argument("--run-dir", default=None)
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")

    p = sub.add_parser("export", help="export a trained model to netx HDF5 with Loihi 2 checks")
    p.add_argument("run_dir", type=_existing, help="run folder holding train/model.pt")
    p.add_argument("--force", action="store_true", help="write the file even if the Loihi 2 checks fail")

    p = sub.add_parser("simulate", help="run an exported network in Lava (CPU, fixed_pt) on a test split",
                       description="Run RUN/network.net (or --net FILE) in Lava fixed_pt on the run's test split, or "
                                   "on other data with --dataset/--data-dir/-T (results then go to "
                                   "RUN/eval-<dataset>-<folder>-T<T>/, or --out). Without a run folder: "
                                   "'simulate --net FILE --dataset NAME' evaluates a bare netx file and writes a "
                                   "Lava-only report.")
    p.add_argument("run_dir", type=_existing, nargs="?", default=None,
                   help="run folder (train/config.json says which data); omit to evaluate a bare --net file")
    p.add_argument("--net", type=_existing, default=None, help="HDF5 file (default <run-dir>/network.net)")
    _add_eval_data_args(p)
    p.add_argument("--limit", type=_positive_int, default=None, help="first N test samples only")
    p.add_argument("--state-samples", type=_nonneg_int, default=2, help="samples whose states are recorded")
    _add_limit_args(p)

    p = sub.add_parser("compare", help="compare float / quantized / Lava and write the report",
                       description="Compare the float model, its quantized twin and Lava fixed_pt on exactly the "
                                   "samples 'simulate' ran; writes report/ in the evaluation folder (the run "
                                   "folder, or the one the same --dataset/--data-dir/-T/--out flags chose). A run "
                                   "without network.net (not exported, or a network netx cannot express) is "
                                   "evaluated with the float and quantized engines alone; the report says Lava was "
                                   "not run and why.")
    p.add_argument("run_dir", type=_existing)
    _add_eval_data_args(p)
    p.add_argument("--baseline-dir", type=_existing, default=None, help="run folder of a baseline network")
    p.add_argument("--device", type=_device, default="auto")

    p = sub.add_parser("check", help="Loihi 2 constraint checks, resource and cost estimate of an HDF5 file",
                       description="Loihi 2 parameter checks with head-room in bits, the per-layer resource "
                                   "estimate and the Loihi 2 cost estimate of one inference. A bare file has no "
                                   "activity data: the cost estimate assumes every neuron spikes with probability "
                                   "--rate at each of -T steps (said so in the output).")
    p.add_argument("net", type=_existing)
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--rate", type=_unit_float, default=0.1,
                   help="assumed spikes per neuron per step for the cost estimate (default 0.1)")
    p.add_argument("-T", "--time-steps", type=_bounded_int(1, MAX_TIME_BINS), default=16,
                   help="assumed time steps per inference for the cost estimate (default 16)")
    _add_limit_args(p)

    for cmd in PLUGIN_COMMANDS:
        mod = _plugin(cmd)
        if mod is not None:
            mod.add_parser(sub)
    return ap


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def _late_signal(signum: int, frame: Any) -> None:
    """After the command's work (results written, Lava stopped): leave at once with the interruption code."""
    sys.stderr.write("ilif-lava: interrupted\n")
    sys.stderr.flush()
    os._exit(130)


def main(argv: Optional[List[str]] = None) -> int:
    """Run one subcommand; exit codes: 0 ok, 1 checks failed / training stopped, 2 bad input, 130 interrupted."""
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    old = signal.signal(signal.SIGTERM, _sigterm)      # SIGTERM ends a command like Ctrl-C does: cleanly, 130
    try:
        code = _main(argv)
    finally:
        signal.signal(signal.SIGTERM, old)
    if argv is None:
        # The console command: its work is done (results written atomically, Lava stopped). Leave without the
        # interpreter's teardown: Python restores the default signal actions while it tears torch and Lava down
        # (long on a busy machine), so a Ctrl-C or SIGTERM there would kill the process (-15) instead of ending
        # it as an interruption (one line, 130); and after a failed HDF5 write (full disk) the HDF5 library keeps
        # a half-closed file that crashes its own shutdown (SIGSEGV).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _late_signal)
        import logging
        import multiprocessing
        for child in multiprocessing.active_children():  # end leftover children, bounded (never a blocking join)
            with contextlib.suppress(Exception):
                child.join(2.0)
                if child.is_alive():
                    child.kill()
                    child.join(1.0)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _main(argv: Optional[List[str]]) -> int:
    try:
        ap = build_parser()
        args = ap.parse_args(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    try:
        _prerequisites(args)               # stage order: answered before torch or Lava are imported
        host_memory.apply_from_env()       # steps reuse freed memory (ilif_lava/host_memory.py; opt out: =0)
    except ValueError as exc:
        print(f"ilif-lava {args.cmd}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    try:
        _quiet_imports()
    except KeyboardInterrupt:
        print(f"ilif-lava {args.cmd}: interrupted", file=sys.stderr)
        return 130
    from ilif_lava.errors import IlifLavaError
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print(f"ilif-lava {args.cmd}: interrupted", file=sys.stderr)
        return 130
    except IlifLavaError as exc:  # every error raised on purpose: one line; 2 bad input, 1 failed check / training
        print(f"ilif-lava {args.cmd}: error: {_one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, FileNotFoundError) as exc:  # bad input: one line, exit code 2
        print(f"ilif-lava {args.cmd}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # read-only or full disk, a path under a file, ...: one line, exit code 2
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"ilif-lava {args.cmd}: error: {where}{exc.strerror or _one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"ilif-lava {args.cmd}: error: out of memory (lower -T, --hidden, --batch-size or the sample limits)",
              file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _light_config(run_dir: Path) -> Optional[dict]:
    """``train/config.json`` as a dict without importing torch (None when absent or unreadable: the stage then
    reports the exact problem)."""
    from ilif_lava.atomic import check_input
    from ilif_lava.safe_read import read_regular
    path = Path(run_dir) / "train" / "config.json"
    try:          # a FIFO or a link out of the run is refused before open(), by the stage's load_config too
        raw = json.loads(read_regular(check_input(path), 1 << 20, ValueError, "a config.json").decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return raw if isinstance(raw, dict) and "dataset" in raw and "time_bins" in raw else None


def _data_flags(args: argparse.Namespace) -> str:
    flags = [f"{f} {v}" for f, v in (("--dataset", args.dataset), ("--data-dir", args.data_dir),
                                      ("-T", args.time_bins), ("--out", args.out)) if v is not None]
    return "".join(" " + f for f in flags)


def _prerequisites(args: argparse.Namespace) -> None:
    """Stage-order mistakes as one line naming the command to run first (files checked, nothing imported)."""
    cmd = args.cmd
    if cmd not in ("export", "simulate", "compare"):
        return
    if cmd == "simulate" and args.run_dir is None:
        if args.net is None or args.dataset is None:
            raise ValueError("give a run folder, or a network file and its data: "
                             "'ilif-lava simulate --net FILE --dataset NAME [--data-dir DIR]'")
        return
    run = Path(args.run_dir)
    if not run.is_dir():
        raise ValueError(f"{run}: is not a run folder")
    train_first = f"run 'ilif-lava train --run-dir {run}' first"
    if cmd in ("export", "compare") and not (run / "train" / "model.pt").exists():
        raise ValueError(f"{run}: no trained model (train/model.pt); {train_first}")
    if cmd == "simulate" and not (run / "train" / "config.json").exists():
        raise ValueError(f"{run}: no train/config.json (which data to run); {train_first}, or evaluate the "
                         f"file alone with 'ilif-lava simulate --net FILE --dataset NAME'")
    if cmd == "export":
        return
    net = Path(args.net) if getattr(args, "net", None) else run / "network.net"
    if not net.exists() and not net.is_symlink():
        if cmd == "compare":          # no network.net: the float and quantized engines alone (the report says why)
            args.engines_only = True
            return
        compare = f"'ilif-lava compare {run}{_data_flags(args)}' evaluates its float and quantized engines"
        raise ValueError(f"{net}: no such network file; run 'ilif-lava export {run}' first (or {compare})")
    if cmd == "compare":
        from pipeline import evaluation
        conf = _light_config(run)
        if conf is None:
            return                                         # compare names the config problem itself
        want = evaluation.requested(conf, args.dataset, args.data_dir, args.time_bins)
        folder = evaluation.output_dir(run, None, want, evaluation.is_default(conf, args.dataset, args.data_dir,
                                                                              args.time_bins),
                                       None if args.out is None else Path(args.out))
        if not (folder / evaluation.LAVA_RESULTS).is_file():
            raise ValueError(f"{folder / evaluation.LAVA_RESULTS}: no Lava results; run "
                             f"'ilif-lava simulate {run}{_data_flags(args)}' first")
        args.eval_dir = folder


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd in ("pipeline", "train"):
        check_output_dir(_run_dir(args))
    if args.cmd == "train":                          # the training code only (no Lava runtime, export or report)
        from pipeline.cli_train import stage_train
        path = stage_train(_config(args), _run_dir(args), resume=not args.no_resume)
        from training.distributed import env_from_torchrun
        if env_from_torchrun().main:                 # under torchrun only rank 0 prints
            print(path)
        return 0
    from pipeline import run
    from ilif_lava import hdf5_validate
    if args.cmd in PLUGIN_COMMANDS:
        return int(_plugin(args.cmd).run(args))
    if args.cmd in ("simulate", "check"):
        with hdf5_validate.use_limits(_limits(args)):
            return _dispatch_files(args)
    if args.cmd == "pipeline":
        cfg = _config(args)
        base = None if str(args.baseline).lower() == "none" else args.baseline
        run.run_pipeline(cfg, _run_dir(args), baseline=base, force=args.force, state_samples=args.state_samples)
    elif args.cmd == "export":
        run.stage_export(args.run_dir, force=args.force)
    elif args.cmd == "compare" and getattr(args, "engines_only", False):
        rep = run.stage_compare_engines(args.run_dir, dataset=args.dataset, data_dir=args.data_dir,
                                        time_bins=args.time_bins, out_dir=None if args.out is None else Path(args.out),
                                        device=args.device, progress=on_terminal())
        print(json.dumps({"accuracy": rep["accuracy"], "prediction_agreement": rep["prediction_agreement"],
                          "lava_not_run": rep["lava"]["reason"]}))
    elif args.cmd == "compare":
        rep = run.stage_compare(args.run_dir, baseline_dir=args.baseline_dir, device=args.device,
                                eval_dir=getattr(args, "eval_dir", None), progress=on_terminal())
        print(json.dumps({"accuracy": rep["accuracy"], "prediction_agreement": rep["prediction_agreement"]}))
    return 0


def _dispatch_files(args: argparse.Namespace) -> int:
    """``simulate`` and ``check``: the network file is validated (with the ``--max-*`` limits) first."""
    from pipeline import run
    from ilif_lava import hdf5_validate
    if args.cmd == "simulate":
        run.stage_simulate(args.run_dir, net_path=args.net, limit=args.limit, state_samples=args.state_samples,
                           progress=on_terminal(), dataset=args.dataset, data_dir=args.data_dir,
                           time_bins=args.time_bins, out_dir=None if args.out is None else Path(args.out))
        return 0
    from ilif_lava import loihi2
    hdf5_validate.validate_file(args.net)             # structure, links, storage, filters, sizes: before reading
    try:
        rep = loihi2.check_network(args.net)
    except OSError as exc:  # h5py: not an HDF5 file
        raise ValueError(f"{args.net}: not a readable HDF5 file ({_one_line(exc)})") from None
    from simulations import cost_assumed
    est = cost_assumed.check_entry(args.net, rate=args.rate, steps=args.time_steps)
    if args.json:
        print(json.dumps({**json.loads(rep.to_json()), "loihi2_cost": est}, indent=2, default=float))
    else:
        print(rep.to_markdown().rstrip("\n") + "\n\n" + cost_assumed.check_markdown(est), end="")
    return 0 if rep.ok else 1


if __name__ == "__main__":
    sys.exit(main())
