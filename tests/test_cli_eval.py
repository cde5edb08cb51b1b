"""Evaluate anything from the command line: a trained run on another data folder, a bare netx file on a dataset,
and every stage-order mistake answered with the command to run first (issue 12 item 4)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.helpers import run_cli

T = 8


def _subset(src: Path, dst: Path, rows: slice) -> Path:
    """A real N-MNIST folder holding some of ``src``'s test samples (files copied, listing rewritten)."""
    dst.mkdir(parents=True)
    lines = [l for l in (src / "test.txt").read_text().splitlines() if l.strip() and not l.startswith("#")]
    chosen = lines[rows]
    for line in chosen:
        sid = line.split()[0]
        shutil.copyfile(src / f"{sid}.bs2", dst / f"{sid}.bs2")
    (dst / "test.txt").write_text("#sample #class\n" + "\n".join(chosen) + "\n")
    (dst / "train.txt").write_text("#sample #class\n")
    return dst


@pytest.fixture(scope="module")
def trained(nmnist_dir, tmp_path_factory):
    """A tiny N-MNIST ILIF run, trained and exported through the CLI."""
    run = tmp_path_factory.mktemp("evalrun") / "run"
    from pipeline.cli import main
    assert main(["train", "--dataset", "nmnist", "--data-dir", str(nmnist_dir), "--limit-train", "24",
                 "--limit-test", "4", "-T", str(T), "--epochs", "1", "--qat-epochs", "1", "--hidden", "16",
                 "--weight-scale", "6", "--device", "cpu", "--run-dir", str(run)]) == 0
    assert main(["export", str(run)]) == 0
    other = _subset(nmnist_dir, tmp_path_factory.mktemp("other") / "nmnist_other", slice(-5, None))
    return run, other


def test_stage_order_mistakes_name_the_command_to_run_first(tmp_path, capsys):
    empty = tmp_path / "run"
    empty.mkdir()
    code, _, err = run_cli(["export", str(empty)], capsys)
    assert code == 2 and f"ilif-lava train --run-dir {empty}" in err and err.count("\n") == 1
    code, _, err = run_cli(["compare", str(empty)], capsys)
    assert code == 2 and "train/model.pt" in err and "ilif-lava train" in err
    code, _, err = run_cli(["simulate", str(empty)], capsys)
    assert code == 2 and "train/config.json" in err and "ilif-lava train" in err
    (empty / "train").mkdir()
    (empty / "train" / "model.pt").write_bytes(b"placeholder: only its presence is checked here")
    (empty / "train" / "config.json").write_text(json.dumps({"dataset": "digits", "time_bins": 4}))
    code, _, err = run_cli(["simulate", str(empty)], capsys)
    assert code == 2 and f"ilif-lava export {empty}" in err
    (empty / "network.net").write_bytes(b"placeholder")
    code, _, err = run_cli(["compare", str(empty), "--dataset", "nmnist"], capsys)
    assert code == 2 and f"ilif-lava simulate {empty} --dataset nmnist" in err and "eval-nmnist-default-T4" in err
    code, _, err = run_cli(["simulate", "--dataset", "digits"], capsys)
    assert code == 2 and "--net FILE --dataset NAME" in err


def _heavy_modules_loaded(argv: list) -> tuple:
    """(exit code, torch imported?, Lava imported?, stderr) of ``pipeline.cli.main(argv)`` in a fresh process."""
    code = ("import json, sys; from pipeline.cli import main\n"
            "try:\n    rc = main(json.loads(sys.argv[1]))\nexcept SystemExit as e:\n    rc = e.code\n"
            "print('RESULT', rc, 'torch' in sys.modules, any(m.startswith('lava') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(argv)], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT")]
    assert line, out.stdout + out.stderr
    _, rc, torch_in, lava_in = line[0].split()
    return int(rc), torch_in == "True", lava_in == "True", out.stderr


def test_stage_order_answered_before_torch_or_lava_load(tmp_path):
    """The stage-order answer comes from file checks alone: torch and Lava are never imported for it."""
    for cmd in ("export", "compare", "simulate"):
        rc, torch_in, lava_in, err = _heavy_modules_loaded([cmd, str(tmp_path)])
        assert (rc, torch_in, lava_in) == (2, False, False) and "ilif-lava train --run-dir" in err, (cmd, err)


@pytest.mark.parametrize("argv", [["--help"], ["pipeline", "--help"], ["train", "--help"], ["simulate", "--help"],
                                  ["compare", "--help"], ["check", "--help"], ["export", "--help"], ["study", "--help"],
                                  ["nir", "--help"]])
def test_help_imports_neither_torch_nor_lava(argv):
    """--help is answered from the parser alone (lazy imports), so it is fast on any machine."""
    rc, torch_in, lava_in, _ = _heavy_modules_loaded(argv)
    assert (rc, torch_in, lava_in) == (0, False, False)


def test_run_evaluated_on_another_folder(trained, capsys):
    run, other = trained
    code, out, err = run_cli(["simulate", str(run), "--data-dir", str(other), "--limit", "3",
                              "--state-samples", "1"], capsys)
    assert code == 0, err
    folder = run / f"eval-nmnist-{other.name}-T{T}"
    rec = json.loads((folder / "data.json").read_text())
    assert (rec["dataset"], rec["data_dir"], rec["samples"], rec["time_bins"]) == ("nmnist", str(other), 3, T)
    assert str(other) in out and "\r" not in err        # no progress bar drawn into a pipe or log
    assert not (run / "lava_test.npz").exists()       # the run's own results are never overwritten
    code, out, err = run_cli(["compare", str(run), "--data-dir", str(other)], capsys)
    assert code == 0, err
    rep = json.loads((folder / "report" / "report.json").read_text())
    assert rep["data"]["data_dir"] == str(other) and rep["samples"] == 3
    assert str(other) in (folder / "report" / "report.md").read_text()
    assert sum(r["mismatches"] for r in rep["spikes"]["quantized_vs_lava"]) == 0
    labels = [int(l.split()[1]) for l in (other / "test.txt").read_text().splitlines()[1:4]]
    assert np.load(folder / "lava_test.npz")["labels"].tolist() == labels

    # the data changed under the results: compare refuses instead of comparing other samples
    lines = (other / "test.txt").read_text().splitlines()
    (other / "test.txt").write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    try:
        code, _, err = run_cli(["compare", str(run), "--data-dir", str(other)], capsys)
        assert code == 2 and "simulate' again" in err
    finally:
        (other / "test.txt").write_text("\n".join(lines) + "\n")


def test_bare_network_file_on_a_dataset(trained, tmp_path, capsys):
    run, other = trained
    out_dir = tmp_path / "bare"
    code, out, err = run_cli(["simulate", "--net", str(run / "network.net"), "--dataset", "nmnist",
                              "--data-dir", str(other), "-T", str(T), "--out", str(out_dir),
                              "--state-samples", "0"], capsys)
    assert code == 0, err
    rep = json.loads((out_dir / "report" / "report.json").read_text())
    z = np.load(out_dir / "lava_test.npz")
    assert rep["samples"] == 5 and rep["data"]["data_dir"] == str(other)
    assert rep["accuracy"]["lava"] == pytest.approx(float((z["pred"] == z["labels"]).mean()))
    assert [l["neurons"] for l in rep["layers"]] == [16, 10]
    md = (out_dir / "report" / "report.md").read_text()
    assert str(other) in md and "Accuracy (Lava fixed_pt)" in md

    code, _, err = run_cli(["simulate", "--net", str(run / "network.net"), "--dataset", "digits",
                            "--out", str(tmp_path / "wrong"), "--state-samples", "0"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "layer 0" in err and "2312" in err and "[1, 8, 8]" in err     # N-MNIST's 2x34x34 net vs 1x8x8 digits


def test_run_without_network_file_evaluated_on_other_data(nmnist_dir, tmp_path, capsys):
    """A trained run without network.net (here a tiny resnet18, not exported) is evaluated on another data folder
    from the command line with the float and quantized engines; the report says Lava was not run and why.
    ``simulate`` of such a run names the command that does work."""
    run = tmp_path / "resnet"
    assert run_cli(["train", "--arch", "resnet18", "--dataset", "nmnist", "--data-dir", str(nmnist_dir),
                    "--limit-train", "8", "--limit-test", "2", "-T", "3", "--epochs", "1", "--qat-epochs", "1",
                    "--hidden", "32", "--batch-size", "8", "--loss", "rate", "--device", "cpu", "--run-dir", str(run)],
                   capsys)[0] == 0
    other = _subset(nmnist_dir, tmp_path / "nmnist_other", slice(-3, None))
    assert not (run / "network.net").exists()
    code, _, err = run_cli(["simulate", str(run), "--data-dir", str(other)], capsys)
    assert code == 2 and err.count("\n") == 1 and f"ilif-lava compare {run} --data-dir {other}" in err

    code, out, err = run_cli(["compare", str(run), "--data-dir", str(other)], capsys)
    assert code == 0, err
    folder = run / "eval-nmnist-nmnist_other-T3"
    rep = json.loads((folder / "report" / "report.json").read_text())
    printed = json.loads(out.strip().splitlines()[-1])
    assert rep["lava"]["ran"] is False and "network.net" in rep["lava"]["reason"]
    assert printed["lava_not_run"] == rep["lava"]["reason"] and printed["accuracy"] == rep["accuracy"]
    assert (rep["data"]["data_dir"], rep["samples"], rep["time_steps"]) == (str(other), 3, 3)
    assert set(rep["accuracy"]) == {"float", "quantized"} and 0.0 <= rep["accuracy"]["quantized"] <= 1.0
    rows = rep["spikes"]["float_vs_quantized"]
    assert len(rows) >= 17 and all(0.0 <= r["agreement"] <= 1.0 for r in rows)     # every spiking unit of resnet18
    assert {"float", "integer"} <= set(rep["kernels"]["last_used"])      # both engines ran (integer: quantized)
    md = (folder / "report" / "report.md").read_text()
    assert "Lava was not run" in md and rep["lava"]["reason"] in md and str(other) in md
    assert not (run / "report").exists() and not (folder / "lava_test.npz").exists()


def test_fingerprint_tells_analog_inputs_apart_and_keeps_spike_hashes():
    """Two direct-encoded images that round to the same bytes are different data; spike input keeps its uint8
    hash (so records written from event data stay comparable)."""
    import hashlib
    from pipeline.evaluation import fingerprint
    y = np.array([3, 1])
    a = np.full((2, 3, 4, 4, 2), 0.2, dtype=np.float32)
    b = a.copy()
    b[1, 2, 3, 3, 1] = 0.3
    assert fingerprint(a, y) != fingerprint(b, y)
    assert fingerprint(a, y) == fingerprint(a.astype(np.float64), y)
    spikes = (np.arange(2 * 3 * 4 * 4 * 2).reshape(2, 3, 4, 4, 2) % 3 == 0).astype(np.float32)
    h = hashlib.sha256(json.dumps([[2, 3, 4, 4, 2], [2]]).encode())
    h.update(spikes.astype(np.uint8).tobytes())
    h.update(y.astype(np.int64).tobytes())
    assert fingerprint(spikes, y) == h.hexdigest()
    assert fingerprint(spikes, y) != fingerprint(spikes, y[::-1])
