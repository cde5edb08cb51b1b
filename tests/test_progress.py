"""Progress off a terminal: heartbeat lines in logs (ilif_lava/progress.py), never a bar, never silence for minutes."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ilif_lava.progress import Heartbeat, bar, heartbeat_seconds

ROOT = Path(__file__).resolve().parents[1]


def test_heartbeat_lines_when_stderr_is_a_pipe():
    """A real child whose stderr is a pipe: a 5-item loop with a 0.05 s beat and 0.06 s per item prints one line
    per item with its count and total and the postfix; the items pass through unchanged."""
    code = ("import time\nfrom ilif_lava.progress import bar\nb = bar(range(5), desc='epoch 1/1 (float)', unit='batch')\n"
            "seen = []\nfor i in b:\n    time.sleep(0.06); seen.append(i); b.set_postfix(loss='0.5')\nprint(seen)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={"ILIF_LAVA_HEARTBEAT_S": "0.05", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[0, 1, 2, 3, 4]"
    beats = [ln for ln in res.stderr.splitlines() if ln.startswith("epoch 1/1 (float): ")]
    assert [ln.split(": ")[1].split(" ")[0] for ln in beats] == ["1/5", "2/5", "3/5", "4/5", "5/5"]
    assert all("batch" in ln and "loss=0.5" in ln for ln in beats)
    assert "\r" not in res.stderr and "it/s" not in res.stderr                                   # no tqdm bar


def test_no_heartbeat_within_the_interval_or_when_disabled(capsys, monkeypatch):
    monkeypatch.setenv("ILIF_LAVA_HEARTBEAT_S", "3600")
    assert list(bar(range(3), desc="x")) == [0, 1, 2]
    monkeypatch.setenv("ILIF_LAVA_HEARTBEAT_S", "0")
    assert heartbeat_seconds() == 0.0 and list(bar(range(3), desc="x")) == [0, 1, 2]
    monkeypatch.setenv("ILIF_LAVA_HEARTBEAT_S", "nan")
    assert heartbeat_seconds() == 0.0
    assert list(bar(range(3), desc="x", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_heartbeat_total_from_len_or_unknown(capsys):
    hb = Heartbeat(iter([1, 2]), "lava", "sample", None, interval=1e-9)
    assert list(hb) == [1, 2]
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("lava: 1 sample (") and err[1].startswith("lava: 2 sample (")
