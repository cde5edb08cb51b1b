"""``ilif-lava study``: the command-line plug-in (loaded by :mod:`pipeline.cli`). Light at import: the logic
(:mod:`pipeline.study`, torch, training) is imported inside :func:`run`."""
from __future__ import annotations

import argparse
from typing import List, Tuple

from ilif_lava.names import MAX_TIME_BINS, VARIANTS
from pipeline.cli_train import add_train_args
from pipeline.cli_types import bounded_int, positive_float, tau, unit_float
SWEEP_TYPES = {"gamma": positive_float, "tau": tau, "kappa": unit_float, "T": bounded_int(1, MAX_TIME_BINS)}
SWEEP_FLAGS = {"tau": "--tau", "kappa": "--kappa", "T": "-T/--time-bins"}   # a swept value may not also be fixed


def _variants(v: str) -> List[str]:
    names = [x.strip().upper() for x in v.split(",") if x.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of variants")
    for n in names:
        if n not in VARIANTS:
            raise argparse.ArgumentTypeError(f"unknown variant {n!r}; choose from {','.join(VARIANTS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"variant listed twice in {v!r}")
    return names


def _seeds(v: str) -> List[int]:
    parse = bounded_int(0, 2 ** 32 - 1)
    items = [x.strip() for x in v.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list of seeds")
    seeds = [parse(x) for x in items]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"seed listed twice in {v!r}")
    return seeds


def _sweep(v: str) -> Tuple[str, List[float]]:
    name, sep, vals = v.partition("=")
    name = name.strip()
    if not sep or name not in SWEEP_TYPES:
        raise argparse.ArgumentTypeError(f"expected NAME=v1,v2,... with NAME one of {', '.join(SWEEP_TYPES)}; "
                                         f"got {v!r}")
    items = [x.strip() for x in vals.split(",") if x.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"no values for {name} in {v!r}")
    values = [SWEEP_TYPES[name](x) for x in items]
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"value listed twice in {v!r}")
    return name, values


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``study`` subcommand to ``subparsers``."""
    p = subparsers.add_parser(
        "study", help="grid of neuron variants x seeds x one swept parameter, resumable, tables + plots",
        description="Train and measure every cell of a grid (neuron variant x seed x one swept parameter) with "
                    "the dataset's recipe and the training flags below (they set the base of every cell). Each "
                    "cell: float + QAT training, float and deployed (bit-exact integer) test accuracy, firing "
                    "rate, continuous firing and spikes per time step per layer, share of membrane-potential "
                    "values above 2 x threshold, per-epoch loss, ACs, MACs and SOP energy per sample (the "
                    "paper's Table 5 columns); a network that cannot be deployed is measured in float. Any "
                    "--arch (the paper's vgg11bn and resnet18 too) and --recipe. Writes OUT/cells/<cell>.json (a "
                    "finished cell is never run again: rerun the same command to resume), OUT/study.json, OUT/study.md "
                    "(mean +- std over seeds) and OUT/*.png.",
        epilog="examples: ilif-lava study --dataset nmnist --variants LIF,ILIF --seeds 0,1,2 "
               "--sweep gamma=0.5,1,2,3 --out runs/study-gamma; the paper's Table 2, CIFAR-10 column, on a GPU: "
               "ilif-lava study --recipe paper-cifar10-resnet18 --data-dir DATA --variants ILIF,MPIU,CIU,LIF "
               "--seeds 0,1,2 --device cuda --out runs/table2-cifar10")
    g = p.add_argument_group("grid")
    g.add_argument("--variants", type=_variants, default=list(VARIANTS),
                   help=f"comma-separated neuron variants (default {','.join(VARIANTS)})")
    g.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated seeds (default 0,1,2)")
    g.add_argument("--sweep", type=_sweep, default=None, metavar="NAME=v1,v2,...",
                   help="one swept parameter: gamma (rectangle surrogate width, threshold units), tau (membrane "
                        "time constant, >= 1), kappa (CIU decay, [0, 1]) or T (time steps); default: no sweep")
    g.add_argument("--out", required=True, help="study folder (cells/, study.json, study.md, PNGs)")
    g.add_argument("--work-dir", default=None,
                   help="training folders of the cells, with model.pt/checkpoint.pt (default OUT/train)")
    g.add_argument("--report-only", action="store_true",
                   help="train nothing: rebuild study.json/md and plots from the finished cells")
    add_train_args(p)
    for a in p._actions:        # one neuron and one seed per cell: set by --variants / --seeds instead
        if a.dest in ("neuron", "seed"):
            a.help = argparse.SUPPRESS
    p.set_defaults(neuron=None, seed=None)
    return p


def run(args: argparse.Namespace) -> int:
    """Build the spec from the flags, run the study; exit code 0 (1 when ``--report-only`` finds no cell)."""
    from pathlib import Path
    from pipeline.cli_types import check_output_dir
    from pipeline.cli_train import train_config
    from pipeline.study import StudySpec, run_study
    if args.neuron is not None or args.seed is not None:
        raise ValueError("--neuron/--seed: a study sets these per cell; use --variants and --seeds")
    param, values = args.sweep if args.sweep else (None, [])
    if param in SWEEP_FLAGS and getattr(args, "time_bins" if param == "T" else param) is not None:
        raise ValueError(f"--sweep {param}: {SWEEP_FLAGS[param]} is also given; sweep a value or fix it, not both")
    if param == "gamma" and args.surrogate not in (None, "rectangle"):
        raise ValueError(f"--sweep gamma: gamma is the rectangle surrogate's width, but --surrogate is "
                         f"{args.surrogate}")
    for flag, path in (("--out", args.out), ("--work-dir", args.work_dir)):
        if path is not None:
            check_output_dir(Path(path), flag)
    base = train_config(argparse.Namespace(**{**vars(args), "neuron": args.variants[0], "seed": 0}))
    spec = StudySpec(base=base, variants=args.variants, seeds=args.seeds, sweep_param=param, sweep_values=values,
                     out=Path(args.out), work_dir=Path(args.work_dir) if args.work_dir else None)
    study = run_study(spec, train_cells=not args.report_only)
    return 1 if args.report_only and not study["cells"] else 0
