"""CIFAR-10 / CIFAR-100 with direct encoding: the normalised image is the input current at every time step.

A sample is float32 ``[3, 32, 32, T]`` (time LAST; the same image at each of the ``T`` steps, paper Appendix F);
no augmentation unless ``augment=True`` (random 32x32 crop of the image zero-padded by 4, then a horizontal flip
with probability 1/2, drawn per sample and per epoch).

On-disk format: torchvision's (the official "python version" archives): a folder ``cifar-10-batches-py/``
holding ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``, or ``cifar-100-python/`` holding ``train`` and
``test``. Each batch is a pickled dict with ``data`` (uint8 ``[n, 3072]``, channel-major 3 x 32 x 32) and
``labels`` (CIFAR-10) / ``fine_labels`` (CIFAR-100). The batches are read by the opcode-level reader
:mod:`training.cifar_pickle`, which knows only plain values and the one way numpy pickles a uint8 array: no code
in a dataset file can run and no pickle state from it reaches numpy. ``--download`` fetches the archive torchvision names (URL and md5 from
torchvision's ``CIFAR10``/``CIFAR100`` classes), verifies its md5 and extracts it; torchvision's own pickle loader
is never used.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ilif_lava.safe_read import read_regular
from training.cifar_pickle import CifarFileError, parse_batch


@dataclass(frozen=True)
class CifarFormat:
    """Where one CIFAR variant lives on disk and how its batches are keyed."""

    folder: str
    train: Tuple[str, ...]
    test: Tuple[str, ...]
    label_key: str
    num_classes: int
    max_images: int                      # images one batch file may hold (10,000 per CIFAR-10 batch)
    torchvision_class: str
    mean: Tuple[float, float, float]     # per-channel mean of the training images, in [0, 1]
    std: Tuple[float, float, float]      # per-channel standard deviation of the training images, in [0, 1]


FORMATS: Dict[str, CifarFormat] = {
    "cifar10": CifarFormat("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                           "labels", 10, 10_000, "CIFAR10", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": CifarFormat("cifar-100-python", ("train",), ("test",), "fine_labels", 100, 50_000, "CIFAR100",
                            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
IMAGE_SHAPE = (3, 32, 32)
CROP_PADDING = 4


def batch_byte_limit(max_images: int) -> int:
    """The largest batch file read at all, in bytes: ``max_images`` images at 2 file bytes per pixel byte (a Python 3
    protocol-2 pickle stores the pixels as UTF-8 text of latin-1 characters), 512 bytes per image for labels and
    file names, and 1 MiB of head-room (CIFAR-10: about 64 MiB, where a real batch is about 30 MiB)."""
    return max_images * (2 * 3072 + 512) + (1 << 20)


def read_batch(path: Path, label_key: str, num_classes: int,
               max_images: int = 50_000) -> Tuple[np.ndarray, np.ndarray]:
    """One batch file -> uint8 images ``[n, 3, 32, 32]`` and int64 labels ``[n]``; refuses anything else.

    The file must be a regular file of at most :func:`batch_byte_limit` bytes (checked before a byte is read) and is parsed by :func:`training.cifar_pickle.parse_batch`: no code runs, no pickle state reaches
    numpy, and the pixel array is built from exactly ``n x 3,072`` counted bytes.
    """
    path = Path(path)
    raw = read_regular(path, batch_byte_limit(max_images), CifarFileError, "a CIFAR batch")
    try:
        plain = parse_batch(raw, max_images)
    except CifarFileError as exc:
        raise CifarFileError(f"{path}: not a CIFAR batch: {exc}") from None
    data, labels = plain.get("data"), plain.get(label_key)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise CifarFileError(f"{path}: key 'data' must be a uint8 array [n, 3072]")
    if len(data) == 0 or len(data) > max_images:
        raise CifarFileError(f"{path}: key 'data' holds {len(data)} images, expected 1..{max_images}")
    if not isinstance(labels, list) or len(labels) != len(data) or not all(type(v) is int for v in labels):
        raise CifarFileError(f"{path}: key {label_key!r} must be a list of {len(data)} integers")
    y = np.asarray(labels, dtype=np.int64)
    if y.min() < 0 or y.max() >= num_classes:
        raise CifarFileError(f"{path}: labels outside 0..{num_classes - 1}")
    return data.reshape(-1, *IMAGE_SHAPE), y


def find_folder(name: str, roots: Sequence[Path]) -> Optional[Path]:
    """The first of ``root`` or ``root/<folder>`` holding every batch file of ``name``, else None."""
    fmt = FORMATS[name]
    for root in roots:
        for folder in (root / fmt.folder, root):
            if all((folder / f).is_file() for f in (*fmt.train, *fmt.test)):
                return folder
    return None


def download(name: str, root: Path) -> Path:
    """Fetch and md5-check the official archive into ``root`` (torchvision's URL and md5); return its folder.

    Any failure (no network, bad checksum) is one :class:`OSError` line naming the URL, ``root`` and the flag.
    """
    import torchvision.datasets as tvd
    from torchvision.datasets.utils import download_and_extract_archive

    cls = getattr(tvd, FORMATS[name].torchvision_class)
    root.mkdir(parents=True, exist_ok=True)
    try:
        download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
    except Exception as exc:  # noqa: BLE001 - URLError, socket errors, md5 mismatch: one line for all
        detail = " ".join(str(exc).split())[:200]
        raise OSError(f"dataset {name!r}: --download failed fetching {cls.url} into {root} "
                      f"({type(exc).__name__}: {detail}); without network put {FORMATS[name].folder}/ into a "
                      f"folder and pass --data-dir DIR") from None
    folder = find_folder(name, [root])
    if folder is None:
        raise OSError(f"dataset {name!r}: the archive from {cls.url} did not give {root / FORMATS[name].folder}/")
    return folder


def read_split(name: str, folder: Path, split: str, limit: Optional[int]) -> Tuple[np.ndarray, np.ndarray]:
    """All batches of ``split``: uint8 ``[n, 3, 32, 32]``, int64 ``[n]``, in file order.

    With ``limit``, the ``limit`` samples kept are a class-balanced, deterministic prefix (classes interleaved
    round-robin: rank within class in file order, then label), as for every other dataset: a class-sorted test
    file (the shared subset's ``test_batch`` is one) must not give ``--limit-test 50`` samples of one class.
    """
    fmt = FORMATS[name]
    images: List[np.ndarray] = []
    labels: List[np.ndarray] = []
    for f in fmt.train if split == "train" else fmt.test:
        x, y = read_batch(folder / f, fmt.label_key, fmt.num_classes, fmt.max_images)
        images.append(x)
        labels.append(y)
    x, y = np.concatenate(images), np.concatenate(labels)
    if limit is None or limit >= len(y):
        return x, y
    order = class_round_robin(y)[:limit]
    return x[order], y[order]


def class_round_robin(labels: np.ndarray) -> np.ndarray:
    """Indices of ``labels`` ordered by (rank of the sample within its class, label): one of each class first."""
    rank = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.nonzero(labels == c)[0]
        rank[idx] = np.arange(len(idx))
    return np.lexsort((np.arange(len(labels)), labels, rank))


class ImageDataset(torch.utils.data.Dataset):
    """uint8 images ``[N, 3, 32, 32]`` in memory; samples are normalised float32 ``[3, 32, 32, T]`` (direct code).

    ``ds[i]`` -> ``(x, label)``; :meth:`tensors` stacks a batch ``[n, 3, 32, 32, T]`` (the repeat over T is a
    view, no copy). Same batch interface as :class:`training.datasets.SpikeDataset`.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: Any, time_bins: int, mean: Sequence[float],
                 std: Sequence[float], augment: bool = False) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.info = info
        self.time_bins = int(time_bins)
        self.augment = bool(augment)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        x, y = self.tensors([index])
        return x[0], int(y[0])

    def tensors(self, indices: Any = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Normalised images ``[n, 3, 32, 32, T]`` float32 and labels ``[n]`` (all samples when None)."""
        idx = torch.arange(len(self)) if indices is None else torch.as_tensor(np.asarray(indices, dtype=np.int64))
        img = self.images[idx].float().div_(255.0)
        if self.augment:
            img = random_crop_flip(img)
        img = (img - self._mean) / self._std
        return img.unsqueeze(-1).expand(*img.shape, self.time_bins), self.labels[idx]

    @property
    def nbytes(self) -> int:
        return int(self.images.numel())

    def __repr__(self) -> str:
        return f"ImageDataset({self.info.name!r}, n={len(self)}, sample=[3, 32, 32, {self.time_bins}])"


def random_crop_flip(img: torch.Tensor, padding: int = CROP_PADDING) -> torch.Tensor:
    """Per sample: a random ``H x W`` crop of ``img [n, C, H, W]`` zero-padded by ``padding``, flipped left-right
    with probability 1/2 (torch's global random generator, so DataLoader workers draw independently)."""
    n, _, h, w = img.shape
    padded = torch.nn.functional.pad(img, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,))
    dx = torch.randint(0, 2 * padding + 1, (n,))
    rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, img.shape[1], h, w + 2 * padding)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, img.shape[1], h, w)
    out = out.gather(3, cols)
    flip = torch.rand(n) < 0.5
    out[flip] = out[flip].flip(-1)
    return out
