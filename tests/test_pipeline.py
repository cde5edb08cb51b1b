"""End-to-end tests of the pipeline on a tiny digits run: the report's numbers are recomputed from the saved files.

One tiny ILIF pipeline (and one tiny CUBA pipeline) runs per module; every number the report states is
recomputed independently here (fresh quantized forward of the saved model, raw Lava spikes from
``lava_test.npz``, hand-counted synaptic operations) and compared, and a weight planted into a copy of the
exported file must show up in Lava exactly where the presynaptic spike arrives.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from export.export_net import export_model
from ilif_lava import loihi2
from pipeline.run import run_pipeline
from simulations.compare import first_divergence
from simulations.lava_run import run_network
from training.datasets import load_split
from training.models import build_model
from training.train import TrainConfig, load_model

T = 8
HIDDEN = 32
CLASSES = 10
N_TEST = 20
PLANTED_WEIGHT = 254   # largest even 8-bit weight mantissa


def _tiny_cfg(neuron: str = "ILIF") -> TrainConfig:
    return TrainConfig(dataset="digits", neuron=neuron, hidden=HIDDEN, time_bins=T, epochs=2,
                       qat_epochs=0 if neuron == "CUBA" else 1, batch_size=32, lr=1e-2, seed=0, device="cpu",
                       limit_train=200, limit_test=N_TEST)


def _run(tmp_path_factory, neuron: str, baseline):
    run_dir = tmp_path_factory.mktemp(f"run-{neuron.lower()}")
    report = run_pipeline(_tiny_cfg(neuron), run_dir, baseline=baseline, state_samples=1, progress=False)
    return run_dir, report


@pytest.fixture(scope="module")
def ilif_run(tmp_path_factory):
    return _run(tmp_path_factory, "ILIF", "lif")


@pytest.fixture(scope="module")
def test_data():
    x, y = load_split("digits", "test", time_bins=T, limit=N_TEST).tensors()
    return x, y.numpy()


def _forward(model, x, quantized: bool, record: bool = False):
    """Per-layer spikes [N, neurons, T] as int numpy arrays (and recorded states of the blocks)."""
    model.set_quantized(quantized)
    model.set_record_states(record)
    model.eval()
    with torch.no_grad():
        _, spikes = model(x)
    states = [dict(b.neuron.states) for b in model.spiking_blocks()] if record else None
    model.set_record_states(False)
    return [s.reshape(s.shape[0], -1, s.shape[-1]).numpy().astype(np.int64) for s in spikes], states


def _lava(run_dir: Path):
    z = np.load(run_dir / "lava_test.npz")
    n_layers = len([k for k in z.files if k.startswith("spikes_")])
    return [z[f"spikes_{i}"].astype(np.int64) for i in range(n_layers)], z


def _argmax_counts(spikes: np.ndarray) -> np.ndarray:
    return np.argmax(spikes.sum(axis=-1), axis=-1)


# ---------------------------------------------------------------------------------------------------------
# 1. the report's numbers, recomputed
# ---------------------------------------------------------------------------------------------------------
def test_report_files_exist(ilif_run):
    run_dir, report = ilif_run
    out = run_dir / "report"
    assert (out / "report.json").is_file() and (out / "report.md").is_file()
    saved = json.loads((out / "report.json").read_text())
    assert saved["plots"] and set(saved["plots"]) >= {"firing_rate_per_layer.png", "spikes_per_step.png",
                                                      "spike_mismatches_per_step.png", "training_curves.png"}
    for pair in ("quantized_vs_lava", "float_vs_quantized"):      # the mismatch plot's counts add up
        for row in saved["spikes"][pair]:
            assert sum(row["mismatches_per_step"]) == row["mismatches"]
            assert len(row["mismatches_per_step"]) == saved["time_steps"]
    assert "Data: digits test split" in (out / "report.md").read_text()
    for name in saved["plots"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    md = (out / "report.md").read_text()
    assert "quant vs Lava mismatches" in md and "SOP energy" in md
    # which ILIF kernel computed the float and the bit-exact integer engines
    from ilif_lava import kernels
    used = saved["kernels"]["last_used"]
    assert set(used) == {"float", "integer"} and set(used.values()) <= set(kernels.CHOICES)
    assert f"integer `{used['integer']}`" in md
    for name in saved["plots"]:
        assert f"]({name})" in md
    assert saved["samples"] == N_TEST and saved["time_steps"] == T
    assert [e["phase"] for e in saved["training_log"]] == ["float", "float", "qat"]
    assert saved["loihi2"]["ok"] is True
    assert "baseline" in saved and saved["baseline"]["neuron"] == "LIF"
    # no staging / temp files left by the atomic writes
    leftovers = [p for p in run_dir.rglob("*") if p.name.endswith((".tmp", ".staging", ".tmp.npz"))]
    assert leftovers == []


def test_spike_agreement_recomputed(ilif_run, test_data):
    run_dir, report = ilif_run
    x, y = test_data
    lava, z = _lava(run_dir)
    assert np.array_equal(z["labels"], y)
    model = load_model(run_dir / "train" / "model.pt")
    quant, _ = _forward(model, x, quantized=True)
    assert len(quant) == len(lava) == 2
    assert [q.shape for q in quant] == [(N_TEST, HIDDEN, T), (N_TEST, CLASSES, T)]
    rows = report["spikes"]["quantized_vs_lava"]
    for layer, (q, l) in enumerate(zip(quant, lava)):
        assert q.sum() > 0, f"layer {layer} is silent: the comparison would be vacuous"
        mismatches = int((q != l).sum())
        assert mismatches == 0
        assert rows[layer]["mismatches"] == mismatches
        assert rows[layer]["agreement"] == 1.0
        assert rows[layer]["firing_rate_a"] == pytest.approx(q.mean())
        assert rows[layer]["firing_rate_b"] == pytest.approx(l.mean())
    assert report["first_divergence"]["quantized_vs_lava"] is None
    # float vs quantized: recompute the mismatch count too (whatever it is)
    flt, _ = _forward(model, x, quantized=False)
    for layer, (f, q) in enumerate(zip(flt, quant)):
        assert report["spikes"]["float_vs_quantized"][layer]["mismatches"] == int((f != q).sum())


def test_accuracy_and_prediction_agreement_recomputed(ilif_run, test_data):
    run_dir, report = ilif_run
    x, y = test_data
    lava, z = _lava(run_dir)
    pred_lava = _argmax_counts(lava[-1])
    assert np.array_equal(z["pred"], pred_lava)
    assert report["accuracy"]["lava"] == pytest.approx(float((pred_lava == y).mean()))
    model = load_model(run_dir / "train" / "model.pt")
    pred_q = _argmax_counts(_forward(model, x, quantized=True)[0][-1])
    pred_f = _argmax_counts(_forward(model, x, quantized=False)[0][-1])
    assert report["accuracy"]["quantized"] == pytest.approx(float((pred_q == y).mean()))
    assert report["accuracy"]["float"] == pytest.approx(float((pred_f == y).mean()))
    pa = report["prediction_agreement"]
    assert pa["quantized_vs_lava"] == pytest.approx(float((pred_q == pred_lava).mean())) == 1.0
    assert pa["float_vs_lava"] == pytest.approx(float((pred_f == pred_lava).mean()))
    assert pa["float_vs_quantized"] == pytest.approx(float((pred_f == pred_q).mean()))


def test_activity_and_sop_energy_recomputed(ilif_run, test_data):
    run_dir, report = ilif_run
    x, _ = test_data
    lava, _ = _lava(run_dir)
    act = report["activity"]
    for layer, s in enumerate(lava):
        row = act["layers"][layer]
        assert row["neurons"] == s.shape[1]
        assert row["firing_rate"] == pytest.approx(s.sum() / s.size)
        assert row["continuous_firing_rate"] == pytest.approx(float((s.sum(-1) > T / 2).mean()))
        assert row["spikes_per_step"] == pytest.approx((s.sum(axis=(0, 1)) / N_TEST).tolist())
    total = sum(int(s.sum()) for s in lava)
    assert act["firing_rate"] == pytest.approx(total / sum(s.size for s in lava))
    # SOP by hand: every input spike reaches HIDDEN neurons, every hidden spike reaches CLASSES neurons;
    # output spikes reach nothing. Per sample.
    input_spikes = float(x.numpy().sum())
    hidden_spikes = float(lava[0].sum())
    acs = (input_spikes * HIDDEN + hidden_spikes * CLASSES) / N_TEST
    macs = T * (HIDDEN + CLASSES) * 2          # ILIF: 2 multiplies per neuron per step
    assert act["acs_per_sample"] == pytest.approx(acs)
    assert act["macs_per_sample"] == macs
    assert act["sop_energy_uj_per_sample"] == pytest.approx((0.9 * acs + 4.6 * macs) * 1e-6)
    # the LIF baseline (quantized PyTorch spikes) is counted with one multiply per neuron per step
    base = report["baseline"]["activity"]
    assert base["macs_per_sample"] == T * (HIDDEN + CLASSES)
    bmodel = load_model(run_dir / "baseline-lif" / "train" / "model.pt")
    bspikes, _ = _forward(bmodel, x, quantized=True)
    bacs = (input_spikes * HIDDEN + float(bspikes[0].sum()) * CLASSES) / N_TEST
    assert base["acs_per_sample"] == pytest.approx(bacs)
    assert report["baseline"]["accuracy_quantized"] == pytest.approx(
        float((_argmax_counts(bspikes[-1]) == test_data[1]).mean()))


# ---------------------------------------------------------------------------------------------------------
# 2. a planted weight shows up exactly where its presynaptic spike arrives
# ---------------------------------------------------------------------------------------------------------
def _plant_site(q0: np.ndarray, q1: np.ndarray, v1: np.ndarray, w1: np.ndarray, vth: int):
    """Choose (pre j, post i) and the expected first divergence of layer 1 after w1[i, j] := PLANTED_WEIGHT.

    Layer-0 spike at step t reaches layer 1 at step t + 1 (one step of synaptic latency per block with
    delay_shift=True; Lava sink index == slayer index). Nothing differs before the first arrival t* = min over
    samples of (first spike of j) + 1. At t*, in a sample where j spiked at t* - 1, output neuron i gets
    (PLANTED_WEIGHT - w_old) << 6 more current; if i was silent there (so its recorded v equals the charge h),
    it fires iff h + delta >= vth (the effective threshold vThMant << 6).
    """
    n_samples, n_pre, steps = q0.shape
    for j in np.argsort([np.nonzero(q0[:, jj].any(0))[0][0] if q0[:, jj].any() else steps for jj in range(n_pre)],
                        kind="stable"):
        if not q0[:, j].any():
            break
        first = np.array([np.nonzero(q0[n, j])[0][0] if q0[n, j].any() else steps for n in range(n_samples)])
        t_star = int(first.min()) + 1
        if t_star >= steps:
            continue
        arriving = np.nonzero(first == t_star - 1)[0]
        for i in range(q1.shape[1]):
            delta = (PLANTED_WEIGHT - int(w1[i, j])) << 6
            flips = [int(n) for n in arriving if q1[n, i, t_star] == 0 and v1[n, i, t_star] + delta >= vth]
            if flips:
                return int(j), int(i), t_star, flips
    raise AssertionError("no presynaptic spike whose planted weight must flip an output spike")


def test_planted_weight_diverges_where_presynaptic_spike_arrives(ilif_run, test_data, tmp_path):
    run_dir, _ = ilif_run
    x, _ = test_data
    model = load_model(run_dir / "train" / "model.pt")
    (q0, q1), states = _forward(model, x, quantized=True, record=True)
    v1 = states[1]["v"].reshape(N_TEST, CLASSES, T).numpy()
    planted = tmp_path / "planted.net"
    shutil.copy(run_dir / "network.net", planted)
    with h5py.File(planted, "r+") as f:
        w1 = f["layer/1/weight"][()]
        assert w1.shape == (CLASSES, HIDDEN)
        vth = int(f["layer/1/neuron/vThMant"][()]) << 6
        j, i, t_star, flips = _plant_site(q0, q1, v1, w1, vth)
        w1[i, j] = PLANTED_WEIGHT
        f["layer/1/weight"][...] = w1
    lava = run_network(planted, x.numpy())
    assert len(lava.spikes) == 2
    # layer 0 is untouched
    assert np.array_equal(lava.spikes[0], q0)
    assert first_divergence([q0], [lava.spikes[0]]) is None
    d = first_divergence([q0, q1], lava.spikes)
    assert d is not None
    assert (d.layer, d.time_step, d.neuron, d.what) == (1, t_star, i, "spike")
    assert d.sample == min(flips)
    assert (d.value_a, d.value_b) == (0.0, 1.0)
    # and nothing at all differs in layer 1 before the arrival step
    assert np.array_equal(lava.spikes[1][..., :t_star], q1[..., :t_star])
    assert t_star - 1 == min(int(np.nonzero(q0[n, j])[0][0]) for n in range(N_TEST) if q0[n, j].any())


def test_compare_fails_loudly_when_lava_differs_from_the_quantized_twin(ilif_run, test_data, tmp_path, capsys):
    """The same planted weight in a copy of the run: 'simulate' then 'compare' exit 1 with one line giving the
    mismatch count and the first divergence (layer 1, the arrival step), and the report is still written."""
    from tests.helpers import run_cli
    run_dir, _ = ilif_run
    x, _ = test_data
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("baseline-*", "report", "lava_test.npz"))
    model = load_model(run_dir / "train" / "model.pt")
    (q0, q1), states = _forward(model, x, quantized=True, record=True)
    with h5py.File(copy / "network.net", "r+") as f:
        w1 = f["layer/1/weight"][()]
        j, i, t_star, flips = _plant_site(q0, q1, states[1]["v"].reshape(N_TEST, CLASSES, T).numpy(), w1,
                                          int(f["layer/1/neuron/vThMant"][()]) << 6)
        w1[i, j] = PLANTED_WEIGHT
        f["layer/1/weight"][...] = w1
    code, _, err = run_cli(["simulate", str(copy), "--state-samples", "0"], capsys)
    assert code == 0, err
    code, out, err = run_cli(["compare", str(copy), "--device", "cpu"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("ilif-lava")]
    assert code == 1 and len(lines) == 1, err
    assert "spike mismatches" in lines[0] and f"first at layer 1, step {t_star}, sample {min(flips)}" in lines[0]
    assert f"neuron {i}" in lines[0] and str(copy / "report") in lines[0]
    rep = json.loads((copy / "report" / "report.json").read_text())
    assert sum(r["mismatches"] for r in rep["spikes"]["quantized_vs_lava"]) > 0


def test_analog_input_is_refused_not_truncated(ilif_run, test_data):
    run_dir, _ = ilif_run
    x, _ = test_data
    with pytest.raises(ValueError, match="input is analog") as err:
        run_network(run_dir / "network.net", x.numpy() * 0.37)
    assert str(run_dir / "network.net") in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# 3. Loihi 2 checks on exported files
# ---------------------------------------------------------------------------------------------------------
def _failing(report, layer: int, key: str):
    hits = [f for f in report.failures if f.layer == layer and f.key == key]
    assert len(hits) == 1, [f.message for f in report.failures]
    return hits[0]


def test_check_flags_planted_out_of_range_parameters(ilif_run, tmp_path):
    run_dir, _ = ilif_run
    assert loihi2.check_network(run_dir / "network.net").ok
    bad = tmp_path / "bad.net"
    shutil.copy(run_dir / "network.net", bad)
    with h5py.File(bad, "r+") as f:
        f["layer/0/neuron/vDecay"][()] = 5000
        w = f["layer/1/weight"][()]
        w[3, 5] = 300
        f["layer/1/weight"][...] = w
    rep = loihi2.check_network(bad)
    assert not rep.ok
    assert len(rep.failures) == 2
    vd = _failing(rep, 0, "neuron/vDecay")
    assert (vd.value_max, vd.limit_max) == (5000, 4096)
    assert "layer 0" in vd.message and "5000" in vd.message and "4096" in vd.message
    assert vd.headroom_bits == pytest.approx(math.log2(4096 / 5000))
    w = _failing(rep, 1, "weight")
    assert (w.value_max, w.limit_min, w.limit_max) == (300, -256, 254)
    assert "layer 1" in w.message and "300" in w.message and "[-256, 254]" in w.message
    md = rep.to_markdown()
    assert "**FAIL**" in md and md.count("**NO**") == 2
    with pytest.raises(loihi2.Loihi2ConstraintError, match="5000"):
        loihi2.assert_fits(rep)


def test_resource_estimate_of_a_layer_too_big_for_one_core(tmp_path):
    hidden = 20000
    model = build_model("mlp", (1, 8, 8), CLASSES, "ILIF", None, hidden=hidden)
    path, rep = export_model(model, tmp_path / "big.net")
    assert path.is_file() and rep.ok   # parameters are fine; only the size is large
    r0, r1 = rep.resources
    # independent estimate: ILIF keeps u, v, c, m (4 words) -> 8192 * 2 / 4 neurons per core;
    # 64 * 20000 8-bit weights at 2 per SynMem word, 12000 words per core
    npc = 8192 * 2 // 4
    words0 = math.ceil(64 * hidden / 2)
    assert (r0.neurons, r0.fan_in, r0.stored_weights, r0.synapse_words) == (hidden, 64, 64 * hidden, words0)
    assert r0.neurons_per_core == npc
    assert r0.cores_by_neurons == math.ceil(hidden / npc) == 5
    assert r0.cores_by_synmem == math.ceil(words0 / 12000) == 54
    assert r0.cores == 54 and not r0.fits_one_core and r0.cores > 1
    assert r1.cores == math.ceil(math.ceil(hidden * CLASSES / 2) / 12000) == 9
    assert rep.total_cores == 63
    assert "| 0 | dense | ILIF | 20000 | 64 |" in rep.to_markdown()


def test_export_refuses_failing_network_unless_forced(ilif_run, tmp_path):
    run_dir, _ = ilif_run
    model = load_model(run_dir / "train" / "model.pt")
    target = tmp_path / "refused.net"
    # 2 layers -> 2 estimated cores; a budget of 1 fails
    with pytest.raises(loihi2.Loihi2ConstraintError, match=r"estimated cores 2 > max_cores 1"):
        export_model(model, target, max_cores=1)
    assert not target.exists()
    assert not target.with_name(target.name + ".staging").exists()
    path, rep = export_model(model, target, max_cores=1, force=True)
    assert path == target and target.is_file() and not rep.ok and rep.total_cores == 2
    # a parameter outside the Loihi range: threshold 2100 -> vThMant 134400 > 2**17 - 1
    big_th = build_model("mlp", (1, 8, 8), CLASSES, "ILIF", {"threshold": 2100.0}, hidden=8)
    target2 = tmp_path / "threshold.net"
    with pytest.raises(loihi2.Loihi2ConstraintError, match=r"layer 0 neuron/vThMant: 134400"):
        export_model(big_th, target2)
    assert not target2.exists()
    path, rep = export_model(big_th, target2, force=True)
    assert target2.is_file() and {(f.layer, f.key) for f in rep.failures} == {(0, "neuron/vThMant"),
                                                                                (1, "neuron/vThMant")}


# ---------------------------------------------------------------------------------------------------------
# 4. the stock CUBA route through the same pipeline
# ---------------------------------------------------------------------------------------------------------
def test_cuba_pipeline_is_bit_exact(tmp_path_factory, test_data):
    run_dir, report = _run(tmp_path_factory, "CUBA", None)
    x, y = test_data
    lava, z = _lava(run_dir)
    with h5py.File(run_dir / "network.net", "r") as f:
        assert [f[f"layer/{k}/neuron/type"][()] for k in ("0", "1")] in ([b"CUBA"] * 2, ["CUBA"] * 2)
    model = load_model(run_dir / "train" / "model.pt")
    spikes, _ = _forward(model, x, quantized=True)   # no-op for CUBA: the slayer forward
    flt, _ = _forward(model, x, quantized=False)
    for layer, (s, f, l) in enumerate(zip(spikes, flt, lava)):
        assert np.array_equal(s, f)
        assert s.sum() > 0
        assert int((s != l).sum()) == 0
        assert report["spikes"]["quantized_vs_lava"][layer]["mismatches"] == 0
    assert first_divergence(spikes, lava) is None
    assert report["first_divergence"]["quantized_vs_lava"] is None
    assert report["accuracy"]["lava"] == pytest.approx(float((_argmax_counts(lava[-1]) == y).mean()))
    assert report["activity"]["macs_per_sample"] == T * (HIDDEN + CLASSES)   # CUBA counted like LIF (k = 1)
