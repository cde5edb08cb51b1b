"""``ilif-lava gold``: write or check a gold-vector pack (:mod:`simulations.gold`) of a deployed network.

``ilif-lava gold RUN`` reads ``RUN/network.net`` and the Lava results of ``ilif-lava simulate`` (``lava_test.npz``
and the data record saying which samples they are), reloads exactly those samples (their SHA-256 must match the
record), and writes ``RUN/gold/``. ``ilif-lava gold --check RUN`` runs the pack's pytest file. Light at import (the
plug-in contract of :mod:`pipeline.cli`): numpy, torch and Lava are imported inside :func:`run`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

from pipeline.cli_types import existing, nonneg_int

GOLD_DIR = "gold"
DEFAULT_SAMPLES = 16
DEFAULT_STATE_SAMPLES = 2
CHECK_TIMEOUT_S = 3600          # the replay of a pack in Lava on the CPU; a Loihi run is far shorter


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``gold`` subcommand to ``subparsers``."""
    p = subparsers.add_parser(
        "gold", help="write (or --check) a gold-vector pack: input, every layer's spikes, states, pytest file",
        description="Write RUN/gold/ (or --out): network.net, input.npy, layer-<i>.npy spikes [N, neurons, T] and "
                    "layer-<i>-<state>.npy states of the deployed network as 'ilif-lava simulate' recorded them, "
                    "manifest.json (SHA-256 of every file) and test_gold.py, a pytest file that rebuilds the "
                    "network with ILIFNetwork and checks Lava reproduces every spike. With --check: run it.",
        epilog="example: ilif-lava simulate RUN && ilif-lava gold RUN && ilif-lava gold --check RUN")
    p.add_argument("run_dir", type=existing, help="run folder holding network.net and lava_test.npz (or a gold "
                                                  "folder itself with --check)")
    p.add_argument("--out", default=None, help=f"pack folder (default RUN/{GOLD_DIR})")
    p.add_argument("--samples", type=nonneg_int, default=DEFAULT_SAMPLES,
                   help=f"first N simulated samples in the pack (default {DEFAULT_SAMPLES}; 0 = all)")
    p.add_argument("--state-samples", type=nonneg_int, default=DEFAULT_STATE_SAMPLES,
                   help=f"samples whose states go in the pack (at most those simulate recorded; default "
                        f"{DEFAULT_STATE_SAMPLES})")
    p.add_argument("--check", action="store_true", help="run the pack's pytest file instead of writing a pack")
    return p


def pack_dir(args: argparse.Namespace) -> Path:
    """The pack folder: ``--out``, or RUN itself when it is a pack, else RUN/gold."""
    if args.out is not None:
        return Path(args.out)
    run = Path(args.run_dir)
    from simulations.gold import MANIFEST
    return run if (run / MANIFEST).is_file() else run / GOLD_DIR


def check(folder: Path) -> int:
    """Run ``folder/test_gold.py`` with pytest in a child process (this repository on its path); its exit code."""
    from simulations.gold import TEST_FILE, load_pack
    load_pack(folder)                     # one line naming the file when the pack is damaged, before pytest
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo)] + [p for p in [os.environ.get("PYTHONPATH")]
                                                                       if p]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(folder),
           str(folder / TEST_FILE)]
    return subprocess.run(cmd, cwd=str(repo), env=env, timeout=CHECK_TIMEOUT_S).returncode


@dataclass
class Simulated:
    """What ``ilif-lava simulate`` recorded for a run, cut to the pack's samples: the network file, input
    [N, C, H, W, T], Lava spikes per layer [N, neurons, T], states layer -> name -> [K, neurons, T], data record."""

    network: Path
    x: Any
    spikes: List[Any]
    states: Dict[int, Dict[str, Any]]
    data: Dict[str, Any]

    @property
    def state_samples(self) -> int:
        return next((int(a.shape[0]) for per in self.states.values() for a in per.values()), 0)


def simulated_run(run_dir: Path, samples: int, state_samples: int) -> Simulated:
    """Load ``run_dir``'s network and Lava results and reload exactly the samples they were computed on (the data
    record's SHA-256 must match the data now); keep the first ``samples`` (0: all) and ``state_samples``."""
    import json
    from pipeline import evaluation
    from pipeline.run import _eval_inputs, _load_lava
    net = run_dir / "network.net"
    if not net.is_file():
        raise ValueError(f"{net}: no network file; run 'ilif-lava export {run_dir}' first")
    results = run_dir / evaluation.LAVA_RESULTS
    if not results.is_file():
        raise ValueError(f"{results}: no Lava results; run 'ilif-lava simulate {run_dir}' first")
    spikes, states, z = _load_lava(results)
    if "data_json" not in z.files:
        raise ValueError(f"{results}: key 'data_json' is missing (written before data records existed); run "
                         f"'ilif-lava simulate {run_dir}' again")
    try:
        record = json.loads(str(z["data_json"]))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{results}: key 'data_json' is damaged ({exc})") from None
    want = evaluation.EvalData.from_dict(record if isinstance(record, dict) else {}, str(results))
    x, _, data = _eval_inputs(want)
    if want.sha256 is not None and not want.same_samples(data):
        raise ValueError(f"{results}: simulated on other samples than {data.describe()} gives now (the data "
                         f"changed); run 'ilif-lava simulate {run_dir}' again")
    n = int(spikes[0].shape[0]) if samples == 0 else min(int(samples), int(spikes[0].shape[0]))
    k = min(int(state_samples), n)
    kept = {l: {name: a[:k] for name, a in per.items()} for l, per in states.items()} if k else {}
    return Simulated(network=net, x=x.numpy()[:n], spikes=[s[:n] for s in spikes], states=kept,
                     data={**{k: v for k, v in record.items() if k != "network"}, "pack_samples": n})


def run(args: argparse.Namespace) -> int:
    """Write the pack (exit 0) or, with ``--check``, run it (pytest's exit code: 0 when Lava reproduces it)."""
    folder = pack_dir(args)
    if args.check:
        return 0 if check(folder) == 0 else 1
    from pipeline.cli_types import check_output_dir
    check_output_dir(folder, "--out")
    run_data = simulated_run(Path(args.run_dir), args.samples, args.state_samples)
    from simulations.gold import write_pack
    out = write_pack(folder, run_data.network, run_data.x, run_data.spikes, run_data.states, run_data.data)
    print(f"gold pack: {run_data.x.shape[0]} samples x {run_data.x.shape[-1]} steps, {len(run_data.spikes)} "
          f"layers, states of {run_data.state_samples} samples in {out}; check it with "
          f"'ilif-lava gold --check {out}'")
    return 0
