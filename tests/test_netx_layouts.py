"""Layouts stock netx builds that slayer's older versions and hand-written files use; the validator accepts them.

Each acceptance rule follows netx's own reading code (cited in ilif_lava/hdf5_validate.py): a conv weight with a
trailing time axis of size 1 (netx reshapes to the first four axes), a dense layer whose ``shape`` is ``[n, 1, 1]``
followed by another dense layer (netx builds ``(prod(shape),)`` neurons), a 1-d dense weight (reshaped to
``(neurons, -1)``), slayer's recurrent ``dense_rec`` layers with per-neuron CUBA decays, and ``num_layers``
(only the layers netx builds are checked). What netx would misread or crash on stays refused in one line.
Real files: lava-dl's own (``tiny.net``, ``gts/``) and ones written here with h5py.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

import ilif_lava  # noqa: F401
from ilif_lava.hdf5_validate import NetworkFileError, UnsupportedLayerError
from ilif_lava.netx import validate_file


def _lavadl(name: str) -> Path:
    import lava.lib.dl.netx as netx
    path = Path(netx.__file__).resolve().parents[4] / "tests" / "lava" / "lib" / "dl" / "netx" / name
    if not path.is_file():
        pytest.skip(f"lava-dl's netx test file {path} is not installed")
    return path


def test_lavadl_tiny_net_with_5d_conv_weights():
    path = _lavadl("tiny.net")
    with h5py.File(path, "r") as f:
        assert f["layer/1/weight"].ndim == 5 and f["layer/1/weight"].shape[-1] == 1
    validate_file(path)


def test_lavadl_pilotnet_dense_chain_written_as_n_1_1_and_1d_weight():
    path = _lavadl("gts/pilotnet_lif/network.net")
    with h5py.File(path, "r") as f:
        assert list(f["layer/8/shape"][()]) == [50, 1, 1] and f["layer/10/weight"].ndim == 1
    validate_file(path)


def test_num_layers_checks_only_the_layers_netx_builds():
    path = _lavadl("gts/ntidigits/ntidigits.net")
    validate_file(path, num_layers=5)
    with pytest.raises(UnsupportedLayerError, match=r"layer 5: key 'type' = 'average'") as err:
        validate_file(path)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------------------
# hand-written files: one mutation each
# ---------------------------------------------------------------------------------------------------------
def _cuba(g: h5py.Group, n: int, per_neuron: bool = False) -> None:
    nrn = g.create_group("neuron")
    nrn.create_dataset("type", data=b"CUBA")
    decay = np.full(n, 1024, dtype=np.int64) if per_neuron else np.int64(1024)
    nrn.create_dataset("iDecay", data=decay)
    nrn.create_dataset("vDecay", data=decay)
    nrn.create_dataset("vThMant", data=np.int64(80))
    nrn.create_dataset("refDelay", data=np.int64(1))
    nrn.create_dataset("gradedSpike", data=False)


def _dense(g: h5py.Group, n_in: int, n_out: int, rec: bool, shape=None, per_neuron: bool = True) -> None:
    rng = np.random.default_rng(n_in + n_out)
    g.create_dataset("type", (1,), "S10", [b"dense_rec" if rec else b"dense"])
    g.create_dataset("shape", data=np.array(shape or [n_out]))
    g.create_dataset("inFeatures", data=np.int64(n_in))
    g.create_dataset("outFeatures", data=np.int64(n_out))
    g.create_dataset("weight", data=rng.integers(-100, 100, (n_out, n_in)).astype(np.float32))
    if rec:
        g.create_dataset("weight_rec", data=rng.integers(-100, 100, (n_out, n_out)).astype(np.float32))
    _cuba(g, n_out, per_neuron)


def _recurrent_file(path: Path, mutate=None) -> Path:
    with h5py.File(path, "w") as f:
        _dense(f.create_group("layer/0"), 6, 5, rec=True)
        _dense(f.create_group("layer/1"), 5, 4, rec=True)
        if mutate:
            mutate(f)
    return path


def test_recurrent_layers_with_per_neuron_decays_build(tmp_path):
    from lava.lib.dl.netx.blocks.process import RecurrentDense
    from ilif_lava.lava_proc.process import ILIFNetwork
    path = _recurrent_file(tmp_path / "rec.net")
    validate_file(path)
    net = ILIFNetwork(net_config=str(path))
    assert [type(layer) for layer in net.layers] == [RecurrentDense, RecurrentDense]


@pytest.mark.parametrize("mutate,key,fragment", [
    (lambda f: f["layer/1"].create_dataset("delay", data=np.zeros(4)), "delay", "recurrent delays"),
    (lambda f: (f["layer/1"].__delitem__("weight_rec"),
                f["layer/1"].create_dataset("weight_rec", data=np.ones((4, 5), np.float32))), "weight_rec", "(4, 4)"),
    (lambda f: f["layer/1"].__delitem__("weight_rec"), "weight_rec", "is missing"),
    (lambda f: (f["layer/1/neuron"].__delitem__("iDecay"),
                f["layer/1/neuron"].create_dataset("iDecay", data=np.full(3, 10))), "neuron/iDecay", "4 neurons"),
    (lambda f: (f["layer/1/neuron"].__delitem__("vDecay"),
                f["layer/1/neuron"].create_dataset("vDecay", data=np.full(4, 5000))), "neuron/vDecay", "out of range"),
])
def test_recurrent_layer_problems_are_one_line(tmp_path, mutate, key, fragment):
    path = _recurrent_file(tmp_path / "rec.net", mutate)
    with pytest.raises(NetworkFileError) as err:
        validate_file(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: layer 1: key '{key}'") and fragment in msg and "\n" not in msg


def _conv_file(path: Path, weight_shape, then_dense_without_flatten: bool = False) -> Path:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g.create_dataset("type", (1,), "S10", [b"input"])
        g.create_dataset("shape", data=np.array([2, 3, 3]))          # (C, H, W)
        c = f.create_group("layer/1")
        c.create_dataset("type", (1,), "S10", [b"conv"])
        c.create_dataset("shape", data=np.array([4, 1, 1]))
        for k, v in (("inChannels", 2), ("outChannels", 4), ("groups", 1)):
            c.create_dataset(k, data=np.int64(v))
        for k, v in (("kernelSize", [3, 3]), ("stride", [1, 1]), ("padding", [0, 0]), ("dilation", [1, 1])):
            c.create_dataset(k, data=np.array(v))
        c.create_dataset("weight", data=rng.integers(-50, 50, weight_shape).astype(np.float32))
        _cuba(c, 4)
        if then_dense_without_flatten:
            _dense(f.create_group("layer/2"), 4, 3, rec=False, per_neuron=False)
    return path


def test_conv_weight_time_axis_must_be_one(tmp_path):
    validate_file(_conv_file(tmp_path / "ok.net", (4, 2, 3, 3, 1)))
    bad = _conv_file(tmp_path / "bad.net", (4, 2, 3, 3, 2))
    with pytest.raises(NetworkFileError, match=r"layer 1: key 'weight' has shape \(4, 2, 3, 3, 2\)"):
        validate_file(bad)


def test_dense_right_after_a_conv_is_still_refused(tmp_path):
    """netx connects a conv's (x, y, f) port straight to the dense layer's (n,) port, which Lava refuses."""
    path = _conv_file(tmp_path / "c.net", (4, 2, 3, 3), then_dense_without_flatten=True)
    with pytest.raises(NetworkFileError, match=r"layer 2: key 'type' = 'dense' follows a layer of shape"):
        validate_file(path)
