"""What every dataset family shares: errors, :class:`DatasetInfo` (:data:`INFO`), :class:`SpikeDataset`, the
validated :class:`Request` a loader receives, the memory check, and where data and caches are looked for.

A sample is ``[C, H, W, T]`` and a stacked batch ``[N, C, H, W, T]``: channels, height, width, then time LAST
(``T`` time steps, one step per bin). The family modules (``training/data_*.py``) import this module, never
:mod:`training.datasets`, which imports them.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ilif_lava.errors import IlifLavaError

REPO_ROOT = Path(__file__).resolve().parents[1]
_SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
_DEFAULT_CACHE = Path("~/.cache/ilif-lava")


class DatasetNotFoundError(IlifLavaError, FileNotFoundError):
    """A dataset's files are not where we looked; the message lists every path and how to get the data."""



class DatasetFileError(IlifLavaError, ValueError):
    """A dataset file that exists but cannot be used; the message names the file (and line)."""



class MissingPackageError(IlifLavaError, ValueError):
    """An optional package a dataset's reader needs is not installed; one line naming it and the files."""


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: ``shape`` is ``(C, H, W)`` of one sample without the time axis."""

    name: str
    shape: tuple
    num_classes: int


INFO = {
    "digits": DatasetInfo("digits", (1, 8, 8), 10),
    "nmnist": DatasetInfo("nmnist", (2, 34, 34), 10),
    "pokerdvs": DatasetInfo("pokerdvs", (2, 35, 35), 4),
    "dvsgesture": DatasetInfo("dvsgesture", (2, 128, 128), 11),
    "cifar10dvs": DatasetInfo("cifar10dvs", (2, 128, 128), 10),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), 10),
    "cifar100": DatasetInfo("cifar100", (3, 32, 32), 100),
}



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


@dataclass(frozen=True)
class Request:
    """Validated arguments of one :func:`load_split` call."""

    name: str
    split: str
    time_bins: int
    data_dir: Path | None
    download: bool
    limit: int | None
    cache: Path
    augment: bool = False


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



# ----------------------------------------------------------------------------------------------------- lookup help


def cache_root(cache_dir: str | Path | None) -> Path:
    """``cache_dir``, else ``$ILIF_LAVA_CACHE``, else ``~/.cache/ilif-lava`` (user folder expanded)."""
    root = cache_dir if cache_dir is not None else os.environ.get("ILIF_LAVA_CACHE") or _DEFAULT_CACHE
    return Path(root).expanduser()


def default_dirs(sub: str) -> list[Path]:
    """``$ILIF_LAVA_DATA/<sub>`` (when set) then ``<repo>/../shared/data/<sub>``."""
    roots = [Path(os.environ["ILIF_LAVA_DATA"]).expanduser()] if os.environ.get("ILIF_LAVA_DATA") else []
    roots.append(_SHARED_DATA)
    return [r / sub if sub else r for r in roots]


def not_found(name: str, looked: Sequence[Path], how: str) -> DatasetNotFoundError:
    """The error listing every path looked at (each once, in order) and ``how`` to get the data."""
    paths = "\n".join(f"  - {p}" for p in dict.fromkeys(looked))
    return DatasetNotFoundError(f"Dataset {name!r} not found. Looked at:\n{paths}\nHow to get it: {how}.")
