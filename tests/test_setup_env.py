"""scripts/setup_env.sh decides to rebuild from the content of the requirement files, not their times: tested with
``--check`` (builds nothing) on a copy of the script and its inputs in a temporary folder, with a stand-in
environment whose ``bin/python`` is a shell script."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ("requirements.txt", "requirements-lava.txt", "pyproject.toml")


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A copy of the script and its three inputs; ``venv/bin/python`` exists but is never run by --check."""
    (tmp_path / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "setup_env.sh", tmp_path / "scripts" / "setup_env.sh")
    for name in INPUTS:
        shutil.copy2(ROOT / name, tmp_path / name)
    py = tmp_path / "venv" / "bin" / "python"
    py.parent.mkdir(parents=True)
    py.write_text("#!/bin/sh\necho 'the stand-in python ran' >&2\nexit 99\n")
    py.chmod(0o755)
    return tmp_path


def _stamp(project: Path) -> Path:
    return project / "venv" / ".ilif-lava-stamp"


def _digest(project: Path) -> str:
    return hashlib.sha256(b"".join((project / n).read_bytes() for n in INPUTS)).hexdigest()


def _run(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, VENV="venv")
    return subprocess.run(["bash", str(project / "scripts" / "setup_env.sh"), *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_up_to_date_when_the_stamp_holds_the_contents_hash(project):
    _stamp(project).write_text(_digest(project) + "\n")
    res = _run(project, "--check")
    assert (res.returncode, res.stdout) == (0, "[setup] up to date: venv\n"), res
    res = _run(project)                         # the real entry: nothing to do, nothing printed, python never run
    assert (res.returncode, res.stdout, res.stderr) == (0, "", ""), res


def test_new_times_without_new_content_do_not_rebuild(project):
    _stamp(project).write_text(_digest(project) + "\n")
    for name in INPUTS:
        os.utime(project / name, (2_000_000_000, 2_000_000_000))     # newer than the stamp
    res = _run(project, "--check")
    assert res.returncode == 0, res


def test_changed_content_rebuilds(project):
    _stamp(project).write_text(_digest(project) + "\n")
    stamp_time = _stamp(project).stat().st_mtime
    with open(project / "requirements.txt", "a") as fh:
        fh.write("# a new pin\n")
    os.utime(project / "requirements.txt", (stamp_time - 3600, stamp_time - 3600))   # older than the stamp
    res = _run(project, "--check")
    assert res.returncode == 1 and res.stdout.startswith("[setup] would build: requirements.txt "), res


@pytest.mark.parametrize("state, reason", [("no_venv", "no environment in venv"), ("no_stamp", "no stamp")])
def test_missing_environment_or_stamp_rebuilds(project, state, reason):
    if state == "no_venv":
        shutil.rmtree(project / "venv")
    res = _run(project, "--check")
    assert res.returncode == 1 and res.stdout.startswith(f"[setup] would build: {reason}"), res


def test_unknown_argument_is_one_line(project):
    res = _run(project, "--chekc")
    assert res.returncode == 2 and res.stderr == "setup_env.sh: unknown argument '--chekc' (the only one is --check)\n"
