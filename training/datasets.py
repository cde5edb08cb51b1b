"""Spike datasets for SLAYER training: every sample is a binary event tensor ``[C, H, W, T]`` (time LAST).

Public API: :data:`DATASETS`, :func:`dataset_info`, :func:`load_split`, :class:`SpikeDataset`,
:class:`DatasetNotFoundError`. One time step is one bin; ``T`` is the ``time_bins`` argument.

Datasets (one module per family, each documenting its files, lookup, encoding and split; :data:`LOADERS` maps
a name to its loader, :mod:`ilif_lava.names` holds the names)
-------------------------------------------------------------------------------------------------------------
``digits`` (1, 8, 8), 10 classes                      :mod:`training.data_digits` (scikit-learn, rate code)
``nmnist`` (2, 34, 34), 10 classes                    :mod:`training.data_nmnist` (local ``.bs2`` folder or tonic)
``pokerdvs`` (2, 35, 35), 4 classes                   :mod:`training.data_poker` (tonic, local archives)
``dvsgesture`` (2, 128, 128), 11 classes;
``cifar10dvs`` (2, 128, 128), 10 classes              :mod:`training.data_tonic` (tonic only, disk cache)
``cifar10`` (3, 32, 32), 10 classes;
``cifar100`` (3, 32, 32), 100 classes                 :mod:`training.data_cifar` (direct encoding, not spikes)

Event binning (tonic's ``ToFrame``) is :mod:`training.data_events`; the shared pieces (:class:`SpikeDataset`,
errors, memory check, lookup folders) are :mod:`training.data_common`. ``limit`` always keeps the first
``limit`` samples of the split. ``cache_dir`` defaults to ``$ILIF_LAVA_CACHE`` or ``~/.cache/ilif-lava``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from training import data_cifar, data_digits, data_nmnist, data_poker, data_tonic
from training.data_common import (INFO, MEMORY_FRACTION, REPO_ROOT, DatasetFileError, DatasetInfo,
                                  DatasetNotFoundError, MissingPackageError, Request, SpikeDataset, cache_root,
                                  check_memory, physical_memory)
from training.data_digits import rate_code
from training.data_events import check_events, events_to_spikes
from training.data_nmnist import read_sample_list
from ilif_lava.names import DATASETS, IMAGE_DATASETS, SPLITS  # noqa: F401  (light to import)

__all__ = [
    "DATASETS", "IMAGE_DATASETS", "INFO", "LOADERS", "MEMORY_FRACTION", "REPO_ROOT", "SPLITS", "DatasetFileError",
    "DatasetInfo", "DatasetNotFoundError", "MissingPackageError", "SpikeDataset", "check_events", "check_memory",
    "dataset_info", "events_to_spikes", "load_split", "physical_memory", "rate_code", "read_sample_list",
]

LOADERS: dict[str, Callable[[Request], Any]] = {   # dataset name -> its family's loader
    "digits": data_digits.load,
    "nmnist": data_nmnist.load,
    "pokerdvs": data_poker.load,
    "dvsgesture": data_tonic.load,
    "cifar10dvs": data_tonic.load,
    "cifar10": data_cifar.load,
    "cifar100": data_cifar.load,
}


def dataset_info(name: str) -> DatasetInfo:
    """Shape ``(C, H, W)`` and class count of dataset ``name`` (one of :data:`DATASETS`)."""
    _check_name(name)
    return INFO[name]


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
    samples; ``cache_dir`` is where tonic data / POKER-DVS links / binned caches live; the loader is
    ``LOADERS[name]``. Raises
    :class:`DatasetNotFoundError` when the data are absent and ``ValueError`` for bad arguments.
    """
    _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(time_bins, bool) or not isinstance(time_bins, (int, np.integer)) or time_bins <= 0:
        raise ValueError(f"time_bins must be a positive int, got {time_bins!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0):
        raise ValueError(f"limit must be None or an int >= 0, got {limit!r}")
    req = Request(
        name=name,
        split=split,
        time_bins=int(time_bins),
        data_dir=None if data_dir is None else Path(data_dir).expanduser(),
        download=bool(download),
        limit=None if limit is None else int(limit),
        cache=cache_root(cache_dir),
        augment=bool(augment),
    )
    return LOADERS[name](req)


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
