"""Freed host memory kept for reuse (ilif_lava/host_memory.py): glibc serves a large tensor from its heap instead
of a fresh mmap once the settings are in force, the ilif-lava commands apply them, and =0 leaves glibc's defaults.

Each case runs in a fresh interpreter (the settings change the whole process), allocates a 64 MiB tensor and reads
glibc's mmap-ed bytes (mallinfo2) before and after."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ilif_lava import host_memory

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(host_memory.mapped_bytes() is None,
                                reason="needs glibc >= 2.33 (mallopt and mallinfo2): nothing to check elsewhere")

# prints {"applied": bool, "mapped_growth": bytes} for one 64 MiB tensor; SETUP runs first
PROBE = """
import json, torch
from ilif_lava import host_memory
{setup}
before = host_memory.mapped_bytes()
x = torch.ones(16 << 20)          # 64 MiB of float32, written (pages touched)
print(json.dumps({{"applied": host_memory.applied(), "mapped_growth": host_memory.mapped_bytes() - before}}))
"""


def _probe(setup: str, env_value: str = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != host_memory.ENV}
    if env_value is not None:
        env[host_memory.ENV] = env_value
    env["PYTHONPATH"] = str(ROOT)
    res = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_glibc_defaults_map_a_large_tensor_and_the_settings_keep_it_on_the_heap():
    default = _probe("")
    assert not default["applied"]
    assert default["mapped_growth"] >= 64 << 20          # glibc's default: a fresh mmap
    kept = _probe("assert host_memory.keep_freed_memory()")
    assert kept["applied"]
    assert kept["mapped_growth"] < 1 << 20               # from the heap: no new mmap-ed block


def _not_hdf5(tmp_path: Path) -> str:
    bad = tmp_path / "net.net"
    bad.write_bytes(b"not an HDF5 file")
    return str(bad)


def test_the_cli_applies_the_settings_and_zero_leaves_glibc_defaults(tmp_path):
    # a command that fails at once (not an HDF5 file) still runs after the process settings are applied
    setup = ("from pipeline import cli\n"
             f"assert cli._main(['check', {_not_hdf5(tmp_path)!r}]) == 2")
    assert _probe(setup)["applied"]
    assert _probe(setup, "1")["applied"]
    off = _probe(setup, "0")
    assert not off["applied"] and off["mapped_growth"] >= 64 << 20


def test_a_bad_value_is_one_line_naming_the_variable(capsys, tmp_path):
    from pipeline import cli
    old = os.environ.get(host_memory.ENV)
    os.environ[host_memory.ENV] = "yes"
    try:
        assert cli._main(["check", _not_hdf5(tmp_path)]) == 2
    finally:
        if old is None:
            del os.environ[host_memory.ENV]
        else:
            os.environ[host_memory.ENV] = old
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and host_memory.ENV in err and "'yes'" in err


def test_requested_reads_only_0_1_or_unset():
    assert host_memory.requested({}) and host_memory.requested({host_memory.ENV: "1"})
    assert host_memory.requested({host_memory.ENV: " "})
    assert not host_memory.requested({host_memory.ENV: "0"})
    with pytest.raises(ValueError, match=host_memory.ENV):
        host_memory.requested({host_memory.ENV: "true"})


def test_the_help_names_the_opt_out():
    from pipeline import cli
    assert f"{host_memory.ENV}=0" in " ".join(cli.build_parser().format_help().split())
