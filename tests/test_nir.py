"""NIR interchange (ilif_lava.nir, ``ilif-lava nir``): export with its lossiness report, import of graphs built
with the ``nir`` package's own API, round trips, unsupported nodes, hostile files. Two Lava runs in all."""
from __future__ import annotations

import json
import os

import h5py
import nir
import numpy as np
import pytest
import torch

from ilif_lava import block as B
from ilif_lava.hdf5_validate import NetworkFileError
from ilif_lava.nir import (NIRConversionError, NIRSemanticsError, from_nir, lossiness_report, read_nir, simulate_nir,
                           to_nir, write_nir)
from ilif_lava.nir.export import neuron_record
from tests.helpers import run_cli
from training.models import SpikingNet

P = {"threshold": 1.0, "tau": 2.0, "inhibition": "plan", "surrogate": "rectangle"}


def _net(blocks, in_shape, flatten=False) -> SpikingNet:
    net = SpikingNet(blocks, flatten_input=flatten, meta={"in_shape": list(in_shape)})
    with torch.no_grad():
        net(torch.zeros(1, *in_shape, 2))
    return net


def _mixed() -> SpikingNet:
    """Every variant and block type: Conv ILIF with a current decay, Pool MPIU, Dense CIU with a learned decay,
    Dense PLIF, Dense LIF."""
    torch.manual_seed(0)
    blocks = [B.Conv(dict(P, variant="ILIF", current_decay=0.5), 2, 4, 3, padding=1, weight_scale=3, delay_shift=True),
              B.Pool(dict(P, variant="MPIU"), 2, stride=2, delay_shift=True),
              B.Flatten(),
              B.Dense(dict(P, variant="CIU", kappa=0.05, requires_grad=True), 36, 10, weight_scale=3,
                      delay_shift=True),
              B.Dense(dict(P, variant="PLIF", tau=1.5, threshold=0.75), 10, 6, weight_scale=3, delay_shift=True),
              B.Dense(dict(P, variant="LIF", tau=3.0), 6, 3, weight_scale=3, delay_shift=True)]
    net = _net(blocks, (2, 6, 6))
    with torch.no_grad():
        net.blocks[3].neuron.voltage_decay.fill_(1234.5)        # a learned decay, not 4096 / tau
        net.blocks[4].neuron.plif_w.fill_(0.7)
    return net


def test_round_trip_every_parameter_and_spikes_bit_exact(tmp_path):
    net = _mixed()
    path, report = write_nir(net, tmp_path / "net.nir")
    imp = from_nir(path)
    back = _net(imp.blocks, imp.input_shape, imp.flatten_input)
    assert [type(b) for b in back.blocks] == [type(b) for b in net.blocks]
    for a, b in zip(net.spiking_blocks(), back.spiking_blocks()):
        assert neuron_record(a.neuron) == neuron_record(b.neuron)
        wa = a.synapse.pre_hook_fx(a.synapse.weight)
        assert torch.equal(wa, b.synapse.weight) and torch.equal(b.synapse.pre_hook_fx(b.synapse.weight), wa)
        assert (a.synapse.stride, a.synapse.padding, a.delay_shift) == (b.synapse.stride, b.synapse.padding,
                                                                       b.delay_shift)
    assert imp.lags == [0] * 5                                  # the nir.Delay nodes are our block latency
    x = (torch.rand(3, 2, 6, 6, 12, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    for quantized in (False, True):
        net.set_quantized(quantized)
        back.set_quantized(quantized)
        with torch.no_grad():
            sa, sb = net(x)[1], back(x)[1]
        assert sum(int(s.sum()) for s in sa) > 0
        assert all(torch.equal(u, v) for u, v in zip(sa, sb))


def test_lossiness_reports_planted_ilif_layer_and_blind_consumers_fail(tmp_path):
    torch.manual_seed(0)
    lif_only = _net([B.Dense(dict(P, variant="LIF"), 8, 6, weight_scale=3), B.Dense(dict(P, variant="LIF"), 6, 3)],
                    (8,))
    planted = _net([B.Dense(dict(P, variant="LIF"), 8, 6, weight_scale=3), B.Dense(dict(P, variant="ILIF"), 6, 3)],
                   (8,))
    rep_lif, rep = lossiness_report(to_nir(lif_only)), lossiness_report(to_nir(planted))
    assert [r["variant"] for r in rep] == ["LIF", "ILIF"]
    assert "hard reset" in rep[0]["metadata_blind"] and rep_lif[1]["nir"] == "LIF"
    ilif = rep[1]
    assert ilif["node"] == "layer1.ilif" and "cannot run" in ilif["metadata_blind"]
    text = " ".join(ilif["differences"])
    assert "MPIU" in text and "CIU" in text and "MPIU" not in " ".join(rep[0]["differences"])
    assert ilif["probe"]["spike_mismatch"] > rep_lif[1]["probe"]["spike_mismatch"] >= 0
    # a LIF-only export is valid NIR (nir's own type check passes) and its metadata-blind semantics run
    nir.write(tmp_path / "lif.nir", to_nir(lif_only))
    g = nir.read(tmp_path / "lif.nir")
    assert set(simulate_nir(g, np.ones((1, 8, 4)))) >= {"layer0.lif", "layer1.lif"}
    # the planted ILIF layer: no consumer can silently run it as a plain LIF
    graph = to_nir(planted)
    with pytest.raises(ValueError, match="[Tt]ype"):
        nir.NIRGraph(nodes=graph.nodes, edges=graph.edges)            # what nir.read does with type_check=True
    with pytest.raises(NIRSemanticsError, match="layer1.ilif.*ILIF composite"):
        simulate_nir(graph, np.ones((1, 8, 4)))


def _exact_graph() -> nir.NIRGraph:
    """Built with the nir API like an snnTorch/Norse export (dt = 1e-3, Affine/Linear + Scale + LIF), chosen so
    that NIR's float semantics equal ours exactly: no leak memory (dt / tau = 1, so the reset mode cannot
    matter), weights on the 8-bit grid, threshold 65/64 (sums of 1/32 steps never tie with it)."""
    rng = np.random.default_rng(3)
    dt, vth = 1e-3, 65 / 64

    def lif(n):
        return nir.LIF(tau=np.full(n, dt), r=np.full(n, 1.0), v_leak=np.zeros(n), v_threshold=np.full(n, vth))
    w1 = rng.integers(-40, 60, (8, 16)) / 32
    w1[0, 0] = 126 / 32
    w2 = rng.integers(-20, 45, (3, 8)) / 64
    w2[0, 0] = 126 / 64                                          # x 2 (Scale): 126/32, as w1
    return nir.NIRGraph.from_list(nir.Affine(weight=w1, bias=np.zeros(8)), lif(8), nir.Linear(weight=w2),
                                  nir.Scale(scale=np.full(3, 2.0)), lif(3))


def test_nir_api_graph_runs_through_lava_exactly(tmp_path, capsys):
    nir.write(tmp_path / "g.nir", _exact_graph())
    code, out, err = run_cli(["nir", "import", str(tmp_path / "g.nir"), "--run-dir", str(tmp_path / "run"),
                              "--dt", "1e-3", "--samples", "3", "--steps", "10", "--rate", "0.4"], capsys)
    assert code == 0, err
    rep = json.loads((tmp_path / "run" / "report" / "nir_import.json").read_text())
    assert [layer["source"] for layer in rep["layers"]] == ["nir", "nir"] and rep["lags"] == [1, 2]
    assert all(r["mismatches"] == 0 for r in rep["spikes"]["quantized_vs_lava"])
    ref = rep["spikes"]["nir_float_vs_lava"]
    assert all(r["agreement"] == 1.0 for r in ref) and sum(r["firing_rate_a"] for r in ref) > 0
    assert (tmp_path / "run" / "network.net").exists() and "NIR float vs Lava" in (
        tmp_path / "run" / "report" / "nir_import.md").read_text()


def test_cli_export_then_import_of_an_ilif_run(tmp_path, capsys):
    from training.models import build_model
    from training.train import atomic_save
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3, neuron="ILIF", hidden=6, weight_scale=4.0)
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    atomic_save({"model": model.state_dict(), "meta": model.meta, "config": {}, "quantized": True},
                run / "train" / "model.pt")
    code, out, err = run_cli(["nir", "export", str(run)], capsys)
    assert code == 0, err
    assert "ILIF" in out and "cannot run" in out
    assert "MPIU" in (run / "network.nir.lossiness.md").read_text()
    assert len(json.loads((run / "network.nir.lossiness.json").read_text())) == 2
    code, out, err = run_cli(["nir", "import", str(run / "network.nir"), "--run-dir", str(tmp_path / "imp"),
                              "--samples", "2", "--steps", "8", "--rate", "0.5"], capsys)
    assert code == 0, err
    rep = json.loads((tmp_path / "imp" / "report" / "nir_import.json").read_text())
    assert [layer["variant"] for layer in rep["layers"]] == ["ILIF", "ILIF"]
    assert all(r["mismatches"] == 0 for r in rep["spikes"]["quantized_vs_lava"])
    assert "ILIF composite" in rep["nir_float_error"] and "not runnable" in out


def _lif(n, **kw):
    f = dict(tau=np.full(n, 2.0), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.ones(n))
    f.update(kw)
    return nir.LIF(**f)


@pytest.mark.parametrize("nodes,match", [
    ([nir.Linear(weight=np.ones((3, 4))), nir.LI(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3))],
     r"^NIR node 'li' \(LI\): is not supported"),
    ([nir.Affine(weight=np.ones((3, 4)), bias=np.ones(3)), _lif(3)], r"^NIR node 'affine' \(Affine\): nonzero bias"),
    ([nir.Linear(weight=np.ones((3, 4))), _lif(3, v_reset=np.full(3, 0.5))], r"^NIR node 'lif' \(LIF\): v_reset"),
    ([nir.Linear(weight=np.ones((3, 4))), _lif(3, tau=np.array([2.0, 3.0, 2.0]))], r"'lif' \(LIF\): tau differs"),
    ([nir.Linear(weight=np.ones((3, 4))), _lif(3, tau=np.full(3, 0.5))], r"'lif' \(LIF\): dt / tau"),
    ([nir.Linear(weight=np.ones((3, 4))), nir.Linear(weight=np.ones((2, 3))), _lif(2)],
     r"'linear_1' \(Linear\): follows the synapse node 'linear'"),
])
def test_unsupported_nodes_one_line_error(nodes, match):
    with pytest.raises(NIRConversionError, match=match) as exc:
        from_nir(nir.NIRGraph.from_list(*nodes))
    assert "\n" not in str(exc.value)


def test_oversized_shapes_refused_before_allocation():
    n = 3
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([1, 5000, 5000])),
                            "conv": nir.Conv2d(input_shape=(5000, 5000), weight=np.ones((n, 1, 1, 1)), stride=1,
                                               padding=0, dilation=1, groups=1, bias=np.zeros(n)),
                            "lif": _lif(n), "output": nir.Output(output_type=np.array([n]))},
                     edges=[("input", "conv"), ("conv", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(NIRConversionError, match=r"'input' \(Input\): shape \[1, 5000, 5000\] .* more than"):
        from_nir(g)


def test_unsupported_node_cli_one_line(tmp_path, capsys):
    nir.write(tmp_path / "p.nir", nir.NIRGraph.from_list(
        nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
                   bias=np.zeros(2)),
        nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))))
    code, out, err = run_cli(["nir", "import", str(tmp_path / "p.nir"), "--run-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and "'avgpool2d' (AvgPool2d): is not supported" in err


@pytest.mark.parametrize("weight, needle", [
    (np.inf, "NIR node 'lin' (Linear): weight holds a non-finite value (inf); every value must be finite"),
    (1e30, "NIR node 'lin' (Linear): weights x input gain"),
])
def test_unrepresentable_weights_cli_one_line(tmp_path, capsys, weight, needle):
    """An infinite weight is named as such (no talk of training), a 1e30 weight is refused, not saturated: exit 2,
    one line naming the node, no run written."""
    nir.write(tmp_path / "w.nir", nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([4])), "lin": nir.Linear(weight=np.full((3, 4), weight)),
               "lif": _lif(3), "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "lin"), ("lin", "lif"), ("lif", "output")]))
    code, out, err = run_cli(["nir", "import", str(tmp_path / "w.nir"), "--run-dir", str(tmp_path / "r")], capsys)
    assert code == 2 and err.count("\n") == 1 and needle in err and "diverged" not in err, err
    assert not (tmp_path / "r" / "network.net").exists()
    if weight == 1e30:
        assert "cannot be represented (they would saturate)" in err


@pytest.mark.parametrize("lif_fields, needle", [
    ({"r": np.full(3, 1e-320)}, "every one would round to 0"),        # the ratio to the largest weight overflows
    ({"tau": np.full(3, 1e300)}, "every one would round to 0"),       # input gain r / tau: 2e-300
    ({"v_threshold": np.full(3, 1e-320)}, "overflow to a non-finite value"),
])
def test_weights_that_vanish_or_overflow_through_the_neuron_are_refused(lif_fields, needle):
    """Extreme neuron parameters scale finite weights to nothing or to infinity: one line naming the synapse
    node, never an OverflowError nor a network of zero weights."""
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([4])),
                            "lin": nir.Linear(weight=np.full((3, 4), 0.5)), "lif": _lif(3, **lif_fields),
                            "output": nir.Output(output_type=np.array([3]))},
                     edges=[("input", "lin"), ("lin", "lif"), ("lif", "output")], type_check=False)
    with pytest.raises(NIRConversionError) as err:
        from_nir(g)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("NIR node 'lin' (Linear): weights x input gain") and needle in msg


def test_hostile_nir_files_refused(tmp_path):
    good = tmp_path / "good.nir"
    nir.write(good, _exact_graph())
    assert isinstance(read_nir(good), nir.NIRGraph)
    ext = tmp_path / "ext.nir"
    nir.write(ext, _exact_graph())
    with h5py.File(ext, "a") as h:
        h["node/nodes/lif/evil"] = h5py.ExternalLink(str(good), "/version")
    with pytest.raises(NetworkFileError, match="external link"):
        read_nir(ext)
    store = tmp_path / "store.nir"
    nir.write(store, _exact_graph())
    (tmp_path / "raw.bin").write_bytes(b"\0" * 64)
    with h5py.File(store, "a") as h:
        del h["node/nodes/affine/bias"]
        h.create_dataset("node/nodes/affine/bias", shape=(8,), dtype="f8", external=[(str(tmp_path / "raw.bin"), 0, 64)])
    with pytest.raises(NetworkFileError, match="external storage"):
        read_nir(store)
    big = tmp_path / "big.nir"
    nir.write(big, _exact_graph())
    with h5py.File(big, "a") as h:
        h.create_dataset("node/nodes/lif/metadata/blob", shape=(1 << 20,), dtype="f8")   # 8 MiB in a small key
    with pytest.raises(NetworkFileError, match="bytes"):
        read_nir(big)
    (tmp_path / "junk.nir").write_bytes(b"not hdf5 at all")
    with pytest.raises(NetworkFileError, match="not a readable HDF5"):
        read_nir(tmp_path / "junk.nir")
    os.mkfifo(tmp_path / "fifo.nir")
    with pytest.raises(NetworkFileError, match="FIFO"):
        read_nir(tmp_path / "fifo.nir")


def test_foreign_conv_pool_graph_matches_nir_semantics_exactly():
    """Conv2d / SumPool2d / Scale / Flatten / Linear from the nir API (dt = 1, SpikingJelly-style), built so that
    NIR's float semantics equal ours (see _exact_graph): our float and quantized spikes, aligned by the block
    latency, equal simulate_nir's for every layer."""
    rng = np.random.default_rng(5)
    vth = 65 / 64

    def lif(shape):
        return nir.LIF(tau=np.ones(shape), r=np.ones(shape), v_leak=np.zeros(shape), v_threshold=np.full(shape, vth))
    wc = rng.integers(-30, 50, (4, 2, 3, 3)) / 32
    wc[0, 0, 0, 0] = 126 / 32
    wl = rng.integers(-40, 60, (3, 36)) / 32
    wl[0, 0] = 126 / 32
    g = nir.NIRGraph.from_list(
        nir.Conv2d(input_shape=(6, 6), weight=wc, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4)),
        lif((4, 6, 6)), nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
        nir.Scale(scale=np.full((4, 3, 3), 126 / 32)), lif((4, 3, 3)), nir.Flatten(input_type={"input": np.array([4, 3, 3])},
                                                                                start_dim=0),
        nir.Linear(weight=wl), lif((3,)))
    imp = from_nir(g, dt=1.0)
    assert [type(b).__name__ for b in imp.blocks] == ["Conv", "Pool", "Flatten", "Dense"]
    assert [layer["threshold_scale"] for layer in imp.layers] == [1.0] * 3 and imp.lags == [1, 2, 3]
    x = (np.random.default_rng(6).random((2, 2, 6, 6, 10)) < 0.4).astype(np.float32)
    ref = simulate_nir(g, x)
    net = _net(imp.blocks, imp.input_shape)
    xp = torch.from_numpy(np.concatenate([x, np.zeros(x.shape[:-1] + (3,), np.float32)], axis=-1))
    for quantized in (False, True):
        net.set_quantized(quantized)
        with torch.no_grad():
            ours = net(xp)[1]
        for layer, lag, s in zip(imp.layers, imp.lags, ours):
            r = ref[layer["node"]]
            assert r.sum() > 0
            assert np.array_equal(s.numpy()[..., lag:lag + 10].reshape(r.shape), r), layer["node"]


def test_snntorch_written_graph_imports():
    """A graph written by snnTorch's own exporter (Linear + Leaky, dt = 1e-4) converts: beta -> our leak, input
    gain 1, hard-reset semantics noted. Skipped where snnTorch/nirtorch are not installed (not pinned)."""
    snn = pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 8, bias=False),
                              snn.Leaky(beta=torch.full((8,), 0.9), threshold=torch.ones(8), init_hidden=True),
                              torch.nn.Linear(8, 3, bias=False),
                              snn.Leaky(beta=torch.full((3,), 0.75), threshold=torch.ones(3), init_hidden=True,
                                        output=True))
    imp = from_nir(export_to_nir(net, torch.zeros(16)), dt=1e-4)
    assert [layer["type"] for layer in imp.layers] == ["LIF", "LIF"]
    lams = [float(b.neuron.lam[0]) for b in imp.blocks]
    assert lams == pytest.approx([0.9, 0.75], abs=1e-5)
    assert [layer["input_gain"] for layer in imp.layers] == pytest.approx([1.0, 1.0], abs=1e-5)
    w = net[0].weight.detach().numpy()
    got = imp.blocks[0].synapse.weight.detach().numpy().reshape(8, 16) / imp.layers[0]["threshold_scale"]
    assert np.abs(got - w).max() < 1e-5 and any("reset" in n for n in imp.layers[0]["notes"])
