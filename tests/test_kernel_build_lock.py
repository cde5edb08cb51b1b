"""The compiled kernel's build lock (ilif_lava/kernels/cpu_build.py): a process that waits for another's build says
so once, a wait past the timeout ends in one line naming the folder, a killed holder leaves no lock behind. The
holder is a real second process."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ilif_lava.errors import IlifLavaError
from ilif_lava.kernels import cpu_build

ROOT = Path(__file__).resolve().parents[1]

HOLD = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold(folder: Path, seconds: float) -> subprocess.Popen:
    """A second process holding ``folder``'s build lock for ``seconds`` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder / cpu_build.LOCK_FILE), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_waiting_is_said_once_then_the_lock_is_taken(tmp_path, capsys):
    proc = _hold(tmp_path, 1.5)
    try:
        t0 = time.monotonic()
        with cpu_build.build_lock(tmp_path, timeout=60, notice_after=0.2):
            waited = time.monotonic() - t0
            assert proc.poll() is not None         # taken only once the holder is gone
    finally:
        _end(proc)
    assert waited >= 1.0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"[ilif-lava] waiting for another process building the kernel in {tmp_path} "), err


def test_a_short_wait_is_not_reported(tmp_path, capsys):
    with cpu_build.build_lock(tmp_path, timeout=5, notice_after=0.2):
        pass
    assert capsys.readouterr().err == ""


def test_timeout_is_one_line_naming_the_folder_and_lock(tmp_path, capsys):
    proc = _hold(tmp_path, 60)
    try:
        with pytest.raises(cpu_build.KernelBuildLockTimeout) as err:
            with cpu_build.build_lock(tmp_path, timeout=0.5, notice_after=0.1):
                pytest.fail("the lock was taken while another process held it")
    finally:
        _end(proc)
    msg = str(err.value)
    assert isinstance(err.value, IlifLavaError) and isinstance(err.value, TimeoutError)
    assert "\n" not in msg and msg.startswith(f"{tmp_path}: gave up after ")
    assert str(tmp_path / cpu_build.LOCK_FILE) in msg and cpu_build.LOCK_TIMEOUT_ENV in msg


def test_a_killed_holder_releases_the_lock(tmp_path):
    proc = _hold(tmp_path, 60)
    proc.kill()
    proc.wait(timeout=30)
    with cpu_build.build_lock(tmp_path, timeout=5):
        pass
@pytest.mark.parametrize("raw", ["soon", "-1", "inf", "nan"])
def test_a_bad_timeout_setting_is_one_line(monkeypatch, raw):
    monkeypatch.setenv(cpu_build.LOCK_TIMEOUT_ENV, raw)
    with pytest.raises(cpu_build.KernelBuildLockTimeout, match=f"{cpu_build.LOCK_TIMEOUT_ENV}="):
        cpu_build.lock_timeout()


def test_load_while_another_process_builds_waits_then_uses_the_torch_path(tmp_path, monkeypatch):
    """End to end: ``load()`` in a fresh process, the key folder's lock held by another: one waiting line, then
    one notice naming the folder, the torch path; with ILIF_LAVA_KERNEL=cpu the same line ends the run."""
    monkeypatch.setenv("ILIF_LAVA_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(cpu_build.LOCK_TIMEOUT_ENV, "2")
    env = dict(os.environ)
    key_dir = cpu_build.cache_dir()           # the same environment gives the fresh process the same folder
    key_dir.mkdir(parents=True)
    code = ("import torch\nfrom ilif_lava import kernels\nfrom ilif_lava.kernels import cpu_build\n"
            "print(cpu_build.load() is None)\n"
            "kernels.select(torch.zeros(2, 3), kernel='cpu')\n")
    proc = _hold(key_dir, 120)
    try:
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=300)
    finally:
        _end(proc)
    assert res.stdout == "True\n", (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert lines[0] == (f"[ilif-lava] waiting for another process building the kernel in {key_dir} "
                        f"(up to 2 s, {cpu_build.LOCK_TIMEOUT_ENV})"), res.stderr
    assert lines[1].startswith("[ilif-lava] notice: the compiled ILIF CPU kernel is unavailable "
                               f"(KernelBuildLockTimeout: {key_dir}: gave up after 2 s"), res.stderr
    assert lines[-1].startswith("ilif_lava.kernels.KernelUnavailable: ILIF_LAVA_KERNEL=cpu but the compiled "
                                "kernel is unavailable (KernelBuildLockTimeout"), res.stderr
    assert not any(key_dir.glob("ilif_cpu_ext*.so"))      # nothing was compiled while the lock was held
