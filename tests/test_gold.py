"""Gold-vector packs (issue 21 item 3): ``ilif-lava gold RUN`` writes the deployed network's input, every layer's
spikes and states in lava-dl's gts/ layout; ``ilif-lava gold --check`` replays them in Lava. A real tiny run
(trained, exported, simulated through the CLI), real HDF5 files, real Lava processes."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from simulations import gold
from tests.helpers import run_cli

TINY = ["--dataset", "digits", "-T", "4", "--hidden", "8", "--epochs", "1", "--qat-epochs", "1",
        "--limit-train", "40", "--limit-test", "6", "--batch-size", "20", "--device", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny digits ILIF run: trained, exported and simulated (6 samples, states of 2) through the CLI."""
    from pipeline.cli import main
    run = tmp_path_factory.mktemp("goldrun") / "run"
    assert main(["train", *TINY, "--run-dir", str(run)]) == 0
    assert main(["export", str(run)]) == 0
    assert main(["simulate", str(run), "--state-samples", "2"]) == 0
    return run


@pytest.fixture(scope="module")
def pack_dir(run_dir) -> Path:
    from pipeline.cli import main
    assert main(["gold", str(run_dir), "--samples", "0"]) == 0
    return run_dir / "gold"


def _flip_weight_bit(net: Path, x: np.ndarray, bit: int = 7) -> tuple:
    """Flip one bit of one integer weight mantissa of layer 0 (dense): the weight from the input that spikes most
    in ``x`` [N, C, H, W, T] to the first neuron whose weight has that bit clear, so the change adds 2**bit = two
    thresholds of input per spike); returns (row, col, old, new)."""
    i = int(np.argmax(x.reshape(x.shape[0], -1, x.shape[-1]).sum(axis=(0, 2))))
    with h5py.File(net, "r+") as f:
        w = f["layer/0/weight"][()]
        flat = np.rint(w).astype(np.int64)
        j = int(np.nonzero((flat[:, i] >= 0) & ((flat[:, i] >> bit) & 1 == 0))[0][0])
        new = flat.copy()
        new[j, i] ^= 1 << bit
        f["layer/0/weight"][...] = new.astype(w.dtype)
        return j, i, int(flat[j, i]), int(new[j, i])


def test_pack_round_trips_through_the_cli(run_dir, pack_dir, capfd):
    pack = gold.load_pack(pack_dir)
    z = np.load(run_dir / "lava_test.npz")
    assert len(pack.spikes) == len([k for k in z.files if k.startswith("spikes_")]) == 2
    for i, s in enumerate(pack.spikes):
        assert s.dtype == np.int8 and np.array_equal(s, z[f"spikes_{i}"])         # Lava's own spikes, all 6
    assert pack.x.shape == (6, 1, 8, 8, 4) and pack.x.dtype == np.int8
    assert sum(int(s.sum()) for s in pack.spikes) > 0                              # a pack that can fail
    assert set(pack.states) == {0, 1} and pack.states[0]["v"].shape == (2, 8, 4)
    for i, per in pack.states.items():
        for name, a in per.items():
            assert np.array_equal(a, z[f"state_{i}_{name}"][:2])
    # the input is exactly the simulated samples (the data record's fingerprint)
    from pipeline.evaluation import fingerprint
    assert pack.manifest["data"]["sha256"] == fingerprint(pack.x, z["labels"])
    # lava-dl gts layout: one .npy per layer and per layer state, the network beside them
    names = {p.name for p in pack_dir.iterdir()}
    assert {"network.net", "input.npy", "layer-0.npy", "layer-1.npy", "layer-1-u.npy", "layer-1-m.npy",
            "manifest.json", "test_gold.py"} <= names
    # the pack's own pytest file, run by --check, passes (replays every layer and the states in Lava)
    code, out, err = run_cli(["gold", "--check", str(run_dir)], capfd)       # capfd: pytest runs in a child
    assert code == 0, out + err
    assert "4 passed" in out


def test_one_bit_weight_change_is_detected(pack_dir, tmp_path, capsys):
    bad = tmp_path / "gold"
    shutil.copytree(pack_dir, bad)
    j, i, old, new = _flip_weight_bit(bad / "network.net", gold.load_pack(pack_dir).x)
    assert bin(old ^ new).count("1") == 1
    # 1) the file check names the changed file
    with pytest.raises(gold.GoldPackError, match=r"network\.net: SHA-256 .* differs from the manifest"):
        gold.load_pack(bad)
    code, _, err = run_cli(["gold", "--check", str(bad)], capsys)
    assert code == 2 and "network.net" in err and err.count("\n") == 1
    # 2) with the manifest rewritten to the changed file (as a consistent, silently changed copy would be), the
    #    replay in Lava shows the changed behaviour: layer 0 differs, named with its first (step, sample, neuron)
    m = json.loads((bad / "manifest.json").read_text())
    m["files"]["network.net"]["sha256"] = gold.sha256_file(bad / "network.net")
    (bad / "manifest.json").write_text(json.dumps(m))
    pack, lines = gold.check_pack(bad)
    assert lines, "a one-bit weight change went unnoticed"
    assert any("layer 0 spikes" in l for l in lines)
    assert all(l.startswith(str(bad)) and "\n" not in l for l in lines)
    # 3) and the unchanged pack replays exactly (same code path, no false alarm)
    assert gold.check_pack(pack_dir)[1] == []


def test_damaged_packs_are_one_line_errors(pack_dir, tmp_path):
    def copy(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(pack_dir, d)
        return d

    d = copy("flipped_spike")                          # one spike flipped and its hash updated: replay finds it
    s = np.load(d / "layer-1.npy")
    s[0, 0, 0] ^= 1
    np.save(d / "layer-1.npy", s)
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["layer-1.npy"]["sha256"] = gold.sha256_file(d / "layer-1.npy")
    (d / "manifest.json").write_text(json.dumps(m))
    pack = gold.load_pack(d)
    lines = gold.differences(pack, gold.Replay(spikes=gold.load_pack(pack_dir).spikes,
                                               states=gold.load_pack(pack_dir).states))
    assert len(lines) == 1 and "layer 1 spikes: 1 values differ; first at step 0, sample 0, neuron 0" in lines[0]

    d = copy("forged_header")                          # header claims far more data than the file holds
    raw = (d / "layer-0.npy").read_bytes().replace(b"(6, 8, 4)", b"(6, 8, 9)")
    (d / "layer-0.npy").write_bytes(raw)
    with pytest.raises(gold.GoldPackError, match="layer-0.npy"):
        gold.read_npy(d / "layer-0.npy")

    d = copy("link_out")                               # a file replaced by a link out of the pack
    outside = tmp_path / "outside.npy"
    shutil.copyfile(d / "input.npy", outside)
    (d / "input.npy").unlink()
    os.symlink(outside, d / "input.npy")
    with pytest.raises(ValueError, match="input.npy.*symbolic link"):
        gold.load_pack(d)

    d = copy("bad_manifest")
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(gold.GoldPackError, match="manifest.json: not JSON"):
        gold.load_pack(d)
    (d / "manifest.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(gold.GoldPackError, match="key 'format'"):
        gold.load_pack(d)

    d = copy("escaping_name")
    m = json.loads((d / "manifest.json").read_text())
    m["files"]["../x.npy"] = m["files"].pop("layer-0.npy")
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(gold.GoldPackError, match="layer-0.npy"):
        gold.load_pack(d)


def test_gold_needs_simulate_first(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "network.net").write_bytes(b"placeholder")
    code, _, err = run_cli(["gold", str(run)], capsys)
    assert code == 2 and "ilif-lava simulate" in err and err.count("\n") == 1


def test_compare_report_has_the_cost_estimate_of_the_same_spikes(run_dir, pack_dir):
    """The compare report (issue 21 item 1 wiring) carries the Loihi 2 cost estimate computed from Lava's spikes
    of exactly the simulated samples: the same numbers as the estimate from the gold pack's input and spikes."""
    from pipeline.run import stage_compare
    from simulations.cost import estimate_run
    rep = stage_compare(run_dir, device="cpu", progress=False)
    cost = rep["loihi2_cost"]
    pack = gold.load_pack(pack_dir)
    again = estimate_run(pack.network, pack.x, pack.spikes).to_dict()
    assert cost["synops"] == pytest.approx(again["synops"]) and cost["synops"] > 0
    assert cost["energy_per_inference_uj"] == pytest.approx(again["energy_per_inference_uj"])
    assert cost["cores"] == 2 and cost["chips"] == 1                         # two tiny dense layers
    md = (run_dir / "report" / "report.md").read_text()
    assert "## Loihi 2 cost (estimate)" in md and "calibrated on" in md
