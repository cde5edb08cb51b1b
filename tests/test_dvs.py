"""DVSGesture through tonic (training/datasets.py + training/dvs_cache.py) on small recordings written in tonic's
on-disk layout: ``DVSGesture/ibmGestureTrain/user<k>_<lighting>/<label>.npy`` (int64 rows x, y, p, t [ms]), the
archive name present beside it (tonic only checks that it exists); and CIFAR10-DVS on real AEDAT 4 files written
here (:func:`write_aedat4`) in tonic's ``CIFAR10DVS/<class>/cifar10_<class>_<k>.aedat4`` layout."""
from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training import distributed
from training.datasets import load_split
from training.dvs_cache import entry_paths

USERS = 10          # tonic wants at least 100 .npy files per split; 10 users x 11 gestures
T = 4


def write_dvsgesture(root: Path, seed: int = 0) -> dict:
    """Write train and test folders; returns {split: {path: events [n, 4]}}."""
    rng = np.random.default_rng(seed)
    out = {}
    base = root / "DVSGesture"
    for split, folder, first_user in (("train", "ibmGestureTrain", 1), ("test", "ibmGestureTest", 24)):
        (base / f"{folder}.tar.gz").parent.mkdir(parents=True, exist_ok=True)
        (base / f"{folder}.tar.gz").write_bytes(b"")
        out[split] = {}
        for u in range(first_user, first_user + USERS):
            d = base / folder / f"user{u:02d}_fluorescent"
            d.mkdir(parents=True)
            for label in range(11):
                n = 40
                ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                               np.sort(rng.integers(0, 400, n))], axis=1).astype(np.int64)
                ev[0, 3], ev[-1, 3] = 0, 400           # span 400 ms = 400000 us
                np.save(d / f"{label}.npy", ev)
                out[split][str(d / f"{label}.npy")] = ev
    return out


def expected(ev: np.ndarray, us: bool = False) -> np.ndarray:
    """tonic's ToFrame binning, written out: bins of (t_last - t_first) // T us from t_first; counts clipped.

    ``ev`` rows are x, y, p, t (t in ms, or in us when ``us``)."""
    t = ev[:, 3] if us else ev[:, 3] * 1000
    width = (t.max() - t.min()) // T
    b = (t - t.min()) // width
    keep = b < T
    frame = np.zeros((2, 128, 128, T), dtype=np.float32)
    frame[ev[keep, 2], ev[keep, 1], ev[keep, 0], b[keep]] = 1
    return frame


@pytest.fixture(scope="module")
def gesture(tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("dvs")
    return root, write_dvsgesture(root)


def test_offline_split_values_and_cache_hit(tmp_path):
    root = tmp_path / "data"                      # its own copy: the recordings are corrupted below
    written = write_dvsgesture(root)
    cache = tmp_path / "cache"
    first = load_split("dvsgesture", "train", time_bins=T, data_dir=root, cache_dir=cache, limit=22)
    assert not first.cache_hit and len(first) == 22
    x, y = first.tensors()
    assert x.shape == (22, 2, 128, 128, T) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(torch.unique(x).tolist()) <= {0.0, 1.0}
    assert sorted(y.tolist()) == sorted(list(range(11)) * 2)          # class-balanced prefix
    # the first sample, decoded independently from the file tonic lists first for its class
    label = int(y[0])
    path = sorted(p for p in written["train"] if p.endswith(f"/{label}.npy"))[0]
    np.testing.assert_array_equal(x[0].numpy(), expected(written["train"][path]))
    # second load: every raw recording corrupted in place (same size and mtime): only the cache can answer
    for p in written["train"]:
        st = os.stat(p)
        with open(p, "r+b") as fh:
            fh.seek(st.st_size - 8)
            fh.write(b"\xff" * 8)
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = load_split("dvsgesture", "train", time_bins=T, data_dir=root, cache_dir=cache, limit=22)
    assert again.cache_hit
    assert torch.equal(again.tensors()[0], x) and torch.equal(again.labels, y)
    files = [p for p in (cache / "binned").iterdir() if p.name.startswith("dvsgesture-train")]
    assert sorted(".".join(p.name.split(".")[-2:]) for p in files) == ["labels.npy", "meta.json", "spikes.npy"]


def test_loader_with_workers_gives_the_direct_batches(gesture, tmp_path):
    root, _ = gesture
    ds = load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=tmp_path, limit=12)
    assert len(ds) == 12 and int(ds.labels.max()) < 11
    batches = distributed.train_batches(len(ds), 4, distributed.DistEnv(), seed=1, epoch=0)
    got = list(distributed.loader(ds, batches, workers=2, pin_memory=False))
    for idx, (xb, yb) in zip(batches, got):
        xd, yd = ds.tensors(idx)
        assert torch.equal(xb, xd) and torch.equal(yb, yd)


def test_cache_key_follows_the_files(gesture, tmp_path):
    root, written = gesture
    a = load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=tmp_path, limit=11)
    b = load_split("dvsgesture", "test", time_bins=T + 1, data_dir=root, cache_dir=tmp_path, limit=11)
    assert not a.cache_hit and not b.cache_hit     # another T is another entry
    assert len(list((tmp_path / "binned").glob("*.spikes.npy"))) == 2
    assert entry_paths(tmp_path, "dvsgesture", "test", T, "k")[0].name == f"dvsgesture-test-T{T}-k.spikes.npy"


def test_download_without_network_is_one_line(tmp_path, monkeypatch):
    for var in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(OSError) as err:
        load_split("dvsgesture", "test", time_bins=T, data_dir=tmp_path, cache_dir=tmp_path / "c", download=True)
    msg = str(err.value)
    assert "\n" not in msg and "--download failed" in msg and str(tmp_path / "DVSGesture") in msg
    assert "--data-dir" in msg


def test_cifar10dvs_folder_without_the_aedat_reader_is_one_line(tmp_path, monkeypatch):
    """tonic's CIFAR10DVS layout (<class>/<k>.aedat4, >= 1000 files, the archive name present) with the 'aedat'
    package made unimportable (as if not installed): reading stops with one line naming it (nothing cached)."""
    from training.datasets import MissingPackageError
    monkeypatch.setitem(sys.modules, "aedat", None)       # import aedat -> ImportError, find_spec -> None
    base = tmp_path / "CIFAR10DVS"
    base.mkdir()
    (base / "CIFAR10DVS.zip").write_bytes(b"")
    for cls in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"):
        (base / cls).mkdir()
        for k in range(100):
            (base / cls / f"cifar10_{cls}_{k}.aedat4").write_bytes(b"")
    with pytest.raises(MissingPackageError) as err:
        load_split("cifar10dvs", "test", time_bins=T, data_dir=tmp_path, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert "\n" not in msg and "aedat" in msg and str(base) in msg
    assert not (tmp_path / "cache" / "binned").exists()


def test_cli_trains_with_loader_workers_from_the_cache(gesture, tmp_path, capsys, monkeypatch):
    from tests.helpers import run_cli
    root, _ = gesture
    run = tmp_path / "run"
    monkeypatch.setenv("ILIF_LAVA_CACHE", str(tmp_path / "cache"))
    code, out, err = run_cli(["train", "--dataset", "dvsgesture", "--data-dir", str(root), "--arch", "mlp",
                              "--hidden", "16", "-T", str(T), "--epochs", "1", "--qat-epochs", "1",
                              "--batch-size", "11", "--limit-train", "22", "--limit-test", "11", "--workers", "2",
                              "--run-dir", str(run), "--device", "cpu"], capsys)
    assert code == 0, err
    log = (run / "train" / "log.jsonl").read_text().splitlines()
    assert len(log) == 2 and (run / "train" / "model.pt").is_file()
    assert len(list((tmp_path / "cache" / "binned").glob("dvsgesture-*.spikes.npy"))) == 2   # train + test


# ------------------------------------------------------------------------------------------- CIFAR10-DVS (AEDAT 4)
# The layout the 'aedat' package's Decoder reads (github.com/neuromorphicsystems/aedat, src/aedat_core.rs and
# flatbuffers/*.fbs): the magic line, a u32 length + FlatBuffers IOHeader ("IOHE": compression, file data position,
# the XML description whose dv/outInfo/<id> node names each stream's typeIdentifier and, for events, info/sizeX,
# sizeY), then packets: u32 stream id, u32 length, a size-prefixed FlatBuffers EventPacket ("EVTS") whose
# elements are 16-byte structs (t int64 [us], x int16, y int16, on bool, 3 padding bytes). Uncompressed here.

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_COUNTS = (3, 4, 5, 3, 4, 5, 3, 4, 5, 11)      # files per class: floor(0.9 n) train = 2,3,4,...,9
AEDAT_MAGIC = b"#!AER-DAT4.0\r\n"
AEDAT_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])
T0_US = 1_600_000_000_000_000                       # DV timestamps are absolute (unix time in us)


def _ioheader(description: bytes) -> bytes:
    """FlatBuffers Ioheader (ioheader.fbs): compression None (0), file_data_position -1, description."""
    vtable = struct.pack("<5H", 10, 20, 4, 8, 16)                   # sizes, then each field's offset in the table
    head = struct.pack("<I", 24) + b"IOHE" + vtable + b"\0" * 6     # root offset -> table at 24 (8-aligned)
    table = struct.pack("<iiqI", 24 - 8, 0, -1, 4)                  # vtable at 8; string right after the table
    buf = head + table + struct.pack("<I", len(description)) + description + b"\0"
    return buf + b"\0" * (-len(buf) % 8)


def _event_packet(x: np.ndarray, y: np.ndarray, p: np.ndarray, t: np.ndarray) -> bytes:
    """Size-prefixed FlatBuffers EventPacket (events.fbs) holding the given events."""
    elements = np.zeros(len(t), dtype=AEDAT_EVENT)
    elements["t"], elements["x"], elements["y"], elements["on"] = t, x, y, p
    body = (struct.pack("<I", 16) + b"EVTS" + struct.pack("<3H", 6, 8, 4) + b"\0\0"   # root -> table at 20
            + struct.pack("<iI", 20 - 12, 4)                       # vtable at 12; vector right after the table
            + struct.pack("<I", len(elements)) + elements.tobytes())  # elements start 8-aligned (at 32)
    return struct.pack("<I", len(body)) + body


def write_aedat4(path: Path, ev: np.ndarray, packets: int = 2, width: int = 128, height: int = 128) -> None:
    """One AEDAT 4 file with a single event stream (id 0); ``ev`` rows are x, y, p, t [us], split over packets."""
    description = ('<dv version="2.0"><node name="outInfo" path="/mainModule/output/outInfo/">'
                   '<node name="0" path="/mainModule/output/outInfo/0/">'
                   '<attr key="compression" type="string">NONE</attr>'
                   '<attr key="originalOutputName" type="string">events</attr>'
                   '<attr key="typeIdentifier" type="string">EVTS</attr>'
                   '<node name="info" path="/mainModule/output/outInfo/0/info/">'
                   f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
                   '</node></node></node></dv>').encode()
    header = _ioheader(description)
    with open(path, "wb") as fh:
        fh.write(AEDAT_MAGIC + struct.pack("<I", len(header)) + header)
        for part in np.array_split(ev, packets):
            packet = _event_packet(part[:, 0], part[:, 1], part[:, 2], part[:, 3])
            fh.write(struct.pack("<II", 0, len(packet)) + packet)


def write_cifar10dvs(root: Path, seed: int = 0) -> dict:
    """tonic's extracted CIFAR10DVS/ folder (no archive, CIFAR_COUNTS files per class); {path: (label, events)}."""
    rng = np.random.default_rng(seed)
    out = {}
    for label, cls in enumerate(CIFAR_CLASSES):
        folder = root / "CIFAR10DVS" / cls
        folder.mkdir(parents=True)
        for k in range(CIFAR_COUNTS[label]):
            n = 60
            ev = np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                           T0_US + np.sort(rng.integers(0, 200_000, n))], axis=1).astype(np.int64)
            ev[0, 3], ev[-1, 3] = T0_US, T0_US + 200_000
            path = folder / f"cifar10_{cls}_{k}.aedat4"
            write_aedat4(path, ev)
            out[str(path)] = (label, ev)
    return out


def expected_split(written: dict, split: str) -> list:
    """The split rule written out: per class by path, first floor(90 %) train; classes round-robin."""
    keyed = []
    for label in range(len(CIFAR_CLASSES)):
        paths = sorted(p for p, (lab, _) in written.items() if lab == label)
        cut = len(paths) * 9 // 10
        keyed += [(rank, label, p) for rank, p in enumerate(paths[:cut] if split == "train" else paths[cut:])]
    return [p for _, _, p in sorted(keyed)]


def test_aedat4_writer_reads_back_through_tonic(tmp_path):
    """The file written here decodes (aedat.Decoder via tonic.io.read_aedat4) to exactly the events written."""
    from tonic.io import read_aedat4
    ev = np.array([[3, 5, 1, T0_US], [127, 0, 0, T0_US + 7], [0, 127, 1, T0_US + 9]], dtype=np.int64)
    write_aedat4(tmp_path / "a.aedat4", ev)
    got = read_aedat4(str(tmp_path / "a.aedat4"))
    assert len(got) == 3
    for col, name in enumerate(("x", "y")):
        np.testing.assert_array_equal(got[name].astype(np.int64), ev[:, col])
    np.testing.assert_array_equal(got[got.dtype.names[3]].astype(np.int64), ev[:, 2])    # polarity ("on")
    np.testing.assert_array_equal(got["t"].astype(np.int64), ev[:, 3])


def test_cifar10dvs_from_aedat4_files_split_values_and_cache_hit(tmp_path):
    from tonic.io import read_aedat4
    root, cache = tmp_path / "data", tmp_path / "cache"
    written = write_cifar10dvs(root)
    loaded = {}
    for split in ("train", "test"):
        with pytest.warns(UserWarning, match="CIFAR10-DVS has 10000"):
            ds = load_split("cifar10dvs", split, time_bins=T, data_dir=root, cache_dir=cache)
        paths = expected_split(written, split)
        assert not ds.cache_hit and len(ds) == len(paths)
        x, y = ds.tensors()
        assert x.shape == (len(paths), 2, 128, 128, T) and x.dtype == torch.float32 and y.dtype == torch.int64
        assert int(y.min()) >= 0 and int(y.max()) < 10
        assert y.tolist() == [written[p][0] for p in paths]                  # labels = class folders, in order
        assert [CIFAR_CLASSES[int(lab)] for lab in y] == [Path(p).parent.name for p in paths]
        for i, p in enumerate(paths):                                         # every sample, binned independently
            np.testing.assert_array_equal(x[i].numpy(), expected(written[p][1], us=True), err_msg=p)
        loaded[split] = (x, y)
    assert len(loaded["train"][1]) == sum(n * 9 // 10 for n in CIFAR_COUNTS) == 36
    assert len(loaded["test"][1]) == 47 - 36
    # second load: every recording's magic number overwritten (same size and mtime): only the cache can answer
    for p in written:
        st = os.stat(p)
        with open(p, "r+b") as fh:
            fh.write(b"#!NOT-AE")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(Exception, match="magic"):
        read_aedat4(next(iter(written)))
    for split in ("train", "test"):
        with pytest.warns(UserWarning, match="CIFAR10-DVS has 10000"):
            again = load_split("cifar10dvs", split, time_bins=T, data_dir=root, cache_dir=cache)
        assert again.cache_hit
        x, y = again.tensors()
        assert torch.equal(x, loaded[split][0]) and torch.equal(y, loaded[split][1])


def test_cifar10dvs_folder_missing_a_class_is_not_found(tmp_path):
    """The small-folder rule (training/datasets.py) needs every class folder: without 'truck' it is not found."""
    from training.datasets import DatasetNotFoundError
    written = write_cifar10dvs(tmp_path)
    for p in [p for p in written if Path(p).parent.name == "truck"]:
        os.unlink(p)
    with pytest.raises(DatasetNotFoundError, match="CIFAR10DVS"):
        load_split("cifar10dvs", "train", time_bins=T, data_dir=tmp_path, cache_dir=tmp_path / "cache")
