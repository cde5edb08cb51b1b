"""DVSGesture through tonic (training/datasets.py + training/dvs_cache.py) on small recordings written in tonic's
on-disk layout: ``DVSGesture/ibmGestureTrain/user<k>_<lighting>/<label>.npy`` (int64 rows x, y, p, t [ms]), the
archive name present beside it (tonic only checks that it exists)."""
from __future__ import annotations

import os
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


def expected(ev: np.ndarray) -> np.ndarray:
    """tonic's ToFrame binning, written out: bins of (t_last - t_first) // T us from t_first; counts clipped."""
    t = ev[:, 3] * 1000
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
    spikes_file, labels_file = [p for p in (cache / "binned").iterdir() if p.name.startswith("dvsgesture-train")]
    assert {spikes_file.name.split(".")[-2], labels_file.name.split(".")[-2]} == {"spikes", "labels"}


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


def test_cifar10dvs_folder_without_the_aedat_reader_is_one_line(tmp_path):
    """tonic's CIFAR10DVS layout (<class>/<k>.aedat4, >= 1000 files, the archive name present); this
    environment has no 'aedat' package, so reading stops with one line naming it (nothing cached)."""
    import importlib.util
    if importlib.util.find_spec("aedat") is not None:
        pytest.skip("the 'aedat' reader is installed; these placeholder files are not real recordings")
    from training.datasets import MissingPackageError
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
