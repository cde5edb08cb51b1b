"""Batch norm in ``ilif_lava.block`` networks, folded at export and in QAT (issue 26 item 2).

``block.Conv(..., batch_norm=True)`` / ``block.Dense(..., batch_norm=True)``: synapse -> batch norm -> neuron. In the
float forward the batch norm runs as one (batch statistics in training); in the quantized forward (QAT, the
deployment twin) and at export it is folded with :func:`ilif_lava.block.fold_batchnorm` (running statistics):
8-bit weights ``quantize(w * g / sqrt(var + eps))`` and the shift as the neuron's 13-bit bias. So the file holds
exactly the network QAT evaluated: a tiny BN net (BN after conv and after dense) trained a few float and QAT steps
on random spikes, exported, rebuilt from the file and run in Lava ``fixed_pt``: 0 spike and 0 state mismatches.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import ilif_lava  # noqa: F401
from export.hdf5_io import blocks_from_hdf5
from ilif_lava import block
from ilif_lava import fixed_point as fx
from ilif_lava.block import fold_batchnorm
from ilif_lava.netx import export_blocks
from ilif_lava.netx_schema import K
from simulations.lava_run import run_network
from tests.helpers import flat, forward_all


def _p(variant: str, **kw) -> dict:
    return {"threshold": 1.0, "tau": 2.0, "variant": variant, "inhibition": "plan", "record_states": True, **kw}


def _bn_net() -> torch.nn.ModuleList:
    torch.manual_seed(11)
    blocks = torch.nn.ModuleList([
        block.Conv(_p("ILIF", kappa=0.2), 2, 4, 3, padding=1, weight_scale=3, delay_shift=True, batch_norm=True),
        block.Pool(_p("MPIU", threshold=0.5), 2, weight_scale=1.5, delay_shift=True),
        block.Conv(_p("CIU", current_decay=0.3), 4, 6, 3, padding=1, weight_scale=3, delay_shift=True,
                   batch_norm=True),
        block.Flatten(),
        block.Dense(_p("ILIF"), 6 * 4 * 4, 5, weight_scale=3, delay_shift=True, batch_norm=True),
    ])
    for b in blocks:                       # batch norms that shift and scale for real (biases of both signs)
        if getattr(b, "bn", None) is not None:
            c = b.bn.num_features
            b.bn.weight.data = torch.linspace(0.6, 1.6, c)
            b.bn.bias.data = torch.linspace(-0.8, 1.2, c)
    return blocks


def _train(blocks: torch.nn.ModuleList, x: torch.Tensor, steps: int) -> float:
    opt = torch.optim.SGD(blocks.parameters(), lr=0.05)
    loss = torch.zeros(())
    for _ in range(steps):
        h = x
        for b in blocks:
            h = b(h)
        loss = ((h.mean(dim=-1) - 0.3) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.detach())


def _set_quantized(blocks, on: bool) -> None:
    for b in blocks:
        if getattr(b, "neuron", None) is not None:
            b.neuron.quantized = on


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The BN net after 3 float steps (batch statistics, running statistics updated) and 2 QAT steps (folded,
    quantized), in eval mode, with its QAT outputs on a test batch and its exported file."""
    blocks = _bn_net()
    gen = torch.Generator().manual_seed(5)
    x = (torch.rand(8, 2, 8, 8, 12, generator=gen) < 0.3).float()
    blocks.train()
    _train(blocks, x, 3)
    stats = blocks[0].bn.running_mean.clone()
    assert stats.abs().sum() > 0                                   # the float phase trained the batch norm
    _set_quantized(blocks, True)
    gamma = blocks[0].bn.weight.detach().clone()
    _train(blocks, x, 2)
    assert torch.equal(blocks[0].bn.running_mean, stats)           # QAT: statistics frozen (folded)
    assert not torch.equal(blocks[0].bn.weight.detach(), gamma)    # ... and g learns through the folded weights
    blocks.eval()
    xt = (torch.rand(3, 2, 8, 8, 16, generator=gen) < 0.35).float()
    outs = forward_all(blocks, xt)
    path = export_blocks(blocks, tmp_path_factory.mktemp("bn") / "bn.net")
    return blocks, xt, outs, path


def test_file_holds_the_folded_quantized_network(trained):
    blocks, xt, outs, path = trained
    with h5py.File(path, "r") as h:
        for i, b in enumerate(blocks):
            if getattr(b, "bn", None) is None:
                continue
            g = h[f"{K.LAYER}/{i}"]
            w, shift = fold_batchnorm(b.synapse.weight, None, b.bn)
            want_w = b.neuron.quantize_8bit(w.detach(), descale=True).reshape(g[K.WEIGHT].shape)
            np.testing.assert_array_equal(g[K.WEIGHT][()], want_w.numpy())
            np.testing.assert_array_equal(g[K.BIAS][()], fx.bias_to_mant(shift.detach().double().numpy()))
            assert g[K.BIAS][()].min() < 0 < g[K.BIAS][()].max(), i
    # rebuilt from the file (plain biased blocks, no batch norm): the same spikes as the QAT forward
    rebuilt = blocks_from_hdf5(path, record_states=True)
    for bo, ro in zip(outs, forward_all(rebuilt, xt)):
        assert torch.equal(bo, ro)


def test_batchnorm_net_in_lava_is_bit_exact(trained):
    blocks, xt, outs, path = trained
    res = run_network(path, xt.numpy(), record_states=True)
    spiking = [i for i, b in enumerate(blocks) if getattr(b, "neuron", None) is not None]
    for li, bi in enumerate(spiking):
        n = blocks[bi].neuron
        want = flat(outs[bi])
        assert int((res.spikes[li] != want).sum()) == 0, li
        assert 0 < want.mean() < 0.95, (li, want.mean())
        lead = n.lead_states if n.raw_bias() is not None else None
        for k in fx.STATE_NAMES:
            lava = res.states[li][k]
            assert int((lava[..., 1:] != flat(n.states[k])[..., :-1]).sum()) == 0, (li, k)
            first = np.zeros_like(lava[..., 0]) if lead is None else lead[k].reshape(lava.shape[0], -1).numpy()
            assert int((lava[..., 0] != first).sum()) == 0, (li, k)
    assert [blocks[b].neuron.raw_bias() is not None for b in spiking] == [True, False, True, True]


def test_float_forward_is_batchnorm_then_neuron():
    """Unfolded (float) forward: synapse, the batch norm module, the neuron (input one step late); eval mode with
    running statistics equals the folded affine map in float (fold_batchnorm's rule)."""
    torch.manual_seed(2)
    blk = block.Dense(_p("LIF"), 6, 4, weight_scale=2, delay_shift=True, batch_norm=True).double()
    blk.bn.running_mean.uniform_(-0.5, 0.5)
    blk.bn.running_var.uniform_(0.5, 2.0)
    blk.bn.bias.data.uniform_(-0.5, 0.5)
    blk.eval()
    x = (torch.rand(2, 6, 9, dtype=torch.float64) < 0.5).double()
    z = blk.bn(blk.synapse(x))
    w, shift = fold_batchnorm(blk.neuron.quantize_8bit(blk.synapse.weight), None, blk.bn)
    zf = torch.nn.functional.conv3d(x.reshape(2, 6, 1, 1, 9), w).reshape(2, 4, 9) + shift[:, None]
    torch.testing.assert_close(z, zf, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert torch.equal(blk(x), blk.neuron.forward_delayed(z))
    assert blk.neuron.raw_bias() is None                            # float: the batch norm adds the shift itself


def test_batchnorm_and_bias_together_refused():
    with pytest.raises(ValueError, match=r"batch_norm=True already gives the neuron its bias"):
        block.Conv(_p("ILIF"), 2, 3, 3, batch_norm=True, bias=0.5)


def test_cnnbn_pipeline_compare_is_exact_and_catches_a_bias(tmp_path, capsys):
    """``--arch cnnbn`` (batch norm after both convs and the hidden dense) through the whole pipeline: float then
    QAT training, export (biases in the file), Lava, compare: 0 spike and 0 state mismatches, every Lava step. A
    copy whose first bias mantissa is one LSB off changes only states at first: ``compare`` exits 1 naming it."""
    import json
    import shutil

    from pipeline.run import run_pipeline
    from tests.helpers import run_cli
    from training.train import TrainConfig

    cfg = TrainConfig(dataset="digits", arch="cnnbn", hidden=16, time_bins=8, epochs=1, qat_epochs=1, batch_size=32,
                      lr=1e-2, seed=0, device="cpu", limit_train=96, limit_test=6)
    run_dir = tmp_path / "run"
    report = run_pipeline(cfg, run_dir, baseline=None, state_samples=2, progress=False)
    assert sum(r["mismatches"] for r in report["spikes"]["quantized_vs_lava"]) == 0
    assert report["first_divergence"]["quantized_vs_lava_with_states"] is None and report["state_samples"] == 2
    with h5py.File(run_dir / "network.net", "r") as h:
        biased = [i for i in h[K.LAYER] if K.BIAS in h[K.LAYER][i]]
        assert sorted(biased, key=int) == ["0", "2", "5"]
        assert any(h[f"{K.LAYER}/{i}/{K.BIAS}"][()].any() for i in biased)

    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("report", "lava_test.npz"))
    with h5py.File(copy / "network.net", "r+") as h:
        b = h[f"{K.LAYER}/0/{K.BIAS}"][()]
        b[0] += 1 if b[0] < 4095 else -1
        h[f"{K.LAYER}/0/{K.BIAS}"][...] = b
    code, _, err = run_cli(["simulate", str(copy), "--state-samples", "2"], capsys)
    assert code == 0, err
    code, _, err = run_cli(["compare", str(copy), "--device", "cpu"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("ilif-lava")]
    assert code == 1 and len(lines) == 1, err
    assert "first at layer 0, step 0, sample 0" in lines[0] and "(state u: quantized" in lines[0], lines[0]
    rep = json.loads((copy / "report" / "report.json").read_text())
    assert rep["first_divergence"]["quantized_vs_lava_with_states"]["what"] == "u"


@pytest.mark.parametrize("kw", [{"bias": 0.5}, {"batch_norm": True}], ids=["bias", "batch_norm"])
def test_nir_export_refuses_a_neuron_bias(kw):
    """NIR export would drop the bias (and an unfolded batch norm) silently: refused in one line naming the block."""
    from ilif_lava.nir import NIRConversionError
    from ilif_lava.nir.export import to_nir

    blocks = [block.Dense(_p("ILIF"), 4, 3, delay_shift=True), block.Dense(_p("ILIF"), 3, 2, delay_shift=True, **kw)]
    forward_all(torch.nn.ModuleList(blocks).eval(), torch.zeros(1, 4, 2))
    with pytest.raises(NIRConversionError, match=r"^block 1 \(Dense\): the neuron bias .* not exported") as info:
        to_nir(blocks)
    assert "\n" not in str(info.value)
    to_nir(blocks[:1])                                              # without a bias: exported as before
