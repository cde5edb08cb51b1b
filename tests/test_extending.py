"""docs/extending.md, done for a toy: a second neuron type (TOYIF, tests/toy_neuron/) added end to end through the
public extension points, and checked.

1. The integer rule by hand (a few steps), for numpy and torch alike.
2. The slayer neuron: float rule with gradients; quantized forward = the integer rule.
3. netx: the block exports a file with ``neuron/type = TOYIF``; the built-in validator refuses it, the registry
   (``ilif_lava.netx.register_neuron_type`` with the TOYIF table) accepts it and checks its keys; ``ILIFNetwork``
   builds it and Lava ``fixed_pt`` runs it (one small run): every layer's spikes equal the quantized torch model's
   and the integer rule applied to the file's own weights.
4. NIR: a block of the new type is refused by ``ilif_lava.nir.to_nir`` with one line naming it (until its mapping is
   added to ``ilif_lava/nir/``), not exported wrongly.
5. Every repository path docs/extending.md names exists.
"""
from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import ilif_lava  # noqa: F401  (first: Lava's Python 3.11 shim)
from ilif_lava import hdf5_validate as hv
from ilif_lava import netx
from ilif_lava.netx_schema import K
from tests import toy_neuron
from tests.toy_neuron.fixed_point import LEAK_SHIFT_KEY, ToyParams, toy_sequence, toy_step
from tests.toy_neuron.neuron import ToyDense, ToyNeuron

ROOT = Path(__file__).resolve().parents[1]
T = 12


def test_integer_rule_by_hand():
    p = ToyParams(vth=64, leak_shift=1)            # threshold 1.0 = 4096 state units; leak keeps v/2
    a = np.array([[40, 40, 40, 0, 64, -10]])       # weight-mantissa sums; a << 6 enters v
    # v: 2560 -> 1280+2560=3840 -> 1920+2560=4480 (fires, 0) -> 0 -> 4096 (fires) -> -640
    assert toy_sequence(a, p).tolist() == [[0, 0, 1, 0, 1, 0]]
    v, s = toy_step(torch.tensor([-3]), torch.tensor([0]), ToyParams(vth=64, leak_shift=1))
    assert v.tolist() == [-2] and s.tolist() == [0]    # the leak truncates toward zero: -3 - (-1)
    v, s = toy_step(np.array([8_000_000]), np.array([254 * 8]), p)
    assert v.tolist() == [0] and s.tolist() == [1]    # saturated at 2**23 - 1, then fired and reset


def test_neuron_float_rule_learns_and_quantized_is_the_integer_rule():
    torch.manual_seed(0)
    n = ToyNeuron(threshold=1.0, leak_shift=2)
    z = (torch.randint(-20, 60, (3, 5, T)) / 64.0).requires_grad_(True)
    n(z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    n.quantized = True
    with torch.no_grad():
        got = n(z).numpy()
    expected = toy_sequence(np.round(z.detach().numpy() * 64).astype(np.int64), n.int_params)
    np.testing.assert_array_equal(got, expected)
    assert n.device_params == {K.TYPE: "TOYIF", K.VTH_MANT: 64, LEAK_SHIFT_KEY: 2}


@pytest.fixture
def toy_registered():
    toy_neuron.register()
    try:
        yield
    finally:
        toy_neuron.unregister()
    assert "TOYIF" not in netx.neuron_registry()


def _toy_file(tmp_path: Path):
    torch.manual_seed(3)
    params = {"threshold": 1.0, "leak_shift": 2}
    net = torch.nn.Sequential(ToyDense(params, 10, 8, weight_scale=4, delay_shift=True),
                              ToyDense(params, 8, 4, weight_scale=4, delay_shift=True))
    x = (torch.rand(1, 10, T, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    for blk in net:
        blk.neuron.quantized = True
    outs, h = [], x
    with torch.no_grad():
        for blk in net:
            h = blk(h)
            outs.append(h[0].numpy())
    return netx.export_blocks(net, tmp_path / "toy.net"), x, outs


def test_toy_type_end_to_end_in_lava(tmp_path, toy_registered):
    from ilif_lava.lava_proc.process import ILIFNetwork
    from tests.helpers import run_netx

    path, x, outs = _toy_file(tmp_path)
    with h5py.File(path, "r") as h:
        assert h[f"{K.LAYER}/0/{K.NEURON}/{K.TYPE}"][()] == b"TOYIF"
        weights = [np.asarray(h[f"{K.LAYER}/{i}/{K.WEIGHT}"][()]) for i in range(2)]
    assert sum(int(o.sum()) for o in outs) > 0 and int(outs[-1].sum()) > 0       # not silent
    with pytest.raises(hv.NetworkFileError, match="'TOYIF' is not a neuron type"):
        hv.validate_file(path)                      # the built-in registry does not know it
    netx.validate_file(path)                        # ILIFNetwork's registry does

    got = run_netx(ILIFNetwork(net_config=str(path)), T, x=x[0].numpy())
    for i, (lava, torch_out) in enumerate(zip(got, outs)):
        np.testing.assert_array_equal(lava, torch_out, err_msg=f"layer {i}: Lava vs quantized torch")
    # the rule on the file's own integers: Lava's dense synapse delivers step t's spikes at step t + 1
    p, spikes = ToyParams(vth=64, leak_shift=2), x[0].numpy()
    for i, w in enumerate(weights):
        a = np.zeros((w.shape[0], T), dtype=np.int64)
        a[:, 1:] = (w.astype(np.int64) @ spikes.astype(np.int64))[:, :-1]
        spikes = toy_sequence(a, p)
        np.testing.assert_array_equal(got[i], spikes, err_msg=f"layer {i}: Lava vs the integer rule")


def test_registered_keys_are_checked(tmp_path, toy_registered):
    path, _, _ = _toy_file(tmp_path)
    with h5py.File(path, "r+") as h:
        del h[f"{K.LAYER}/1/{K.NEURON}/{LEAK_SHIFT_KEY}"]
        h[f"{K.LAYER}/1/{K.NEURON}"].create_dataset(LEAK_SHIFT_KEY, data=13)
    with pytest.raises(hv.NetworkFileError, match=f"layer 1: key 'neuron/{LEAK_SHIFT_KEY}'"):
        netx.validate_file(path)


def test_nir_export_refuses_the_new_type_in_one_line():
    from ilif_lava import block
    from ilif_lava.nir import NIRConversionError, to_nir
    blocks = [block.Dense({"threshold": 1.0, "kernel": "torch"}, 6, 5), ToyDense({"threshold": 1.0}, 5, 3)]
    h = torch.zeros(1, 6, 4)
    for blk in blocks:
        h = blk(h)
    with pytest.raises(NIRConversionError, match=r"block 1 \(tests\.toy_neuron\.neuron\.ToyDense\) has no NIR export"):
        to_nir(blocks)


def test_extending_doc_names_only_existing_paths():
    text = (ROOT / "docs" / "extending.md").read_text()
    paths = set(re.findall(r"`((?:ilif_lava|tests|docs|training|pipeline|export|simulations)/[\w./-]+)`", text))
    assert len(paths) > 15
    missing = sorted(p for p in paths if not (ROOT / p.split("::")[0]).exists())
    assert not missing, f"docs/extending.md names paths that do not exist: {missing}"
