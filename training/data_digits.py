"""``digits`` (1, 8, 8), 10 classes.

scikit-learn's bundled ``load_digits()`` (1797 images, intensities 0..16; no download).
Deterministic rate code: pixel intensity ``p`` has rate ``r = p / 16`` spikes per step and spikes at step
``t`` (``t = 0..T-1``) iff ``floor((t + 1) * r) > floor(t * r)``. Spikes are evenly spaced, the first at
``t = ceil(1 / r) - 1``; ``p = 16`` spikes every step, ``p = 0`` never; a pixel emits ``floor(T * p / 16)``
spikes (so with ``T = 16`` the spike count equals the intensity). Split: ``train_test_split(test_size=0.2,
random_state=0, stratify=labels)`` -> 1437 train / 360 test, samples in the order that call returns.
"""
from __future__ import annotations

import numpy as np

from training.data_common import INFO, Request, SpikeDataset, check_memory

_DIGITS_MAX = 16  # sklearn digits intensities are integers 0..16


def rate_code(intensity: np.ndarray, time_bins: int, max_value: int = _DIGITS_MAX) -> np.ndarray:
    """Deterministic rate code: integer ``intensity [...]`` in 0..max_value -> uint8 spikes ``[..., T]``."""
    p = np.asarray(intensity, dtype=np.int64)[..., None]
    t = np.arange(time_bins, dtype=np.int64)
    return (((t + 1) * p) // max_value > (t * p) // max_value).astype(np.uint8)


def load(req: Request) -> SpikeDataset:
    """One split of ``digits`` as rate-coded spikes ``[N, 1, 8, 8, T]`` (see the module docstring)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.rint(digits.images).astype(np.int64)
    labels = np.asarray(digits.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    idx = (train_idx if req.split == "train" else test_idx)[: req.limit]
    check_memory(req.name, req.split, len(idx), INFO[req.name].shape, req.time_bins)
    spikes = rate_code(images[idx][:, None], req.time_bins)  # [N, 1, 8, 8, T]
    return SpikeDataset(spikes, labels[idx], INFO[req.name])
