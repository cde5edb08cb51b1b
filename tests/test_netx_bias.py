"""The ILIF neuron bias through netx HDF5 (issue 26 item 1): written, validated, loaded, checked, compared.

1. Biased Dense and Conv networks of ``ilif_lava.block`` exported (netx's layer ``bias``: 13-bit integer mantissas,
   one per output channel, as slayer's CUBA blocks lay it out), loaded by ``ILIFNetwork``, run in Lava ``fixed_pt``:
   0 spike and 0 state (u, v, c, m) mismatches against the quantized PyTorch blocks at every layer and every Lava
   step, the first one included (the step before the first input, where a biased neuron integrates its bias).
2. The comparison tooling (:func:`simulations.compare.twin_states_on_lava_steps`, :func:`pipeline.run.engine_spikes`,
   :func:`pipeline.run.check_deployment`) on those runs: identical, and a twin without the lead step is caught.
3. export -> ``blocks_from_hdf5`` -> export is the identity for biased files; the layout is netx's.
4. Bad biases (out of the 13-bit range, wrong shape, non-integer) refused in one line naming file, layer and key,
   by the validator, ``blocks_from_hdf5`` and ``ILIFNetwork``; the Loihi 2 check reports the 13-bit mantissa.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Tuple

import h5py
import numpy as np
import pytest
import torch

import ilif_lava  # noqa: F401
from export.hdf5_io import blocks_from_hdf5
from ilif_lava import block
from ilif_lava import fixed_point as fx
from ilif_lava.netx import NetworkFileError, export_blocks, validate_file
from ilif_lava.netx_schema import K
from simulations.compare import first_divergence, twin_states_on_lava_steps
from simulations.lava_run import LavaResult, run_network
from tests.helpers import flat, forward_all


def _p(variant: str, **kw) -> dict:
    return {"threshold": 1.0, "tau": 2.0, "variant": variant, "quantized": True, "record_states": True, **kw}


def _dense_net() -> Tuple[torch.nn.ModuleList, torch.Tensor]:
    """Every variant, current memory, biases from strongly negative to above threshold (the first step fires)."""
    torch.manual_seed(3)
    blocks = torch.nn.ModuleList([
        block.Dense(_p("ILIF", tau=1.1, kappa=0.3), 20, 16, weight_scale=4, delay_shift=True,
                    bias=torch.linspace(-2.0, 1.5, 16)),
        block.Dense(_p("MPIU", tau=3.0, beta=0.9, current_decay=0.3), 16, 12, weight_scale=4, delay_shift=True,
                    bias=0.25),
        block.Dense(_p("CIU", tau=7.0, kappa=0.5, threshold=1.25), 12, 10, weight_scale=4, delay_shift=True),
        block.Dense(_p("LIF", tau=4.0), 10, 6, weight_scale=4, delay_shift=True,
                    bias=[-0.5, -0.1, 0.0, 0.2, 0.6, 1.1]),
    ]).eval()
    return blocks, (torch.rand(3, 20, 18) < 0.4).float()


def _conv_net() -> Tuple[torch.nn.ModuleList, torch.Tensor]:
    torch.manual_seed(4)
    blocks = torch.nn.ModuleList([
        block.Conv(_p("ILIF", kappa=0.2), 2, 4, 3, padding=1, weight_scale=3, delay_shift=True,
                   bias=[-0.5, 0.3, 0.9, 1.2]),
        block.Pool(_p("MPIU", threshold=0.5), 2, weight_scale=1.5, delay_shift=True),
        block.Conv(_p("CIU", current_decay=0.3), 4, 6, 3, stride=2, padding=1, weight_scale=3, delay_shift=True,
                   bias=torch.linspace(-0.6, 0.8, 6)),
        block.Flatten(),
        block.Dense(_p("ILIF"), 24, 5, weight_scale=3, delay_shift=True, bias=torch.linspace(-1.0, 1.5, 5)),
    ]).eval()
    return blocks, (torch.rand(2, 2, 8, 8, 14) < 0.3).float()


def _spiking(blocks) -> List[int]:
    return [i for i, b in enumerate(blocks) if getattr(b, "neuron", None) is not None]


_RUNS = {}


def _exported_run(make, tmp_path_factory) -> Tuple[torch.nn.ModuleList, torch.Tensor, List[torch.Tensor], Path,
                                                   LavaResult]:
    """The network of ``make``, its PyTorch outputs, its file and its Lava fixed_pt run (states recorded)."""
    if make not in _RUNS:
        blocks, x = make()
        outs = forward_all(blocks, x)
        path = export_blocks(blocks, tmp_path_factory.mktemp("bias") / f"{make.__name__}.net")
        _RUNS[make] = (blocks, x, outs, path, run_network(path, x.numpy(), record_states=True))
    return _RUNS[make]


@pytest.mark.parametrize("make", [_dense_net, _conv_net], ids=["dense", "conv"])
def test_biased_network_in_lava_is_bit_exact(make, tmp_path_factory):
    blocks, x, outs, path, res = _exported_run(make, tmp_path_factory)
    spiking = _spiking(blocks)
    with h5py.File(path, "r") as h:                         # netx's layout: the mantissas, one per output channel
        for li, bi in enumerate(spiking):
            n = blocks[bi].neuron
            g = h[f"{K.LAYER}/{bi}"]
            if n.bias is None:
                assert K.BIAS not in g
            else:
                assert g[K.BIAS].shape == (n.bias.shape[0],) and g[K.BIAS].dtype.kind == "i"
                np.testing.assert_array_equal(g[K.BIAS][()], n.bias_mant)
    biased = [li for li, bi in enumerate(spiking) if blocks[bi].neuron.bias is not None]
    assert len(biased) >= 2 and any(blocks[b].neuron.bias_mant.any() for b in spiking)
    for li, bi in enumerate(spiking):
        n = blocks[bi].neuron
        want = flat(outs[bi])
        assert int((res.spikes[li] != want).sum()) == 0, li
        assert 0 < want.mean() < 0.9, (li, want.mean())
        lead = getattr(n, "lead_states", None) if n.bias is not None else None
        for k in fx.STATE_NAMES:
            lava = res.states[li][k]
            assert int((lava[..., 1:] != flat(n.states[k])[..., :-1]).sum()) == 0, (li, k)
            first = np.zeros_like(lava[..., 0]) if lead is None else lead[k].reshape(lava.shape[0], -1).numpy()
            assert int((lava[..., 0] != first).sum()) == 0, (li, k)
        if lead is not None:                                # Lava's first step: the current is the bias alone
            u0 = res.states[li]["u"][..., 0].reshape(lava.shape[0], n.bias.shape[0], -1)
            assert (u0 == fx.effective_bias(n.bias_mant)[None, :, None]).all()
    # the largest bias (1.5 thresholds) fires on the step before the first input arrives
    first_layer = res.spikes[0][..., 0]
    assert first_layer.any() and not first_layer.all()


def test_comparison_tooling_is_exact_for_biased_layers(tmp_path_factory):
    """What ``ilif-lava compare`` runs: the twin's states on Lava's steps (lead step included) equal Lava's; a twin
    that assumed rest on the first step (the comparison before biases existed) is caught at step 0, state u."""
    from pipeline.run import DeploymentMismatchError, check_deployment, engine_spikes
    from training.models import SpikingNet

    blocks, x, outs, path, res = _exported_run(_dense_net, tmp_path_factory)
    model = SpikingNet(blocks, flatten_input=True, meta={"arch": "custom"})
    lead: dict = {}
    spikes, states = engine_spikes(model, x, torch.device("cpu"), quantized=True, record=True, lead_out=lead)
    assert sorted(lead) == [0, 1, 3] and sorted(states) == [0, 1, 2, 3]
    twin = twin_states_on_lava_steps(states, lead)
    assert first_divergence(spikes, res.spikes, twin, res.states) is None
    assert first_divergence(spikes, res.spikes) is None
    restful = twin_states_on_lava_steps(states)                 # no lead states: rest on Lava's first step
    div = first_divergence(spikes, res.spikes, restful, res.states)
    assert div is not None and (div.layer, div.time_step, div.what) == (0, 0, "u")
    assert div.value_a == 0 and div.value_b == fx.effective_bias(blocks[0].neuron.bias_mant)[div.neuron]

    rows = [{"mismatches": 0}]
    ok = {"spikes": {"quantized_vs_lava": rows}, "prediction_agreement": {"quantized_vs_lava": 1.0},
          "first_divergence": {"quantized_vs_lava": None, "quantized_vs_lava_with_states": None}}
    check_deployment(ok, Path("report"))
    bad = dict(ok, first_divergence={"quantized_vs_lava": None, "quantized_vs_lava_with_states": div.to_dict()})
    with pytest.raises(DeploymentMismatchError, match=r"0 spike mismatches, prediction agreement 1\.000; first at "
                                                      r"layer 0, step 0, .*\(state u: quantized 0, Lava") as info:
        check_deployment(bad, Path("report"))
    assert "\n" not in str(info.value)


def test_biased_file_round_trip_is_identical(tmp_path_factory, tmp_path):
    blocks, x, outs, path, _ = _exported_run(_conv_net, tmp_path_factory)
    rebuilt = blocks_from_hdf5(path, record_states=True)
    again = export_blocks(rebuilt, tmp_path / "again.net")
    with h5py.File(path, "r") as a, h5py.File(again, "r") as b:
        for i in a[K.LAYER]:
            ga, gb = a[K.LAYER][i], b[K.LAYER][i]
            assert sorted(ga.keys()) == sorted(gb.keys()), i
            if K.BIAS in ga:
                assert ga[K.BIAS].dtype == gb[K.BIAS].dtype
                np.testing.assert_array_equal(ga[K.BIAS][()], gb[K.BIAS][()])
    for bo, ro in zip(outs, forward_all(rebuilt, x)):
        assert torch.equal(bo, ro)


def _edit(src: Path, dst: Path, value) -> Path:
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h:
        del h[f"{K.LAYER}/2/{K.BIAS}"]
        h[f"{K.LAYER}/2"].create_dataset(K.BIAS, data=value)
    return dst


@pytest.mark.parametrize("value,match", [
    (np.array([0, 4096, 0, 0, 0, 0]), r"key 'bias' has values in \[0, 4096\]"),
    (np.array([0, -4097, 0, 0, 0, 0], dtype=np.float64), r"key 'bias' has values in \[-4097, 0\]"),
    (np.zeros(5, dtype=np.int32), r"key 'bias' has shape \(5,\)"),
    (np.zeros((6, 1), dtype=np.int32), r"key 'bias' has shape \(6, 1\)"),
    (np.array([0, 1.5, 0, 0, 0, 0]), r"key 'bias' holds non-integer value\(s\), e\.g\. 1\.5"),
    (np.array([0, np.nan, 0, 0, 0, 0]), r"key 'bias' holds 1 NaN/inf value"),
], ids=["above", "below", "short", "2d", "fraction", "nan"])
def test_bad_bias_refused_in_one_line(value, match, tmp_path_factory, tmp_path):
    from ilif_lava.lava_proc.process import ILIFNetwork

    _, _, _, good, _ = _exported_run(_conv_net, tmp_path_factory)
    bad = _edit(good, tmp_path / "bad.net", value)
    for loader in (validate_file, blocks_from_hdf5, lambda p: ILIFNetwork(net_config=str(p))):
        with pytest.raises(NetworkFileError, match=match) as info:
            loader(bad)
        msg = str(info.value)
        assert str(bad) in msg and "layer 2" in msg and "\n" not in msg, msg
    # the extremes of the 13-bit mantissa are accepted
    validate_file(_edit(good, tmp_path / "edge.net", np.array([-4096, 4095, 0, 0, 0, 0], dtype=np.int16)))


def test_loihi2_check_reports_the_bias_mantissa(tmp_path_factory, tmp_path):
    from ilif_lava.loihi2 import check_parameters

    _, _, _, good, _ = _exported_run(_conv_net, tmp_path_factory)
    found = {(f.layer, f.key): f for f in check_parameters(good)}
    f = found[(2, K.BIAS)]
    assert f.ok and "13-bit" in f.message and (f.limit_min, f.limit_max) == (-4096, 4095)
    assert (0, K.BIAS) in found and (4, K.BIAS) in found and (1, K.BIAS) not in found
    bad = _edit(good, tmp_path / "wide.net", np.array([0, 5000, 0, 0, 0, 0]))
    f = {(g.layer, g.key): g for g in check_parameters(bad)}[(2, K.BIAS)]
    assert not f.ok and "outside [-4096, 4095]" in f.message
