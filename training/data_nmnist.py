"""``nmnist`` (2, 34, 34), 10 classes.

A local folder with ``<id>.bs2`` files (original N-MNIST binary layout, 5 bytes per event) and
``train.txt`` / ``test.txt`` (header line ``#sample #class``, then ``<id> <label>`` lines, kept in file
order). Lookup when ``data_dir`` is None: ``$ILIF_LAVA_DATA/nmnist_small``, then
``<repo>/../shared/data/nmnist_small``, then an already downloaded ``<cache_dir>/NMNIST``. With
``download=True`` and nothing found, ``tonic.datasets.NMNIST(save_to=cache_dir)`` fetches the full set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.data_common import (INFO, DatasetFileError, DatasetNotFoundError, Request, SpikeDataset,
                                  check_memory, default_dirs)
from training.data_events import bin_all, check_events
from training.data_tonic import load_via_tonic


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


def load(req: Request) -> SpikeDataset:
    """One split of ``nmnist``, spikes ``[N, 2, 34, 34, T]``: from a local folder (see the module docstring), else
    through tonic (``req.download`` lets it fetch the full set)."""
    local = [req.data_dir] if req.data_dir is not None else default_dirs("nmnist_small")
    looked = [d / f"{req.split}.txt" for d in local]
    for folder, listing in zip(local, looked):
        if listing.is_file():
            return _nmnist_from_folder(folder, req.split, req.time_bins, req.limit)
    save_to = req.data_dir if req.data_dir is not None else req.cache
    return load_via_tonic(req, save_to, looked)


def _nmnist_from_folder(folder: Path, split: str, time_bins: int, limit: int | None) -> SpikeDataset:
    """The first ``limit`` samples listed in ``<folder>/<split>.txt``, each ``<id>.bs2`` read and binned."""
    import tonic

    entries = read_sample_list(folder / f"{split}.txt", INFO["nmnist"].num_classes)[:limit]
    check_memory("nmnist", split, len(entries), INFO["nmnist"].shape, time_bins)
    paths = [folder / f"{sid}.bs2" for sid, _ in entries]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"Dataset 'nmnist': {len(missing)} files listed in {folder / f'{split}.txt'} are missing, "
            f"e.g. {missing[0]}. Point --data-dir DIR at a complete folder of <id>.bs2 files + train.txt/test.txt."
        )
    dtype = tonic.datasets.NMNIST.dtype
    events = (_read_events_checked(p, dtype, tonic.datasets.NMNIST.sensor_size) for p in paths)
    packed = bin_all(events, len(paths), tonic.datasets.NMNIST.sensor_size, time_bins, f"nmnist {split}")
    return SpikeDataset.from_packed(packed, time_bins, [label for _, label in entries], INFO["nmnist"])
