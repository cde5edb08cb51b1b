"""Tests of training/datasets.py against independent decodings of the raw data (digits, N-MNIST, POKER-DVS)."""
from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from training.datasets import (
    DATASETS,
    DatasetInfo,
    DatasetNotFoundError,
    SpikeDataset,
    dataset_info,
    load_split,
    rate_code,
)

T_EVENTS = 20  # time bins used for the event datasets


# ----------------------------------------------------------------------------------------------- independent helpers


def spike_times(p: int, time_bins: int) -> set[int]:
    """Evenly spaced rate code written as explicit spike times: the k-th spike falls at ceil(16 k / p) - 1."""
    n_spikes = time_bins * p // 16
    return {-(-16 * k // p) - 1 for k in range(1, n_spikes + 1)}


def decode_bs2(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """N-MNIST 5-byte records -> (x, y, t [us], p); y == 240 records are timestamp overflows (+2**13 us)."""
    raw = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    x, y, p = raw[:, 0], raw[:, 1], raw[:, 2] >> 7
    t = ((raw[:, 2] & 0x7F) << 16) | (raw[:, 3] << 8) | raw[:, 4]
    overflow = y == 240
    t = t + (1 << 13) * np.cumsum(overflow)
    keep = ~overflow
    return x[keep], y[keep], t[keep], p[keep]


def expected_spikes(x, y, t, p, shape_hw: tuple[int, int], time_bins: int) -> tuple[np.ndarray, int]:
    """Binary [2, H, W, T] with bins of width (t_max - t_min) // T from t_min (tail dropped); also #dropped."""
    assert np.all(np.diff(t) >= 0), "events must be time sorted"
    width = (t.max() - t.min()) // time_bins
    b = (t - t.min()) // width
    kept = b < time_bins
    out = np.zeros((2, *shape_hw, time_bins), dtype=np.float32)
    out[p[kept], y[kept], x[kept], b[kept]] = 1.0
    return out, int((~kept).sum())


def read_listing(path: Path) -> list[tuple[str, int]]:
    lines = [ln.split() for ln in path.read_text().splitlines()[1:] if ln.strip()]
    return [(sid, int(label)) for sid, label in lines]


def check_binary_batch(ds: SpikeDataset, shape: tuple[int, int, int], time_bins: int, num_classes: int) -> None:
    x, y = ds.tensors()
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert tuple(x.shape) == (len(ds), *shape, time_bins)
    assert ((x == 0) | (x == 1)).all() and x.max() == 1  # binary, and not all silent
    assert int(y.min()) >= 0 and int(y.max()) < num_classes
    assert torch.equal(y, ds.labels)


# -------------------------------------------------------------------------------------------------------- arguments


def test_dataset_info_all():
    expected = {
        "digits": ((1, 8, 8), 10),
        "nmnist": ((2, 34, 34), 10),
        "pokerdvs": ((2, 35, 35), 4),
        "dvsgesture": ((2, 128, 128), 11),
        "cifar10dvs": ((2, 128, 128), 10),
        "cifar10": ((3, 32, 32), 10),
        "cifar100": ((3, 32, 32), 100),
    }
    assert set(DATASETS) == set(expected)
    for name, (shape, classes) in expected.items():
        info = dataset_info(name)
        assert isinstance(info, DatasetInfo)
        assert (info.name, tuple(info.shape), info.num_classes) == (name, shape, classes)


def test_unknown_name_lists_datasets():
    for call in (lambda: dataset_info("mnist"), lambda: load_split("mnist", "train", time_bins=4)):
        with pytest.raises(ValueError) as err:
            call()
        assert all(name in str(err.value) for name in DATASETS)


@pytest.mark.parametrize("split", ["val", "Train", "", None])
def test_bad_split(split):
    with pytest.raises(ValueError, match="train.*test"):
        load_split("digits", split, time_bins=4)


@pytest.mark.parametrize("time_bins", [0, -3, 2.5, "8", True, None])
def test_bad_time_bins(time_bins):
    with pytest.raises(ValueError, match="time_bins"):
        load_split("digits", "train", time_bins=time_bins)


def test_bad_limit():
    with pytest.raises(ValueError, match="limit"):
        load_split("digits", "train", time_bins=4, limit=-1)


# ----------------------------------------------------------------------------------------------------------- digits


def test_rate_code_matches_spike_times():
    for time_bins in (1, 7, 16, 23):
        codes = rate_code(np.arange(17), time_bins)
        assert codes.shape == (17, time_bins) and codes.dtype == np.uint8
        for p in range(17):
            assert set(np.flatnonzero(codes[p]).tolist()) == spike_times(p, time_bins), (p, time_bins)
    assert rate_code(np.array([16]), 9).sum() == 9 and rate_code(np.array([0]), 9).sum() == 0


def test_digits_splits_shapes_and_partition():
    from sklearn.datasets import load_digits

    train = load_split("digits", "train", time_bins=16)
    test = load_split("digits", "test", time_bins=16)
    assert (len(train), len(test)) == (1437, 360)
    for ds in (train, test):
        check_binary_batch(ds, (1, 8, 8), 16, 10)
        assert ds.info == dataset_info("digits")
    # With T = 16 the spike count of a pixel equals its intensity: recover the images and check that train + test
    # is exactly the multiset of all 1797 (image, label) pairs, i.e. a disjoint split that uses every sample.
    digits = load_digits()
    every = Counter(img.astype(np.int64).tobytes() + bytes([lab]) for img, lab in zip(digits.images, digits.target))
    seen = Counter()
    for ds in (train, test):
        x, y = ds.tensors()
        counts = x.sum(dim=-1)[:, 0].numpy().astype(np.int64)
        seen.update(img.tobytes() + bytes([int(lab)]) for img, lab in zip(counts, y))
    assert seen == every
    # stratified: each class holds ~20 % of its samples in test
    per_class = np.bincount(digits.target, minlength=10)
    assert np.all(np.abs(np.bincount(test.labels.numpy(), minlength=10) - 0.2 * per_class) <= 1)


def test_digits_deterministic_and_encoding_of_pixels():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    a = load_split("digits", "test", time_bins=11)
    b = load_split("digits", "test", time_bins=11)
    assert torch.equal(a.tensors()[0], b.tensors()[0]) and torch.equal(a.labels, b.labels)

    digits = load_digits()
    _, test_idx = train_test_split(
        np.arange(len(digits.target)), test_size=0.2, random_state=0, stratify=digits.target
    )
    assert a.labels.tolist() == digits.target[test_idx].tolist()
    checked_intensities = set()
    for k in (0, 1, 359):
        x, label = a[k]
        img = digits.images[test_idx[k]]
        assert label == digits.target[test_idx[k]]
        for r, c in [(0, 0), (2, 3), (3, 4), (5, 5), (7, 2)]:
            p = int(img[r, c])
            checked_intensities.add(p)
            assert set(torch.nonzero(x[0, r, c]).flatten().tolist()) == spike_times(p, 11), (k, r, c, p)
    assert len(checked_intensities) >= 4  # the probes cover several different rates, not just zeros


def test_limit_keeps_prefix():
    full = load_split("digits", "train", time_bins=5)
    part = load_split("digits", "train", time_bins=5, limit=17)
    assert len(part) == 17
    assert torch.equal(part.tensors()[0], full.tensors(range(17))[0])
    assert torch.equal(part.labels, full.labels[:17])
    assert len(load_split("digits", "test", time_bins=5, limit=0)) == 0


# --------------------------------------------------------------------------------------------------- SpikeDataset


def test_spike_dataset_roundtrip_and_indexing():
    rng = np.random.default_rng(0)
    info = DatasetInfo("toy", (2, 3, 4), 3)
    spikes = (rng.random((6, 2, 3, 4, 13)) < 0.3).astype(np.uint8)  # T = 13: not a multiple of 8
    labels = np.array([0, 1, 2, 2, 1, 0])
    ds = SpikeDataset(spikes, labels, info)
    x, y = ds.tensors()
    assert torch.equal(x, torch.from_numpy(spikes.astype(np.float32))) and y.tolist() == labels.tolist()
    xs, ys = ds.tensors(torch.tensor([4, 1]))
    assert torch.equal(xs[0], ds[4][0]) and torch.equal(xs[1], ds[1][0]) and ys.tolist() == [1, 1]
    assert ds.nbytes == 6 * 2 * 3 * 4 * 2  # 13 steps packed into 2 bytes
    batch_x, batch_y = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert tuple(batch_x.shape) == (4, 2, 3, 4, 13) and batch_y.tolist() == [0, 1, 2, 2]
    with pytest.raises(ValueError):
        SpikeDataset(spikes * 2, labels, info)
    with pytest.raises(ValueError):
        SpikeDataset(spikes[:, :1], labels, info)


# ---------------------------------------------------------------------------------------------------------- N-MNIST


@pytest.fixture(scope="module")
def nmnist(nmnist_dir: Path) -> dict[str, SpikeDataset]:
    return {s: load_split("nmnist", s, time_bins=T_EVENTS, data_dir=nmnist_dir) for s in ("train", "test")}


def test_nmnist_shapes_counts_labels(nmnist, nmnist_dir):
    assert (len(nmnist["train"]), len(nmnist["test"])) == (1000, 100)
    for split, ds in nmnist.items():
        check_binary_batch(ds, (2, 34, 34), T_EVENTS, 10)
        assert ds.labels.tolist() == [label for _, label in read_listing(nmnist_dir / f"{split}.txt")]
    # activity is spread over time and polarity (not all in one bin or channel)
    x, _ = nmnist["test"].tensors()
    assert (x.sum(dim=(0, 2, 3, 4)) > 0).all() and (x.sum(dim=(0, 1, 2, 3)) > 0).all()


@pytest.mark.parametrize("split,index", [("train", 0), ("train", 537), ("test", 99)])
def test_nmnist_matches_raw_decoding(nmnist, nmnist_dir, split, index):
    sid, label = read_listing(nmnist_dir / f"{split}.txt")[index]
    x, y, t, p = decode_bs2(nmnist_dir / f"{sid}.bs2")
    assert set(np.unique(p)) == {0, 1} and x.max() < 34 and y.max() < 34
    expected, dropped = expected_spikes(x, y, t, p, (34, 34), T_EVENTS)
    got, got_label = nmnist[split][index]
    assert got_label == label
    assert expected.sum() > 200  # a real digit, not an empty frame
    np.testing.assert_array_equal(got.numpy(), expected)  # also pins H = y, W = x and channel = polarity
    assert dropped < 0.01 * len(t)  # tonic's bins drop only the tail after T * ((t_max - t_min) // T)


def test_nmnist_limit_and_default_lookup(nmnist, nmnist_dir, monkeypatch):
    part = load_split("nmnist", "train", time_bins=T_EVENTS, data_dir=nmnist_dir, limit=7)
    assert torch.equal(part.tensors()[0], nmnist["train"].tensors(range(7))[0])
    monkeypatch.setenv("ILIF_LAVA_DATA", str(nmnist_dir.parent))
    found = load_split("nmnist", "test", time_bins=T_EVENTS, limit=3)
    assert torch.equal(found.tensors()[0], nmnist["test"].tensors(range(3))[0])


# -------------------------------------------------------------------------------------------------------- POKER-DVS


def poker_member(archive: Path, name: str) -> np.ndarray:
    with tarfile.open(archive) as tar:
        return np.load(io.BytesIO(tar.extractfile(name).read()))


def test_pokerdvs_splits(pokerdvs_dir, tmp_path):
    class_of = {"cl": 0, "he": 1, "di": 2, "sp": 3}  # tonic's label numbering
    for split, n in (("train", 48), ("test", 20)):
        ds = load_split("pokerdvs", split, time_bins=T_EVENTS, data_dir=pokerdvs_dir, cache_dir=tmp_path)
        assert len(ds) == n
        check_binary_batch(ds, (2, 35, 35), T_EVENTS, 4)
        archive = pokerdvs_dir / f"pips_{split}.tar.gz"
        with tarfile.open(archive) as tar:
            members = [m.name for m in tar.getmembers() if m.name.endswith(".npy")]
        assert Counter(ds.labels.tolist()) == Counter(class_of[m.split("/")[1]] for m in members)
        assert ds.labels[:4].tolist() == [0, 1, 2, 3]  # classes interleaved round-robin
        # sample k < 4 is the lexicographically first file of class k; compare with an independent binning
        for k, cls in enumerate(class_of):
            first = sorted(m for m in members if m.split("/")[1] == cls)[0]
            ev = poker_member(archive, first).astype(np.int64)  # columns t, x, y, p
            expected, _ = expected_spikes(ev[:, 1], ev[:, 2], ev[:, 0], ev[:, 3], (35, 35), T_EVENTS)
            assert expected.sum() > 50
            np.testing.assert_array_equal(ds[k][0].numpy(), expected)
        link = tmp_path / "POKERDVS" / archive.name
        assert link.is_symlink() and link.resolve() == archive.resolve()
    again = load_split("pokerdvs", "test", time_bins=T_EVENTS, data_dir=pokerdvs_dir, cache_dir=tmp_path, limit=5)
    assert torch.equal(again.tensors()[0], ds.tensors(range(5))[0])


# ----------------------------------------------------------------------------------------------------------- errors


def test_missing_nmnist_message(tmp_path):
    where = tmp_path / "no_such_folder"
    with pytest.raises(DatasetNotFoundError) as err:
        load_split("nmnist", "train", time_bins=4, data_dir=where)
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert "nmnist" in msg and str(where) in msg and "--data-dir" in msg and "--download" in msg
    assert "train.txt" in msg


def test_missing_pokerdvs_message(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_split("pokerdvs", "test", time_bins=4, data_dir=tmp_path / "a", cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert str(tmp_path / "a" / "pips_test.tar.gz") in msg and "--data-dir" in msg


@pytest.mark.parametrize("name,folder", [("dvsgesture", "DVSGesture"), ("cifar10dvs", "CIFAR10DVS")])
def test_missing_tonic_only_datasets_do_not_download(tmp_path, name, folder):
    with pytest.raises(DatasetNotFoundError) as err:
        load_split(name, "train", time_bins=4, data_dir=tmp_path, cache_dir=tmp_path / "cache")
    msg = str(err.value)
    assert str(tmp_path / folder) in msg and "--download" in msg
    assert list(tmp_path.iterdir()) == []  # nothing fetched or created


def test_tonic_folder_without_download(tmp_path):
    """A tonic save_to folder in DVSGesture's layout (synthetic events) is read offline, in a stable order."""
    root = tmp_path / "DVSGesture"
    root.mkdir()
    (root / "ibmGestureTrain.tar.gz").write_bytes(b"")  # tonic only checks that the archive exists
    rng = np.random.default_rng(1)
    truth = {}
    for user in (3, 1, 5, 2, 4):  # tonic wants >= 100 .npy files
        for label in range(11):
            for lighting in ("led", "natural", "fluorescent")[: 1 + (label + user) % 3]:
                folder = root / "ibmGestureTrain" / f"user{user:02d}_{lighting}"
                folder.mkdir(parents=True, exist_ok=True)
                n = 50
                xs, ys, ps = rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n)
                ev = np.stack([xs, ys, ps, np.sort(rng.integers(0, 900, n))], axis=1)  # columns x, y, p, t [ms]
                ev[0, 3], ev[-1, 3] = 0, 900
                np.save(folder / f"{label}.npy", ev)
                truth[(str(folder / f"{label}.npy"), label)] = ev
    ds = load_split("dvsgesture", "train", time_bins=9, data_dir=tmp_path, cache_dir=tmp_path / "cache")
    assert len(ds) == len(truth) >= 100
    check_binary_batch(ds, (2, 128, 128), 9, 11)
    assert ds.labels[:11].tolist() == list(range(11))  # round-robin over classes
    # sample 0: class 0, first path in sorted order; bins of (900 ms // 9) = 100 ms
    path, label = min(k for k in truth if k[1] == 0)
    ev = truth[(path, label)]
    expected, _ = expected_spikes(ev[:, 0], ev[:, 1], ev[:, 3] * 1000, ev[:, 2], (128, 128), 9)
    np.testing.assert_array_equal(ds[0][0].numpy(), expected)
