"""Ctrl-C / SIGTERM during a real ``ilif-lava simulate``: the command ends within bounded time with exit code 130
and one line, and leaves no process and no /dev/shm segment of its Lava runtime behind.

Each trial starts the real CLI in a subprocess (tagged through an environment variable that every process it
forks inherits), sends SIGINT or SIGTERM at a random point (during start-up, or at a random moment after the
Lava run began), and then looks for survivors: processes carrying the tag (from /proc/*/environ) and the
/dev/shm files those processes had mapped just before the signal (from /proc/<pid>/maps).
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Set

import pytest

from export.export_net import export_model
from training.models import build_model
from training.train import TrainConfig

EXE = Path(sys.executable).with_name("ilif-lava")
TRIALS = 10
EXIT_BOUND_S = 60          # "does not hang": the command must be gone this long after the signal


def _tagged(tag: str) -> List[int]:
    """PIDs of live processes whose environment holds ``ILIF_TEST_TAG=tag``."""
    needle = f"ILIF_TEST_TAG={tag}".encode()
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            env = (p / "environ").read_bytes()
            state = (p / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != "Z":
            out.append(int(p.name))
    return out


def _shm_mapped(pids: List[int]) -> Set[str]:
    names = set()
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                part = line.split(maxsplit=5)
                if len(part) == 6 and part[5].startswith("/dev/shm/"):
                    names.add(part[5].split()[0])
        except OSError:
            continue
    return names


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("interrupt")
    (run / "train").mkdir()
    cfg = TrainConfig(dataset="digits", hidden=16, time_bins=8, device="cpu")
    (run / "train" / "config.json").write_text(json.dumps(asdict(cfg)))
    export_model(build_model("mlp", (1, 8, 8), 10, "ILIF", None, hidden=16), run / "network.net")
    return run


def _trial(run: Path, sig: int, phase: str, delay: float) -> Dict:
    tag = uuid.uuid4().hex
    env = {**os.environ, "ILIF_TEST_TAG": tag}
    proc = subprocess.Popen([str(EXE), "simulate", str(run), "--limit", "200", "--state-samples", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    err: List[bytes] = []

    def reader():
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            err.append(chunk)
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    t0 = time.monotonic()
    if phase == "lava":      # Lava's runtime is up once the command's processes map shared memory
        while proc.poll() is None and not _shm_mapped(_tagged(tag)) and time.monotonic() - t0 < 120:
            time.sleep(0.05)
    time.sleep(delay)
    mapped = _shm_mapped(_tagged(tag))
    still_running = proc.poll() is None
    if still_running:
        proc.send_signal(sig)
    try:
        proc.wait(EXIT_BOUND_S)
    except subprocess.TimeoutExpired:
        for pid in _tagged(tag):
            os.kill(pid, signal.SIGKILL)
        pytest.fail(f"simulate did not end within {EXIT_BOUND_S} s of {signal.Signals(sig).name}")
    th.join(10)
    stdout = proc.stdout.read().decode(errors="replace")
    deadline = time.monotonic() + 15
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = _tagged(tag)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    # a signal that raced the command's own exit (its results already written and reported) interrupted nothing
    raced = still_running and proc.returncode == 0 and "results in" in stdout
    return {"code": proc.returncode, "stderr": b"".join(err).decode(errors="replace"), "stdout": stdout,
            "left": left, "shm_left": sorted(n for n in mapped if os.path.exists(n)), "mapped": len(mapped),
            "signalled": still_running and not raced, "elapsed": time.monotonic() - t0}


def test_simulate_stops_cleanly_on_signals_at_random_points(run_dir):
    rng = random.Random(11)
    plan = [(signal.SIGINT if i % 2 == 0 else signal.SIGTERM,
             "startup" if i < 3 else "lava",
             rng.uniform(1.0, 6.0) if i < 3 else rng.uniform(0.0, 2.5)) for i in range(TRIALS)]
    results = []
    for sig, phase, delay in plan:
        r = _trial(run_dir, sig, phase, delay)
        results.append(r)
        where = f"{signal.Signals(sig).name} {phase} +{delay:.2f} s"
        assert r["left"] == [], f"{where}: processes survived: {r['left']}"
        assert r["shm_left"] == [], f"{where}: /dev/shm segments survived: {r['shm_left']}"
        assert "Traceback" not in r["stderr"], f"{where}: {r['stderr'][-3000:]}"
        if r["signalled"]:
            assert r["code"] == 130, f"{where}: exit {r['code']}: {r['stderr'][-2000:]}"
            lines = [ln for ln in r["stderr"].replace("\r", "\n").splitlines()
                     if ln.strip() and "Lava samples" not in ln and "Prophesee" not in ln
                     and "prophesee" not in ln and "cpp_extension" not in ln and "Only Prophesee" not in ln]
            assert lines[-1].endswith("interrupted"), (where, lines)
        else:
            assert r["code"] == 0
    interrupted = [r for r in results if r["signalled"]]
    during_lava = [r for r in interrupted if r["mapped"] > 0]
    print(f"\n{len(interrupted)} of {TRIALS} runs interrupted, {len(during_lava)} while Lava held shared memory; "
          f"per-trial wall {[round(r['elapsed'], 1) for r in results]}")
    assert len(interrupted) >= 8, results
    assert len(during_lava) >= 3, "the signals should hit the Lava run itself several times"
    assert not (run_dir / "lava_test.npz").exists() or any(not r["signalled"] for r in results)
    assert [p.name for p in run_dir.iterdir() if ".tmp" in p.name] == []
