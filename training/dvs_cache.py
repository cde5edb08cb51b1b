"""Disk cache of binned event datasets: each sample is binned once, later loads (and every epoch) read the cache.

A cache entry is ``<cache>/binned/<name>-<split>-T<T>-<key>.spikes.npy`` (uint8 ``[N, P, H, W, ceil(T / 8)]``,
``np.packbits`` along time) plus ``.labels.npy`` (int64 ``[N]``), opened memory-mapped (``mmap_mode='r'``, no
pickle). ``key`` is a SHA-256 prefix over the binning version, dataset, split, ``T`` and every source file's path,
size and modification time (ns), in sample order: an edited, added or removed recording gives a new entry. Both
files are written under temporary names and renamed into place (labels first, spikes last), so a half-written
entry is never read.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

BINNING_VERSION = 1     # bump when events_to_spikes changes, so old entries are not reused


def cache_key(name: str, split: str, time_bins: int, sources: Sequence[str]) -> str:
    """SHA-256 prefix (16 hex digits) identifying one binned split built from ``sources`` (file paths)."""
    items = []
    for src in sources:
        st = os.stat(src)
        items.append([str(src), st.st_size, st.st_mtime_ns])
    blob = json.dumps([BINNING_VERSION, name, split, int(time_bins), items]).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def entry_paths(cache: Path, name: str, split: str, time_bins: int, key: str) -> Tuple[Path, Path]:
    """(spikes, labels) file paths of one cache entry."""
    stem = Path(cache) / "binned" / f"{name}-{split}-T{time_bins}-{key}"
    return stem.with_name(stem.name + ".spikes.npy"), stem.with_name(stem.name + ".labels.npy")


def load_entry(paths: Tuple[Path, Path]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The memory-mapped (packed spikes, labels) of an entry, or None when it is absent or unreadable."""
    spikes_path, labels_path = paths
    if not spikes_path.is_file() or not labels_path.is_file():
        return None
    try:
        packed = np.load(spikes_path, mmap_mode="r", allow_pickle=False)
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if packed.dtype != np.uint8 or packed.ndim != 5 or labels.shape != (packed.shape[0],):
        return None
    return packed, labels


def _save_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cached_packed(cache: Path, name: str, split: str, time_bins: int, sources: Sequence[str], labels: np.ndarray,
                  build: Callable[[], np.ndarray]) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(packed spikes, labels, hit): the cache entry for ``sources`` if present, else ``build()`` saved first.

    ``build`` returns the packed spikes ``[len(sources), P, H, W, ceil(T / 8)]`` (it reads the raw events);
    it is not called on a hit.
    """
    paths = entry_paths(cache, name, split, time_bins, cache_key(name, split, time_bins, sources))
    found = load_entry(paths)
    if found is not None:
        return found[0], found[1], True
    packed = build()
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    _save_atomic(paths[1], np.asarray(labels, dtype=np.int64))
    _save_atomic(paths[0], packed)
    found = load_entry(paths)
    if found is None:   # the cache folder cannot be read back (e.g. a full disk): use the array built in memory
        return packed, np.asarray(labels, dtype=np.int64), False
    return found[0], found[1], False

