"""``ilif_lava.hdf5_validate.validate_file``: one hand-made mutation of a valid exported file per error class.

Every error is a :class:`~ilif_lava.hdf5_validate.NetworkFileError` whose single message names the file, the
layer index and the key. Valid files (ILIF dense, ILIF input + conv + pool + flatten + dense, stock slayer CUBA
dense, CUBA conv first + ILIF) pass and build an :class:`~ilif_lava.lava_proc.process.ILIFNetwork`.

The base files are built here once per session (:func:`base_files`) and reused by ``test_hdf5_fuzz.py``.
"""
from __future__ import annotations

import atexit
import faulthandler
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import h5py
import numpy as np
import pytest
import torch

import ilif_lava  # noqa: F401  (Lava Python 3.11 shim before any Lava import)
from ilif_lava import block
from ilif_lava import hdf5_validate as hv
from ilif_lava import loihi2
from ilif_lava import netx as ilif_netx
from ilif_lava.hdf5_validate import NetworkFileError, UnsupportedLayerError, validate_file
from lava.lib.dl import slayer

CUBA_PARAMS = {"threshold": 1.25, "current_decay": 0.25, "voltage_decay": 0.03, "requires_grad": False}


# ---------------------------------------------------------------------------------------------------------
# valid base files
# ---------------------------------------------------------------------------------------------------------
class Base(NamedTuple):
    path: Path
    input_shape: Optional[Tuple[int, int, int]]   # network input, netx (x, y, f); needed if layer 0 is a conv
    n_blocks: int                                  # Lava blocks ILIFNetwork builds


class InputShape:
    """Writes a netx ``input`` layer holding only ``shape`` (netx then knows the input of a first conv)."""

    def __init__(self, shape) -> None:
        self.shape = list(shape)

    def export_hdf5(self, handle) -> None:
        handle.create_dataset("type", (1,), "S10", [b"input"])
        handle.create_dataset("shape", data=np.array(self.shape))


def _ilif(variant: str = "ILIF", **kw) -> dict:
    return {"threshold": 1.0, "tau": 2.0, "variant": variant, "quantized": True, **kw}


def _export(blocks, x, path: Path, prefix=()) -> Path:
    blocks.eval()
    with torch.no_grad():                       # a forward pass sets the neuron shapes before export
        h = x
        for b in blocks:
            h = b(h)
    return ilif_netx.export_blocks(list(prefix) + list(blocks), path)


@functools.lru_cache(maxsize=None)
def base_files() -> Dict[str, Base]:
    """Valid files, written once per process into a private temporary folder."""
    d = Path(tempfile.mkdtemp(prefix="hdf5_validate_"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    cuba = slayer.block.cuba
    torch.manual_seed(0)
    out: Dict[str, Base] = {}
    dense = torch.nn.ModuleList([
        block.Dense(_ilif("ILIF", tau=1.5), 6, 5, weight_scale=4, delay_shift=True, delay=True),
        block.Dense(_ilif("MPIU"), 5, 3, weight_scale=4, delay_shift=True)])
    out["ilif_dense"] = Base(_export(dense, (torch.rand(1, 6, 5) < 0.5).float(), d / "ilif_dense.net"), None, 2)
    conv = torch.nn.ModuleList([
        block.Conv(_ilif("ILIF"), 2, 4, 3, padding=1, weight_scale=3, delay_shift=True),
        block.Pool(_ilif("MPIU", threshold=0.5), 2, weight_scale=1.5, delay_shift=True),
        block.Flatten(),
        block.Dense(_ilif("CIU"), 4 * 3 * 3, 5, weight_scale=3, delay_shift=True)])
    out["ilif_conv"] = Base(_export(conv, (torch.rand(1, 2, 6, 6, 5) < 0.3).float(), d / "ilif_conv.net",
                                    prefix=[InputShape([2, 6, 6])]), (6, 6, 2), 3)
    stock = torch.nn.ModuleList([cuba.Dense(CUBA_PARAMS, 6, 4, weight_scale=4, delay_shift=True, delay=True),
                                 cuba.Dense(CUBA_PARAMS, 4, 3, weight_scale=4, delay_shift=True)])
    out["cuba_dense"] = Base(_export(stock, (torch.rand(1, 6, 5) < 0.5).float(), d / "cuba_dense.net"), None, 2)
    mixed = torch.nn.ModuleList([cuba.Conv(CUBA_PARAMS, 2, 3, 3, stride=2, padding=1, weight_scale=3,
                                           delay_shift=True),
                                 block.Flatten(),
                                 block.Dense(_ilif("ILIF"), 3 * 3 * 3, 4, weight_scale=3, delay_shift=True)])
    out["cuba_conv_first"] = Base(_export(mixed, (torch.rand(1, 2, 6, 6, 5) < 0.3).float(),
                                          d / "cuba_conv_first.net"), (6, 6, 2), 2)
    return out


def build_network(path: Path, input_shape=None):
    """ILIFNetwork for ``path`` (validated first, as ILIFNetwork does); the netx file handle is closed."""
    from ilif_lava.lava_proc.process import ILIFNetwork
    validate_file(path, input_shape=input_shape)
    kw = {"input_shape": tuple(input_shape)} if input_shape is not None else {}
    net = ILIFNetwork(net_config=str(path), **kw)
    net.net_config.f.close()          # netx keeps its h5py handle open for the life of the process
    return net


# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------
def _mutant(tmp_path: Path, base: str, fn: Callable[[h5py.File], None], name: str = "bad") -> Path:
    dst = tmp_path / f"{name}_{base}.net"
    shutil.copy(base_files()[base].path, dst)
    with h5py.File(dst, "r+") as h:
        fn(h)
    return dst


def _set(h: h5py.File, key: str, value) -> None:
    """Replace dataset ``key`` by ``value`` (new dtype and shape)."""
    if key in h:
        del h[key]
    h[key] = value


def _rejects(path: Path, layer: Optional[int], key: str, *fragments: str, input_shape=None,
             cls=NetworkFileError) -> str:
    with pytest.raises(cls) as exc:
        validate_file(path, input_shape=input_shape)
    msg = str(exc.value)
    assert "\n" not in msg, msg
    assert str(path) in msg, msg
    if layer is not None:
        assert f"layer {layer}:" in msg, msg
    assert f"'{key}'" in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    return msg


# ---------------------------------------------------------------------------------------------------------
# valid files
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ilif_dense", "ilif_conv", "cuba_dense", "cuba_conv_first"])
def test_valid_files_pass_and_build(name):
    b = base_files()[name]
    validate_file(b.path, input_shape=b.input_shape)
    ilif_netx.validate_file(b.path)            # the delegate (no input shape) accepts it too
    net = build_network(b.path, b.input_shape)
    assert len(net.layers) == b.n_blocks


def test_netx_delegates_and_reexports():
    assert ilif_netx.NetworkFileError is NetworkFileError
    assert issubclass(NetworkFileError, ValueError)
    assert issubclass(UnsupportedLayerError, NetworkFileError) and issubclass(UnsupportedLayerError,
                                                                               NotImplementedError)


# ---------------------------------------------------------------------------------------------------------
# file level
# ---------------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    p = tmp_path / "nope.net"
    with pytest.raises(NetworkFileError, match="no such file") as exc:
        validate_file(p)
    assert str(p) in str(exc.value)


def test_not_hdf5_and_truncated(tmp_path):
    text = tmp_path / "text.net"
    text.write_text("not an HDF5 file\n")
    with pytest.raises(NetworkFileError, match="not a readable HDF5 file") as exc:
        validate_file(text)
    assert str(text) in str(exc.value)
    data = base_files()["ilif_conv"].path.read_bytes()
    for frac in (0.02, 0.5, 0.9):
        cut = tmp_path / f"cut{frac}.net"
        cut.write_bytes(data[:int(len(data) * frac)])
        with pytest.raises(NetworkFileError) as exc:
            validate_file(cut)
        assert str(cut) in str(exc.value)


def test_damaged_global_heap_does_not_hang(tmp_path):
    """A variable-length string whose global heap has a free-space object of size 0 makes HDF5 loop forever in C
    (found by the fuzzer with a byte flip); validate_file checks the heap before h5py reads the string."""
    data = bytearray(base_files()["ilif_dense"].path.read_bytes())
    g = data.find(b"GCOL\x01")
    total, p = int.from_bytes(data[g + 8:g + 16], "little"), 16
    while int.from_bytes(data[g + p:g + p + 2], "little") != 0:          # walk to the free-space object
        p += 16 + (int.from_bytes(data[g + p + 8:g + p + 16], "little") + 7) // 8 * 8
        assert p + 16 <= total
    data[g + p + 8:g + p + 16] = bytes(8)
    bad = tmp_path / "heap.net"
    bad.write_bytes(bytes(data))
    faulthandler.dump_traceback_later(60, exit=True)                      # a regression fails loudly, not hangs
    try:
        _rejects(bad, 0, "neuron/type", "damaged global heap")
    finally:
        faulthandler.cancel_dump_traceback_later()


def test_missing_layer_group(tmp_path):
    p = _mutant(tmp_path, "ilif_dense", lambda h: h.move("layer", "layers"))
    _rejects(p, None, "layer", "top-level group")
    p = _mutant(tmp_path, "ilif_dense", lambda h: (h.move("layer", "x"), h.create_dataset("layer", data=1)), "ds")
    _rejects(p, None, "layer", "is a dataset")


@pytest.mark.parametrize("fn, fragment", [
    (lambda h: h.move("layer/1", "layer/7"), "['0', '7']"),                       # gap
    (lambda h: h["layer"].create_group("meta"), "['meta'] unexpected"),            # extra non-numeric child
    (lambda h: h.move("layer/1", "layer/01"), "'01'"),                             # not canonical
    (lambda h: [h.__delitem__(f"layer/{i}") for i in range(2)], "at least one"),   # empty
    (lambda h: h["layer"].create_group(b"\xff"), "not UTF-8"),                      # fuzz find (byte flip)
], ids=["gap", "extra_child", "leading_zero", "empty", "non_utf8_name"])
def test_layer_numbering(tmp_path, fn, fragment):
    _rejects(_mutant(tmp_path, "ilif_dense", fn), None, "layer", fragment)


def test_layer_is_a_dataset(tmp_path):
    p = _mutant(tmp_path, "ilif_dense", lambda h: (h.__delitem__("layer/1"), h.create_dataset("layer/1", data=3)))
    with pytest.raises(NetworkFileError, match=r"layer 1: is a dataset; expected a group"):
        validate_file(p)


# ---------------------------------------------------------------------------------------------------------
# layer type and required keys
# ---------------------------------------------------------------------------------------------------------
def test_layer_type(tmp_path):
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: h.__delitem__("layer/1/type")), 1, "type", "missing")
    p = _mutant(tmp_path, "ilif_conv", lambda h: _set(h, "layer/2/type", np.array([b"pool"])), "pool")
    msg = _rejects(p, 2, "type", "'pool'", cls=UnsupportedLayerError)
    assert "not a layer type netx builds" in msg
    with pytest.raises(NotImplementedError):                  # what netx itself raises for 'pool'
        validate_file(p)
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/0/type", "banana"), "banana"), 0, "type")
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/0/type", 3), "int"), 0, "type",
             "not a single string")
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/0/type", np.array([b"dense", b"conv"])),
                     "two"), 0, "type", "not a single string")
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/0/type", np.array([b"d\xe9nse"])),
                     "ascii"), 0, "type", "not ASCII")


@pytest.mark.parametrize("base, layer, key", [
    ("ilif_dense", 0, "shape"), ("ilif_dense", 0, "inFeatures"), ("ilif_dense", 1, "outFeatures"),
    ("ilif_dense", 1, "weight"),
    ("ilif_conv", 1, "inChannels"), ("ilif_conv", 1, "outChannels"), ("ilif_conv", 1, "kernelSize"),
    ("ilif_conv", 2, "stride"), ("ilif_conv", 2, "padding"), ("ilif_conv", 2, "dilation"),
    ("ilif_conv", 2, "groups"), ("ilif_conv", 1, "weight"), ("ilif_conv", 1, "neuron"),
    ("ilif_conv", 3, "shape"), ("ilif_conv", 0, "shape"),
])
def test_required_key_missing(tmp_path, base, layer, key):
    p = _mutant(tmp_path, base, lambda h: h.__delitem__(f"layer/{layer}/{key}"))
    _rejects(p, layer, key, "missing")


def test_conv_scalar_stride_padding_are_valid(tmp_path):
    """netx expands a 0-d stride / padding / dilation to both axes."""
    def fn(h):
        for key in ("stride", "padding", "dilation"):
            _set(h, f"layer/1/{key}", np.int64(1))
    assert len(build_network(_mutant(tmp_path, "ilif_conv", fn)).layers) == 3


def test_dense_without_neuron_is_valid(tmp_path):
    """netx gives a dense layer without ``neuron/`` a non-leaky CUBA neuron."""
    p = _mutant(tmp_path, "cuba_dense", lambda h: h.__delitem__("layer/1/neuron"))
    assert len(build_network(p).layers) == 2


# ---------------------------------------------------------------------------------------------------------
# dtypes, shapes, values of layer keys
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value, fragment", [
    ("weight", np.array([[b"a"] * 6] * 5), "dtype"),                       # strings
    ("weight", np.ones((5, 6), np.complex64), "dtype"),                    # complex
    ("weight", np.ones((6, 5), np.float32), "shape (6, 5)"),               # transposed
    ("weight", np.ones((5, 6, 1), np.float32), "shape (5, 6, 1)"),
    ("shape", np.array([5.0]), "dtype float64"),
    ("shape", np.array([4]), "outFeatures = 5"),
    ("shape", 5, "has shape ()"),
    ("inFeatures", np.array([6, 6]), "has shape (2,)"),
    ("outFeatures", 0, "out of range"),
], ids=["str", "complex", "transposed", "3d", "float_shape", "shape_vs_out", "scalar_shape", "array_in",
        "zero_out"])
def test_dense_dtype_and_shape(tmp_path, key, value, fragment):
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, f"layer/0/{key}", value)), 0, key, fragment)


@pytest.mark.parametrize("key, value, fragment", [
    ("weight", np.ones((4, 1, 3, 3), np.float32), "shape (4, 1, 3, 3)"),   # in/groups wrong
    ("weight", np.ones((4, 2, 2, 2), np.float32), "(4, 2, 3, 3)"),          # kernel mismatch
    ("kernelSize", np.array([3, 3, 3]), "a scalar (0-d) or 2 integers"),
    ("stride", np.array([1]), "has shape (1,)"),                           # netx's layer table reads [0], [1]
    ("stride", np.array([0, 1]), "out of range"),
    ("padding", np.array([-1, 1]), "out of range"),
    ("dilation", np.array([1.0, 1.0]), "dtype"),
    ("groups", np.array([1]), "scalar (0-d)"),                             # netx needs np.isscalar(groups)
    ("groups", 3, "does not divide"),
    ("shape", np.array([5, 6, 6]), "outChannels = 4"),
    ("shape", np.array([4, 6]), "outChannels = 4"),
], ids=["groups_in", "kernel", "kernel3", "stride1el", "stride0", "pad_neg", "dil_float", "groups_array", "groups_div",
        "shape_c", "shape_2d"])
def test_conv_dtype_and_shape(tmp_path, key, value, fragment):
    _rejects(_mutant(tmp_path, "ilif_conv", lambda h: _set(h, f"layer/1/{key}", value)), 1, key, fragment)


@pytest.mark.parametrize("value, fragment", [(np.nan, "NaN/inf"), (np.inf, "NaN/inf"), (-np.inf, "NaN/inf"),
                                             (3.5, "non-integer"), (300.0, "[-256, 255]"), (-258.0, "[-256, 255]")])
def test_weight_values(tmp_path, value, fragment):
    def fn(h):
        h["layer/1/weight"][0, 0] = value
    _rejects(_mutant(tmp_path, "ilif_dense", fn), 1, "weight", fragment)


def test_weight_all_zero(tmp_path):
    def fn(h):
        h["layer/1/weight"][...] = 0
    _rejects(_mutant(tmp_path, "cuba_dense", fn), 1, "weight", "all zero")


@pytest.mark.parametrize("value, fragment", [
    (np.array([0, 1, 2, -1, 0], np.float32), "[-1, 2]"),
    (np.array([0, 1.5, 0, 0, 0], np.float32), "non-integer"),
    (np.array([0, 63, 0, 0, 0], np.float32), "[0, 62]"),
    (np.array([0, np.inf, 0, 0, 0], np.float32), "NaN/inf"),
    (np.zeros(6, np.float32), "shape (6,)"),
    (np.float32(1), "shape ()"),
], ids=["negative", "fraction", "over62", "inf", "length", "scalar"])
def test_delay_values(tmp_path, value, fragment):
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/0/delay", value)), 0, "delay", fragment)


def test_bias(tmp_path):
    _rejects(_mutant(tmp_path, "cuba_dense", lambda h: _set(h, "layer/1/bias", np.zeros(4)), "len"), 1, "bias",
             "shape (4,)")
    _rejects(_mutant(tmp_path, "cuba_dense", lambda h: _set(h, "layer/1/bias", np.array([0, np.nan, 0])), "nan"),
             1, "bias", "NaN")
    # ILIF layers carry 13-bit integer bias mantissas (tests/test_netx_bias.py runs them in Lava)
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/1/bias", np.array([0, 0.5, 0])), "ilif"),
             1, "bias", "non-integer")
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/1/bias", np.array([0, 4096, 0])), "big"),
             1, "bias", "[-4096, 4095]")
    validate_file(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/1/bias", np.array([-4096, 7, 4095])),
                          "ilif_ok"))
    p = _mutant(tmp_path, "cuba_dense", lambda h: _set(h, "layer/1/bias", np.array([0, 3.0, -2.0])), "ok")
    assert len(build_network(p).layers) == 2                     # a CUBA bias of the right length is fine


# ---------------------------------------------------------------------------------------------------------
# sizes along the network and layer order
# ---------------------------------------------------------------------------------------------------------
def test_dense_input_size_chain(tmp_path):
    def fn(h):                        # layer 1 consistent in itself (7 inputs) but layer 0 outputs 5
        _set(h, "layer/1/inFeatures", 7)
        _set(h, "layer/1/weight", np.full((3, 7), 2, np.float32))
    _rejects(_mutant(tmp_path, "ilif_dense", fn), 1, "inFeatures", "previous layer's output [5]")
    _rejects(_mutant(tmp_path, "ilif_conv", lambda h: _set(h, "layer/3/shape", np.array([35, 1, 1])), "fl"),
             3, "shape", "36 values")


def test_conv_output_shape_chain(tmp_path):
    # stride 2 on the first conv: 6x6 -> 3x3, but the file still says 6x6
    _rejects(_mutant(tmp_path, "ilif_conv", lambda h: _set(h, "layer/1/stride", np.array([2, 2]))), 1, "shape",
             "[4, 3, 3]")
    # padding 0 on the first conv: 6x6 -> 4x4
    _rejects(_mutant(tmp_path, "ilif_conv", lambda h: _set(h, "layer/1/padding", np.array([0, 0])), "pad"), 1,
             "shape", "[4, 4, 4]")
    # the input layer says 3 channels; the conv takes 2
    _rejects(_mutant(tmp_path, "ilif_conv", lambda h: _set(h, "layer/0/shape", np.array([3, 6, 6])), "ch"), 1,
             "inChannels", "3 channels")
    # conv first: the input shape given to netx is checked too (and is optional)
    b = base_files()["cuba_conv_first"]
    _rejects(b.path, 0, "shape", "[3, 4, 4]", input_shape=(8, 8, 2))
    _rejects(b.path, 0, "inChannels", input_shape=(6, 6, 5))
    validate_file(b.path)


def test_layer_order(tmp_path):
    p = _mutant(tmp_path, "ilif_conv", lambda h: (h.move("layer/0", "layer/t"), h.move("layer/1", "layer/0"),
                                                 h.move("layer/t", "layer/1")))
    _rejects(p, 1, "type", "not the first layer")
    p = _mutant(tmp_path, "ilif_conv", lambda h: h.__delitem__("layer/4"), "flat_last")
    _rejects(p, 3, "type", "last layer")
    # dense right after a conv (no flatten): netx would connect ports of different shapes
    def no_flatten(h):
        del h["layer/3"]
        h.move("layer/4", "layer/3")
        _set(h, "layer/3/inFeatures", 64)
        _set(h, "layer/3/weight", np.full((5, 64), 2, np.float32))
        _set(h, "layer/2/padding", np.array([0, 0]))
        _set(h, "layer/2/shape", np.array([4, 4, 4]))
        _set(h, "layer/2/stride", np.array([1, 1]))
        _set(h, "layer/2/kernelSize", np.array([3, 3]))
        _set(h, "layer/2/weight", np.full((4, 1, 3, 3), 2, np.float32))
    p = _mutant(tmp_path, "ilif_conv", no_flatten, "no_flatten")
    _rejects(p, 3, "type", "without a flatten layer")
    # a conv after a flatten
    p = _mutant(tmp_path, "ilif_conv", lambda h: _set(h, "layer/4/type", np.array([b"conv"])), "conv_after")
    _rejects(p, 4, "type", "follows a flatten layer")


def test_no_block_and_flatten_after_1d(tmp_path):
    # only an input layer: netx would build no block at all (IndexError on layers[0])
    p = _mutant(tmp_path, "ilif_conv", lambda h: [h.__delitem__(f"layer/{i}") for i in range(1, 5)], "only_input")
    _rejects(p, None, "layer", "at least one layer that builds a Lava block")

    def flatten_after_dense(h):       # ... dense(36 -> 5), flatten [5, 1, 1], dense(5 -> 5)
        h.copy("layer/3", "layer/5")
        _set(h, "layer/5/shape", np.array([5, 1, 1]))
        h.copy("layer/4", "layer/6")
        _set(h, "layer/6/inFeatures", 5)
        _set(h, "layer/6/weight", np.full((5, 5), 2, np.float32))
    _rejects(_mutant(tmp_path, "ilif_conv", flatten_after_dense, "flat1d"), 5, "type", "follows a layer of shape [5]")


def test_conv_zero_weights_are_valid(tmp_path):
    """Only netx's dense path scales weights by their maximum; an all-zero conv kernel loads."""
    def fn(h):
        h["layer/1/weight"][...] = 0
    assert len(build_network(_mutant(tmp_path, "ilif_conv", fn)).layers) == 3


# ---------------------------------------------------------------------------------------------------------
# neurons
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, fragment", [
    ("ALIF", "not a neuron type"), ("RF_PHASE", "complex synapses"), ("ilif", "not a neuron type"),
    (np.array([b"\xffILIF"]), "not ASCII"), (7, "not a single string"),
])
def test_unknown_neuron_type(tmp_path, value, fragment):
    _rejects(_mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/1/neuron/type", value)), 1, "neuron/type",
             fragment)


def test_neuron_scalar_forms_that_load(tmp_path):
    """1-element numeric arrays and fixed-length strings are read like scalars by netx and ILIFNetwork."""
    def fn(h):
        _set(h, "layer/1/neuron/inhibition", np.array([b"plan"]))
        _set(h, "layer/1/neuron/mpiu", np.array([1]))
    assert len(build_network(_mutant(tmp_path, "ilif_dense", fn)).layers) == 2
    p = _mutant(tmp_path, "cuba_dense", lambda h: _set(h, "layer/1/neuron/vDecay", np.array([100])), "cuba")
    assert len(build_network(p).layers) == 2


def test_neuron_group_is_dataset(tmp_path):
    p = _mutant(tmp_path, "ilif_dense", lambda h: _set(h, "layer/0/neuron", 1))
    _rejects(p, 0, "neuron", "is a dataset")


@pytest.mark.parametrize("base, key, value, fragment", [
    ("ilif_dense", "iDecay", 4097, "[0, 4096]"),
    ("ilif_dense", "vDecay", -1, "[0, 4096]"),
    ("ilif_dense", "cDecay", 12.5, "dtype float64"),
    ("ilif_dense", "mDecay", np.nan, "dtype float64"),
    ("ilif_dense", "vThMant", 0, "[1, 131071]"),
    ("ilif_dense", "vThMant", 2 ** 17, "[1, 131071]"),
    ("ilif_dense", "vThMant", "64", "dtype"),
    ("ilif_dense", "inhibition", "sigmoid", "['plan']"),
    ("ilif_dense", "inhibition", 1, "not a single string"),
    ("ilif_dense", "mpiu", 2, "bool"),
    ("ilif_dense", "ciu", "False", "bool"),
    ("ilif_dense", "vDecay", np.array([10, 20, 30]), "has shape (3,)"),      # per-neuron: netx wants a scalar
    ("ilif_dense", "vThMant", np.array([64]), "scalar (0-d)"),                # ILIFNetwork reads int(value)
    ("ilif_dense", "mpiu", np.array([True, False]), "bool"),
    ("ilif_dense", "inhibition", np.array([b"plan"], dtype=h5py.string_dtype()), "variable-length"),  # fuzz find
    ("cuba_dense", "iDecay", 5000, "[0, 4096]"),
    ("cuba_dense", "vThMant", 2 ** 18, "[0, 262143]"),
    ("cuba_dense", "vDecay", np.array([1, 2]), "has shape (2,)"),
])
def test_neuron_values(tmp_path, base, key, value, fragment):
    p = _mutant(tmp_path, base, lambda h: _set(h, f"layer/1/neuron/{key}", value))
    _rejects(p, 1, f"neuron/{key}", fragment)


@pytest.mark.parametrize("base, key", [("ilif_dense", "cDecay"), ("ilif_dense", "inhibition"),
                                       ("ilif_dense", "ciu"), ("cuba_dense", "vThMant"), ("ilif_dense", "type")])
def test_neuron_key_missing(tmp_path, base, key):
    p = _mutant(tmp_path, base, lambda h: h.__delitem__(f"layer/0/neuron/{key}"))
    _rejects(p, 0, f"neuron/{key}", "missing")


def test_ilif_network_refuses_before_building(tmp_path):
    """ILIFNetwork validates first: no Lava process of a broken file is built."""
    from ilif_lava.lava_proc.process import ILIFNetwork
    p = _mutant(tmp_path, "ilif_conv", lambda h: _set(h, "layer/1/stride", np.array([2, 2])))
    with pytest.raises(NetworkFileError) as exc:
        ILIFNetwork(net_config=str(p))
    assert str(p) in str(exc.value) and "layer 1:" in str(exc.value) and "'shape'" in str(exc.value)


# ---------------------------------------------------------------------------------------------------------
# the Loihi check for weights Lava's inhibitory path would change (ilif_lava.loihi2, not file structure)
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights, flagged", [
    ([-256, -2], True), ([-2, -2], True), ([-64, -10, 0], True),
    ([-6, -10], False), ([-256, 2], False), ([0, 4], False),
])
def test_loihi2_flags_inhibitory_weights(tmp_path, weights, flagged):
    def fn(h):
        w = np.resize(np.array(weights, np.float32), (3, 4))
        w[0, :len(weights)] = weights
        _set(h, "layer/1/weight", w)
    p = _mutant(tmp_path, "cuba_dense", fn)
    validate_file(p)                                        # structurally fine: netx loads it
    f = next(x for x in loihi2.check_parameters(p) if x.layer == 1 and x.key == "weight")
    assert f.ok is not flagged, f.message
    if flagged:
        assert "inhibitory" in f.message and "layer 1 weight" in f.message


def test_validator_has_no_lava_import():
    """hdf5_validate and what it reads with (safe_hdf5, the netx schema) depend on h5py and numpy only (they run
    before any Lava process is built)."""
    import ast
    from ilif_lava import netx_schema, safe_hdf5
    files = [Path(hv.__file__), Path(safe_hdf5.__file__), *Path(netx_schema.__file__).parent.glob("*.py")]
    for f in files:
        tree = ast.parse(f.read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | \
               {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m and (m.startswith("lava") or m.startswith("torch")) for m in mods), (f, mods)
