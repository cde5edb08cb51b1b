"""Event binning shared by the event datasets (N-MNIST, POKER-DVS, DVSGesture, CIFAR10-DVS).

``tonic.transforms.ToFrame(sensor_size=(W, H, 2), n_time_bins=T)`` returns counts ``[T, P, H, W]`` with
``H`` indexed by the event ``y`` and ``W`` by the event ``x``; counts are clipped to 1 and moved to
``[P, H, W, T]``, so channel ``c`` holds events with polarity value ``c``. tonic's bins are
``w = (t_last - t_first) // T`` microseconds wide starting at ``t_first``; events at ``t >= t_first + T * w``
(always the last event(s), plus the integer-division remainder) are dropped, and a recording shorter than
``T`` microseconds yields no spikes at all (a warning is issued).

Events are tonic's structured rows with fields x, y, p (polarity) and t (microseconds).
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from training.data_common import DatasetFileError


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


def bin_all(
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
