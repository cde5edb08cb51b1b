"""``dvsgesture`` (2, 128, 128), 11 classes; ``cifar10dvs`` (2, 128, 128), 10 classes; and the tonic reader
every event dataset falls back on (N-MNIST's download, POKER-DVS's archives).

Only through tonic (``DVSGesture`` / ``CIFAR10DVS``): ``data_dir`` (or ``$ILIF_LAVA_DATA``,
``<repo>/../shared/data``, ``cache_dir``) is a tonic ``save_to`` folder holding ``DVSGesture/`` or
``CIFAR10DVS/``; ``download=True`` lets tonic fetch into ``data_dir`` or ``cache_dir``. CIFAR10-DVS has no
official split: per class, files sorted by path, the first 90 % (floor) are train and the rest test.
Reading CIFAR10-DVS needs the optional ``aedat`` package. Without ``download`` a ``CIFAR10DVS/`` whose 10
class folders each hold ``.aedat4`` files is read even when tonic's own check (``CIFAR10DVS.zip`` and >= 1000
files) fails, with a warning giving the count (a subset). Both are binned once per (split, T, source files)
into a memory-mapped disk cache (:mod:`training.dvs_cache`, under ``cache_dir``): later loads and every
epoch read the cache, never the raw events. ``--download`` without network is one ``OSError`` line.

Sample order of tonic-backed sets: per class, tonic's files sorted by path (POKER-DVS: tonic's sorted file
names), then classes interleaved round-robin (rank within class, then label), so ``limit=k`` keeps a
class-balanced, deterministic prefix. ``limit`` always keeps the first ``limit`` samples of the split.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from training.data_common import (INFO, DatasetFileError, MissingPackageError, Request, SpikeDataset,
                                  check_memory, default_dirs, not_found)
from training.data_events import bin_all, check_events

_DISK_CACHED = ("dvsgesture", "cifar10dvs")     # binned once into training.dvs_cache
_TONIC_CLASS = {"nmnist": "NMNIST", "pokerdvs": "POKERDVS", "dvsgesture": "DVSGesture", "cifar10dvs": "CIFAR10DVS"}


def load(req: Request) -> SpikeDataset:
    """One split of ``dvsgesture`` / ``cifar10dvs``, spikes ``[N, 2, 128, 128, T]``: from the first root holding
    tonic's folder, else from ``data_dir`` (or the cache) where tonic may download with ``req.download``."""
    tonic_name = _TONIC_CLASS[req.name]
    roots = [req.data_dir] if req.data_dir is not None else [*default_dirs(""), req.cache]
    for root in roots:
        if (root / tonic_name).is_dir():
            return load_via_tonic(req, root, [])
    save_to = req.data_dir if req.data_dir is not None else req.cache
    return load_via_tonic(req, save_to, [r / tonic_name for r in roots[:-1]])


def load_via_tonic(req: Request, save_to: Path, looked: list[Path]) -> SpikeDataset:
    """Read ``req.name`` with tonic from ``save_to`` (downloading only if ``req.download``), then bin and pack.

    ``looked``: paths already searched, for the not-found message.
    """
    import tonic.datasets

    name, split, time_bins = req.name, req.split, req.time_bins
    cls = getattr(tonic.datasets, _TONIC_CLASS[name])
    location = save_to / cls.__name__
    if not req.download:
        attrs: dict[str, Any] = {"download": _refuse_download}
        if name == "cifar10dvs":
            attrs["_check_exists"] = _cifar10dvs_exists
        cls = type(cls.__name__, (cls,), attrs)  # same name -> same tonic folder
    try:
        ds = cls(save_to=str(save_to)) if name == "cifar10dvs" else cls(save_to=str(save_to), train=split == "train")
    except _DownloadRefused:
        raise not_found(name, [*looked, location], _how_to_get(name)) from None
    except Exception as exc:  # noqa: BLE001 - with --download: network, checksum, archive errors
        detail = " ".join(str(exc).split())[:200]
        if not req.download:    # tonic's listing tripped on a file name (e.g. 'abc.npy': no label in the name)
            raise DatasetFileError(f"{location}: tonic cannot list the recordings ({type(exc).__name__}: "
                                   f"{detail})") from None
        raise OSError(f"dataset {name!r}: --download failed into {location} ({type(exc).__name__}: {detail}); "
                      f"without network copy a tonic {cls.__name__}/ folder there and pass --data-dir "
                      f"{save_to}") from None
    labels = _checked_labels(ds, name, location)
    order = _split_order(name, ds, labels, split)[: req.limit]
    sensor = tuple(cls.sensor_size)

    def build() -> np.ndarray:
        if name == "cifar10dvs":
            _require_aedat(location)
        check_memory(name, split, len(order), INFO[name].shape, time_bins)
        return bin_all((_recording(ds, int(i), name, sensor) for i in order), len(order), sensor, time_bins,
                        f"{name} {split}")

    if name in _DISK_CACHED:
        from training.dvs_cache import cached_packed
        packed, cached_labels, hit = cached_packed(req.cache, name, split, time_bins, INFO[name].shape,
                                                   [ds.data[int(i)] for i in order], labels[order], build)
        out = SpikeDataset.from_packed(packed, time_bins, cached_labels, INFO[name])
        out.cache_hit = hit
        return out
    return SpikeDataset.from_packed(build(), time_bins, labels[order], INFO[name])


def _where(ds: Any, i: int, name: str) -> str:
    """The file of tonic sample ``i`` (or '<name> sample i' when tonic keeps no paths)."""
    data = getattr(ds, "data", None)
    return str(data[i]) if data is not None and i < len(data) and isinstance(data[i], str) else f"{name} sample {i}"


def _checked_labels(ds: Any, name: str, location: Path) -> np.ndarray:
    """tonic's labels as int64 [N], each in ``0 .. classes - 1``; otherwise one line naming the file whose name
    gave the label (DVSGesture's ``<label>.npy``)."""
    k = INFO[name].num_classes
    out = np.empty(len(ds.targets), dtype=np.int64)
    for i, t in enumerate(ds.targets):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < k:
            raise DatasetFileError(f"{_where(ds, i, name)}: label {t!r} (from the file name) is outside 0..{k - 1}")
        out[i] = int(t)
    if not len(out):
        raise DatasetFileError(f"{location}: holds no recordings")
    return out



def _check_gesture_rows(path: Path, sensor: tuple[int, int, int]) -> None:
    """A DVSGesture ``.npy`` as stored (rows x, y, p, t of integers), checked before tonic reads it: tonic casts
    the polarity to bool, so a polarity outside 0..P-1 would silently read as ON."""
    try:
        raw = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DatasetFileError(f"{path}: cannot be read as a dvsgesture recording ({exc})") from None
    if raw.ndim != 2 or raw.shape[1] != 4 or raw.dtype.kind not in "iu":
        raise DatasetFileError(f"{path}: cannot be read as a dvsgesture recording (expected integer rows x, y, p, "
                               f"t; got {raw.dtype} {list(raw.shape)})")
    pol = sensor[2]
    if len(raw) and (int(raw[:, 2].min()) < 0 or int(raw[:, 2].max()) >= pol):
        raise DatasetFileError(f"{path}: corrupt recording (events outside the {sensor[0]}x{sensor[1]} sensor with "
                               f"{pol} polarities: p in {int(raw[:, 2].min())}..{int(raw[:, 2].max())}, must lie "
                               f"in 0..{pol - 1})")


def _recording(ds: Any, i: int, name: str, sensor: tuple[int, int, int]) -> np.ndarray:
    """The events of tonic sample ``i``, read and range-checked; any failure is one line naming the file."""
    where = _where(ds, i, name)
    if name == "dvsgesture" and Path(where).suffix == ".npy":
        _check_gesture_rows(Path(where), sensor)
    try:
        ev = ds[i][0]
    except Exception as exc:  # noqa: BLE001 - whatever tonic / numpy / aedat trip on in a damaged recording
        raise DatasetFileError(f"{where}: cannot be read as a {name} recording ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:160]})") from None
    check_events(ev, sensor, where)
    return ev


class _DownloadRefused(Exception):
    pass


def _refuse_download(self) -> None:
    raise _DownloadRefused


def _cifar10dvs_exists(self: Any) -> bool:
    """tonic's CIFAR10DVS check (``CIFAR10DVS.zip`` present and >= 1000 ``.aedat4`` files), or else every class
    folder holding at least one ``.aedat4`` file (a subset, or an extracted copy without the archive), with a
    warning naming the count; without ``--download`` only."""
    import tonic.datasets

    if tonic.datasets.CIFAR10DVS._check_exists(self):
        return True
    base = Path(self.location_on_system)
    counts = [len(list((base / cls).glob("*.aedat4"))) for cls in self.classes]
    if not all(counts):
        return False
    warnings.warn(f"dataset 'cifar10dvs': {base} fails tonic's check (CIFAR10DVS.zip and >= 1000 .aedat4 files); "
                  f"using the {sum(counts)} recordings in its 10 class folders (the full CIFAR10-DVS has 10000)",
                  stacklevel=2)
    return True


def _split_order(name: str, ds: Any, labels: np.ndarray, split: str) -> np.ndarray:
    """Deterministic sample order: per class sorted by path (tonic order when no paths), classes round-robin."""
    if ds.data and all(isinstance(d, str) for d in ds.data):
        by_path = np.array(sorted(range(len(labels)), key=lambda i: ds.data[i]), dtype=np.int64)
    else:
        by_path = np.arange(len(labels))
    per_class = [by_path[labels[by_path] == c] for c in np.unique(labels)]
    if name == "cifar10dvs":  # no official split: first 90 % of each class train, the rest test
        cut = [len(idx) * 9 // 10 for idx in per_class]
        per_class = [idx[:k] if split == "train" else idx[k:] for idx, k in zip(per_class, cut)]
    keyed = [(rank, int(labels[i]), int(i)) for idx in per_class for rank, i in enumerate(idx)]
    return np.array([i for _, _, i in sorted(keyed)], dtype=np.int64)


def _require_aedat(location: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("aedat") is None:
        raise MissingPackageError(f"dataset 'cifar10dvs': reading the .aedat4 recordings in {location} needs the "
                                  f"optional 'aedat' package (pip install aedat), which is not installed")


def _how_to_get(name: str) -> str:
    if name == "nmnist":
        return (
            "pass --data-dir DIR pointing at a folder with <id>.bs2 files + train.txt/test.txt (or set ILIF_LAVA_DATA "
            "to the folder holding nmnist_small/), or pass --download to let tonic fetch the full N-MNIST"
        )
    return (
        "pass --download to let tonic fetch it, or --data-dir DIR pointing at a tonic save_to folder holding "
        f"{_TONIC_CLASS[name]}/"
    )
