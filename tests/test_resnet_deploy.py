"""Residual networks deployed bit-exactly through the graph extension of netx HDF5 (ilif_lava/graph.py): fan-in
layers whose Lava neurons sum their own synapse and delayed skip synapses. Real Lava ``fixed_pt`` processes and real
files: 0 spike and 0 state mismatches at every layer and step and identical readout integers, quantized twin vs
Lava, several samples streamed through one run; stock netx refuses a graph file; hostile graphs are refused with
one line naming the layer and key."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from export.export_net import export_model
from ilif_lava import block as ilif_block
from ilif_lava.graph import FanInConv, Skip, skip_matrix
from ilif_lava.hdf5_validate import NetworkFileError
from ilif_lava.netx import validate_file
from ilif_lava.netx_schema import MAX_SKIPS, K
from tests.test_vgg11bn_deploy import P, _deploy_and_compare, _trained
from training.models import SpikingNet, build_model


def _toy() -> SpikingNet:
    """Four spiking layers and a readout; layer 3 sums its own conv, an identity skip from layer 2 and a strided
    1x1 projection from layer 1 (two skips of different depth: delays 0 and 1); layer 2 a projection from 0."""
    torch.manual_seed(7)
    blocks = [ilif_block.Conv(P, 2, 4, 3, padding=1, batch_norm=True, delay_shift=False),
              ilif_block.Conv(P, 4, 4, 3, padding=1, batch_norm=True, delay_shift=False),
              FanInConv(P, 4, 8, 3, padding=1, stride=2, batch_norm=True, delay_shift=False,
                        skips=[Skip(0, 4, stride=2)]),
              FanInConv(P, 8, 8, 3, padding=1, batch_norm=True, delay_shift=False,
                        skips=[Skip(2, 8, identity=True), Skip(1, 4, stride=2)]),
              ilif_block.Readout(P, 8 * 4 * 4, 3, delay_shift=False)]
    return SpikingNet(blocks, flatten_input=False, meta={"arch": "custom", "in_shape": [2, 8, 8]})


@pytest.fixture(scope="module")
def toy_file(tmp_path_factory):
    x = (torch.rand(3, 2, 8, 8, 4, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    net = _trained(_toy(), x)
    path = tmp_path_factory.mktemp("graph") / "toy.net"
    return net, x, path


def test_three_branch_toy_graph_streams_bit_exactly(toy_file):
    net, x, path = toy_file
    _deploy_and_compare(net, x, path)                 # 0 mismatches at every layer, step and state; same readout
    with h5py.File(path, "r") as h:
        skip = h[K.LAYER]["3"][K.SKIP]
        assert [int(skip[j][K.SOURCE][()]) for j in ("0", "1")] == [2, 1]
    net.set_quantized(True)                           # the skips carry real current: without them layer 3 differs
    with torch.no_grad():
        _, with_skips = net(x)
        saved = [s.weight.data.clone() for s in net.blocks[3].skips]
        for s in net.blocks[3].skips:
            s.weight.data.zero_()
        _, without = net(x)
        for s, w in zip(net.blocks[3].skips, saved):
            s.weight.data.copy_(w)
    assert torch.equal(with_skips[2], without[2]) and not torch.equal(with_skips[3], without[3])


def test_tiny_resnet18_with_direct_encoding_streams_bit_exactly(tmp_path):
    torch.manual_seed(3)
    net = build_model("resnet18", (3, 16, 16), 4, "ILIF", neuron_overrides={"tau": 2.0}, hidden=8)
    x = (torch.randn(2, 3, 16, 16, 1) * 1.5).expand(-1, -1, -1, -1, 4).contiguous()
    # spikes of all 17 layers and the readout integers (the toy graph above checks the states of fan-in layers)
    _deploy_and_compare(_trained(net, x, steps=1), x, tmp_path / "resnet.net", record_states=False)


def test_skip_matrix_is_the_strided_1x1_convolution_in_lava_order():
    rng = np.random.default_rng(0)
    w = rng.integers(-5, 6, size=(3, 2))
    src = rng.integers(0, 2, size=(2, 5, 7))                            # (C, H, W)
    m = skip_matrix(w, src.shape, (2, 3))
    ref = np.einsum("oc,chw->ohw", w, src[:, ::2, ::3])                # torch's 1x1 conv, stride (2, 3)
    lava_in = src.transpose(2, 1, 0).reshape(-1)                        # Lava (x, y, c) order
    got = (m @ lava_in).reshape(ref.shape[2], ref.shape[1], 3).transpose(2, 1, 0)
    assert np.array_equal(got, ref)


def test_stock_netx_refuses_a_graph_file_loudly(toy_file):
    from lava.lib.dl.netx import hdf5
    from ilif_lava.netx import STOCK_NETWORK
    net, x, path = toy_file
    if not path.exists():
        export_model(net, path, force=True)
    assert hdf5.Network is not None
    with pytest.raises(Exception):                 # stock netx cannot build a fan-in layer's ILIF neurons
        STOCK_NETWORK(net_config=str(path), input_shape=(8, 8, 2))


def _hostile(src, tmp_path, name, edit):
    path = tmp_path / f"{name}.net"
    path.write_bytes(src.read_bytes())
    with h5py.File(path, "r+") as h:
        edit(h)
    return path


def _set(group, key, value):
    del group[key]
    group.create_dataset(key, data=value)


@pytest.mark.parametrize("name,edit,needle", [
    ("self_loop", lambda h: _set(h["layer/3/skip/0"], K.SOURCE, 3), "layer 3: key 'skip/0/source' = 3 is not an "
                                                                     "earlier layer"),
    ("forward", lambda h: _set(h["layer/2/skip/0"], K.SOURCE, 3), "layer 2: key 'skip/0/source' = 3 is not an "
                                                                  "earlier layer"),
    ("missing", lambda h: _set(h["layer/3/skip/1"], K.SOURCE, 77), "layer 3: key 'skip/1/source' = 77"),
    ("stride", lambda h: _set(h["layer/3/skip/1"], K.STRIDE, np.array([1, 1])), "branch shapes that match"),
    ("channels", lambda h: _set(h["layer/3/skip/1"], K.IN_CHANNELS, 10 ** 6), "skip/1/inChannels' = 1000000"),
    ("weight", lambda h: _set(h["layer/2/skip/0"], K.WEIGHT, np.ones((8, 5))), "skip/0/weight"),
    ("fan_in", lambda h: [h["layer/3/skip"].create_group(str(j)) for j in range(2, 1000)],
     f"holds 1000 skips; expected 1 to {MAX_SKIPS}"),
    ("timing", lambda h: h.attrs.__delitem__(K.TIMING), "without pipelined timing"),
    ("target", lambda h: h["layer/5"].create_group(K.SKIP), "layer 5: key 'skip' is given for a 'dense' layer"),
    ("flatten", lambda h: h["layer/4"].create_group(K.SKIP), "layer 4: key 'skip' is given for a 'flatten' layer"),
])
def test_hostile_graph_files_are_refused_in_one_line(toy_file, tmp_path, name, edit, needle):
    net, x, path = toy_file
    if not path.exists():
        export_model(net, path, force=True)
    validate_file(path)
    bad = _hostile(path, tmp_path, name, edit)
    with pytest.raises(NetworkFileError) as err:
        validate_file(bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg and needle in msg, msg


def test_nir_export_refuses_a_fan_in_layer_naming_the_block():
    from ilif_lava.nir.export import NIRConversionError, to_nir
    blocks = [ilif_block.Conv(P, 2, 4, 3, padding=1, delay_shift=False),
              FanInConv(P, 4, 4, 3, padding=1, delay_shift=False, skips=[Skip(0, 4, identity=True)])]
    net = SpikingNet(blocks, flatten_input=False, meta={"arch": "custom", "in_shape": [2, 6, 6]})
    net(torch.zeros(1, 2, 6, 6, 2))
    with pytest.raises(NIRConversionError, match=r"block 1 \(FanInConv\): skip synapses"):
        to_nir(net)


def test_resource_estimate_counts_every_skip_synapse(toy_file):
    from ilif_lava.loihi2 import estimate_resources
    net, x, path = toy_file
    if not path.exists():
        export_model(net, path, force=True)
    rows = {r.layer: r for r in estimate_resources(path)}
    # layer 3: own 3x3 conv (8 x 9 inputs) + identity skip (8) + 1x1 projection (4), over 8 x 4 x 4 neurons
    assert rows[3].fan_in == 8 * 9 + 8 + 4 and rows[3].synapses == rows[3].fan_in * 8 * 4 * 4
    assert rows[3].stored_weights == 8 * 8 * 9 + 8 * 8 + 8 * 4 and "2 skip synapses" in rows[3].notes
    assert rows[2].fan_in == 4 * 9 + 4
    # layer 1 feeds layer 2's own conv and the strided 1x1 projection into layer 3 (8 outputs from 16 of its 64
    # pixels: 2 per neuron on average)
    from ilif_lava.metrics import fan_out_conv
    conv = fan_out_conv((4, 8, 8), 8, (3, 3), (2, 2), (1, 1))
    assert rows[1].fan_out_mean == pytest.approx(conv.mean() + 2.0)
    assert rows[1].fan_out_max <= conv.max() + 8 and rows[0].fan_out_mean == pytest.approx(
        fan_out_conv((4, 8, 8), 4, (3, 3), (1, 1), (1, 1)).mean() + 2.0)


def test_cost_estimate_counts_skip_events(toy_file):
    from simulations.cost import incoming_events, read_synapses
    net, x, path = toy_file
    if not path.exists():
        export_model(net, path, force=True)
    syns = read_synapses(path, (2, 8, 8))
    assert [len(s.skips) for s in syns] == [0, 0, 1, 2, 0]
    assert [k for k, _ in syns[3].skips] == [2, 1]
    ones = np.ones((1, 4 * 8 * 8, 1))
    k, proj = syns[3].skips[1]                     # 1x1 stride 2 from layer 1: 16 of 64 pixels, 8 outputs each
    w = proj.weight
    assert incoming_events(proj, ones).sum() == (w != 0).sum() * 16


def test_activity_counts_the_acs_of_skip_synapses():
    from simulations.activity import network_activity
    net = _toy().eval()
    x = (torch.rand(2, 2, 8, 8, 3, generator=torch.Generator().manual_seed(2)) < 0.5).float()
    with torch.no_grad():
        _, spikes = net(x)
    flat = [s.reshape(2, -1, 3).numpy() for s in spikes]
    full = network_activity(net, x.numpy(), flat, "ILIF")["acs_per_sample"]
    specs = [b.skip_specs for b in net.blocks[2:4]]        # the same net seen without its skips
    for b in net.blocks[2:4]:
        b.skip_specs = ()
    plain = network_activity(net, x.numpy(), flat, "ILIF")["acs_per_sample"]
    for b, sp in zip(net.blocks[2:4], specs):
        b.skip_specs = sp
    s = [f.sum() / 2 for f in flat]           # spikes per sample of layers 0..3
    # projections 0 -> 2 and 1 -> 3 (1x1, stride 2): 8 outputs per spike on even pixels only; identity 2 -> 3: one
    even = [f.reshape(2, 4, 8, 8, 3)[:, :, ::2, ::2].sum() / 2 for f in flat[:2]]
    assert full - plain == pytest.approx(8 * even[0] + s[2] + 8 * even[1]) and full > plain


def test_lava_results_are_c_ordered_for_one_sample():
    """``simulate`` saves these arrays; its reader refuses Fortran-ordered members (one sample made the pipelined
    windows Fortran-ordered)."""
    from simulations.lava_run import _windows
    raw = np.arange(5 * 12).reshape(5, 12)
    for n in (1, 2):
        w = _windows(raw, (5,), n, 4, 2)
        assert w.flags["C_CONTIGUOUS"] and w.shape == (n, 5, 4)
        assert np.array_equal(w[0], raw[:, 2:6])


def test_loihi2_check_covers_skip_weights(toy_file, tmp_path):
    from ilif_lava.loihi2 import check_parameters
    net, x, path = toy_file
    if not path.exists():
        export_model(net, path, force=True)
    keys = {(f.layer, f.key): f for f in check_parameters(path)}
    assert keys[(3, "skip/0/weight")].ok and keys[(3, "skip/1/weight")].ok and keys[(2, "skip/0/weight")].ok
    odd = _hostile(path, tmp_path, "odd", lambda h: _set(h["layer/3/skip/1"], K.WEIGHT, np.full((8, 4), 3.0)))
    assert not {(f.layer, f.key): f for f in check_parameters(odd)}[(3, "skip/1/weight")].ok   # odd: not Loihi's


def test_neurobench_metrics_of_a_graph_with_a_readout(toy_file):
    import dataclasses
    from simulations.cost import read_synapses
    from simulations.neurobench_metrics import engine_metrics, report_entry
    net, x, path = toy_file
    if not path.exists():
        export_model(net, path, force=True)
    net.set_quantized(True)
    with torch.no_grad():
        out, spikes = net(x)
    flat = [s.reshape(s.shape[0], -1, s.shape[-1]).numpy() for s in spikes] + [out.numpy()]
    entry = report_entry(net, path, x.numpy(), flat, flat)
    assert "error" not in entry, entry
    syns = read_synapses(path, (2, 8, 8))
    plain = engine_metrics(1, [], [dataclasses.replace(s, skips=[]) for s in syns], x.numpy(), flat, None)
    # skips per step: 0 -> 2 and 1 -> 3 (1x1, 4 -> 8, 4x4 outputs: 128 x 4 each), 2 -> 3 (8 -> 8: 128 x 8)
    extra = entry["deployed"]["synaptic_operations"]["Dense"] - plain["synaptic_operations"]["Dense"]
    assert extra == pytest.approx((512 + 512 + 1024) * x.shape[-1])
    assert entry["deployed"]["layers"][-1]["membrane_updates"] is None         # the readout
