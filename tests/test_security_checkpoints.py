"""Untrusted ``model.pt`` / ``checkpoint.pt``: a malicious pickle never runs, and any file that is not ours
(truncated, empty, garbage, a directory, a FIFO, wrong contents) is refused with one line naming it (exit 2)."""
from __future__ import annotations

import os
import pickle
import threading
from pathlib import Path

import pytest
import torch

from pipeline.cli import main
from tests.helpers import run_cli
from training.models import build_model
from training.train import ModelFileError, load_model, read_torch_file

TINY = ["--dataset", "digits", "-T", "4", "--hidden", "8", "--epochs", "1", "--qat-epochs", "1",
        "--limit-train", "40", "--limit-test", "6", "--batch-size", "20", "--device", "cpu"]


class Planted:
    """Unpickling this creates ``marker`` (stands for arbitrary code: ``__reduce__`` may call anything)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, marker: Path, how: str) -> None:
    evil = {"model": {"w": torch.zeros(1)}, "meta": Planted(marker), "config": {}, "optimizer": {},
            "scheduler": {}, "epoch": 0}
    path.parent.mkdir(parents=True, exist_ok=True)
    if how == "torch":
        torch.save(evil, path)
    else:                                                  # a plain (legacy-format) pickle
        with open(path, "wb") as fh:
            pickle.dump(evil, fh)


def _run(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    return code, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A real run trained through the CLI with TINY (so a resume with TINY has the same configuration)."""
    run = tmp_path_factory.mktemp("ok") / "run"
    assert main(["train", *TINY, "--run-dir", str(run)]) == 0
    return run / "train"


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_the_planted_pickle_does_run_when_loaded_unsafely(tmp_path, how):
    """Control: the planted file really executes code under weights_only=False, so the tests below can fail."""
    marker = tmp_path / "pwned"
    _plant(tmp_path / "m.pt", marker, how)
    try:
        torch.load(tmp_path / "m.pt", weights_only=False)
    except RuntimeError:            # legacy format: the pickle runs first, then torch misses its magic number
        pass
    assert marker.exists()


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_malicious_model_is_refused_by_export(tmp_path, capsys, how):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    _plant(run / "train" / "model.pt", marker, how)
    code, err = _run(["export", str(run)], capsys)
    assert not marker.exists(), "code in model.pt ran"
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("ilif-lava export: error: ") and str(run / "train" / "model.pt") in lines[0]
    assert "refused" in lines[0]
    assert not (run / "network.net").exists()


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_malicious_checkpoint_is_refused_by_train_resume(tmp_path, capsys, how):
    run, marker = tmp_path / "run", tmp_path / "pwned"
    ckpt = run / "train" / "checkpoint.pt"
    _plant(ckpt, marker, how)
    code, err = _run(["train", *TINY, "--run-dir", str(run)], capsys)
    assert not marker.exists(), "code in checkpoint.pt ran"
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(ckpt) in lines[0] and "Traceback" not in err, err
    assert not (run / "train" / "model.pt").exists()


def _make_bad(kind: str, path: Path, good: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "garbage":
        path.write_bytes(os.urandom(4096))
    elif kind == "text":
        path.write_text('{"model": {}}\n')
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    elif kind == "missing_key":
        ck = torch.load(good, weights_only=True)
        del ck["meta"]
        torch.save(ck, path)
    elif kind == "wrong_model":
        ck = torch.load(good, weights_only=True)
        ck["model"] = {k: torch.zeros(3) for k in ck["model"]}
        torch.save(ck, path)
    elif kind == "bad_meta":
        ck = torch.load(good, weights_only=True)
        ck["meta"] = {"arch": "mlp"}
        torch.save(ck, path)
    else:
        raise AssertionError(kind)


BAD = ["truncated", "empty", "garbage", "text", "directory", "fifo", "list", "missing_key", "wrong_model",
       "bad_meta"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_model_file_gives_one_line_naming_it(trained, tmp_path, capsys, kind):
    run = tmp_path / "run"
    target = run / "train" / "model.pt"
    _make_bad(kind, target, trained / "model.pt")
    result = {}
    th = threading.Thread(target=lambda: result.update(r=_run(["export", str(run)], capsys)), daemon=True)
    th.start()
    th.join(120)
    assert not th.is_alive(), f"export hung on a {kind} model.pt"
    code, err = result["r"]
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("ilif-lava export: error: ") and str(target) in lines[0], lines


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage", "directory", "fifo", "list", "missing_key",
                                  "wrong_model"])
def test_bad_checkpoint_gives_one_line_naming_it(trained, tmp_path, capsys, kind):
    run = tmp_path / "run"
    target = run / "train" / "checkpoint.pt"
    good = trained / "checkpoint.pt"
    _make_bad(kind, target, good)
    code, err = _run(["train", *TINY, "--run-dir", str(run)], capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("ilif-lava train: error: ") and str(target) in lines[0], lines


def test_what_we_save_loads_with_weights_only(trained):
    """Everything this project writes holds only tensors and plain data."""
    for name in ("model.pt", "checkpoint.pt"):
        ck = torch.load(trained / name, weights_only=True)
        assert isinstance(ck["config"], dict) and isinstance(ck["meta"], dict)
    model = load_model(trained / "model.pt")
    ref = build_model("mlp", (1, 8, 8), 10, "ILIF", None, hidden=8)
    assert [p.shape for p in model.parameters()] == [p.shape for p in ref.parameters()]
    assert read_torch_file(trained / "checkpoint.pt", "checkpoint")["epoch"] == 1


def test_read_torch_file_error_class(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        read_torch_file(tmp_path / "absent.pt")
    assert issubclass(ModelFileError, ValueError)


def test_a_text_file_is_not_a_pytorch_file(tmp_path):
    """A 7-byte text file: named as 'not a PyTorch file' with its first bytes, not as unsafe objects or a KeyError."""
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"hello\n!")
    with pytest.raises(ModelFileError) as err:
        read_torch_file(bad)
    msg = str(err.value)
    assert msg == (f"{bad}: not a PyTorch file (it starts with b'hello\\n!'; torch.save writes a zip archive), "
                   f"expected an ilif-lava model file")


@pytest.mark.parametrize("head", [b"\x80hello!", b"\x80", b"", b"PK\x03"])
def test_a_file_that_only_starts_like_a_pickle_is_not_a_pytorch_file(tmp_path, head, recwarn):
    """A pickle opcode followed by no known protocol number (or a file too short to be either format): the same
    one line, before torch reads it (no warning about pickle protocol 104)."""
    bad = tmp_path / "model.pt"
    bad.write_bytes(head)
    with pytest.raises(ModelFileError) as err:
        read_torch_file(bad)
    msg = str(err.value)
    assert msg.startswith(f"{bad}: ") and "\n" not in msg
    assert "not a PyTorch file" in msg or "empty" in msg, msg
    assert [str(w.message) for w in recwarn] == []
