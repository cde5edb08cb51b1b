"""``cifar10`` (3, 32, 32), 10 classes; ``cifar100`` (3, 32, 32), 100 classes.

Direct encoding (:mod:`training.cifar`): float32 normalised images repeated over T (not spikes), optional
``augment`` (random crop + flip). ``data_dir`` (or ``$ILIF_LAVA_DATA``, ``<repo>/../shared/data``,
``cache_dir``) holds torchvision's ``cifar-10-batches-py/`` / ``cifar-100-python/`` (or is that folder);
``download=True`` fetches the official archive into ``data_dir`` or ``cache_dir``.
"""
from __future__ import annotations

from typing import Any

from training.data_common import INFO, DatasetNotFoundError, Request, check_memory, default_dirs


def load(req: Request) -> Any:
    """One split as a :class:`training.cifar.ImageDataset`: float32 images ``[C, H, W]`` repeated over T, i.e.
    samples ``[3, 32, 32, T]``."""
    from training import cifar

    roots = [req.data_dir] if req.data_dir is not None else [*default_dirs(""), req.cache]
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
    check_memory(req.name, req.split, len(labels), INFO[req.name].shape, 1)
    return cifar.ImageDataset(images, labels, INFO[req.name], req.time_bins, fmt.mean, fmt.std,
                              augment=req.augment and req.split == "train")
