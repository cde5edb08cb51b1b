"""``digits`` (1, 8, 8), 10 classes.

scikit-learn's bundled ``load_digits()`` (1797 images, intensities 0..16; no download).
Deterministic rate code: pixel intensity ``p`` has rate ``r = p / 16`` spikes per step and spikes at step
``t`` (``t = 0..T-1``) iff ``floor((t + 1) * r) > floor(t * r)``. Spikes are evenly spaced, the first at
``t = ceil(1 / r) - 1``; ``p = 16`` spikes every step, ``p = 0`` never; a pixel emits ``floor(T * p / 16)``
spikes (so with ``T = 16`` the spike count equals the intensity). Split: ``train_test_split(test_size=0.2,
random_state=0, stratify=labels)`` -> 1437 train / 360 test, samples in the order that call returns.

Start-up: importing scikit-learn takes about 0.9 s, a quarter of a short ``ilif-lava train``. The table is read
straight from scikit-learn's installed ``datasets/data/digits.csv.gz`` (the file ``load_digits`` reads), and the
split, computed with scikit-learn once, is kept in the cache folder (``load_split(cache_dir=...)``, else
``$ILIF_LAVA_CACHE``, default ``~/.cache/ilif-lava``) under a key of the table's SHA-256 and scikit-learn's
version; later runs read it back (checked: two index arrays that together are each sample exactly once) and
import no scikit-learn.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Tuple

import numpy as np

from ilif_lava.atomic import atomic_path
from ilif_lava.safe_read import read_regular
from training.data_common import INFO, DatasetNotFoundError, Request, SpikeDataset, check_memory

_DIGITS_MAX = 16  # sklearn digits intensities are integers 0..16


def rate_code(intensity: np.ndarray, time_bins: int, max_value: int = _DIGITS_MAX) -> np.ndarray:
    """Deterministic rate code: integer ``intensity [...]`` in 0..max_value -> uint8 spikes ``[..., T]``."""
    p = np.asarray(intensity, dtype=np.int64)[..., None]
    t = np.arange(time_bins, dtype=np.int64)
    return (((t + 1) * p) // max_value > (t * p) // max_value).astype(np.uint8)


def load(req: Request) -> SpikeDataset:
    """One split of ``digits`` as rate-coded spikes ``[N, 1, 8, 8, T]`` (see the module docstring)."""
    raw = read_regular(table_file(), _TABLE_BYTES_MAX, ValueError, "a digits table")
    images, labels = parse_table(raw)
    train_idx, test_idx = split(labels, raw, req.cache)
    idx = (train_idx if req.split == "train" else test_idx)[: req.limit]
    check_memory(req.name, req.split, len(idx), INFO[req.name].shape, req.time_bins)
    spikes = rate_code(images[idx][:, None], req.time_bins)  # [N, 1, 8, 8, T]
    return SpikeDataset(spikes, labels[idx], INFO[req.name])


_TABLE_BYTES_MAX = 1 << 20   # the bundled table is about 57 KB compressed
_SPLIT_BYTES_MAX = 1 << 20   # a cached split: two int64 index arrays of 1797 samples in all


def table_file() -> Path:
    """scikit-learn's bundled digits table, found without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    path = Path(roots[0]) / "datasets" / "data" / "digits.csv.gz" if roots else None
    if path is None or not path.exists():
        raise DatasetNotFoundError("dataset 'digits' needs scikit-learn's bundled table datasets/data/digits.csv.gz "
                                   f"({path or 'scikit-learn is not installed'}); install scikit-learn "
                                   "(requirements.txt)")
    return path


def parse_table(raw: bytes) -> Tuple[np.ndarray, np.ndarray]:
    """The gzip-compressed CSV table (one row per image: 64 intensities, then the label) -> images int64 [N, 8, 8]
    in 0..16 and labels int64 [N] in 0..9, the values ``load_digits()`` gives."""
    text = gzip.decompress(raw)
    if len(text) > 16 * _TABLE_BYTES_MAX:
        raise ValueError("digits table: more than 16 MiB of text")
    table = np.loadtxt(text.decode("ascii").splitlines(), delimiter=",", ndmin=2)
    if table.shape[1] != 65 or not np.all(np.isfinite(table)):
        raise ValueError(f"digits table: {table.shape[1]} columns (expected 64 pixels and a label) or values not "
                         "finite")
    images = np.rint(table[:, :64]).astype(np.int64).reshape(-1, 8, 8)
    labels = table[:, 64].astype(np.int64)
    if images.min(initial=0) < 0 or images.max(initial=0) > _DIGITS_MAX or labels.min(initial=0) < 0 \
            or labels.max(initial=0) > 9:
        raise ValueError(f"digits table: intensities outside 0..{_DIGITS_MAX} or labels outside 0..9")
    return images, labels


def split(labels: np.ndarray, raw: bytes, cache: Path) -> Tuple[np.ndarray, np.ndarray]:
    """(train, test) sample indices: ``train_test_split(test_size=0.2, random_state=0, stratify=labels)``, from the
    cache folder ``cache`` (``<cache>/digits/split-<key>.npz``) when a valid entry for this table and scikit-learn's
    version is there, else computed and cached."""
    try:
        version = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        version = "unknown"
    key = hashlib.sha256(raw + b"\0" + version.encode()).hexdigest()[:16]
    path = Path(cache) / "digits" / f"split-{key}.npz"
    cached = _read_split(path, len(labels))
    if cached is not None:
        return cached
    from sklearn.model_selection import train_test_split
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    train, test = np.asarray(train, dtype=np.int64), np.asarray(test, dtype=np.int64)
    try:   # a read-only or full cache folder only costs the next run the scikit-learn import
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, train=train, test=test)
    except OSError:
        pass
    return train, test


def _read_split(path: Path, n: int):
    """A cached (train, test) pair, or None when absent, a link, too large, unreadable or not a split of ``n``
    samples. The file is read once (bounded, regular files only); each zip member's unpacked size is bounded before
    numpy reads it."""
    try:
        if path.is_symlink() or not path.exists():
            return None
        data = read_regular(path, _SPLIT_BYTES_MAX, ValueError, "a cached digits split")
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            if any(info.file_size > _SPLIT_BYTES_MAX for info in zf.infolist()):
                return None
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if sorted(npz.files) != ["test", "train"]:
                return None
            train, test = npz["train"], npz["test"]
    except (OSError, ValueError, EOFError, KeyError, MemoryError, zipfile.BadZipFile):
        return None
    ok = (train.ndim == test.ndim == 1 and train.dtype == test.dtype == np.int64 and len(train) + len(test) == n
          and np.array_equal(np.sort(np.concatenate([train, test])), np.arange(n)))
    return (train, test) if ok else None
