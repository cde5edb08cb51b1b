"""Tests of the ``ilif-lava`` command line: help texts, exit codes and one-line errors, the stages on a tiny run."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from export.export_net import export_model
from tests.helpers import run_cli
from training.models import build_model

EXE = Path(sys.executable).with_name("ilif-lava")
TINY_TRAIN = ["--dataset", "digits", "-T", "4", "--hidden", "8", "--epochs", "1", "--qat-epochs", "1",
              "--limit-train", "40", "--limit-test", "6", "--batch-size", "20", "--device", "cpu"]


_run_main = run_cli


def _error_lines(err: str):
    return [ln for ln in err.splitlines() if "error:" in ln]


@pytest.fixture(scope="module")
def net_file(tmp_path_factory) -> Path:
    """An exported (untrained) tiny ILIF MLP: valid for the Loihi 2 checks."""
    model = build_model("mlp", (1, 8, 8), 10, "ILIF", None, hidden=8)
    path, rep = export_model(model, tmp_path_factory.mktemp("net") / "tiny.net")
    assert rep.ok
    return path


# ---------------------------------------------------------------------------------------------------------
# help
# ---------------------------------------------------------------------------------------------------------
HELP_OPTIONS = {
    "pipeline": ["--dataset", "--run-dir", "--baseline", "--force", "--state-samples", "--time-bins", "--neuron",
                 "--kappa", "--threshold", "--epochs", "--qat-epochs", "--data-dir"],
    "train": ["--run-dir", "--no-resume", "--dataset", "--epochs", "--qat-epochs", "--seed"],
    "export": ["run_dir", "--force"],
    "simulate": ["run_dir", "--net", "--limit", "--state-samples"],
    "compare": ["run_dir", "--baseline-dir", "--device"],
    "check": ["net", "--json"],
}


@pytest.mark.parametrize("cmd", sorted(HELP_OPTIONS))
def test_subcommand_help(cmd, capsys):
    code, out, err = _run_main([cmd, "--help"], capsys)
    assert code == 0, err
    assert out.startswith(f"usage: ilif-lava {cmd}")
    for opt in HELP_OPTIONS[cmd]:
        assert opt in out, (cmd, opt)


def test_top_level_help_lists_subcommands(capsys):
    code, out, _ = _run_main(["--help"], capsys)
    assert code == 0
    for cmd in HELP_OPTIONS:
        assert cmd in out


def test_help_in_a_real_subprocess():
    assert EXE.is_file(), EXE
    res = subprocess.run([str(EXE), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "usage: ilif-lava" in res.stdout
    for cmd in HELP_OPTIONS:
        assert cmd in res.stdout


def test_invalid_value_in_a_real_subprocess(tmp_path):
    res = subprocess.run([str(EXE), "pipeline", "--kappa", "1.5", "--run-dir", str(tmp_path / "r")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert _error_lines(res.stderr) == ["ilif-lava pipeline: error: argument --kappa: expected a value in [0, 1], "
                                        "got 1.5"]
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------------------------
# invalid values: exit code 2, one error line, no traceback, nothing written
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, needle", [
    (["pipeline", "-T", "-3"], "-T/--time-bins: expected a positive integer, got -3"),
    (["pipeline", "-T", "0"], "-T/--time-bins: expected a positive integer, got 0"),
    (["train", "--time-bins", "abc"], "-T/--time-bins: expected a positive integer, got 'abc'"),
    (["pipeline", "--dataset", "mnist"], "argument --dataset: invalid choice: 'mnist'"),
    (["pipeline", "--kappa", "1.5"], "argument --kappa: expected a value in [0, 1], got 1.5"),
    (["pipeline", "--threshold", "0"], "argument --threshold: expected a value > 0, got 0"),
    (["pipeline", "--threshold", "-1"], "argument --threshold: expected a value > 0, got -1"),
    (["train", "--lr", "0"], "argument --lr: expected a value > 0, got 0"),
    (["pipeline", "--neuron", "XLIF"], "argument --neuron: invalid choice: 'XLIF'"),
    (["export", "/nonexistent/run"], "/nonexistent/run: no such file or folder"),
    (["simulate", "/nonexistent/run"], "/nonexistent/run: no such file or folder"),
    (["compare", "/nonexistent/run"], "/nonexistent/run: no such file or folder"),
    (["check", "/nonexistent/net.h5"], "/nonexistent/net.h5: no such file or folder"),
    (["export"], "the following arguments are required: run_dir"),
])
def test_invalid_values_exit_2(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # a default run folder would land here
    code, out, err = _run_main(argv, capsys)
    assert code == 2
    assert "Traceback" not in err
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"ilif-lava {argv[0]}: error: ") and needle in lines[0], err
    assert list(tmp_path.iterdir()) == []


def test_missing_nmnist_folder(capsys, tmp_path):
    run = tmp_path / "run"
    code, out, err = _run_main(["pipeline", "--dataset", "nmnist", "--data-dir", "/nonexistent", "--run-dir",
                                str(run), "--epochs", "1", "--device", "cpu"], capsys)
    assert code == 2
    assert "Traceback" not in err
    assert err.startswith("ilif-lava pipeline: error: Dataset 'nmnist' not found")
    assert "/nonexistent/train.txt" in err
    assert not (run / "train" / "checkpoint.pt").exists()


def test_stage_errors_are_one_line(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = _run_main(["export", str(tmp_path / "empty")], capsys)
    assert code == 2 and "Traceback" not in err
    assert _error_lines(err) == [ln for ln in err.splitlines() if ln.strip()]
    assert "model.pt" in err
    junk = tmp_path / "junk.net"
    junk.write_text("not hdf5")
    code, _, err = _run_main(["check", str(junk)], capsys)
    assert code == 2 and "Traceback" not in err
    assert len(_error_lines(err)) == 1 and "junk.net: not a readable HDF5 file" in err


# ---------------------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------------------
def test_check_valid_file_exits_0(net_file, capsys):
    code, out, err = _run_main(["check", str(net_file)], capsys)
    assert code == 0, err
    assert "**OK**" in out and "**NO**" not in out
    code, out, _ = _run_main(["check", str(net_file), "--json"], capsys)
    assert code == 0
    rep = json.loads(out)
    assert rep["ok"] is True and rep["total_neurons"] == 8 + 10


def test_check_planted_bad_file_exits_1(net_file, capsys, tmp_path):
    """A file netx loads (weights in [-256, 255]) but Loihi 2 cannot hold (an odd weight, 255 > 254): exit 1."""
    bad = tmp_path / "bad.net"
    shutil.copy(net_file, bad)
    with h5py.File(bad, "r+") as f:
        w = f["layer/0/weight"][()]
        w[0, 0] = 255
        f["layer/0/weight"][()] = w
    code, out, _ = _run_main(["check", str(bad)], capsys)
    assert code == 1
    assert "**FAIL**" in out and out.count("**NO**") == 1
    assert "| 0 | weight |" in out and "| 255 | -256 | 254 |" in out
    code, out, _ = _run_main(["check", str(bad), "--json"], capsys)
    assert code == 1
    rep = json.loads(out)
    bad_findings = [f for f in rep["findings"] if not f["ok"]]
    assert [(f["layer"], f["key"], f["value_max"], f["limit_max"]) for f in bad_findings] == \
        [(0, "weight", 255, 254)]


def test_check_validates_the_file_first(net_file, capsys, tmp_path):
    """A file netx would misbuild (vDecay 5000 > 4096) is refused by the validator: one line, exit 2."""
    bad = tmp_path / "bad.net"
    shutil.copy(net_file, bad)
    with h5py.File(bad, "r+") as f:
        f["layer/0/neuron/vDecay"][()] = 5000
    code, out, err = _run_main(["check", str(bad)], capsys)
    assert code == 2 and out == ""
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"ilif-lava check: error: {bad}: layer 0: key 'neuron/vDecay'")
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------------------
# the stages, one after the other, on a tiny run
# ---------------------------------------------------------------------------------------------------------
def test_stages_through_the_cli(capsys, tmp_path):
    run = tmp_path / "run"
    code, out, err = _run_main(["train", *TINY_TRAIN, "--run-dir", str(run)], capsys)
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(run / "train" / "model.pt")
    log = [json.loads(ln) for ln in (run / "train" / "log.jsonl").read_text().splitlines()]
    assert [(e["epoch"], e["phase"]) for e in log] == [(1, "float"), (2, "qat")]
    # resuming with another configuration is refused with one line and exit code 1 (not a traceback)
    other = [a if a != "4" else "5" for a in TINY_TRAIN]
    code, _, err = _run_main(["train", *other, "--run-dir", str(run)], capsys)
    assert code == 1 and "Traceback" not in err
    assert _error_lines(err) and "different configuration" in err and str(run / "train" / "checkpoint.pt") in err
    assert json.loads((run / "train" / "config.json").read_text())["time_bins"] == 4   # the run keeps its label
    code, out, err = _run_main(["export", str(run)], capsys)
    assert code == 0, err
    assert (run / "network.net").is_file() and (run / "network.net.loihi2.json").is_file()
    code, out, err = _run_main(["simulate", str(run), "--limit", "4", "--state-samples", "1"], capsys)
    assert code == 0, err
    z = np.load(run / "lava_test.npz")
    assert z["spikes_0"].shape == (4, 8, 4) and z["state_0_v"].shape == (1, 8, 4)
    from simulations.lava_run import LAVA_PHASES                    # Lava's phases, saved and printed
    phases = z["lava_phase_s"]
    assert phases.shape == (len(LAVA_PHASES),) and (phases >= 0).all() and phases[0] > 0
    assert phases.sum() <= float(z["wall_s"]) + 1.0
    assert "Lava phases: build " in out and "readback" in out
    code, out, err = _run_main(["compare", str(run), "--device", "cpu"], capsys)
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["prediction_agreement"]["quantized_vs_lava"] == 1.0
    assert summary["accuracy"]["lava"] == pytest.approx(float((z["pred"] == z["labels"]).mean()))
    assert (run / "report" / "report.md").is_file()
