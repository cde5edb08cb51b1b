"""Training settings: :class:`TrainConfig` (saved as a run's ``config.json``) and :func:`load_config`.

Every value is checked by :meth:`TrainConfig.validate`, which raises one ``ValueError`` line naming the field;
:func:`load_config` adds the file (and JSON line/key) to that line. Bounds live in :mod:`ilif_lava.names`, the
device checks in :mod:`training.device`.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from ilif_lava import atomic
from ilif_lava.safe_read import read_regular
from training.device import check_amp, check_device
from ilif_lava.names import ARCHS, MAX_BATCH, MAX_EPOCHS, MAX_HIDDEN, MAX_TIME_BINS, PAPER_ARCHS
from training.losses import get_loss

OPTIMIZERS = ("adam", "sgd")
MAX_WORKERS = 64
RUNTIME_KEYS = ("download", "workers")   # config keys that may differ between a run and its resume
MAX_CONFIG_BYTES = 1 << 20           # a config.json is about 1 KiB


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json).

    Units: ``time_bins`` is T, the number of time steps of every sample ``[C, H, W, T]`` (time last);
    ``hidden`` is neurons per hidden layer; ``epochs`` float epochs, then ``qat_epochs`` quantization-aware ones
    (at ``lr / 10``); ``batch_size`` samples per global batch (split across torchrun processes);
    ``limit_train`` / ``limit_test`` keep the first samples of a split (None: all); ``workers`` loader processes.
    """

    dataset: str = "digits"
    data_dir: Optional[str] = None
    arch: str = "mlp"
    neuron: str = "ILIF"
    neuron_overrides: Dict[str, Any] = field(default_factory=dict)
    hidden: int = 128
    weight_scale: float = 2.0
    time_bins: int = 16
    epochs: int = 8
    qat_epochs: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    loss: str = "count"
    seed: int = 0
    device: str = "auto"
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    dropout: float = 0.0
    augment: bool = False
    amp: Optional[str] = None
    download: bool = False
    workers: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` (one line naming the field) for a value training cannot use."""
        for name, typ in (("time_bins", int), ("epochs", int), ("qat_epochs", int), ("batch_size", int),
                          ("hidden", int), ("seed", int), ("lr", float), ("weight_scale", float),
                          ("momentum", float), ("weight_decay", float), ("dropout", float), ("workers", int)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float) if typ is float else int):
                raise ValueError(f"{name} must be {'a number' if typ is float else 'an integer'}, got {v!r}")
            if typ is float and not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
        if not 0 < self.time_bins <= MAX_TIME_BINS:
            raise ValueError(f"time_bins (T) must be an integer in [1, {MAX_TIME_BINS}], got {self.time_bins}")
        if not (0 <= self.epochs <= MAX_EPOCHS and 0 <= self.qat_epochs <= MAX_EPOCHS):
            raise ValueError(f"epochs and qat_epochs must be in [0, {MAX_EPOCHS}]")
        if not 0 < self.batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be in [1, {MAX_BATCH}], got {self.batch_size}")
        if not 0 < self.hidden <= MAX_HIDDEN:
            raise ValueError(f"hidden must be in [1, {MAX_HIDDEN}], got {self.hidden}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not self.weight_scale > 0:
            raise ValueError(f"weight_scale must be positive, got {self.weight_scale}")
        if not 0 <= self.momentum <= 1 or self.weight_decay < 0:
            raise ValueError(f"momentum must be in [0, 1] and weight_decay >= 0, got {self.momentum}, "
                             f"{self.weight_decay}")
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive integer or null, got {v!r}")
        if not isinstance(self.neuron_overrides, dict):
            raise ValueError(f"neuron_overrides must be a dict, got {self.neuron_overrides!r}")
        for k, v in self.neuron_overrides.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"neuron_overrides[{k!r}] must be finite, got {v}")
        for name in ("dataset", "arch", "neuron", "optimizer", "loss", "device"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir must be a string or null, got {self.data_dir!r}")
        check_device(self.device)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {ARCHS}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be in [0, {MAX_WORKERS}], got {self.workers}")
        for name in ("augment", "download"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_amp(self.amp, self.device)
        get_loss(self.loss, logits=self.arch in PAPER_ARCHS)    # an unknown loss, or 'count' on logits: refused


def same_run(saved: Dict[str, Any], cfg: TrainConfig) -> bool:
    """``saved`` (a checkpoint's config, older ones without the newer keys) describes the run ``cfg``."""
    now = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_KEYS}
    defaults = asdict(TrainConfig())
    return {k: saved.get(k, defaults[k]) for k in now} == now


def load_config(path: Path) -> "TrainConfig":
    """Read a run's ``config.json``; every problem is a one-line ``ValueError`` naming the file (and line/key)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise ValueError(f"{path}: no such file (train the run first: ilif-lava train)")
    atomic.check_input(path, what="the run's config.json")      # a FIFO never blocks, a link never leaves
    try:
        text = read_regular(path, MAX_CONFIG_BYTES, ValueError, "the run's config.json").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: holds a JSON {type(raw).__name__}, expected an object of training settings")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    try:
        cfg = TrainConfig(**raw)
        cfg.validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return cfg
