"""The paper's VGG-11-BN deployed bit-exactly: batch norm folded into weights and neuron bias, average pools folded
into the next synapse, an integer readout, direct-encoded (graded) input, pipelined streaming of several samples
through one Lava run. Real Lava ``fixed_pt`` processes and real netx HDF5 files; stock netx must refuse the
files that need these extensions."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from export.export_net import export_model
from ilif_lava import block as ilif_block
from ilif_lava import fixed_point as fx
from ilif_lava.netx import file_is_pipelined, validate_file
from ilif_lava.hdf5_validate import NetworkFileError
from ilif_lava.netx_schema import K
from training.losses import get_loss, predict_readout
from training.models import SpikingNet, build_model

P = {"threshold": 1.0, "tau": 2.0, "kappa": 0.03, "beta": 1.0, "variant": "ILIF", "inhibition": "plan",
     "surrogate": "rectangle"}


def _trained(net: SpikingNet, x: torch.Tensor, steps: int = 2, seed: int = 0) -> SpikingNet:
    """A few optimiser steps (float, then QAT) and batch-norm statistics away from their initial values, so the
    folded shifts and scales are not trivial."""
    torch.manual_seed(seed)
    for b in net.blocks:
        bn = getattr(b, "bn", None)
        if bn is not None:
            bn.weight.data.uniform_(0.5, 2.0)
            bn.bias.data.uniform_(-0.3, 0.6)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    loss_fn = get_loss("tet", logits=True)
    y = torch.arange(x.shape[0]) % net.blocks[-1].synapse.out_channels
    net.train()
    for quantized in [False] * steps + [True] * steps:
        net.set_quantized(quantized)
        out, _ = net(x)
        opt.zero_grad()
        loss_fn(out, y).backward()
        opt.step()
    for b in net.blocks:
        bn = getattr(b, "bn", None)
        if bn is not None:
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.running_var.uniform_(0.3, 1.5)
    return net.eval()


def _twin(net: SpikingNet, x: torch.Tensor):
    """Quantized spikes [N, neurons, T] per spiking block, their states, and the readout integers [N, K, T]."""
    net.set_quantized(True)
    net.set_record_states(True)
    with torch.no_grad():
        out, spikes = net(x)
    states = {i: {k: v.reshape(v.shape[0], -1, v.shape[-1]).numpy() for k, v in b.neuron.states.items()}
              for i, b in enumerate(net.spiking_blocks())}
    net.set_record_states(False)
    flat = [s.reshape(s.shape[0], -1, s.shape[-1]).numpy().astype(np.int8) for s in spikes]
    return flat, states, ilif_block.Readout.integer_readout(out).numpy()


def _deploy_and_compare(net: SpikingNet, x: torch.Tensor, path, record_states: bool = True) -> None:
    """Export, run in Lava (pipelined), and require 0 spike mismatches at every layer and step, identical states
    (``record_states``) and identical readout integers."""
    from simulations.lava_run import run_network
    spikes, states, readout = _twin(net, x)
    export_model(net, path)
    assert file_is_pipelined(path)
    res = run_network(path, x.numpy(), record_states=record_states)  # the file says: pipelined
    assert res.readout and len(res.spikes) == len(spikes) + 1
    depth = len(res.spikes)
    assert res.latency_steps == x.shape[-1] + depth and res.lava_steps == x.shape[0] * x.shape[-1] + depth
    for i, (a, b) in enumerate(zip(spikes, res.spikes)):
        assert a.shape == b.shape and int((a != b).sum()) == 0, f"layer {i}: spike mismatches"
        assert 0 < a.mean() < 1, f"layer {i} is silent or saturated: nothing is tested there"
        for k in fx.STATE_NAMES if record_states else ():
            assert np.array_equal(states[i][k], res.states[i][k]), f"layer {i}: state {k} differs"
    assert res.spikes[-1].dtype == np.int64 and np.array_equal(readout, res.spikes[-1])
    assert np.abs(readout).max() > 0
    assert np.array_equal(predict_readout(readout), predict_readout(res.spikes[-1]))


def test_vgg11bn_with_direct_encoding_streams_bit_exactly(tmp_path):
    torch.manual_seed(3)
    net = build_model("vgg11bn", (3, 32, 32), 10, "ILIF", neuron_overrides={"tau": 2.0}, hidden=16)
    img = torch.randn(3, 3, 32, 32, 1) * 1.2
    x = img.expand(-1, -1, -1, -1, 4).contiguous()                   # direct encoding: the image at every step
    _deploy_and_compare(_trained(net, x), x, tmp_path / "vgg_direct.net")
    with h5py.File(tmp_path / "vgg_direct.net", "r") as h:
        assert int(h[K.LAYER]["0"][K.NEURON][K.INPUT_SHIFT][()]) == 0      # graded first layer
        assert int(h[K.LAYER]["1"][K.NEURON][K.INPUT_SHIFT][()]) == fx.ACT_SHIFT
        assert list(h[K.LAYER]["1"][K.KERNEL_SIZE][()]) == [6, 6]           # pool folded: 3x3 -> 6x6, stride 2
        assert list(h[K.LAYER]["1"][K.STRIDE][()]) == [2, 2]


def test_vgg11bn_with_event_input_streams_bit_exactly(tmp_path):
    torch.manual_seed(4)
    net = build_model("vgg11bn", (2, 32, 32), 5, "ILIF", neuron_overrides={"tau": 2.0}, hidden=16)
    x = (torch.rand(3, 2, 32, 32, 4) < 0.3).float()
    _deploy_and_compare(_trained(net, x), x, tmp_path / "vgg_events.net")


def test_a_bn_avgpool_net_built_from_blocks_deploys(tmp_path):
    """A user's own net: conv+BN on analog input, average pool folded into a conv+BN, pool + readout."""
    torch.manual_seed(5)
    blocks = [ilif_block.Conv(P, 3, 6, 3, padding=1, batch_norm=True, graded_input=True, delay_shift=False),
              ilif_block.Conv(P, 6, 8, 3, padding=1, pre_pool=2, batch_norm=True, delay_shift=False),
              ilif_block.Readout(P, 8 * 4 * 4, 4, pre_pool=2, delay_shift=False)]
    net = SpikingNet(blocks, flatten_input=False, meta={"arch": "custom", "in_shape": [3, 16, 16]})
    assert net.pipelined and net.output_is_logits and len(net.spiking_blocks()) == 2
    x = (torch.rand(3, 3, 16, 16, 1) * 2 - 0.5).expand(-1, -1, -1, -1, 5).contiguous()
    _deploy_and_compare(_trained(net, x), x, tmp_path / "custom.net")


# ---- exactness of the folds (no Lava) ------------------------------------------------------------------------
def test_pre_pool_conv_equals_the_folded_strided_conv_on_spikes():
    torch.manual_seed(6)
    blk = ilif_block.Conv(P, 3, 5, 3, padding=1, pre_pool=2, delay_shift=False)
    s = (torch.rand(2, 3, 8, 8, 3) < 0.4).float()
    blk.neuron.shape = None
    z = blk.synapse(ilif_block.sum_pool(s, 2, "test"))                          # what the block integrates
    w = blk.synapse.pre_hook_fx(blk.synapse.weight)[..., 0]                      # [5, 3, 3, 3], 8-bit grid
    big = w.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)             # [5, 3, 6, 6]
    ref = torch.stack([torch.nn.functional.conv2d(s[..., t], big, stride=2, padding=2) for t in range(3)], -1)
    assert torch.equal(z, ref)
    avg = torch.stack([torch.nn.functional.conv2d(torch.nn.functional.avg_pool2d(s[..., t], 2), 4 * w, padding=1)
                       for t in range(3)], -1)                                   # the float network's avgpool + conv
    torch.testing.assert_close(z, avg)


def test_a_pool_that_cannot_be_exact_is_refused_naming_the_block():
    blk = ilif_block.Conv(P, 2, 4, 3, padding=1, pre_pool=2, delay_shift=False)
    with pytest.raises(ValueError, match=r"Conv: pre_pool=2 needs input H, W divisible by 2, got 15x16"):
        blk(torch.zeros(1, 2, 15, 16, 2))
    with pytest.raises(ValueError, match="multiple of 32 pixels .* got 48"):
        build_model("vgg11bn", (2, 48, 48), 4, "ILIF", hidden=16)
    from training.models import vgg11bn_first_conv
    assert [vgg11bn_first_conv(n) for n in (32, 34, 35, 128)] == [(3, 1), (3, 0), (4, 0), (3, 1)]


def test_readout_and_direct_input_rules_agree_on_torch_and_numpy_at_the_edges():
    a = np.array([[0, 1, -1, 1 << 16, -(1 << 16), 131071, -131072]] * 3, dtype=np.int64).T   # [7, T=3]
    bias = np.array([4095, -4096, 0, 4095, -4096, 4095, -4096], dtype=np.int64)[:, None] << 6
    v_np = fx.readout_sequence(a, bias[:, 0, None][:, 0])
    v_t = fx.readout_sequence(torch.from_numpy(a), torch.from_numpy(bias[:, 0]))
    assert np.array_equal(v_np, v_t.numpy())
    assert v_np.max() == fx.STATE_MAX and v_np.min() == fx.STATE_MIN        # saturates, never wraps
    assert np.array_equal(v_np[:3, 0], (a[:3, 0] << 6) + bias[:3, 0])
    x = np.array([0.0, 1.0, 0.5 / 64, 1.5 / 64, -2.7, 1e9, -1e9])
    assert np.array_equal(fx.direct_input(x), fx.direct_input(torch.from_numpy(x)).numpy())
    assert fx.direct_input(x).tolist() == [0, 64, 0, 2, -173, fx.DIRECT_INPUT_MAX, -fx.DIRECT_INPUT_MAX]


# ---- the file: validation and stock netx -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    torch.manual_seed(7)
    blocks = [ilif_block.Conv(P, 2, 4, 3, padding=1, batch_norm=True, graded_input=True, delay_shift=False),
              ilif_block.Readout(P, 4 * 4 * 4, 3, pre_pool=2, delay_shift=False)]
    net = SpikingNet(blocks, flatten_input=False, meta={"arch": "custom", "in_shape": [2, 8, 8]})
    net.eval()(torch.zeros(1, 2, 8, 8, 2))
    path = tmp_path_factory.mktemp("files") / "small.net"
    export_model(net, path)
    return path


def _edited(src, dst, edit) -> None:
    import shutil
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h:
        edit(h[K.LAYER])


@pytest.mark.parametrize("what,edit,needle", [
    ("bias out of range", lambda g: (g["2"].__delitem__(K.BIAS), g["2"].create_dataset(K.BIAS, data=[5000, 0, 0])),
     "layer 2: key 'bias'"),
    ("readout with a threshold", lambda g: g["2"][K.NEURON].create_dataset(K.VTH_MANT, data=64),
     "layer 2: key 'neuron/vThMant' is set, but READOUT neurons never fire"),
    ("input shift out of range", lambda g: (g["0"][K.NEURON].__delitem__(K.INPUT_SHIFT),
                                            g["0"][K.NEURON].create_dataset(K.INPUT_SHIFT, data=9)),
     "layer 0: key 'neuron/inputShift'")])
def test_bad_files_are_refused_with_one_line_naming_layer_and_key(tmp_path, small_file, what, edit, needle):
    bad = tmp_path / "bad.net"
    _edited(small_file, bad, edit)
    with pytest.raises(NetworkFileError) as err:
        validate_file(bad)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg and str(bad) in msg, what


def test_stock_netx_refuses_the_extension_file_loudly(small_file):
    from ilif_lava.netx import STOCK_NETWORK
    validate_file(small_file)                                  # ours builds it (tested end to end above)
    with pytest.raises(Exception):                             # stock netx has no ILIF / READOUT neuron: it fails
        STOCK_NETWORK(net_config=str(small_file), input_shape=(8, 8, 2))


def test_nir_export_refuses_what_it_cannot_express_in_one_line():
    from ilif_lava.nir.export import NIRConversionError, to_nir as export_nir
    net = build_model("vgg11bn", (2, 32, 32), 4, "ILIF", hidden=16)
    with pytest.raises(NIRConversionError, match=r"block 0 \(Conv\): the neuron bias"):
        export_nir(net)
    pooled = SpikingNet([ilif_block.Conv(P, 2, 4, 3, padding=1, delay_shift=True),
                         ilif_block.Conv(P, 4, 4, 3, padding=1, pre_pool=2, delay_shift=True)],
                        flatten_input=False, meta={"arch": "custom", "in_shape": [2, 8, 8]})
    pooled.eval()(torch.zeros(1, 2, 8, 8, 2))
    with pytest.raises(NIRConversionError, match=r"block 1 \(Conv\): a folded average pool"):
        export_nir(pooled)


def test_the_resource_estimate_counts_chips(small_file):
    from ilif_lava import loihi2
    from ilif_lava.loihi2.limits import CHIP_CORES
    rep = loihi2.check_network(small_file)
    assert rep.chips == 1 and rep.to_dict()["chips_needed"] == 1 and "1 chip(s) needed" in rep.to_markdown()
    big = loihi2.Loihi2Report(path="x", findings=[], resources=[type(r)(**{**r.__dict__, "cores": CHIP_CORES})
                                                               for r in rep.resources[:2]])
    assert big.total_cores == 2 * CHIP_CORES and big.chips == 2


@pytest.mark.parametrize("k", [2, 3, 4])
def test_sum_pool_gives_exact_spike_counts(k):
    s = (torch.rand(2, 3, 4 * k, 2 * k, 5) < 0.5).float()
    ref = s.reshape(2, 3, 4, k, 2, k, 5).sum(dim=(3, 5))
    assert torch.equal(ilif_block.sum_pool(s, k, "test"), ref)
