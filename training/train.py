"""Training, float then quantization-aware (QAT): the public names, gathered from the modules that hold them.

- :mod:`training.config`: :class:`TrainConfig` (a run's ``config.json``), :func:`load_config`.
- :mod:`training.device`: :func:`pick_device`, :func:`check_device`, :func:`check_amp`.
- :mod:`training.checkpoint`: safe reading of ``model.pt`` / ``checkpoint.pt`` / ``log.jsonl``
  (:func:`read_torch_file`, :func:`load_model`, :func:`read_training_log`, :class:`ModelFileError`) and
  :func:`atomic_save`.
- :mod:`training.loop`: :func:`train`, :func:`evaluate_dataset`, :func:`load_datasets`, :class:`TrainingError`.

Samples are ``[C, H, W, T]`` and batches ``[N, C, H, W, T]``, time last (see :mod:`training.datasets`).
"""
from __future__ import annotations

from training.checkpoint import (CHECKPOINT_KEYS, MAX_LOG_BYTES, MAX_MODEL_BYTES, MODEL_KEYS, PICKLE_PROTO,
                                 TORCH_ZIP_MAGIC, ModelFileError, atomic_save, load_model, read_torch_file,
                                 read_training_log)
from training.checkpoint import truncate_log as _truncate_log  # noqa: F401  (its old name, used by tests)
from training.config import MAX_CONFIG_BYTES, MAX_WORKERS, OPTIMIZERS, RUNTIME_KEYS, TrainConfig, load_config
from training.device import check_amp, check_device, pick_device
from training.loop import EVAL_BATCH, TrainingError, evaluate_dataset, load_datasets, train

__all__ = [
    "CHECKPOINT_KEYS", "EVAL_BATCH", "MAX_CONFIG_BYTES", "MAX_LOG_BYTES", "MAX_MODEL_BYTES", "MAX_WORKERS",
    "MODEL_KEYS", "OPTIMIZERS", "PICKLE_PROTO", "RUNTIME_KEYS", "TORCH_ZIP_MAGIC", "ModelFileError", "TrainConfig",
    "TrainingError", "atomic_save", "check_amp", "check_device", "evaluate_dataset", "load_config",
    "load_datasets", "load_model", "pick_device", "read_torch_file", "read_training_log", "train",
]
