"""Tests of ilif_lava.loihi2 on small hand-built netx HDF5 files."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Optional

import h5py
import numpy as np
import pytest

from ilif_lava import loihi2 as L

CUBA = {"type": b"CUBA", "iDecay": 1024, "vDecay": 128, "vThMant": 80, "refDelay": 1, "gradedSpike": False}
ILIF = {"type": b"ILIF", "iDecay": 4096, "vDecay": 3724, "cDecay": 3973, "mDecay": 0, "vThMant": 64,
        "inhibition": b"plan", "mpiu": True, "ciu": True, "refDelay": 1, "gradedSpike": False}


def _layer(f: h5py.File, idx: int, ltype: str, shape, neuron: Optional[Dict[str, Any]] = None, **keys: Any) -> None:
    g = f.create_group(f"layer/{idx}")
    g.create_dataset("type", (1,), "S10", [ltype.encode("ascii")])
    g.create_dataset("shape", data=np.array(shape))
    for k, v in keys.items():
        g.create_dataset(k, data=v)
    for k, v in (neuron or {}).items():
        g.create_dataset(f"neuron/{k}", data=v)


def _dense_weight(out_f: int, in_f: int, max_abs: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = 2 * rng.integers(-max_abs // 2, max_abs // 2 + 1, size=(out_f, in_f))
    w[0, 0] = max_abs
    return w.astype(np.float32)


def _cuba_file(path: Path, neuron: Optional[Dict[str, Any]] = None, w1: Optional[np.ndarray] = None,
               delay1: Optional[np.ndarray] = None) -> Path:
    with h5py.File(path, "w") as f:
        _layer(f, 0, "input", [16], CUBA)
        _layer(f, 1, "dense", [8], neuron or CUBA, inFeatures=16, outFeatures=8,
               weight=_dense_weight(8, 16) if w1 is None else w1,
               delay=np.zeros(8, np.float32) if delay1 is None else delay1)
        _layer(f, 2, "dense", [4], CUBA, inFeatures=8, outFeatures=4, weight=_dense_weight(4, 8, 32, seed=1))
    return path


def _ilif_file(path: Path, neuron: Optional[Dict[str, Any]] = None) -> Path:
    with h5py.File(path, "w") as f:
        _layer(f, 0, "input", [2, 8, 8], CUBA)
        _layer(f, 1, "conv", [4, 4, 4], neuron or ILIF, inChannels=2, outChannels=4, kernelSize=[3, 3],
               stride=[2, 2], padding=[1, 1], dilation=[1, 1], groups=1,
               weight=(2 * np.arange(-36, 36).reshape(4, 2, 3, 3)).astype(np.float32),
               bias=np.array([0, 10, -10, 100], np.float32))
        _layer(f, 2, "flatten", [64, 1, 1])
        _layer(f, 3, "dense", [10], ILIF, inFeatures=64, outFeatures=10, weight=_dense_weight(10, 64, 128))
    return path


def _by_key(findings, layer: int, key: str) -> L.Finding:
    hits = [f for f in findings if f.layer == layer and f.key == key]
    assert len(hits) == 1, (layer, key, findings)
    return hits[0]


# ---------------------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------------------
def test_valid_cuba_file_passes(tmp_path):
    p = _cuba_file(tmp_path / "cuba.net")
    findings = L.check_parameters(p)
    assert findings and all(f.ok for f in findings), [f.message for f in findings if not f.ok]
    w = _by_key(findings, 1, "weight")
    # max |w| = 64 against 256 -> 2 bits of headroom
    assert w.value_max == 64 and w.headroom_bits == pytest.approx(2.0)
    assert (w.limit_min, w.limit_max) == (-256, 254)
    # vThMant 80 against 2**17 - 1
    assert _by_key(findings, 1, "neuron/vThMant").headroom_bits == pytest.approx(math.log2((2 ** 17 - 1) / 80))
    # all-zero delay -> infinite headroom
    assert _by_key(findings, 1, "delay").headroom_bits == math.inf
    # vDecay 128 against 4096 -> 5 bits
    assert _by_key(findings, 1, "neuron/vDecay").headroom_bits == pytest.approx(5.0)


def test_valid_ilif_file_passes(tmp_path):
    p = _ilif_file(tmp_path / "ilif.net")
    with h5py.File(p, "r") as f:            # an open file works too
        findings = L.check_parameters(f)
    assert all(f.ok for f in findings), [f.message for f in findings if not f.ok]
    keys = {f.key for f in findings if f.layer == 1}
    assert {"weight", "bias", "neuron/iDecay", "neuron/vDecay", "neuron/cDecay", "neuron/mDecay",
            "neuron/vThMant", "neuron/inhibition"} <= keys
    assert _by_key(findings, 1, "weight").value_min == -72
    assert _by_key(findings, 1, "bias").headroom_bits == pytest.approx(math.log2(4096 / 100))


@pytest.mark.parametrize("key, value, expect_min, expect_max", [
    ("vDecay", 5000, 5000, 5000),
    ("vThMant", 2 ** 17, 2 ** 17, 2 ** 17),
    ("iDecay", -1, -1, -1),
    ("vDecay", 12.5, 12.5, 12.5),
])
def test_planted_neuron_parameter_flagged(tmp_path, key, value, expect_min, expect_max):
    p = _cuba_file(tmp_path / "bad.net", neuron={**CUBA, key: value})
    findings = L.check_parameters(p)
    bad = [f for f in findings if not f.ok]
    assert len(bad) == 1
    f = bad[0]
    assert (f.layer, f.key) == (1, f"neuron/{key}")
    assert (f.value_min, f.value_max) == (expect_min, expect_max)
    assert "layer 1" in f.message and f"neuron/{key}" in f.message and f"{expect_max:g}" in f.message


def test_planted_weight_out_of_range_and_odd(tmp_path):
    w = _dense_weight(8, 16)
    w[3, 4] = 300
    w[5, 6] = 3          # odd
    w[6, 7] = -2.5       # not an integer
    findings = L.check_parameters(_cuba_file(tmp_path / "w.net", w1=w))
    f = _by_key(findings, 1, "weight")
    assert not f.ok and f.value_max == 300 and f.value_min == -64
    assert f.headroom_bits == pytest.approx(math.log2(256 / 300)) and f.headroom_bits < 0
    assert "1 value(s) outside [-256, 254]" in f.message
    assert "1 odd value(s), e.g. 3" in f.message
    assert "1 non-integer value(s), e.g. -2.5" in f.message
    assert all(x.ok for x in findings if x is not f)


def test_weight_255_is_odd_and_254_fits(tmp_path):
    w = _dense_weight(8, 16)
    w[0, 1] = 254
    w[0, 2] = -256
    f = _by_key(L.check_parameters(_cuba_file(tmp_path / "a.net", w1=w)), 1, "weight")
    assert f.ok and f.headroom_bits == pytest.approx(0.0)
    w[0, 3] = 255
    f = _by_key(L.check_parameters(_cuba_file(tmp_path / "b.net", w1=w)), 1, "weight")
    assert not f.ok and "outside" in f.message and "odd" in f.message


def test_planted_delay_flagged(tmp_path):
    d = np.zeros(8, np.float32)
    d[2] = 70
    f = _by_key(L.check_parameters(_cuba_file(tmp_path / "d.net", delay1=d)), 1, "delay")
    assert not f.ok and f.value_max == 70 and f.limit_max == 62
    assert f.headroom_bits == pytest.approx(math.log2(62 / 70))


def test_ilif_bad_inhibition_and_missing_key(tmp_path):
    neuron = {k: v for k, v in ILIF.items() if k != "cDecay"}
    neuron["inhibition"] = b"sigmoid"
    findings = L.check_parameters(_ilif_file(tmp_path / "i.net", neuron=neuron))
    bad = {(f.layer, f.key) for f in findings if not f.ok}
    assert bad == {(1, "neuron/inhibition"), (1, "neuron/cDecay")}


# ---------------------------------------------------------------------------------------------------------
# states
# ---------------------------------------------------------------------------------------------------------
def test_state_ranges():
    fs = L.check_state_ranges({(1, "v"): 2 ** 23, (1, "u"): 2 ** 23 - 1, (3, "m"): 2 ** 13, (3, "c"): 0})
    by = {(f.layer, f.key): f for f in fs}
    assert not by[(1, "state/v")].ok and "saturates" in by[(1, "state/v")].message
    assert str(2 ** 23) in by[(1, "state/v")].message
    assert by[(1, "state/u")].ok and by[(1, "state/u")].headroom_bits == pytest.approx(0.0)
    assert by[(3, "state/m")].headroom_bits == pytest.approx(math.log2((2 ** 23 - 1) / 2 ** 13))
    assert by[(3, "state/c")].headroom_bits == math.inf
    with pytest.raises(ValueError):
        L.check_state_ranges({(1, "x"): 1})


# ---------------------------------------------------------------------------------------------------------
# resources
# ---------------------------------------------------------------------------------------------------------
def test_resources_ilif_conv(tmp_path):
    res = L.estimate_resources(_ilif_file(tmp_path / "r.net"))
    assert [r.layer for r in res] == [0, 1, 3]             # flatten skipped
    inp, conv, dense = res
    assert all(r.estimate for r in res)
    # input 2x8x8 feeding a 3x3/s2/p1 conv with 4 outputs: per-axis counts [1,2,1,2,1,2,1,1] -> max 4 * 2 * 2
    assert inp.neurons == 128 and inp.fan_out_max == 16
    assert conv.neurons == 64 and conv.fan_in == 18 and conv.synapses == 64 * 18
    assert conv.stored_weights == 4 * 2 * 9 and conv.weight_memory_bits == 72 * 8 and conv.synapse_words == 36
    assert conv.fan_out_max == 10 and conv.fan_out_mean == 10.0       # into the dense layer after flatten
    assert conv.state_words_per_neuron == 4 and conv.state_extra_bits_per_neuron == 1
    assert conv.state_memory_bits == 64 * (4 * 24 + 1)
    assert conv.neurons_per_core == L.NEURONS_PER_CORE_MAX // 2
    assert conv.cores == 1 and conv.fits_one_core
    assert dense.fan_in == 64 and dense.stored_weights == 640 and dense.fan_out_max == 0
    assert inp.state_words_per_neuron == 2


def test_resources_ilif_without_ciu(tmp_path):
    res = L.estimate_resources(_ilif_file(tmp_path / "r.net", neuron={**ILIF, "ciu": False}))
    assert res[1].state_words_per_neuron == 3 and res[1].state_extra_bits_per_neuron == 0


def test_dense_too_large_for_one_core(tmp_path):
    p = tmp_path / "big.net"
    with h5py.File(p, "w") as f:
        _layer(f, 0, "input", [4], CUBA)
        _layer(f, 1, "dense", [10000], CUBA, inFeatures=4, outFeatures=10000, weight=np.zeros((10000, 4), np.float32))
        _layer(f, 2, "dense", [10], CUBA, inFeatures=10000, outFeatures=10, weight=np.zeros((10, 10000), np.float32))
        _layer(f, 3, "dense", [100], CUBA, inFeatures=2560, outFeatures=100, weight=np.zeros((100, 2560), np.float32))
    res = {r.layer: r for r in L.estimate_resources(p)}
    # 10000 neurons > 8192 per core
    assert res[1].cores_by_neurons == 2 and res[1].cores == 2 and not res[1].fits_one_core
    # 10 neurons with fan-in 10000: 100000 synapses / 2 per word = 50000 words > 12000 -> 5 cores
    assert res[2].cores_by_neurons == 1 and res[2].synapse_words == 50000 and res[2].cores == 5
    # PilotNet-like 2560 -> 100 dense: 128000 words -> 11 cores (the notebook shows 12-13 at 8 neurons/core)
    assert res[3].cores == 11
    report = L.check_network(p, max_cores=10)
    assert report.total_cores == 1 + 2 + 5 + 11 and not report.cores_ok and not report.ok
    with pytest.raises(L.Loihi2ConstraintError, match=r"estimated cores 19 > max_cores 10"):
        L.assert_fits(report)
    assert L.check_network(p, max_cores=19).ok
    # a smaller per-core cap raises the estimate
    assert {r.layer: r for r in L.estimate_resources(p, neurons_per_core=1000)}[1].cores == 10


# ---------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------
def test_report_ok_and_serialisation(tmp_path):
    p = _ilif_file(tmp_path / "ok.net")
    report = L.check_network(p, state_maxabs={(1, "v"): 5000, (3, "m"): 40000})
    assert report.ok and not report.failures
    L.assert_fits(report)
    d = report.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["ok"] is True and d["estimate"] is True and d["total_neurons"] == 128 + 64 + 10
    assert any(f["headroom_bits"] == "inf" for f in d["findings"])
    md = report.to_markdown()
    assert "**OK**" in md and "| 1 | conv | ILIF | 64 |" in md


def test_report_failures_listed(tmp_path):
    w = _dense_weight(8, 16)
    w[0, 0] = 300
    p = _cuba_file(tmp_path / "bad.net", neuron={**CUBA, "vDecay": 5000}, w1=w)
    report = L.check_network(p, state_maxabs={(2, "v"): 2 ** 23})
    assert not report.ok
    assert {(f.layer, f.key) for f in report.failures} == {(1, "weight"), (1, "neuron/vDecay"), (2, "state/v")}
    with pytest.raises(L.Loihi2ConstraintError) as e:
        L.assert_fits(report)
    msg = str(e.value)
    assert "layer 1 weight: -64..300" in msg
    assert "layer 1 neuron/vDecay: 5000..5000 vs [0, 4096]" in msg
    assert "layer 2 state/v: max |v| = 8388608" in msg
    assert isinstance(e.value, ValueError)
    assert "**NO**" in report.to_markdown()
    json.dumps(report.to_dict(), allow_nan=False)
