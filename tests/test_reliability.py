"""Reliability: resume gives the same network as an uninterrupted run, non-finite losses stop cleanly,
checkpoints are written atomically, and Lava processes are stopped when a run fails."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

import simulations.lava_run as lava_run
import training.loop as tt       # the training loop looks up atomic_save and get_loss here
from export.export_net import export_model
from training.datasets import load_split
from training.models import build_model
from training.train import TrainConfig, TrainingError, load_model, train


def _cfg() -> TrainConfig:
    return TrainConfig(dataset="digits", neuron="ILIF", hidden=16, time_bins=6, epochs=2, qat_epochs=1,
                       batch_size=25, lr=1e-2, seed=3, device="cpu", limit_train=100, limit_test=20)


def _log(path: Path):
    return [{k: v for k, v in json.loads(ln).items() if k != "time"}
            for ln in path.read_text().splitlines() if ln.strip()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """The uninterrupted 3-epoch run (2 float + 1 QAT)."""
    out = tmp_path_factory.mktemp("ref") / "train"
    train(_cfg(), out, progress=False)
    return out


# ---------------------------------------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("crash", ["after_save_1", "after_save_2", "before_save_2"])
def test_resume_is_equivalent_to_an_uninterrupted_run(reference_run, tmp_path, monkeypatch, crash):
    """Ctrl-C after epoch 1 (float phase continues), after epoch 2 (resume crosses into QAT), or between the log
    line of epoch 2 and its checkpoint (the log must be truncated on resume)."""
    out = tmp_path / "train"
    real_save = tt.atomic_save
    saves = []

    def interrupting_save(obj, path):
        if Path(path).name == "checkpoint.pt":
            saves.append(obj["epoch"])
            if crash == "before_save_2" and len(saves) == 2:
                raise KeyboardInterrupt
        real_save(obj, path)
        if crash == f"after_save_{len(saves)}" and Path(path).name == "checkpoint.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(tt, "atomic_save", interrupting_save)
    with pytest.raises(KeyboardInterrupt):
        train(_cfg(), out, progress=False)
    monkeypatch.setattr(tt, "atomic_save", real_save)
    done = {"after_save_1": 1, "after_save_2": 2, "before_save_2": 1}[crash]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == done - 1
    assert not (out / "model.pt").exists()
    assert len(_log(out / "log.jsonl")) == (2 if crash == "before_save_2" else done)

    train(_cfg(), out, resume=True, progress=False)

    a = torch.load(reference_run / "model.pt", weights_only=True)
    b = torch.load(out / "model.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys() and len(a["model"]) > 0
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["quantized"] is b["quantized"] is True
    ca = torch.load(reference_run / "checkpoint.pt", weights_only=True)
    cb = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ca["epoch"] == cb["epoch"] == 2
    for sa, sb in zip(ca["optimizer"]["state"].values(), cb["optimizer"]["state"].values()):
        for k in sa:
            assert torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])), k
    la, lb = _log(reference_run / "log.jsonl"), _log(out / "log.jsonl")
    assert [e["epoch"] for e in lb] == [1, 2, 3]
    assert [e["phase"] for e in lb] == ["float", "float", "qat"]
    assert la == lb


def test_resume_of_a_finished_run_changes_nothing(reference_run, tmp_path):
    import shutil
    out = tmp_path / "train"
    shutil.copytree(reference_run, out)
    before = torch.load(out / "model.pt", weights_only=True)["model"]
    train(_cfg(), out, resume=True, progress=False)
    after = torch.load(out / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert _log(out / "log.jsonl") == _log(reference_run / "log.jsonl")


# ---------------------------------------------------------------------------------------------------------
# non-finite loss, atomic checkpoints
# ---------------------------------------------------------------------------------------------------------
def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "train"
    real_save, real_get_loss = tt.atomic_save, tt.get_loss
    state = {"saved": 0, "sha": None}

    def counting_save(obj, path):
        real_save(obj, path)
        if Path(path).name == "checkpoint.pt":
            state["saved"] += 1
            state["sha"] = _sha(Path(path))

    def poisoned_get_loss(name):
        fn = real_get_loss(name)
        # epoch 2 (after the first checkpoint): the loss turns into NaN
        return lambda out_, y: fn(out_, y) * (float("nan") if state["saved"] >= 1 else 1.0)

    monkeypatch.setattr(tt, "atomic_save", counting_save)
    monkeypatch.setattr(tt, "get_loss", poisoned_get_loss)
    ckpt = out / "checkpoint.pt"
    with pytest.raises(TrainingError) as info:
        train(_cfg(), out, progress=False)
    msg = str(info.value)
    assert "non-finite loss" in msg and "epoch 2" in msg and str(ckpt) in msg
    assert state["saved"] == 1
    assert _sha(ckpt) == state["sha"]                      # untouched since epoch 1 was saved
    ck = torch.load(ckpt, weights_only=True)
    assert ck["epoch"] == 0 and ck["config"] == asdict(_cfg())
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())
    model = load_model(ckpt)                               # loadable into a fresh network
    assert sum(p.numel() for p in model.parameters()) == 16 * 64 + 10 * 16
    assert not (out / "model.pt").exists()
    assert [e["epoch"] for e in _log(out / "log.jsonl")] == [1]
    assert list(out.glob("*.tmp")) == []


def test_no_temp_files_after_training(reference_run):
    names = sorted(p.name for p in reference_run.iterdir())
    assert names == ["checkpoint.pt", "config.json", "log.jsonl", "model.pt"]
    assert [p for p in reference_run.rglob("*") if ".tmp" in p.name] == []


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    out = tmp_path / "train"
    real_torch_save = torch.save
    calls = {"n": 0}

    def failing_torch_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:                    # the second checkpoint: half a file, then the disk "fails"
            Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
            raise OSError("disk full")
        return real_torch_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, "save", failing_torch_save)
    with pytest.raises(OSError, match="disk full"):
        train(_cfg(), out, progress=False)
    monkeypatch.setattr(torch, "save", real_torch_save)
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ck["epoch"] == 0
    # and the run resumes from it to the end
    train(_cfg(), out, resume=True, progress=False)
    assert torch.load(out / "model.pt", weights_only=True)["quantized"] is True
    assert [e["epoch"] for e in _log(out / "log.jsonl")] == [1, 2, 3]
    assert list(out.glob("*.tmp")) == []


# ---------------------------------------------------------------------------------------------------------
# Lava process cleanup
# ---------------------------------------------------------------------------------------------------------
def _children() -> dict:
    """pid -> (state, cmdline) of the live child processes of this process, from /proc (no psutil needed).

    multiprocessing's resource tracker (started once per interpreter, lives as long as it) is left out.
    """
    me = os.getpid()
    out = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[1]) == me and "resource_tracker" not in cmd:
            out[int(p.name)] = (fields[0], cmd)
    return out


def _wait_no_children(before: dict, timeout: float = 15.0) -> dict:
    deadline = time.time() + timeout
    while True:
        left = {pid: v for pid, v in _children().items() if pid not in before}
        if not left or time.time() > deadline:
            return left
        time.sleep(0.2)


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    model = build_model("mlp", (1, 8, 8), 10, "ILIF", None, hidden=8)
    path, _ = export_model(model, tmp_path_factory.mktemp("lava") / "small.net")
    x, _ = load_split("digits", "test", time_bins=4, limit=3).tensors()
    return path, x.numpy()


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_lava_processes_are_stopped_when_a_run_fails(small_net, monkeypatch, exc):
    path, x = small_net
    before = _children()
    seen_during = {}

    def failing_reset(net):          # called between samples, i.e. after the first sample ran
        seen_during.update({pid: v for pid, v in _children().items() if pid not in before})
        raise exc("planted failure after the first sample")

    monkeypatch.setattr(lava_run, "_reset_vars", failing_reset)
    with pytest.raises(exc, match="planted failure"):
        lava_run.run_network(path, x)
    # the check can fail: while the run was going, Lava had child processes
    assert len(seen_during) >= 2, seen_during
    left = _wait_no_children(before)
    assert left == {}, f"Lava child processes survived the failed run: {left}"
    # the module still works afterwards, and a successful run cleans up too
    monkeypatch.undo()
    res = lava_run.run_network(path, x[:2])
    assert [s.shape for s in res.spikes] == [(2, 8, 4), (2, 10, 4)]
    assert _wait_no_children(before) == {}
