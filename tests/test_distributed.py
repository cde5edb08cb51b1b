"""Data-parallel training (training/distributed.py, training/train.py) with real torchrun processes on the CPU (gloo).

One torchrun job of 2 ranks is killed (SIGKILL of rank 1) during its second epoch: its checkpoint, written by
rank 0 after epoch 1, must hold the weights one process reaches after one epoch with the same global batch and
seed; a second torchrun job resumes from it and must end with the weights of an uninterrupted single process.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli
from training import distributed

REPO = Path(__file__).resolve().parents[1]
# 256 digits, global batch 32 -> 8 steps per epoch (longer runs drift apart: float32 sums in another order flip
# the 8-bit weight rounding and spikes). Epoch 2 is QAT (slower): the window the kill must hit.
ARGS = ["--dataset", "digits", "--hidden", "16", "-T", "4", "--batch-size", "32", "--limit-train", "256",
        "--limit-test", "360", "--device", "cpu", "--seed", "3"]
TOL = dict(rtol=1e-4, atol=1e-4)    # a wrong batch split or order differs by ~lr = 1e-2


def weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], **TOL, msg=lambda m, k=k: f"{k}: {m}")


def torchrun(run_dir: Path, extra: list) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "pipeline.cli", "train", *ARGS, *extra, "--run-dir", str(run_dir)]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def descendants(pid: int) -> list:
    """Process ids below ``pid`` (read from /proc)."""
    children: dict = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def rank_pid(root: int, rank: int) -> int | None:
    for pid in descendants(root):
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and b"TORCHELASTIC_RUN_ID" in b"".join(env):
            return pid
    return None


def test_batches_of_two_ranks_make_the_single_process_batch():
    one = distributed.train_batches(48, 8, distributed.DistEnv(0, 1), seed=5, epoch=2)
    two = [distributed.train_batches(48, 4, distributed.DistEnv(r, 2), seed=5, epoch=2) for r in range(2)]
    for k, batch in enumerate(one):
        assert sorted(batch) == sorted(two[0][k] + two[1][k])
    g = torch.Generator().manual_seed(5 * distributed.SEED_STRIDE + 2)   # the order train.py always used
    assert sum(one, []) == torch.randperm(48, generator=g).tolist()
    assert distributed.per_rank_batch(8, distributed.DistEnv(0, 2)) == 4
    with pytest.raises(ValueError, match="--batch-size 7"):
        distributed.per_rank_batch(7, distributed.DistEnv(0, 2))


def test_torchrun_two_ranks_equal_one_process_and_resume_after_a_killed_rank(tmp_path, capsys):
    ddp_dir = tmp_path / "ddp"
    ckpt = ddp_dir / "train" / "checkpoint.pt"
    job = torchrun(ddp_dir, ["--epochs", "1", "--qat-epochs", "1"])
    killed: list = []

    def kill_rank1_after_first_checkpoint() -> None:
        deadline = time.time() + 240
        victim = None
        while victim is None and job.poll() is None and time.time() < deadline:
            victim = rank_pid(job.pid, 1)
            time.sleep(0.05)
        while not ckpt.exists() and job.poll() is None and time.time() < deadline:
            time.sleep(0.002)
        if victim is not None and job.poll() is None:
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    watcher = threading.Thread(target=kill_rank1_after_first_checkpoint)
    watcher.start()
    # meanwhile: the single-process references (in this process, one rank)
    for name, epochs in (("one-epoch", ["--epochs", "1", "--qat-epochs", "0"]),
                         ("full", ["--epochs", "1", "--qat-epochs", "1"])):
        code, _, err = run_cli(["train", *ARGS, *epochs, "--run-dir", str(tmp_path / name)], capsys)
        assert code == 0, err
    watcher.join()
    out, _ = job.communicate(timeout=120)
    assert killed, out
    assert job.returncode != 0, out
    assert not (ddp_dir / "train" / "model.pt").exists(), "the job finished before the kill: " + out
    ck = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert ck["epoch"] == 0
    assert_same(ck["model"], weights(tmp_path / "one-epoch" / "train" / "model.pt"))

    job = torchrun(ddp_dir, ["--epochs", "1", "--qat-epochs", "1"])
    out, _ = job.communicate(timeout=240)
    assert job.returncode == 0, out
    assert "resumed from" in out and out.count("epoch 2/2 [qat]") == 1 and "epoch 1/2 [" not in out, out
    assert_same(weights(ddp_dir / "train" / "model.pt"), weights(tmp_path / "full" / "train" / "model.pt"))
    log = (ddp_dir / "train" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2
