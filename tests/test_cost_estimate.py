"""Loihi 2 cost estimate from measured activity (issue 21 item 1): the arithmetic on hand-computed toy nets,
effective synaptic operations equal to a brute-force count on real HDF5 files, and the PilotNet LIF calibration
row reproduced from lava-dl's shipped network file and spikes."""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from ilif_lava import loihi2_cost as lc
from simulations import cost

# Round constants so every expected number below is computed by hand (units as in lc.CONSTANTS).
TOY = {k: lc.Constant(v, "", "test") for k, v in {
    "e_synop_pj": 10.0, "e_neuron_active_pj": 4.0, "e_neuron_inactive_pj": 2.0, "e_spike_pj": 1.0,
    "e_hop_pj": 0.5, "t_synop_ns": 2.0, "t_neuron_active_ns": 3.0, "t_neuron_inactive_ns": 1.0,
    "t_spike_ns": 1.0, "t_hop_ns": 1.0, "t_barrier_1_tile_ns": 100.0, "t_barrier_32_tiles_ns": 410.0,
    "cores_per_tile": 4.0, "p_static_w_per_chip": 1.0, "time_calibration": 0.5, "energy_calibration": 2.0}.items()}


def _toy_layers():
    a = lc.LayerActivity(layer=0, type="input", neurons=4, state_words=2, cores=1, synapse_words=0,
                         synops=np.array([0.0, 0.0]), active=np.array([4.0, 4.0]), spikes=np.array([2.0, 0.0]),
                         messages_per_spike=1.0, hops=1.0)
    b = lc.LayerActivity(layer=1, type="dense", neurons=2, state_words=4, cores=1, synapse_words=6,
                         synops=np.array([0.0, 3.0]), active=np.array([0.0, 2.0]), spikes=np.array([0.0, 1.0]))
    return [a, b]


def test_arithmetic_on_a_hand_computed_toy_net():
    e = lc.estimate(_toy_layers(), constants=TOY, calibrated=False)
    # energy (pJ): A neurons 2 x 4 x 4 = 32, A messages 2 x 1 x (1 + 1 x 0.5) = 3; B synops 3 x 10 = 30,
    # B neurons (2 x 2 + 2 x 4) x 4/2 = 24  ->  89 pJ
    assert e.dynamic_energy_uj == pytest.approx(89e-6)
    assert [r.energy_neurons_uj for r in e.layers] == pytest.approx([32e-6, 24e-6])
    assert e.layers[0].energy_messages_uj == pytest.approx(3e-6) and e.layers[1].energy_synops_uj == pytest.approx(30e-6)
    # time (ns): step 0: A compute 4 x 3 = 12, A messages 2 x 1 + 1 hop = 3, B compute 2 x 1 x 2 = 4, B messages 2
    #            step 1: A compute 12, B compute 3 x 2 + 2 x 3 x 2 = 18  -> slowest 12 and 18, + barrier 100 (1 tile)
    assert e.time_per_step_us == pytest.approx((0.112 + 0.118) / 2)
    assert e.barrier_us == pytest.approx(0.1) and e.bound == "compute"
    assert e.cores == 2 and e.chips == 1 and e.depth == 2 and e.steps == 2
    assert e.latency_per_sample_us == pytest.approx(4 * 0.115)
    assert e.inferences_per_s == pytest.approx(1e6 / (2 * 0.115))
    assert e.static_energy_uj == pytest.approx(1.0 * 2 * 0.115)           # 1 W x 2 steps x 0.115 us
    assert e.energy_per_inference_uj == pytest.approx(89e-6 + 0.23)
    assert (e.synops, e.neuron_updates, e.spikes) == (3.0, 12.0, 3.0)
    assert e.layers[1].synmem_words_per_core == 6.0
    # calibrated: times x 0.5 (barrier included), dynamic energy x 2
    c = lc.estimate(_toy_layers(), constants=TOY, calibrated=True)
    assert c.time_per_step_us == pytest.approx(0.0575) and c.dynamic_energy_uj == pytest.approx(178e-6)
    assert c.static_energy_uj == pytest.approx(2 * 0.0575)


def test_message_bound_layer_and_barrier_and_hops():
    a, b = _toy_layers()
    a.spikes = np.array([50.0, 0.0])                    # 50 messages: 50 + 1 hop = 51 ns > 12 ns compute
    e = lc.estimate([a, b], constants=TOY, calibrated=False)
    assert e.layers[0].message_us_per_step == pytest.approx((0.051 + 0.0) / 2)
    assert e.time_per_step_us == pytest.approx((0.051 + 0.1 + 0.018 + 0.1) / 2)
    assert lc.barrier_us(1, TOY) == pytest.approx(0.1) and lc.barrier_us(32, TOY) == pytest.approx(0.41)
    assert lc.barrier_us(500, TOY) == pytest.approx(0.41) and lc.barrier_us(11, TOY) == pytest.approx(0.2)
    assert lc.mean_tile_hops(range(0, 4), range(4, 8), 4) == 1.0
    assert lc.mean_tile_hops([0, 1], [2, 5], 2) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="layer 1"):
        b.active = np.zeros(3)
        lc.estimate([a, b], constants=TOY)


def test_the_constants_table_names_a_source_for_every_constant():
    assert set(TOY) == set(lc.CONSTANTS)
    for name, c in lc.CONSTANTS.items():
        assert c.source and c.unit and np.isfinite(c.value), name
    md = lc.constants_markdown()
    assert md.count("\n") == len(lc.CONSTANTS) + 2 and "Davies et al. 2018" in md


# ---------------------------------------------------------------------------------------------------------
# effective synaptic operations == brute force
# ---------------------------------------------------------------------------------------------------------
def _brute_force(syn: cost.Synapse, pre: np.ndarray) -> float:
    """Every presynaptic spike x every synapse it has, one at a time: counted when the weight is non-zero and
    the target exists (conv: out[oy, ox] reads in[oy * s - p + ky * d, ...], a correlation as in slayer)."""
    total = 0.0
    n, _, steps = pre.shape
    if syn.type == "dense":
        for s in range(n):
            for t in range(steps):
                for i in np.nonzero(pre[s, :, t])[0]:
                    for j in range(syn.weight.shape[0]):
                        total += pre[s, i, t] * (syn.weight[j, i] != 0)
        return total
    c_in, h, w = syn.in_shape
    c_out, _, ho, wo = syn.out_shape[0], None, syn.out_shape[1], syn.out_shape[2]
    (sh, sw), (ph, pw), (dh, dw) = syn.stride, syn.padding, syn.dilation
    per_in, per_out = c_in // syn.groups, c_out // syn.groups
    kh, kw = syn.weight.shape[2:]
    for s in range(n):
        for t in range(steps):
            for flat in np.nonzero(pre[s, :, t])[0]:
                c, y, x = np.unravel_index(flat, (c_in, h, w))
                g = c // per_in
                for o in range(g * per_out, (g + 1) * per_out):
                    for ky in range(kh):
                        for kx in range(kw):
                            ny, nx = y + ph - ky * dh, x + pw - kx * dw
                            if ny % sh or nx % sw or not (0 <= ny // sh < ho and 0 <= nx // sw < wo):
                                continue
                            total += pre[s, flat, t] * (syn.weight[o, c - g * per_in, ky, kx] != 0)
    return total


def _toy_file(path: Path, rng: np.random.Generator) -> Path:
    """An HDF5 file in the netx layout: conv (3,7,9) -> (4,4,7), kernel 3x2, stride (2,1), padding (1,0),
    dilation (1,2); flatten; dense 112 -> 5. Half the weights are zero."""
    def wts(shape):
        w = rng.integers(-60, 60, size=shape) * 2
        w[rng.random(shape) < 0.5] = 0
        return w.astype(np.float32)
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g["type"], g["shape"] = np.array([b"conv"]), np.array([4, 4, 7])
        g["inChannels"], g["outChannels"], g["groups"] = 3, 4, 1
        g["kernelSize"], g["stride"] = np.array([3, 2]), np.array([2, 1])
        g["padding"], g["dilation"] = np.array([1, 0]), np.array([1, 2])
        g["weight"] = wts((4, 3, 3, 2))
        g = f.create_group("layer/1")
        g["type"], g["shape"] = np.array([b"flatten"]), np.array([112, 1, 1])
        g = f.create_group("layer/2")
        g["type"], g["shape"], g["inFeatures"], g["outFeatures"] = np.array([b"dense"]), np.array([5]), 112, 5
        g["weight"] = wts((5, 112))
    return path


def test_effective_synops_equal_a_brute_force_count(tmp_path):
    rng = np.random.default_rng(3)
    syns = cost.read_synapses(_toy_file(tmp_path / "toy.net", rng), (3, 7, 9))
    assert [s.type for s in syns] == ["conv", "dense"] and syns[1].in_shape == (112,)
    x = (rng.random((2, 3 * 7 * 9, 3)) < 0.3).astype(np.float64)
    x[0, 5, 1] = 2                                                   # a graded input counts twice
    mid = (rng.random((2, 112, 3)) < 0.3).astype(np.float64)
    for syn, pre in zip(syns, (x, mid)):
        ev = cost.incoming_events(syn, pre)
        assert ev.shape == (2, syn.neurons, 3)
        assert ev.sum() == _brute_force(syn, pre) > 0
    zero = cost.Synapse(9, "dense", (4,), (3,), np.zeros((3, 4), dtype=np.int64))
    assert cost.incoming_events(zero, np.ones((1, 4, 2))).sum() == 0        # spikes meeting zero weights: no ops


def test_effective_synops_on_an_exported_cnn_with_pools_and_padding(tmp_path):
    """A real export (conv with padding, pools as depthwise convs, flatten, dense): the count used by the
    estimate equals the brute force layer by layer, and layer_activity sums it per step."""
    from export.export_net import export_model
    from training.models import build_model
    model = build_model("cnn", (2, 8, 8), 4, "ILIF", None, hidden=4)
    net, _ = export_model(model, tmp_path / "cnn.net", force=True)
    with h5py.File(net, "r+") as f:                                   # make some weights zero
        w = f["layer/2/weight"][()]
        w[:, ::2] = 0
        f["layer/2/weight"][...] = w
    syns = cost.read_synapses(net, (2, 8, 8))
    assert [s.type for s in syns] == ["conv", "conv", "conv", "conv", "dense", "dense"] and syns[1].groups == 8
    rng = np.random.default_rng(0)
    x = (rng.random((2, 2, 8, 8, 4)) < 0.25).astype(np.int8)
    spikes = [(rng.random((2, s.neurons, 4)) < 0.2).astype(np.int8) for s in syns]
    pres = [x.reshape(2, -1, 4)] + spikes[:-1]
    for syn, pre in zip(syns, pres):
        assert cost.incoming_events(syn, pre).sum() == _brute_force(syn, pre.astype(np.float64))
    rows = cost.layer_activity(net, x, spikes)
    for row, syn, pre in zip(rows, syns, pres):
        assert row.synops.sum() * 2 == pytest.approx(_brute_force(syn, pre.astype(np.float64)))
        assert row.state_words == 4                                    # ILIF: u, v, c, m
    est = lc.estimate(rows)
    assert est.synops == pytest.approx(sum(r.synops.sum() for r in rows)) and est.energy_per_inference_uj > 0
    md = cost.cost_markdown(est.to_dict())
    assert md.startswith("## Loihi 2 cost (estimate)") and "calibrated on" in md
    assert sum(l.startswith("| ") and l.split("|")[2].strip() in ("conv", "dense") for l in md.splitlines()) == 6


# ---------------------------------------------------------------------------------------------------------
# PilotNet LIF calibration (lava-dl's shipped network file and spikes)
# ---------------------------------------------------------------------------------------------------------
def test_pilotnet_calibration_row_is_reproduced():
    folder = cost.pilotnet_dir()
    if not (folder / "network.net").is_file():
        pytest.skip(f"{folder}: lava-dl's PilotNet LIF files are not installed")
    r = cost.calibrate_pilotnet(folder)
    assert r["time_calibration"] == pytest.approx(lc.const("time_calibration"), abs=5e-4)
    assert r["energy_calibration"] == pytest.approx(lc.const("energy_calibration"), abs=5e-4)
    rows = r["rows"]
    assert rows["cores"]["estimate"] == 67 and rows["cores"]["measured"] == 74
    assert rows["time_per_step_us"]["measured"] == pytest.approx(152.845, abs=1e-3)
    for key, err in lc.CALIBRATION_ERRORS.items():
        assert rows[key]["error"] == pytest.approx(err, abs=5e-4), key
    assert "+140%" in lc.calibration_note() and "+9.5%" in lc.calibration_note()
    # with the stored factors the estimate meets the measurement (by construction: one measured network)
    cal = cost.estimate_run(folder / "network.net", np.zeros((1, 1, 16)), cost.pilotnet_spikes(folder))
    m = lc.PILOTNET_MEASURED
    assert cal.time_per_step_us == pytest.approx(m["time_per_step_us"], rel=2e-3)
    assert cal.dynamic_energy_uj / 1000 == pytest.approx(m["dynamic_energy_per_inference_mj"], rel=2e-3)
    assert cal.energy_per_inference_uj / 1000 == pytest.approx(m["energy_per_inference_mj"], rel=2e-3)
    assert cal.inferences_per_s == pytest.approx(m["inferences_per_s"], rel=2e-3)
