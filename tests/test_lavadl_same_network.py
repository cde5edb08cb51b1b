"""For every network file lava-dl ships, and for networks slayer's own cuba/sdnn blocks export, ``ILIFNetwork``
builds the same Lava network as stock ``netx.hdf5.Network``: the same processes, in the same places, with the same
Var values (compared before anything runs, from each Var's initial value).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import pytest
import torch

import ilif_lava  # noqa: F401  (Lava's Python 3.11 fix first)
from ilif_lava.lava_proc.process import ILIFNetwork
from lava.lib.dl import netx, slayer

Built = List[Tuple[str, str, Dict[str, Any]]]


def lava_tree(proc: Any, path: str = "") -> Built:
    """(path, process type, {var name: initial value}) of ``proc`` and every sub-process below it, depth first."""
    out: Built = [(path, type(proc).__name__, {v.name: np.asarray(v.init) for v in proc.vars})]
    for sub in proc.procs:
        out += lava_tree(sub, f"{path}/{sub.name.split('::')[0]}")
    return out


def assert_same(stock: Built, ours: Built) -> None:
    """Equal trees; the root's own type is left out (``Network`` vs ``ILIFNetwork``)."""
    stock, ours = [("", "network", stock[0][2])] + stock[1:], [("", "network", ours[0][2])] + ours[1:]
    assert [(p, t) for p, t, _ in stock] == [(p, t) for p, t, _ in ours]
    for (path, kind, a), (_, _, b) in zip(stock, ours):
        assert sorted(a) == sorted(b), (path, kind)
        for name in a:
            assert np.array_equal(a[name], b[name]), (path, kind, name)


def _suite_file(name: str) -> Path:
    path = Path(netx.__file__).resolve().parents[4] / "tests" / "lava" / "lib" / "dl" / "netx" / name
    if not path.is_file():
        pytest.skip(f"lava-dl's netx test file {path} is not installed")
    return path


@pytest.mark.parametrize("name,kwargs", [
    ("tiny.net", {}),
    ("mnist.net", {}),
    ("gts/ntidigits/ntidigits.net", {"num_layers": 5}),
    ("gts/pilotnet_sdnn/network.net", {}),
    ("gts/pilotnet_lif/network.net", {}),
])
def test_lavadl_files_build_the_same_network(name, kwargs):
    path = str(_suite_file(name))
    stock = netx.hdf5.Network(net_config=path, **kwargs)
    ours = ILIFNetwork(net_config=path, **kwargs)
    assert len(stock.layers) == len(ours.layers) > 0
    assert_same(lava_tree(stock), lava_tree(ours))


def _random_slayer_net(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    params = ({"threshold": float(rng.uniform(0.5, 1.5)), "current_decay": float(rng.uniform(0, 1)),
               "voltage_decay": float(rng.uniform(0, 0.5)), "requires_grad": False} if kind == "cuba"
              else {"threshold": float(rng.uniform(0.05, 0.5)), "activation": torch.nn.functional.relu})
    mod = slayer.block.cuba if kind == "cuba" else slayer.block.sigma_delta
    c = int(rng.integers(2, 5))
    hidden = int(rng.integers(5, 20))
    blocks = [mod.Conv(params, 2, c, 3, padding=1, weight_scale=2), mod.Flatten(),
              mod.Dense(params, c * 6 * 6, hidden, weight_scale=2), mod.Dense(params, hidden, 4, weight_scale=2)]
    net = torch.nn.ModuleList(blocks)
    with torch.no_grad():
        x = (torch.rand(1, 2, 6, 6, 4) < 0.3).float()
        for b in net:
            x = b(x)
    return net


@pytest.mark.parametrize("kind,seed", [("cuba", 0), ("cuba", 1), ("sdnn", 2), ("sdnn", 3)])
def test_random_slayer_networks_build_the_same_network(tmp_path, kind, seed):
    import h5py
    net = _random_slayer_net(kind, seed)
    path = tmp_path / f"{kind}{seed}.net"
    with h5py.File(path, "w") as f:
        layer = f.create_group("layer")
        for i, b in enumerate(net):
            b.export_hdf5(layer.create_group(str(i)))
    shape = (6, 6, 2)                       # netx (x, y, f): the first layer is a conv
    stock = netx.hdf5.Network(net_config=str(path), input_shape=shape)
    ours = ILIFNetwork(net_config=str(path), input_shape=shape)
    assert_same(lava_tree(stock), lava_tree(ours))


def test_the_comparison_sees_a_changed_var():
    """So the tests above can fail: one weight changed in a copy is found."""
    path = str(_suite_file("tiny.net"))
    a = lava_tree(netx.hdf5.Network(net_config=path))
    b = lava_tree(netx.hdf5.Network(net_config=path))
    i, name = next((i, n) for i, (_, _, vs) in enumerate(b) for n, v in vs.items() if n == "weight" and v.size)
    b[i][2][name] = b[i][2][name].copy()
    b[i][2][name].flat[0] += 1
    with pytest.raises(AssertionError):
        assert_same(a, b)
