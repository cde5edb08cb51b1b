"""The dataset names and splits :mod:`training.datasets` loads, importable without torch (the command line
builds its parser from them before any heavy import)."""
from __future__ import annotations

DATASETS = ("digits", "nmnist", "pokerdvs", "dvsgesture", "cifar10dvs", "cifar10", "cifar100")
IMAGE_DATASETS = ("cifar10", "cifar100")    # analog input (direct encoding), not spikes
SPLITS = ("train", "test")
