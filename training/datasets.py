"""Spike datasets for SLAYER training: every sample is a binary event tensor ``[C, H, W, T]`` (time LAST).

Public API: :data:`DATASETS`, :func:`dataset_info`, :func:`load_split`, :class:`SpikeDataset`,
:class:`DatasetNotFoundError`. One time step is one bin; ``T`` is the ``time_bins`` argument.

Datasets
--------
``digits`` (1, 8, 8), 10 classes
    scikit-learn's bundled ``load_digits()`` (1797 images, intensities 0..16; no download).
    Deterministic rate code: pixel intensity ``p`` has rate ``r = p / 16`` spikes per step and spikes at step
    ``t`` (``t = 0..T-1``) iff ``floor((t + 1) * r) > floor(t * r)``. Spikes are evenly spaced, the first at
    ``t = ceil(1 / r) - 1``; ``p = 16`` spikes every step, ``p = 0`` never; a pixel emits ``floor(T * p / 16)``
    spikes (so with ``T = 16`` the spike count equals the intensity). Split: ``train_test_split(test_size=0.2,
    random_state=0, stratify=labels)`` -> 1437 train / 360 test, samples in the order that call returns.
``nmnist`` (2, 34, 34), 10 classes
    A local folder with ``<id>.bs2`` files (original N-MNIST binary layout, 5 bytes per event) and
    ``train.txt`` / ``test.txt`` (header line ``#sample #class``, then ``<id> <label>`` lines, kept in file
    order). Lookup when ``data_dir`` is None: ``$ILIF_LAVA_DATA/nmnist_small``, then
    ``<repo>/../shared/data/nmnist_small``, then an already downloaded ``<cache_dir>/NMNIST``. With
    ``download=True`` and nothing found, ``tonic.datasets.NMNIST(save_to=cache_dir)`` fetches the full set.
``pokerdvs`` (2, 35, 35), 4 classes (cl, he, di, sp = 0..3)
    The archives ``pips_train.tar.gz`` (48 samples) / ``pips_test.tar.gz`` (20) in ``data_dir`` (default lookup:
    ``$ILIF_LAVA_DATA/pokerdvs``, ``<repo>/../shared/data/pokerdvs``, ``<cache_dir>/POKERDVS``). They are
    symlinked (copied if symlinks fail) into ``<cache_dir>/POKERDVS/``, md5-checked and extracted there, then read
    with ``tonic.datasets.POKERDVS(save_to=cache_dir)``. Nothing is written next to the source archives.
    tonic 1.7.0 has no download for POKER-DVS (it only copies archives from its own package folder), so
    ``download=True`` cannot fetch it.
``dvsgesture`` (2, 128, 128), 11 classes; ``cifar10dvs`` (2, 128, 128), 10 classes
    Only through tonic (``DVSGesture`` / ``CIFAR10DVS``): ``data_dir`` (or ``$ILIF_LAVA_DATA``,
    ``<repo>/../shared/data``, ``cache_dir``) is a tonic ``save_to`` folder holding ``DVSGesture/`` or
    ``CIFAR10DVS/``; ``download=True`` lets tonic fetch into ``data_dir`` or ``cache_dir``. CIFAR10-DVS has no
    official split: per class, files sorted by path, the first 90 % (floor) are train and the rest test.
    Reading CIFAR10-DVS needs the optional ``aedat`` package. Without ``download`` a ``CIFAR10DVS/`` whose 10
    class folders each hold ``.aedat4`` files is read even when tonic's own check (``CIFAR10DVS.zip`` and >= 1000
    files) fails, with a warning giving the count (a subset). Both are binned once per (split, T, source files)
    into a memory-mapped disk cache (:mod:`training.dvs_cache`, under ``cache_dir``): later loads and every
    epoch read the cache, never the raw events. ``--download`` without network is one ``OSError`` line.
``cifar10`` (3, 32, 32), 10 classes; ``cifar100`` (3, 32, 32), 100 classes
    Direct encoding (:mod:`training.cifar`): float32 normalised images repeated over T (not spikes), optional
    ``augment`` (random crop + flip). ``data_dir`` (or ``$ILIF_LAVA_DATA``, ``<repo>/../shared/data``,
    ``cache_dir``) holds torchvision's ``cifar-10-batches-py/`` / ``cifar-100-python/`` (or is that folder);
    ``download=True`` fetches the official archive into ``data_dir`` or ``cache_dir``.

Event binning (event datasets)
------------------------------
``tonic.transforms.ToFrame(sensor_size=(W, H, 2), n_time_bins=T)`` returns counts ``[T, P, H, W]`` with
``H`` indexed by the event ``y`` and ``W`` by the event ``x``; counts are clipped to 1 and moved to
``[P, H, W, T]``, so channel ``c`` holds events with polarity value ``c``. tonic's bins are
``w = (t_last - t_first) // T`` microseconds wide starting at ``t_first``; events at ``t >= t_first + T * w``
(always the last event(s), plus the integer-division remainder) are dropped, and a recording shorter than
``T`` microseconds yields no spikes at all (a warning is issued).

Sample order of tonic-backed sets: per class, tonic's files sorted by path (POKER-DVS: tonic's sorted file
names), then classes interleaved round-robin (rank within class, then label), so ``limit=k`` keeps a
class-balanced, deterministic prefix. ``limit`` always keeps the first ``limit`` samples of the split.

``cache_dir`` defaults to ``$ILIF_LAVA_CACHE`` or ``~/.cache/ilif-lava``.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.dataset_names import DATASETS, IMAGE_DATASETS, SPLITS  # noqa: E402,F401  (light to import)
from ilif_lava.errors import IlifLavaError

REPO_ROOT = Path(__file__).resolve().parents[1]
_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
_DEFAULT_CACHE = Path("~/.cache/ilif-lava")

_DIGITS_MAX = 16  # sklearn digits intensities are integers 0..16
_POKER_ARCHIVES = {  # split -> (archive, md5 (the ones tonic 1.7.0 lists), extracted folder, sample count)
    "train": ("pips_train.tar.gz", "412bcfb96826e4fcb290558e8c150aae", "pips_train", 48),
    "test": ("pips_test.tar.gz", "eef2bf7d0d3defae89a6fa98b07c17af", "pips_test", 20),
}
_DISK_CACHED = ("dvsgesture", "cifar10dvs")     # binned once into training.dvs_cache
_TONIC_CLASS = {"nmnist": "NMNIST", "pokerdvs": "POKERDVS", "dvsgesture": "DVSGesture", "cifar10dvs": "CIFAR10DVS"}


class DatasetNotFoundError(IlifLavaError, FileNotFoundError):
    """A dataset's files are not where we looked; the message lists every path and how to get the data."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: ``shape`` is ``(C, H, W)`` of one sample without the time axis."""

    name: str
    shape: tuple
    num_classes: int


_INFO = {
    "digits": DatasetInfo("digits", (1, 8, 8), 10),
    "nmnist": DatasetInfo("nmnist", (2, 34, 34), 10),
    "pokerdvs": DatasetInfo("pokerdvs", (2, 35, 35), 4),
    "dvsgesture": DatasetInfo("dvsgesture", (2, 128, 128), 11),
    "cifar10dvs": DatasetInfo("cifar10dvs", (2, 128, 128), 10),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10),
    "cifar100": DatasetInfo("cifar100", (3, 32, 32), 100),
}


def dataset_info(name: str) -> DatasetInfo:
    """Shape ``(C, H, W)`` and class count of dataset ``name`` (one of :data:`DATASETS`)."""
    _check_name(name)
    return _INFO[name]


class SpikeDataset(torch.utils.data.Dataset):
    """All samples of one split in memory, bit-packed along time (uint8, 8 steps per byte).

    ``ds[i]`` -> ``(x, label)`` with ``x`` float32 ``[C, H, W, T]`` in {0, 1} and ``label`` an int.
    """

    def __init__(self, spikes: np.ndarray, labels: Sequence[int] | np.ndarray | torch.Tensor, info: DatasetInfo):
        """``spikes``: binary array ``[N, C, H, W, T]`` (any integer/bool/float dtype holding only 0 and 1)."""
        spikes = np.asarray(spikes)
        if spikes.ndim != 5 or tuple(spikes.shape[1:4]) != tuple(info.shape):
            raise ValueError(f"spikes must be [N, {', '.join(map(str, info.shape))}, T], got {list(spikes.shape)}")
        if spikes.size and not np.isin(spikes, (0, 1)).all():
            raise ValueError("spikes must contain only 0 and 1")
        packed = np.packbits(spikes.astype(np.uint8), axis=-1)
        self._init(packed, spikes.shape[-1], labels, info)

    @classmethod
    def from_packed(cls, packed: np.ndarray, time_bins: int, labels: Any, info: DatasetInfo) -> SpikeDataset:
        """Wrap an ``np.packbits(spikes, axis=-1)`` array ``[N, C, H, W, ceil(T / 8)]`` without copying."""
        ds = cls.__new__(cls)
        ds._init(np.asarray(packed, dtype=np.uint8), time_bins, labels, info)
        return ds

    def _init(self, packed: np.ndarray, time_bins: int, labels: Any, info: DatasetInfo) -> None:
        self._packed = packed
        self.time_bins = int(time_bins)
        self.info = info
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
        if len(self.labels) != len(packed):
            raise ValueError(f"{len(packed)} samples but {len(self.labels)} labels")
        if packed.shape[-1] != (self.time_bins + 7) // 8:
            raise ValueError(f"packed time axis {packed.shape[-1]} does not fit time_bins={time_bins}")

    def __len__(self) -> int:
        return len(self._packed)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._unpack(self._packed[index]), int(self.labels[index])

    def tensors(self, indices: Iterable[int] | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack samples: ``x`` float32 ``[N, C, H, W, T]`` in {0, 1} and ``y`` int64 ``[N]`` (all when None)."""
        if indices is None:
            return self._unpack(self._packed), self.labels.clone()
        idx = np.asarray(indices.cpu() if isinstance(indices, torch.Tensor) else list(indices), dtype=np.int64)
        return self._unpack(self._packed[idx]), self.labels[torch.from_numpy(idx)]

    @property
    def nbytes(self) -> int:
        """Memory held by the packed spikes, bytes."""
        return int(self._packed.nbytes)

    def _unpack(self, packed: np.ndarray) -> torch.Tensor:
        bits = np.unpackbits(packed, axis=-1, count=self.time_bins)
        return torch.from_numpy(bits.astype(np.float32))

    def __repr__(self) -> str:
        c, h, w = self.info.shape
        return f"SpikeDataset({self.info.name!r}, n={len(self)}, sample=[{c}, {h}, {w}, {self.time_bins}])"


def load_split(
    name: str,
    split: str,
    *,
    time_bins: int,
    data_dir: str | Path | None = None,
    download: bool = False,
    limit: int | None = None,
    cache_dir: str | Path | None = None,
    augment: bool = False,
) -> Any:
    """Load one split (``"train"`` / ``"test"``) of ``name``: samples ``[C, H, W, time_bins]``, time last.

    Event and digit sets give a :class:`SpikeDataset` (binary spikes); ``cifar10``/``cifar100`` a
    :class:`training.cifar.ImageDataset` (analog, direct encoding; ``augment`` applies to it only). Both have
    ``len``, ``ds[i]``, ``tensors(indices)``, ``labels``, ``info`` and ``time_bins``.
    ``data_dir`` overrides the default lookup (see the module docstring); ``limit`` keeps the first ``limit``
    samples; ``cache_dir`` is where tonic data / POKER-DVS links / binned caches live. Raises
    :class:`DatasetNotFoundError` when the data are absent and ``ValueError`` for bad arguments.
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(time_bins, bool) or not isinstance(time_bins, (int, np.integer)) or time_bins <= 0:
        raise ValueError(f"time_bins must be a positive int, got {time_bins!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    req = _Request(
        name=name,
        split=split,
        time_bins=int(time_bins),
        data_dir=None if data_dir is None else Path(data_dir).expanduser(),
        download=bool(download),
        limit=None if limit is None else int(limit),
        cache=_cache_root(cache_dir),
        augment=bool(augment),
    )
    loaders = {"digits": _load_digits, "nmnist": _load_nmnist, "pokerdvs": _load_pokerdvs, "cifar10": _load_cifar,
               "cifar100": _load_cifar}
    loader = loaders.get(name, _load_tonic_only)
    return loader(req)


@dataclass(frozen=True)
class _Request:
    """Validated arguments of one :func:`load_split` call."""

    name: str
    split: str
    time_bins: int
    data_dir: Path | None
    download: bool
    limit: int | None
    cache: Path
    augment: bool = False


# ----------------------------------------------------------------------------------------------------------- digits


def rate_code(intensity: np.ndarray, time_bins: int, max_value: int = _DIGITS_MAX) -> np.ndarray:
    """Deterministic rate code: integer ``intensity [...]`` in 0..max_value -> uint8 spikes ``[..., T]``."""
    p = np.asarray(intensity, dtype=np.int64)[..., None]
    t = np.arange(time_bins, dtype=np.int64)
    return (((t + 1) * p) // max_value > (t * p) // max_value).astype(np.uint8)


def _load_digits(req: _Request) -> SpikeDataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images).astype(np.int64)
    labels = np.asarray(digits.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    idx = (train_idx if req.split == "train" else test_idx)[: req.limit]
    check_memory(req.name, req.split, len(idx), _INFO[req.name].shape, req.time_bins)
    spikes = rate_code(images[idx][:, None], req.time_bins)  # [N, 1, 8, 8, T]
    return SpikeDataset(spikes, labels[idx], _INFO[req.name])


# --------------------------------------------------------------------------------------------------------- CIFAR


def _load_cifar(req: _Request) -> Any:
    from training import cifar

    roots = [req.data_dir] if req.data_dir is not None else [*_default_dirs(""), req.cache]
    folder = cifar.find_folder(req.name, roots)
    fmt = cifar.FORMATS[req.name]
    if folder is None and req.download:
        folder = cifar.download(req.name, req.data_dir if req.data_dir is not None else req.cache)
    if folder is None:
        where = ", ".join(str(r / fmt.folder) for r in roots)
        raise DatasetNotFoundError(f"dataset {req.name!r} not found: no {fmt.folder}/ with "
                                   f"{' '.join((*fmt.train, *fmt.test))} in {where}; pass --data-dir DIR (the "
                                   f"folder holding {fmt.folder}/) or --download")
    images, labels = cifar.read_split(req.name, folder, req.split, req.limit)
    check_memory(req.name, req.split, len(labels), _INFO[req.name].shape, 1)
    return cifar.ImageDataset(images, labels, _INFO[req.name], req.time_bins, fmt.mean, fmt.std,
                              augment=req.augment and req.split == "train")


# ------------------------------------------------------------------------------------------------- event binning


def events_to_spikes(events: np.ndarray, sensor_size: tuple[int, int, int], time_bins: int) -> np.ndarray:
    """Structured events (fields x, y, t [us], p) -> binary uint8 ``[P, H, W, T]`` (H indexed by y, W by x).

    ``sensor_size`` is tonic's ``(W, H, P)``; binning is tonic's ``ToFrame(n_time_bins=T)`` (see module docs).
    """
    from tonic.transforms import ToFrame

    width, height, pol = sensor_size
    if len(events) == 0:  # tonic returns [T, P, W, H] for empty input; avoid that axis swap
        return np.zeros((pol, height, width, time_bins), dtype=np.uint8)
    frames = ToFrame(sensor_size=sensor_size, n_time_bins=time_bins)(events)  # [T, P, H, W] counts
    return np.ascontiguousarray(np.minimum(frames, 1).astype(np.uint8).transpose(1, 2, 3, 0))


def _bin_all(
    samples: Iterable[np.ndarray], n: int, sensor_size: tuple[int, int, int], time_bins: int, desc: str
) -> np.ndarray:
    """Bin ``n`` event arrays into packed spikes ``[n, P, H, W, ceil(T / 8)]``; warn about emptied samples."""
    from tqdm import tqdm

    width, height, pol = sensor_size
    packed = np.zeros((n, pol, height, width, (time_bins + 7) // 8), dtype=np.uint8)
    emptied = 0
    for i, events in enumerate(tqdm(samples, total=n, desc=desc, unit="file", disable=None, leave=False)):
        spikes = events_to_spikes(events, sensor_size, time_bins)
        emptied += int(len(events) > 0 and not spikes.any())
        packed[i] = np.packbits(spikes, axis=-1)
    if emptied:
        warnings.warn(
            f"{desc}: {emptied} of {n} samples have events but no spikes after binning into {time_bins} bins "
            "(recording shorter than time_bins microseconds); use fewer time bins",
            stacklevel=3,
        )
    return packed


# ---------------------------------------------------------------------------------------------------------- N-MNIST


class DatasetFileError(IlifLavaError, ValueError):
    """A dataset file that exists but cannot be used; the message names the file (and line)."""


MEMORY_FRACTION = 0.8     # refuse a split whose dense float32 spikes would need more than this share of RAM


def physical_memory() -> int:
    """Bytes of RAM of this machine (1 TiB when the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_memory(name: str, split: str, n: int, shape: Sequence[int], time_bins: int) -> None:
    """Raise ``ValueError`` before allocating when ``n`` samples of ``shape`` x ``time_bins`` as the float32 tensor
    training uses would not fit in memory (e.g. ``-T 100000000``)."""
    need = int(n) * int(np.prod(shape)) * int(time_bins) * 4
    have = int(physical_memory() * MEMORY_FRACTION)
    if need > have:
        raise ValueError(f"dataset {name!r} {split}: {n} samples x {list(shape)} x T={time_bins} need "
                         f"{need / 2 ** 30:.1f} GiB as float32 spikes, more than {have / 2 ** 30:.1f} GiB "
                         f"({MEMORY_FRACTION:.0%} of this machine's memory); lower -T/--time-bins or "
                         f"--limit-train/--limit-test")


def read_sample_list(path: Path, num_classes: int | None = None) -> list[tuple[str, int]]:
    """Parse ``train.txt`` / ``test.txt``: ``<id> <label>`` per line; ``#`` lines and blank lines skipped.

    Every malformed line raises :class:`DatasetFileError` naming the file and line: fewer than two fields, a
    label that is not an integer or (with ``num_classes``) outside ``0 .. num_classes - 1``, or an id that is not
    a plain file name (no ``/``, no ``..``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFileError(f"{path}: cannot be read ({exc})") from None
    entries = []
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 2:
            raise DatasetFileError(f"{where}: expected '<id> <label>', got {line.strip()!r}")
        sid, label = fields
        if "/" in sid or "\\" in sid or sid in (".", "..") or "\0" in sid:
            raise DatasetFileError(f"{where}: sample id {sid!r} is not a plain file name")
        try:
            value = int(label)
        except ValueError:
            raise DatasetFileError(f"{where}: label {label!r} is not an integer") from None
        if value < 0 or (num_classes is not None and value >= num_classes):
            raise DatasetFileError(f"{where}: label {value} is outside 0..{(num_classes or 1) - 1}")
        entries.append((sid, value))
    return entries


def _read_events_checked(path: Path, dtype: Any, sensor_size: tuple[int, int, int]) -> np.ndarray:
    """One N-MNIST ``.bs2`` file via tonic, refusing files that are not whole 5-byte events or whose events fall
    outside the sensor (a corrupt file), with the file named."""
    import tonic

    size = path.stat().st_size
    if size % 5:
        raise DatasetFileError(f"{path}: corrupt N-MNIST file ({size} bytes, not a whole number of 5-byte events)")
    try:
        ev = tonic.io.read_mnist_file(str(path), dtype=dtype)
    except Exception as exc:  # noqa: BLE001 - whatever the reader trips on
        raise DatasetFileError(f"{path}: corrupt N-MNIST file ({type(exc).__name__}: {exc})") from None
    check_events(ev, sensor_size, str(path), "N-MNIST file")
    if len(ev) > 1 and (np.diff(ev["t"].astype(np.int64)) < 0).any():
        raise DatasetFileError(f"{path}: corrupt N-MNIST file (timestamps go backwards)")
    return ev


def _load_nmnist(req: _Request) -> SpikeDataset:
    local = [req.data_dir] if req.data_dir is not None else _default_dirs("nmnist_small")
    looked = [d / f"{req.split}.txt" for d in local]
    for folder, listing in zip(local, looked):
        if listing.is_file():
            return _nmnist_from_folder(folder, req.split, req.time_bins, req.limit)
    save_to = req.data_dir if req.data_dir is not None else req.cache
    return _load_via_tonic(req, save_to, looked)


def _nmnist_from_folder(folder: Path, split: str, time_bins: int, limit: int | None) -> SpikeDataset:
    import tonic

    entries = read_sample_list(folder / f"{split}.txt", _INFO["nmnist"].num_classes)[:limit]
    check_memory("nmnist", split, len(entries), _INFO["nmnist"].shape, time_bins)
    paths = [folder / f"{sid}.bs2" for sid, _ in entries]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Dataset 'nmnist': {len(missing)} files listed in {folder / f'{split}.txt'} are missing, "
            f"e.g. {missing[0]}. Point --data-dir DIR at a complete folder of <id>.bs2 files + train.txt/test.txt."
        )
    dtype = tonic.datasets.NMNIST.dtype
    events = (_read_events_checked(p, dtype, tonic.datasets.NMNIST.sensor_size) for p in paths)
    packed = _bin_all(events, len(paths), tonic.datasets.NMNIST.sensor_size, time_bins, f"nmnist {split}")
    return SpikeDataset.from_packed(packed, time_bins, [label for _, label in entries], _INFO["nmnist"])


# ------------------------------------------------------------------------------------------------------- POKER-DVS


def _load_pokerdvs(req: _Request) -> SpikeDataset:
    data_dir = req.data_dir
    candidates = [data_dir, data_dir / "POKERDVS"] if data_dir is not None else [*_default_dirs("pokerdvs")]
    candidates.append(req.cache / "POKERDVS")
    archive = _POKER_ARCHIVES[req.split][0]
    for folder in candidates:
        if (folder / archive).is_file():
            return _load_via_tonic(req, _prepare_pokerdvs(folder, req.cache, req.split), [])
    raise _not_found(
        req.name,
        [c / archive for c in candidates],
        "pass --data-dir DIR pointing at a folder with pips_train.tar.gz and pips_test.tar.gz (md5 "
        f"{_POKER_ARCHIVES['train'][1]} / {_POKER_ARCHIVES['test'][1]}, e.g. github.com/cargonriv/dvs data/POKERDVS/) "
        "or set ILIF_LAVA_DATA to the folder holding pokerdvs/. --download cannot help here: tonic 1.7.0 has no "
        "download for POKERDVS",
    )


def _prepare_pokerdvs(source: Path, cache: Path, split: str) -> Path:
    """Link (or copy) the split's archive into ``<cache>/POKERDVS/``, check md5, extract once; return save_to."""
    archive, md5, folder_name, count = _POKER_ARCHIVES[split]
    target = cache / "POKERDVS"
    target.mkdir(parents=True, exist_ok=True)
    link = target / archive
    src = (source / archive).resolve()
    if src != link.resolve():
        if link.is_symlink() and not link.exists():  # dangling link from a moved source
            link.unlink()
        if not link.exists():
            _link_or_copy(src, link)
    found = _md5(link)
    if found != md5:
        raise ValueError(f"POKER-DVS archive {link} (-> {src}) has md5 {found}, expected {md5}")
    if not _is_extracted(target / folder_name, count):
        _extract(link, target, folder_name, count)
    return cache


def _is_extracted(folder: Path, count: int) -> bool:
    """True when ``folder`` holds at least ``count`` ``<class>/<k>.npy`` samples."""
    return len(list(folder.glob("*/*.npy"))) >= count


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except FileExistsError:
        pass  # another process won the race
    except OSError:
        shutil.copy2(src, dst)


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _extract(archive: Path, target: Path, folder_name: str, count: int) -> None:
    """Extract ``archive`` into a temporary folder next to ``target / folder_name``, then rename it into place.

    The rename makes a half-extracted folder invisible to tonic; a complete folder that a concurrent process put
    in place meanwhile is kept, an incomplete one replaced.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        final = target / folder_name
        if _is_extracted(final, count):
            return
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp / folder_name, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------- tonic-backed datasets


def _load_tonic_only(req: _Request) -> SpikeDataset:
    tonic_name = _TONIC_CLASS[req.name]
    roots = [req.data_dir] if req.data_dir is not None else [*_default_dirs(""), req.cache]
    for root in roots:
        if (root / tonic_name).is_dir():
            return _load_via_tonic(req, root, [])
    save_to = req.data_dir if req.data_dir is not None else req.cache
    return _load_via_tonic(req, save_to, [r / tonic_name for r in roots[:-1]])


def _load_via_tonic(req: _Request, save_to: Path, looked: list[Path]) -> SpikeDataset:
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
        raise _not_found(name, [*looked, location], _how_to_get(name)) from None
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
        check_memory(name, split, len(order), _INFO[name].shape, time_bins)
        return _bin_all((_recording(ds, int(i), name, sensor) for i in order), len(order), sensor, time_bins,
                        f"{name} {split}")

    if name in _DISK_CACHED:
        from training.dvs_cache import cached_packed
        packed, cached_labels, hit = cached_packed(req.cache, name, split, time_bins, _INFO[name].shape,
                                                   [ds.data[int(i)] for i in order], labels[order], build)
        out = SpikeDataset.from_packed(packed, time_bins, cached_labels, _INFO[name])
        out.cache_hit = hit
        return out
    return SpikeDataset.from_packed(build(), time_bins, labels[order], _INFO[name])


def _where(ds: Any, i: int, name: str) -> str:
    """The file of tonic sample ``i`` (or '<name> sample i' when tonic keeps no paths)."""
    data = getattr(ds, "data", None)
    return str(data[i]) if data is not None and i < len(data) and isinstance(data[i], str) else f"{name} sample {i}"


def _checked_labels(ds: Any, name: str, location: Path) -> np.ndarray:
    """tonic's labels as int64 [N], each in ``0 .. classes - 1``; otherwise one line naming the file whose name
    gave the label (DVSGesture's ``<label>.npy``)."""
    k = _INFO[name].num_classes
    out = np.empty(len(ds.targets), dtype=np.int64)
    for i, t in enumerate(ds.targets):
        if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)) or not 0 <= int(t) < k:
            raise DatasetFileError(f"{_where(ds, i, name)}: label {t!r} (from the file name) is outside 0..{k - 1}")
        out[i] = int(t)
    if not len(out):
        raise DatasetFileError(f"{location}: holds no recordings")
    return out


def check_events(ev: Any, sensor_size: tuple[int, int, int], where: str, kind: str = "recording") -> None:
    """Refuse, in one line naming ``where``, events that are not tonic's structured x, y, p, t rows of integers
    or whose coordinates or polarity fall outside the ``(W, H, P)`` sensor (a negative x would otherwise land in
    the last column)."""
    width, height, pol = sensor_size
    names = getattr(getattr(ev, "dtype", None), "names", None) or ()
    if getattr(ev, "ndim", 0) != 1 or not {"x", "y", "p", "t"} <= set(names):
        raise DatasetFileError(f"{where}: corrupt {kind} (expected events with fields x, y, p, t; got "
                               f"{getattr(ev, 'dtype', type(ev).__name__)} {list(getattr(ev, 'shape', []))})")
    for field, top in (("x", width), ("y", height), ("p", pol)):
        col = np.asarray(ev[field])
        if col.dtype.kind not in "iub":
            raise DatasetFileError(f"{where}: corrupt {kind} (field {field} is {col.dtype}, expected integers)")
        if len(col) and (int(col.min()) < 0 or int(col.max()) >= top):
            raise DatasetFileError(f"{where}: corrupt {kind} (events outside the {width}x{height} sensor with {pol} "
                                   f"polarities: {field} in {int(col.min())}..{int(col.max())}, must lie in "
                                   f"0..{top - 1})")


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


class MissingPackageError(IlifLavaError, ValueError):
    """An optional package a dataset's reader needs is not installed; one line naming it and the files."""


def _require_aedat(location: Path) -> None:
    import importlib.util

    if importlib.util.find_spec("aedat") is None:
        raise MissingPackageError(f"dataset 'cifar10dvs': reading the .aedat4 recordings in {location} needs the "
                                  f"optional 'aedat' package (pip install aedat), which is not installed")


# ----------------------------------------------------------------------------------------------------- lookup help


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _cache_root(cache_dir: str | Path | None) -> Path:
    root = cache_dir if cache_dir is not None else os.environ.get("ILIF_LAVA_CACHE") or _DEFAULT_CACHE
    return Path(root).expanduser()


def _default_dirs(sub: str) -> list[Path]:
    """``$ILIF_LAVA_DATA/<sub>`` (when set) then ``<repo>/../shared/data/<sub>``."""
    roots = [Path(os.environ["ILIF_LAVA_DATA"]).expanduser()] if os.environ.get("ILIF_LAVA_DATA") else []
    roots.append(_SHARED_DATA)
    return [r / sub if sub else r for r in roots]


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


def _not_found(name: str, looked: Sequence[Path], how: str) -> DatasetNotFoundError:
    paths = "\n".join(f"  - {p}" for p in dict.fromkeys(looked))
    return DatasetNotFoundError(f"Dataset {name!r} not found. Looked at:\n{paths}\nHow to get it: {how}.")
