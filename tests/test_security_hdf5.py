"""Hostile HDF5 files: nothing outside the file is read or followed, non-regular files are never opened, and
byte / neuron / synapse / layer bombs are refused from metadata before any array is read.

Each case is a real HDF5 file (or FIFO, directory) and must give one :class:`NetworkFileError` naming the file
and the key, quickly (each load runs in a thread with a generous "does not hang" bound)."""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

from ilif_lava import hdf5_validate as hv
from ilif_lava.hdf5_validate import FileLimits, NetworkFileError, validate_file
from tests.test_hdf5_validate import base_files

HANG_S = 60


def _validate_bounded(path: Path, **kw) -> BaseException:
    """Run validate_file in a thread; return what it raised (fails the test if it hangs or accepts)."""
    box = {}

    def go():
        try:
            validate_file(path, **kw)
            box["exc"] = None
        except BaseException as exc:  # noqa: BLE001
            box["exc"] = exc

    th = threading.Thread(target=go, daemon=True)
    th.start()
    th.join(HANG_S)
    assert not th.is_alive(), f"validate_file hung on {path}"
    assert box["exc"] is not None, f"{path} was accepted"
    return box["exc"]


def _mutant(tmp_path: Path, fn: Callable[[h5py.File, Path], None], base: str = "ilif_dense") -> Path:
    dst = tmp_path / "bad.net"
    shutil.copy(base_files()[base].path, dst)
    with h5py.File(dst, "r+") as h:
        fn(h, tmp_path)
    return dst


def _replace(h: h5py.File, key: str, **create) -> None:
    del h[key]
    h.create_dataset(key, **create)


def _external_link(h, d):
    w = np.asarray(h["layer/0/weight"][()])
    with h5py.File(d / "other.h5", "w") as o:
        o["w"] = w
    del h["layer/0/weight"]
    h["layer/0/weight"] = h5py.ExternalLink(str(d / "other.h5"), "/w")


def _external_link_to_fifo(h, d):
    os.mkfifo(d / "fifo.h5")
    del h["layer/0/weight"]
    h["layer/0/weight"] = h5py.ExternalLink(str(d / "fifo.h5"), "/w")


def _soft_link_through_external(h, d):
    with h5py.File(d / "other.h5", "w") as o:
        o["w"] = np.asarray(h["layer/0/weight"][()])
    h["ext"] = h5py.ExternalLink(str(d / "other.h5"), "/")
    del h["layer/0/weight"]
    h["layer/0/weight"] = h5py.SoftLink("/ext/w")


def _soft_link_loop(h, d):
    del h["layer/0/weight"]
    h["layer/0/a"] = h5py.SoftLink("/layer/0/weight")
    h["layer/0/weight"] = h5py.SoftLink("/layer/0/a")


def _external_storage(h, d, target: str = "/etc/passwd"):
    w = np.asarray(h["layer/0/weight"][()])
    del h["layer/0/weight"]
    h.create_dataset("layer/0/weight", shape=w.shape, dtype="f4", external=[(target, 0, h5py.h5f.UNLIMITED)])


def _external_storage_fifo(h, d):
    os.mkfifo(d / "fifo.bin")
    _external_storage(h, d, str(d / "fifo.bin"))


def _virtual(h, d):
    w = np.asarray(h["layer/0/weight"][()])
    with h5py.File(d / "src.h5", "w") as o:
        o["w"] = w
    layout = h5py.VirtualLayout(shape=w.shape, dtype=w.dtype)
    layout[...] = h5py.VirtualSource(str(d / "src.h5"), "w", shape=w.shape)
    del h["layer/0/weight"]
    h.create_virtual_dataset("layer/0/weight", layout)


def _unknown_filter(h, d):
    w = np.asarray(h["layer/0/weight"][()])
    del h["layer/0/weight"]
    h.create_dataset("layer/0/weight", data=w, chunks=w.shape, compression=307, compression_opts=(1,),
                     allow_unknown_filter=True)


def _long_string_type(h, d):
    _replace(h, "layer/0/type", data=np.array([b"dense" + b"\0" * 10_000_000]), compression="gzip")


def _array_typed_type(h, d):
    _replace(h, "layer/0/type", shape=(1,), dtype=np.dtype(("S8", (4096, 64))), compression="gzip")


def _compressed_weight_bomb(h, d):
    _replace(h, "layer/0/weight", shape=(1 << 13, 1 << 13), dtype="f8", chunks=(1024, 1024), compression="gzip",
             fillvalue=2.0)


def _huge_claimed_weight(h, d):
    _replace(h, "layer/0/weight", shape=(100_000, 100_000), dtype="f4", chunks=(1000, 1000))


def _too_many_layers(h, d):
    g0 = h["layer/1"]
    for i in range(2, 300):
        h.copy(g0, f"layer/{i}")


def _deep_nesting(h, d):
    h.create_group("layer/0/neuron/a/b/c/d/e")


CASES = {
    "external_link": (_external_link, "external link"),
    "external_link_to_fifo": (_external_link_to_fifo, "external link"),
    "soft_link_through_external_link": (_soft_link_through_external, "external link"),
    "soft_link_loop": (_soft_link_loop, "soft link"),
    "external_storage": (_external_storage, "external storage"),
    "external_storage_fifo": (_external_storage_fifo, "external storage"),
    "virtual_dataset": (_virtual, "virtual dataset"),
    "unknown_filter": (_unknown_filter, "filter 307"),
    "long_string_type": (_long_string_type, "bytes"),
    "array_typed_type": (_array_typed_type, "bytes"),
    "compressed_weight_bomb": (_compressed_weight_bomb, "bytes"),
    "huge_claimed_weight": (_huge_claimed_weight, "bytes"),
    "too_many_layers": (_too_many_layers, "layer"),
    "deep_nesting": (_deep_nesting, "nested"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_file_is_refused_before_reading(tmp_path, case):
    fn, needle = CASES[case]
    path = _mutant(tmp_path, fn)
    exc = _validate_bounded(path)
    assert type(exc) is NetworkFileError, repr(exc)
    msg = str(exc)
    assert "\n" not in msg and msg.startswith(f"{path}: ") and needle in msg, msg


def test_external_storage_is_really_read_by_hdf5(tmp_path):
    """Control: the planted external-storage weight does read another file's bytes, so refusing it matters."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.full(30, 7.0, dtype="f4").tobytes())
    path = _mutant(tmp_path, lambda h, d: _external_storage(h, d, str(secret)))
    with h5py.File(path, "r") as h:
        assert (h["layer/0/weight"][()] == 7.0).all()
    assert "external storage" in str(_validate_bounded(path))


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_non_regular_files_are_never_opened(tmp_path, kind):
    if kind == "fifo":
        path = tmp_path / "net.net"
        os.mkfifo(path)
    elif kind == "directory":
        path = tmp_path / "net.net"
        path.mkdir()
    else:
        path = Path("/dev/zero")
    exc = _validate_bounded(path)
    assert type(exc) is NetworkFileError
    assert str(exc) == f"{path}: is {'a FIFO' if kind == 'fifo' else 'a ' + kind}, expected a regular HDF5 file"


def test_symlink_to_a_fifo_is_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "net.net").symlink_to(tmp_path / "fifo")
    assert "is a FIFO" in str(_validate_bounded(tmp_path / "net.net"))


def test_allowed_filters_still_validate(tmp_path):
    def gz(h, d):
        w = np.asarray(h["layer/0/weight"][()])
        _replace(h, "layer/0/weight", data=w, compression="gzip", shuffle=True, fletcher32=True)
        w = np.asarray(h["layer/1/weight"][()])
        _replace(h, "layer/1/weight", data=w, compression="lzf")
    validate_file(_mutant(tmp_path, gz))


def test_soft_link_inside_the_file_is_kept(tmp_path):
    def soft(h, d):
        h["store"] = np.asarray(h["layer/0/weight"][()])
        del h["layer/0/weight"]
        h["layer/0/weight"] = h5py.SoftLink("/store")
    validate_file(_mutant(tmp_path, soft))


@pytest.mark.parametrize("limit, value, needle", [
    ("max_layers", 1, "has 2 layers; expected at most 1"),
    ("max_neurons_per_layer", 4, "neurons; expected at most 4 per layer"),
    ("max_neurons", 6, "brings the network to 8 neurons; expected at most 6 in total"),
    ("max_synapses", 20, "synapses (fan-in x neurons); expected at most 20 in total"),
    ("max_dataset_bytes", 64, "holds 120 bytes (30 values of 4 bytes, dtype float32); expected at most 64 bytes"),
    ("max_total_bytes", 100, "expected at most 100 bytes in total"),
])
def test_limits_are_overridable_and_enforced(limit, value, needle):
    path = base_files()["ilif_dense"].path               # 6 -> 5 -> 3: 8 neurons, 45 synapses
    validate_file(path)
    with pytest.raises(NetworkFileError) as info:
        validate_file(path, limits=FileLimits().scaled(**{limit: value}))
    assert needle in str(info.value) and str(path) in str(info.value)
    with hv.use_limits(FileLimits().scaled(**{limit: value})):   # what the CLI flags do for ILIFNetwork
        with pytest.raises(NetworkFileError):
            validate_file(path)
    validate_file(path, limits=FileLimits().scaled(**{limit: 10 ** 9}))


def test_default_limits_come_from_the_loihi2_figures():
    from ilif_lava import loihi2
    lim = hv.DEFAULT_LIMITS
    assert lim.max_layers == loihi2.CHIP_CORES and lim.max_neurons == loihi2.CHIP_NEURONS
    assert lim.max_synapses == loihi2.CHIP_SYNAPSES
    assert lim.max_dataset_bytes == loihi2.CHIP_CORES * loihi2.SRAM_BYTES_PER_CORE * 8 == 128 << 20


def test_conv_padding_bomb_is_refused(tmp_path):
    """A conv whose padding makes its output 16.7 M neurons (consistent shape) is refused from the limits."""
    def bomb(h, d):
        g = h["layer/1"]                                  # ILIF conv after the input layer (2x6x6 -> 4x6x6)
        pad = 2044
        _replace(h, "layer/1/padding", data=np.array([pad, pad]))
        out = 6 + 2 * pad - 2
        _replace(h, "layer/1/shape", data=np.array([4, out, out]))
        assert g is not None
    path = _mutant(tmp_path, bomb, base="ilif_conv")
    exc = _validate_bounded(path)
    assert type(exc) is NetworkFileError and "key 'shape'" in str(exc) and "neurons" in str(exc), exc


def test_large_datasets_are_checked_in_slabs(tmp_path, monkeypatch):
    """With slabs of 16 bytes (one weight row of 6 float32 is 24 bytes: every row is its own read), a NaN in the
    last row and an all-zero matrix are still found, and the Loihi 2 check sees every value."""
    from ilif_lava import loihi2, safe_hdf5
    monkeypatch.setattr(safe_hdf5, "STREAM_BYTES", 16)     # the one slab reader of the validator and the Loihi check
    path = base_files()["ilif_dense"].path
    validate_file(path)
    whole = loihi2.check_parameters(path)
    monkeypatch.setattr(safe_hdf5, "STREAM_BYTES", 1 << 30)
    assert [f.to_dict() for f in loihi2.check_parameters(path)] == [f.to_dict() for f in whole]

    def last_nan(h, d):
        w = h["layer/0/weight"][()]
        w[-1, -1] = np.nan
        w[0, 0] = np.inf
        h["layer/0/weight"][()] = w
    with pytest.raises(NetworkFileError, match=r"key 'weight' holds 2 NaN/inf value\(s\)"):
        validate_file(_mutant(tmp_path, last_nan))

    def zero(h, d):
        h["layer/1/weight"][()] = np.zeros_like(h["layer/1/weight"][()])
    (tmp_path / "bad.net").unlink()
    with pytest.raises(NetworkFileError, match="layer 1: key 'weight' is all zero"):
        validate_file(_mutant(tmp_path, zero))
