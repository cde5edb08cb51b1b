"""lava-dl users at home: every file stock netx builds loads in ILIFNetwork and runs identically in Lava.

1. For each slayer block type (cuba Input with and without weight/bias, Dense, Conv, Flatten, Affine, delays,
   sdnn Input/Dense/Conv, sparse dense synapses), the file written by slayer's own ``export_hdf5`` is built by
   stock ``netx.hdf5.Network`` and by ``ILIFNetwork``, run in Lava ``fixed_pt``, and every layer's output is
   identical (and not silent). Pool (netx has no loader) fails with ``NotImplementedError`` in both. Known
   gap (explicit refusal): rf (complex synapses).
2. ``ILIFNetwork`` however it is reached: rebound as ``netx.hdf5.Network``, subclassed (own process model,
   overridden ``get_neuron_params``), and a neuron type added with ``register_neuron_type``.
3. lava-dl's neuron names (``voltage_decay``, ``current_decay``: same HDF5 decays as CUBA), the one mapping to
   ``tau``, learnable clipped decays with ``requires_grad=True``, and ``count_log=True`` on our blocks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import h5py
import numpy as np
import pytest
import torch

import ilif_lava  # noqa: F401
from ilif_lava import block
from ilif_lava import netx as inetx
from ilif_lava.hdf5_validate import Int, NetworkFileError
from ilif_lava.lava_proc.process import ILIFNetwork
from lava.lib.dl import slayer
from lava.lib.dl.netx import hdf5 as netx_hdf5
from tests.helpers import flat, forward_all, run_netx

cuba, sdnn = slayer.block.cuba, slayer.block.sigma_delta
CUBA = {"threshold": 1.0, "current_decay": 0.25, "voltage_decay": 0.03, "requires_grad": False}
SDNN = {"threshold": 0.1, "activation": torch.nn.functional.relu}
T = 16


def _slayer_export(blocks: List[torch.nn.Module], x: torch.Tensor, path: Path) -> Path:
    """What a lava-dl user writes: forward once (sets shapes), then each block's own ``export_hdf5``."""
    forward_all(torch.nn.ModuleList(blocks).eval(), x)
    with h5py.File(path, "w") as h:
        layer = h.create_group("layer")
        for i, b in enumerate(blocks):
            b.export_hdf5(layer.create_group(str(i)))
    return path


def _spikes(shape: Tuple[int, ...], p: float = 0.3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((1,) + shape + (T,), generator=g) < p).float()


# name -> (blocks, slayer input, how Lava is driven: 'port' | 'bias' | 'skip', graded input, netx kwargs)
def _case(name: str) -> Tuple[List[torch.nn.Module], torch.Tensor, str, bool, Dict[str, Any]]:
    torch.manual_seed(0)
    conv_in = {"input_shape": (6, 6, 2)}
    cases: Dict[str, Callable[[], tuple]] = {
        "cuba_input_weight_bias": lambda: ([cuba.Input(CUBA, weight=2, bias=1),
                                            cuba.Dense(CUBA, 12, 6, weight_scale=4)],
                                           _spikes((12,)), "bias", False, {}),
        "cuba_input": lambda: ([cuba.Input(CUBA), cuba.Dense(CUBA, 12, 6, weight_scale=4)], _spikes((12,)), "bias",
                               False, {}),
        "cuba_input_skipped": lambda: ([cuba.Input(CUBA, weight=2, bias=1), cuba.Dense(CUBA, 12, 6, weight_scale=4)],
                                       _spikes((12,)), "skip", False, {"skip_layers": 1}),
        "cuba_dense": lambda: ([cuba.Dense(CUBA, 12, 10, weight_scale=4), cuba.Dense(CUBA, 10, 6, weight_scale=4)],
                               _spikes((12,)), "port", False, {}),
        "cuba_dense_delay": lambda: ([cuba.Dense(CUBA, 12, 10, weight_scale=4, delay=True),
                                      cuba.Dense(CUBA, 10, 6, weight_scale=4, delay=True)],
                                     _spikes((12,)), "port", False, {}),
        "cuba_dense_sparse": lambda: ([cuba.Dense(CUBA, 12, 10, weight_scale=4),
                                       cuba.Dense(CUBA, 10, 6, weight_scale=4)],
                                      _spikes((12,)), "port", False, {"sparse_fc_layer": True}),
        "cuba_conv_flatten_dense": lambda: ([cuba.Conv(CUBA, 2, 4, 3, padding=1, weight_scale=4), cuba.Flatten(),
                                             cuba.Dense(CUBA, 4 * 6 * 6, 5, weight_scale=2)],
                                            _spikes((2, 6, 6)), "port", False, conv_in),
        "cuba_conv_delay": lambda: ([cuba.Conv(CUBA, 2, 4, 3, padding=1, weight_scale=4, delay=True),
                                     cuba.Conv(CUBA, 4, 4, 3, stride=2, padding=1, weight_scale=4, delay=True),
                                     cuba.Flatten(), cuba.Dense(CUBA, 4 * 3 * 3, 5, weight_scale=4, delay=True)],
                                    _spikes((2, 6, 6)), "port", False, conv_in),
        "cuba_affine": lambda: ([cuba.Dense(CUBA, 12, 10, weight_scale=4), cuba.Affine(CUBA, 10, 6, weight_scale=4)],
                                _spikes((12,)), "port", False, {}),
        "sdnn_dense": lambda: ([sdnn.Input(SDNN), sdnn.Dense(SDNN, 12, 10, weight_scale=4),
                                sdnn.Dense(SDNN, 10, 6, weight_scale=4)],
                               torch.rand(1, 12, T), "skip", True, {"skip_layers": 1}),
        "sdnn_conv": lambda: ([sdnn.Input(SDNN), sdnn.Conv(SDNN, 2, 4, 3, padding=1), sdnn.Flatten(),
                               sdnn.Dense(SDNN, 4 * 6 * 6, 5, weight_scale=4)],
                              torch.rand(1, 2, 6, 6, T), "skip", True, {"skip_layers": 1}),
    }
    return cases[name]()


def _lava_input(x: torch.Tensor, graded: bool, rng: np.random.Generator) -> np.ndarray:
    """A Lava input for the network's first built layer, [*XYZ, T] (x, y, f order for conv inputs)."""
    a = x[0].numpy()
    if a.ndim == 4:
        a = a.transpose(2, 1, 0, 3)
    return rng.integers(0, 4096, a.shape) if graded else a


# slayer's cuba.Affine exports vThMant = (1 << 18) - 1 (never fires); stock netx builds it and so does the validator
# (ilif_lava/netx_schema/tables.py, CUBA_VTH_MANT_MAX).
CASES = ["cuba_input_weight_bias", "cuba_input", "cuba_input_skipped", "cuba_dense", "cuba_dense_delay",
         "cuba_dense_sparse", "cuba_conv_flatten_dense", "cuba_conv_delay",
         "cuba_affine", "sdnn_dense", "sdnn_conv"]


@pytest.mark.parametrize("name", CASES)
def test_stock_netx_and_ilif_network_identical(name, tmp_path):
    blocks, x, drive, graded, kwargs = _case(name)
    path = _slayer_export(blocks, x, tmp_path / f"{name}.net")
    rng = np.random.default_rng(1)
    feed: Dict[str, Any] = {}
    if drive == "bias":
        feed["input_bias"] = rng.integers(0, 1500, tuple(x.shape[1:-1])[::-1])
    else:
        feed["x"] = _lava_input(x, graded, rng)
    outs = {}
    for cls in (netx_hdf5.Network, ILIFNetwork):
        net = cls(net_config=str(path), **kwargs)
        assert type(net) is cls
        outs[cls] = run_netx(net, T, **feed)
    stock, ours = outs[netx_hdf5.Network], outs[ILIFNetwork]
    assert len(stock) == len(ours) > 0
    activity = [int(np.abs(o).sum()) for o in stock]
    assert activity[0] > 0 and sum(activity[:-1] if name == "cuba_affine" else activity[-1:]) > 0, activity
    for i, (s, o) in enumerate(zip(stock, ours)):
        assert s.shape == o.shape and np.array_equal(s, o), (name, i, int((s != o).sum()))


def test_pool_not_loadable_by_either(tmp_path):
    blocks = [cuba.Conv(CUBA, 2, 4, 3, padding=1), cuba.Pool(CUBA, 2), cuba.Flatten(), cuba.Dense(CUBA, 36, 4)]
    path = _slayer_export(blocks, _spikes((2, 6, 6)), tmp_path / "pool.net")
    for cls in (netx_hdf5.Network, ILIFNetwork):
        with pytest.raises(NotImplementedError, match="pool"):
            cls(net_config=str(path), input_shape=(6, 6, 2))


def test_rf_refused_with_one_line_error(tmp_path):
    """netx builds RF layers (complex synapses); ILIFNetwork's validator does not know them yet: a clear error."""
    path = _slayer_export([slayer.block.rf.Dense({"threshold": 0.1, "period": 10, "decay": 0.1}, 8, 4)],
                          _spikes((8,)), tmp_path / "rf.net")
    with pytest.raises(NetworkFileError, match="layer 0: key 'neuron/type' = 'RF_PHASE'") as exc:
        ILIFNetwork(net_config=str(path))
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


# =========================================================================================================
# 2. however ILIFNetwork is reached
# =========================================================================================================
def _ilif_file(tmp_path: Path) -> Tuple[Path, torch.Tensor, List[torch.Tensor]]:
    torch.manual_seed(3)
    p = {"threshold": 1.0, "tau": 2.0, "quantized": True}
    blocks = torch.nn.ModuleList([block.Dense(p, 12, 10, weight_scale=4, delay_shift=True),
                                  cuba.Dense(CUBA, 10, 6, weight_scale=4, delay_shift=True)]).eval()
    x = _spikes((12,), 0.4, seed=3)
    outs = forward_all(blocks, x)
    return inetx.export_blocks(blocks, tmp_path / "ilif.net"), x, outs


def _assert_matches_torch(lava: List[np.ndarray], outs: List[torch.Tensor]) -> None:
    assert len(lava) == len(outs)
    for i, (l, o) in enumerate(zip(lava, outs)):
        assert o.sum() > 0 and np.array_equal(l, flat(o)[0]), (i, int((l != flat(o)[0]).sum()))


def test_rebound_onto_netx_hdf5_network(tmp_path, monkeypatch):
    path, x, outs = _ilif_file(tmp_path)
    monkeypatch.setattr(netx_hdf5, "Network", ILIFNetwork)        # what users do to make old scripts load ILIF
    net = netx_hdf5.Network(net_config=str(path))
    assert type(net) is ILIFNetwork
    _assert_matches_torch(run_netx(net, T, x=x[0].numpy()), outs)


class UserNetwork(ILIFNetwork):
    """A user's subclass (module level, as Lava's compiler needs for process-model discovery)."""

    built_types: List[str] = []

    @staticmethod
    def get_neuron_params(neuron_config, **kwargs):
        UserNetwork.built_types.append(str(neuron_config["type"]))
        return ILIFNetwork.get_neuron_params(neuron_config, **kwargs)


def test_subclass_gets_model_and_own_dispatch(tmp_path):
    path, x, outs = _ilif_file(tmp_path)
    UserNetwork.built_types.clear()
    net = UserNetwork(net_config=str(path))
    assert UserNetwork.built_types == ["ILIF", "CUBA"]              # netx's builders call the subclass's dispatch
    _assert_matches_torch(run_netx(net, T, x=x[0].numpy()), outs)
    assert netx_hdf5.Network.get_neuron_params is inetx.STOCK_NETWORK.get_neuron_params   # stock netx untouched


def _my_lif_params(neuron_config, input=False, reset_interval=None, reset_offset=0, spike_exp=6):
    """A user-registered type: Lava's LIF with the CUBA keys under another name."""
    from lava.proc.lif.process import LIF
    r = lambda k: int(inetx.read_key(neuron_config, k))  # noqa: E731
    return {"neuron_proc": LIF, "bias_key": "bias_mant", "vth": r("vThMant"), "du": r("iDecay") - 1,
            "dv": r("vDecay"), "bias_exp": 6, "num_message_bits": 0}


def test_register_neuron_type(tmp_path):
    torch.manual_seed(4)
    blocks = [cuba.Dense(CUBA, 12, 10, weight_scale=4), cuba.Dense(CUBA, 10, 6, weight_scale=4)]
    x = _spikes((12,), 0.4, seed=4)
    path = _slayer_export(blocks, x, tmp_path / "cuba.net")
    renamed = tmp_path / "mylif.net"
    renamed.write_bytes(path.read_bytes())
    with h5py.File(renamed, "r+") as h:
        for i in ("0", "1"):
            del h[f"layer/{i}/neuron/type"]
            h[f"layer/{i}/neuron/type"] = "MYLIF"
    with pytest.raises(NetworkFileError, match="'MYLIF' is not a neuron type"):
        ILIFNetwork(net_config=str(renamed))
    with pytest.raises(ValueError, match="already known"):
        inetx.register_neuron_type("CUBA", _my_lif_params)
    rules = {k: Int(0, 4096, "strict") for k in ("iDecay", "vDecay", "vThMant")}
    inetx.register_neuron_type("MYLIF", _my_lif_params, keys=rules)
    try:
        assert "MYLIF" in inetx.registered_neuron_types()
        mine = run_netx(ILIFNetwork(net_config=str(renamed)), T, x=x[0].numpy())
        stock = run_netx(netx_hdf5.Network(net_config=str(path)), T, x=x[0].numpy())
        assert sum(int(s.sum()) for s in stock) > 0
        assert all(np.array_equal(a, b) for a, b in zip(mine, stock))
        broken = tmp_path / "broken.net"
        broken.write_bytes(renamed.read_bytes())
        with h5py.File(broken, "r+") as h:
            del h["layer/1/neuron/vDecay"]
        with pytest.raises(NetworkFileError, match="layer 1: key 'neuron/vDecay' is missing"):
            ILIFNetwork(net_config=str(broken))
    finally:
        inetx.unregister_neuron_type("MYLIF")
    assert "MYLIF" not in inetx.registered_neuron_types()


# =========================================================================================================
# 3. lava-dl's neuron names and options
# =========================================================================================================
from ilif_lava.neuron import Neuron, membrane_tau  # noqa: E402


def test_cuba_names_export_like_cuba():
    """Neuron(current_decay=..., voltage_decay=...) means what it means in slayer CUBA: same HDF5 decays."""
    for cd, vd, th in ((0.25, 0.03, 1.25), (1.0, 0.5, 1.0), (0.1, 0.0, 0.5), (0.0, 1.0, 2.0)):
        ours = Neuron(threshold=th, current_decay=cd, voltage_decay=vd, variant="LIF").device_params
        stock = slayer.neuron.cuba.Neuron(threshold=th, current_decay=cd, voltage_decay=vd).device_params
        for key in ("iDecay", "vDecay", "vThMant"):
            assert int(ours[key]) == int(stock[key]), (cd, vd, key, ours[key], stock[key])


def test_one_mapping_tau_voltage_decay():
    assert membrane_tau() == 1.1 and membrane_tau(voltage_decay=0.25) == 4.0 and membrane_tau(tau=4.0) == 4.0
    assert membrane_tau(voltage_decay=0.0) == float("inf")
    a, b = Neuron(tau=4.0), Neuron(voltage_decay=0.25)
    assert torch.equal(a.lam, b.lam) and float(b.lam) == 0.75 and b.tau == 4.0
    assert Neuron(tau=4.0, voltage_decay=0.25).device_params == a.device_params     # consistent: accepted
    x = torch.rand(2, 5, 20) * 1.5
    assert torch.equal(a(x), b(x))
    with pytest.raises(ValueError, match=r"tau=2.0 and voltage_decay=0.1 disagree: voltage_decay = 1/tau = 0.5"):
        Neuron(tau=2.0, voltage_decay=0.1)
    with pytest.raises(ValueError, match="voltage_decay must lie in"):
        Neuron(voltage_decay=1.5)
    # stored as CUBA stores it: 4096 x the fraction
    vd = slayer.neuron.cuba.Neuron(threshold=1.0, current_decay=1.0, voltage_decay=0.25).voltage_decay
    assert float(b.voltage_decay) == float(vd) == 1024.0


def test_requires_grad_learns_and_clips_voltage_decay():
    torch.manual_seed(0)
    fixed = Neuron(voltage_decay=0.25)
    assert list(fixed.parameters()) == [] and not fixed.voltage_decay.requires_grad
    for quantized in (False, True):
        n = Neuron(voltage_decay=0.25, requires_grad=True, quantized=quantized, threshold=1.0)
        assert [p for p in n.parameters()] == [n.voltage_decay]
        opt = torch.optim.SGD(n.parameters(), lr=1e4)
        x = (torch.rand(4, 8, 30) * 1.2).requires_grad_(True)
        n(x).sum().backward()
        assert n.voltage_decay.grad is not None and n.voltage_decay.grad.abs().item() > 0, quantized
        before = int(n.device_params["vDecay"])
        opt.step()
        assert int(n.device_params["vDecay"]) != before              # the exported decay follows the learning
    n.voltage_decay.data.fill_(5000.0)                                # out of range: clipped before use (CUBA)
    assert n.lam.item() == 0.0 and n.voltage_decay.item() == 4096.0
    n.voltage_decay.data.fill_(-3.0)
    assert n.lam.item() == 1.0 and int(n.device_params["vDecay"]) == 0
    # PLIF variants always learn their decay through plif_w; requires_grad adds nothing
    p = Neuron(tau=2.0, variant="PLIF", requires_grad=True)
    assert list(p.parameters()) == [p.plif_w]
    with pytest.warns(UserWarning, match="current_decay stays fixed"):
        Neuron(current_decay=0.5, voltage_decay=0.1, requires_grad=True)


def test_old_state_dict_with_lam_buf_loads():
    n = Neuron(tau=2.0)
    n.load_state_dict({"lam_buf": torch.tensor([0.75])})
    assert float(n.lam) == 0.75 and float(n.voltage_decay) == 1024.0


@pytest.mark.parametrize("make, x", [
    (lambda: block.Dense({"threshold": 0.5}, 8, 6, weight_scale=4, count_log=True), torch.rand(2, 8, 10)),
    (lambda: block.Conv({"threshold": 0.5}, 2, 3, 3, padding=1, weight_scale=4, count_log=True),
     torch.rand(2, 2, 6, 6, 10)),
    (lambda: block.Pool({"threshold": 0.5}, 2, count_log=True), torch.rand(2, 2, 6, 6, 10)),
    (lambda: block.Input({"threshold": 0.5}, count_log=True), torch.rand(2, 8, 10)),
], ids=["dense", "conv", "pool", "input"])
def test_count_log(make, x):
    torch.manual_seed(0)  # random weights: seeded (and scaled) so the block fires
    blk = make()
    ref = make()
    ref.load_state_dict(blk.state_dict())
    ref.count_log = False
    out, rate = blk(x)
    assert torch.equal(out, ref(x)) and out.sum() > 0
    assert rate.dtype == torch.float32 and rate.ndim == 0 and float(rate) == float((out > 0).float().mean())
    assert blk.count_log is True


def test_count_log_affine_and_flatten_as_slayer():
    v, none = block.Affine({"threshold": 0.5}, 8, 4, count_log=True)(torch.rand(1, 8, 5))
    assert none is None and v.shape == (1, 4, 5)
    f, none = block.Flatten(count_log=True)(torch.rand(1, 2, 3, 3, 5))
    assert none is None and f.shape == (1, 18, 5)
