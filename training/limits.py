"""Bounds on training inputs, checked at the CLI boundary and in :meth:`training.train.TrainConfig.validate`.

They keep a typo (``-T 100000000``, ``--hidden 10**9``) from turning into a MemoryError deep inside training;
every recipe and benchmark here is far below them (T <= 100, hidden <= 512).
"""
from __future__ import annotations

MAX_TIME_BINS = 10_000          # time steps per sample
MAX_HIDDEN = 16_384             # hidden width (MLP) / width scale (VGG-11)
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536

#: network names (``--arch``): training/models.py builds the first four, training/paper_models.py the last two
ARCHS = ("mlp", "cnn", "cnnbn", "vgg11", "resnet18", "vgg11bn")
AMP_DTYPES = ("bf16", "fp16")   # ``--amp`` choices (CUDA only)
