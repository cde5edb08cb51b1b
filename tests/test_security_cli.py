"""CLI inputs validated at the boundary: every case listed in issue 11 gives exit code 2 and exactly one error line
that names the flag, file (and line) or key; no traceback; temporary files never survive a failed write.

Real files throughout (a real N-MNIST-layout folder, real run folders, real read-only / full file systems where
the machine allows mounting a tmpfs)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest
import torch

from export.export_net import export_model
from tests.helpers import run_cli
from training.models import build_model
from training.train import TrainConfig

TINY = ["--dataset", "digits", "-T", "4", "--hidden", "8", "--epochs", "1", "--qat-epochs", "1",
        "--limit-train", "40", "--limit-test", "6", "--batch-size", "20", "--device", "cpu"]
EXE = Path(sys.executable).with_name("ilif-lava")


_run = run_cli


def _error_lines(err: str) -> List[str]:
    return [ln for ln in err.splitlines() if "error:" in ln]


# ---------------------------------------------------------------------------------------------------------
# fixtures: real folders
# ---------------------------------------------------------------------------------------------------------
def _nmnist_folder(root: Path, train_lines: List[str], bs2: Dict[str, bytes]) -> Path:
    d = root / "nmnist"
    d.mkdir()
    (d / "train.txt").write_text("#sample #class\n" + "\n".join(train_lines) + "\n")
    (d / "test.txt").write_text("#sample #class\n0 1\n")
    good = bytes([3, 4, 0x80, 0x00, 0x10])                  # x=3, y=4, polarity 1, t=16
    ids = {ln.split()[0] for ln in train_lines if ln.split() and "/" not in ln.split()[0]}
    for sid in {"0", *ids, *bs2}:
        (d / f"{sid}.bs2").write_bytes(bs2.get(sid, good * 4))
    return d


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run folder with config.json, model.pt and network.net (untrained tiny MLP)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    (run / "train").mkdir(parents=True)
    cfg = TrainConfig(dataset="digits", hidden=8, time_bins=4, device="cpu", limit_test=6)
    (run / "train" / "config.json").write_text(json.dumps(asdict(cfg)))
    model = build_model("mlp", (1, 8, 8), 10, "ILIF", None, hidden=8)
    torch.save({"model": model.state_dict(), "meta": model.meta, "config": asdict(cfg), "quantized": False},
               run / "train" / "model.pt")
    export_model(model, run / "network.net")
    return run


def _copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run_dir, dst)
    return dst


# ---------------------------------------------------------------------------------------------------------
# every case of the list
# ---------------------------------------------------------------------------------------------------------
def _cfg_edit(text: str) -> Callable[[Path, Path], List[str]]:
    def make(run: Path, tmp: Path) -> List[str]:
        (run / "train" / "config.json").write_text(text)
        return ["simulate", str(run)]
    return make


def _nm(lines: List[str], bs2: Dict[str, bytes] = None) -> Callable[[Path, Path], List[str]]:
    def make(run: Path, tmp: Path) -> List[str]:
        d = _nmnist_folder(tmp, lines, bs2 or {})
        return ["train", "--dataset", "nmnist", "--data-dir", str(d), "-T", "4", "--hidden", "8", "--epochs", "1",
                "--qat-epochs", "0", "--device", "cpu", "--run-dir", str(tmp / "out")]
    return make


def _argv(*a: str) -> Callable[[Path, Path], List[str]]:
    return lambda run, tmp: [x.replace("{run}", str(run)).replace("{tmp}", str(tmp)) for x in a]


def _under_file(run: Path, tmp: Path) -> List[str]:
    (tmp / "afile").write_text("x")
    return ["train", *TINY, "--run-dir", str(tmp / "afile" / "run")]


def _net_dir(run: Path, tmp: Path) -> List[str]:
    (tmp / "adir.net").mkdir()
    return ["simulate", str(run), "--net", str(tmp / "adir.net")]


def _check_dir(run: Path, tmp: Path) -> List[str]:
    (tmp / "adir.net").mkdir()
    return ["check", str(tmp / "adir.net")]


def _check_fifo(run: Path, tmp: Path) -> List[str]:
    os.mkfifo(tmp / "fifo.net")
    return ["check", str(tmp / "fifo.net")]


def _model(content: bytes) -> Callable[[Path, Path], List[str]]:
    def make(run: Path, tmp: Path) -> List[str]:
        (run / "train" / "model.pt").write_bytes(content)
        return ["export", str(run)]
    return make


def _ckpt_dir(run: Path, tmp: Path) -> List[str]:
    out = tmp / "r"
    (out / "train" / "checkpoint.pt").mkdir(parents=True)
    return ["train", *TINY, "--run-dir", str(out)]


def _truncated_model(run: Path, tmp: Path) -> List[str]:
    p = run / "train" / "model.pt"
    p.write_bytes(p.read_bytes()[:300])
    return ["export", str(run)]


def _inf_model(run: Path, tmp: Path) -> List[str]:
    p = run / "train" / "model.pt"
    ck = torch.load(p, weights_only=True)
    key = next(k for k in ck["model"] if k.endswith("weight"))
    ck["model"][key] = torch.full_like(ck["model"][key], float("inf"))
    torch.save(ck, p)
    return ["export", str(run)]


CASES = {
    "weight_scale_inf": (_argv("train", "--weight-scale", "inf"), "argument --weight-scale: expected a finite number, got inf"),
    "lr_inf": (_argv("train", "--lr", "inf"), "argument --lr: expected a finite number, got inf"),
    "lr_nan": (_argv("pipeline", "--lr", "nan"), "argument --lr: expected a finite number, got nan"),
    "huge_T": (_argv("train", "-T", "100000000"), "argument -T/--time-bins: expected at most 10000, got 100000000"),
    "threshold_inf": (_argv("train", "--threshold", "inf"), "argument --threshold: expected a finite number, got inf"),
    "tau_nan": (_argv("train", "--tau", "nan"), "argument --tau: expected a finite number, got nan"),
    "kappa_nan": (_argv("train", "--kappa", "nan"), "argument --kappa: expected a finite number, got nan"),
    "device_bogus": (_argv("train", "--device", "bogus"), "argument --device: unknown device 'bogus'"),
    "device_cuda_missing": (_argv("train", "--device", "cuda"), "argument --device: device 'cuda' requested but CUDA is not available"),
    "compare_device_bogus": (_argv("compare", "{run}", "--device", "gpu0"), "argument --device: unknown device 'gpu0'"),
    "huge_hidden": (_argv("train", "--hidden", "1000000000"), "argument --hidden: expected at most 16384, got 1000000000"),
    "argparse_not_a_number": (_argv("train", "--epochs", "abc"), "argument --epochs: expected an integer >= 0, got 'abc'"),
    "train_txt_no_label": (_nm(["0 1", "1"]), "train.txt:3: expected '<id> <label>', got '1'"),
    "train_txt_label_99": (_nm(["0 99"]), "train.txt:2: label 99 is outside 0..9"),
    "train_txt_label_word": (_nm(["0 five"]), "train.txt:2: label 'five' is not an integer"),
    "train_txt_path_id": (_nm(["../../etc/passwd 1"]), "train.txt:2: sample id '../../etc/passwd' is not a plain file name"),
    "corrupt_bs2": (_nm(["0 1", "7 2"], {"7": b"\x01\x02\x03\x04\x05\x06\x07"}), "7.bs2: corrupt N-MNIST file (7 bytes"),
    "bs2_outside_sensor": (_nm(["0 1", "8 2"], {"8": bytes([200, 4, 0x80, 0, 0x10])}), "8.bs2: corrupt N-MNIST file (events outside"),
    "config_list": (_cfg_edit("[]"), "config.json: holds a JSON list, expected an object of training settings"),
    "config_unknown_key": (_cfg_edit('{"dataset": "digits", "bogus": 1}'), "config.json: unknown key 'bogus'"),
    "config_bad_json": (_cfg_edit('{dataset: 1}'), "config.json: line 1 column 2: invalid JSON (Expecting property name"),
    "config_bad_value": (_cfg_edit('{"dataset": "digits", "time_bins": "five"}'), "config.json: time_bins must be an integer, got 'five'"),
    "config_inf_lr": (_cfg_edit('{"dataset": "digits", "lr": Infinity}'), "config.json: lr must be finite, got inf"),
    "model_empty": (_model(b""), "model.pt: is empty"),
    "model_garbage": (_model(b"\x80\x02garbage" * 200), "model.pt: "),
    "model_truncated": (_truncated_model, "model.pt: not an ilif-lava model file"),
    "model_inf_weights": (_inf_model, "network.net: not exported: blocks.0.synapse.weight"),
    "checkpoint_directory": (_ckpt_dir, "checkpoint.pt: is a directory"),
    "run_dir_under_a_file": (_under_file, "is not a folder"),
    "network_is_a_directory": (_net_dir, "adir.net: is a directory, expected a regular HDF5 file"),
    "check_a_directory": (_check_dir, "adir.net: is a directory, expected a regular HDF5 file"),
    "check_a_fifo": (_check_fifo, "fifo.net: is a FIFO, expected a regular HDF5 file"),
    "not_a_run_folder": (_argv("simulate", "{run}/network.net"), "network.net: is not a run folder"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2(case, run_dir, tmp_path, capsys, monkeypatch):
    if case == "device_cuda_missing" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    monkeypatch.chdir(tmp_path)
    make, needle = CASES[case]
    run = _copy_run(run_dir, tmp_path)
    argv = make(run, tmp_path)
    code, out, err = _run(argv, capsys)
    assert code == 2, (code, err)
    assert "Traceback" not in err and "usage:" not in err, err
    lines = _error_lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith(f"ilif-lava {argv[0]}: error: "), lines
    assert needle in lines[0], lines
    assert not (tmp_path / "out" / "train" / "model.pt").exists()


def test_argparse_error_is_one_line_plus_help_hint(capsys):
    code, out, err = _run(["train", "--lr", "inf"], capsys)
    assert code == 2
    assert err.splitlines() == ["ilif-lava train: error: argument --lr: expected a finite number, got inf",
                                "(see 'ilif-lava train --help')"]


def test_valid_files_still_work(tmp_path, capsys):
    """The nmnist folder format itself is accepted (the error cases above differ from it by one line)."""
    from training.datasets import load_split, read_sample_list
    d = _nmnist_folder(tmp_path, ["0 1", "5 9"], {})
    assert read_sample_list(d / "train.txt", 10) == [("0", 1), ("5", 9)]
    ds = load_split("nmnist", "train", time_bins=4, data_dir=d)
    assert len(ds) == 2 and ds.tensors()[0].shape == (2, 2, 34, 34, 4)


# ---------------------------------------------------------------------------------------------------------
# read-only and full file systems (a real tmpfs; skipped where mounting is not allowed)
# ---------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _tmpfs(where: Path, opts: str) -> Iterator[Path]:
    where.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def test_read_only_run_folder(tmp_path, capsys):
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        code, out, err = _run(["train", *TINY, "--run-dir", str(ro / "run")], capsys)
    assert code == 2 and _error_lines(err) == [f"ilif-lava train: error: --run-dir {ro / 'run'}: {ro} is not "
                                               f"writable"], err


def _cli(argv: List[str]) -> tuple:
    """The real command in a subprocess: after a failed write on a full disk HDF5 keeps half-closed handles, so
    the failure must not share a process with the rest of the suite (the CLI process ends right after it)."""
    res = subprocess.run([str(EXE), *argv], capture_output=True, text=True, timeout=300)
    return res.returncode, res.stdout, res.stderr


def _fill(fs: Path, leave: int) -> None:
    st = os.statvfs(fs)
    free = st.f_bavail * st.f_frsize
    with open(fs / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave))


def test_full_disk_export_leaves_no_temp_file(run_dir, tmp_path, capsys):
    with _tmpfs(tmp_path / "full", "size=512k") as fs:
        run = fs / "run"
        shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("network.net*"))
        _fill(fs, 4096)
        code, out, err = _cli(["export", str(run)])
        names = sorted(p.name for p in run.iterdir())
    assert code == 2 and "Traceback" not in err, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "No space left on device" in lines[0], err
    assert names == ["train"], names                       # no network.net, no staging / temp file


def test_full_disk_training_leaves_no_temp_file(tmp_path, capsys):
    with _tmpfs(tmp_path / "full", "size=256k") as fs:
        _fill(fs, 12 * 1024)
        code, out, err = _cli(["train", *TINY, "--run-dir", str(fs / "run")])
        left = sorted(str(p.relative_to(fs)) for p in fs.rglob("*") if p.name != "filler")
    assert code == 2 and "Traceback" not in err, err
    lines = _error_lines(err)
    assert len(lines) == 1 and "No space left on device" in lines[0], err
    assert [n for n in left if ".tmp" in n] == [], left
