"""Disk cache of binned event datasets: each sample is binned once, later loads (and every epoch) read the cache.

An entry is three files under ``<cache>/binned/``, stem ``<name>-<split>-T<T>-<key>``:

* ``.spikes.npy``: uint8 ``[N, P, H, W, ceil(T / 8)]`` (``np.packbits`` along time), served memory-mapped;
* ``.labels.npy``: int64 ``[N]``;
* ``.meta.json``: what the entry was built from and what it holds (:func:`describe` + both files' SHA-256).

``key`` is a SHA-256 prefix over the description (binning version, dataset, split, ``T``, resolution, every
source file's path, size and modification time in ns, the labels): an edited, added or removed recording gives a
new entry. Every file is written atomically (:mod:`ilif_lava.atomic`: exclusive random temporary names, renamed;
spikes, labels, then the meta file last, so an entry without its meta is incomplete and never read).

An entry is served only when it verifies (:func:`load_entry`): all three files are regular files opened without
following a symbolic link, the meta equals the description of what is asked, the arrays have the described
dtype and shape, the labels are the expected ones and both files' contents hash to the recorded SHA-256. Anything
else (a planted link, a FIFO, another T, another resolution, swapped labels, another shape, a flipped byte) is a
miss: the entry is rebuilt from the recordings.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ilif_lava import atomic
from ilif_lava.errors import IlifLavaError

BINNING_VERSION = 2     # bump when events_to_spikes or the entry layout changes, so old entries are not reused
MAX_META_BYTES = 64 << 20


class CacheSourceError(IlifLavaError, ValueError):
    """A source recording that cannot be used (not a regular file); one line naming it."""


def describe(name: str, split: str, time_bins: int, resolution: Sequence[int], sources: Sequence[str],
             labels: np.ndarray) -> Dict[str, Any]:
    """What an entry must hold: version, dataset, split, ``T``, ``resolution`` (P, H, W), packed ``shape``,
    every source's [path, size, mtime_ns] and the labels. A source that is not a regular file (a FIFO, a device)
    raises :class:`CacheSourceError` naming it, before anything opens it."""
    items = []
    for src in sources:
        st = os.stat(src)
        if not stat.S_ISREG(st.st_mode):
            from ilif_lava.safe_read import file_kind
            raise CacheSourceError(f"{src}: recording is {file_kind(st.st_mode)}, expected a regular file")
        items.append([str(src), int(st.st_size), int(st.st_mtime_ns)])
    p, h, w = (int(v) for v in resolution)
    labels = np.asarray(labels, dtype=np.int64)
    return {"version": BINNING_VERSION, "name": name, "split": split, "time_bins": int(time_bins),
            "resolution": [p, h, w], "shape": [len(items), p, h, w, (int(time_bins) + 7) // 8],
            "sources": items, "labels": labels.tolist()}


def cache_key(desc: Dict[str, Any]) -> str:
    """SHA-256 prefix (16 hex digits) of a :func:`describe` dict."""
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def entry_paths(cache: Path, name: str, split: str, time_bins: int, key: str) -> Tuple[Path, Path, Path]:
    """(spikes, labels, meta) file paths of one cache entry."""
    stem = Path(cache) / "binned" / f"{name}-{split}-T{time_bins}-{key}"
    return tuple(stem.with_name(stem.name + s) for s in (".spikes.npy", ".labels.npy", ".meta.json"))  # type: ignore


def _open_nofollow(path: Path) -> Optional[Any]:
    """A binary file object of ``path`` if it is a regular file (not a symbolic link), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _sha256(a: np.ndarray) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(a)).cast("B")).hexdigest()


def _map_npy(path: Path, dtype: np.dtype, shape: Tuple[int, ...]) -> Optional[np.ndarray]:
    """``path`` (a ``.npy`` of exactly ``dtype`` / ``shape``, C order, nothing after the data) memory-mapped
    read-only from the descriptor that was checked; None for anything else."""
    fh = _open_nofollow(path)
    if fh is None:
        return None
    with fh:
        try:
            version = np.lib.format.read_magic(fh)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            got_shape, fortran, got_dtype = reader(fh)
        except (ValueError, OSError, SyntaxError, TypeError):
            return None
        offset = fh.tell()
        size = os.fstat(fh.fileno()).st_size
        if fortran or got_dtype != dtype or tuple(got_shape) != tuple(shape):
            return None
        if size - offset != int(np.prod(shape)) * dtype.itemsize:
            return None
        if int(np.prod(shape)) == 0:
            return np.zeros(shape, dtype)
        return np.memmap(fh, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))


def load_entry(paths: Tuple[Path, Path, Path], desc: Dict[str, Any]) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The memory-mapped (packed spikes, labels) of an entry if it verifies against ``desc`` (module docstring),
    else None (absent, incomplete, a link, not a regular file, other content: the caller rebuilds)."""
    spikes_path, labels_path, meta_path = paths
    fh = _open_nofollow(meta_path)
    if fh is None:
        return None
    with fh:
        raw = fh.read(MAX_META_BYTES + 1)
    try:
        meta = json.loads(raw.decode("utf-8")) if len(raw) <= MAX_META_BYTES else None
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(meta, dict) or {k: meta.get(k) for k in desc} != desc:
        return None
    packed = _map_npy(spikes_path, np.dtype(np.uint8), tuple(desc["shape"]))
    labels = _map_npy(labels_path, np.dtype(np.int64), (desc["shape"][0],))
    if packed is None or labels is None:
        return None
    labels = np.array(labels)
    if labels.tolist() != desc["labels"]:
        return None
    if _sha256(packed) != meta.get("spikes_sha256") or _sha256(labels) != meta.get("labels_sha256"):
        return None
    return packed, labels


def cached_packed(cache: Path, name: str, split: str, time_bins: int, resolution: Sequence[int],
                  sources: Sequence[str], labels: np.ndarray,
                  build: Callable[[], np.ndarray]) -> Tuple[np.ndarray, np.ndarray, bool]:
    """(packed spikes, labels, hit): the verified cache entry for ``sources`` if present, else ``build()`` saved.

    ``resolution``: (P, H, W) of one frame; ``build`` returns the packed spikes ``[len(sources), P, H, W,
    ceil(T / 8)]`` (it reads the raw events); it is not called on a hit.
    """
    labels = np.asarray(labels, dtype=np.int64)
    desc = describe(name, split, time_bins, resolution, sources, labels)
    paths = entry_paths(cache, name, split, time_bins, cache_key(desc))
    found = load_entry(paths, desc)
    if found is not None:
        return found[0], found[1], True
    packed = np.ascontiguousarray(build(), dtype=np.uint8)
    if list(packed.shape) != desc["shape"]:
        raise ValueError(f"{name} {split}: binned spikes have shape {list(packed.shape)}, expected {desc['shape']}")
    try:
        paths[0].parent.mkdir(parents=True, exist_ok=True)
        atomic.save_npy(paths[0], packed)
        atomic.save_npy(paths[1], labels)
        atomic.write_json(paths[2], {**desc, "spikes_sha256": _sha256(packed), "labels_sha256": _sha256(labels)},
                          separators=(",", ":"))
    except OSError:
        return packed, labels, False     # the cache folder cannot be written (e.g. a full disk): use memory
    found = load_entry(paths, desc)
    if found is None:   # the cache folder cannot be read back: use the array built in memory
        return packed, labels, False
    return found[0], found[1], False
