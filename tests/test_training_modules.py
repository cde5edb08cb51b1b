"""The split of training/train.py (config, device, checkpoint, loop) and training/datasets.py (one module per
dataset family behind :data:`training.datasets.LOADERS`): the old import paths keep working, and the registry, the
shape table and ilif_lava/names.py list the same datasets."""
from __future__ import annotations

import importlib

import pytest

from training import datasets
from ilif_lava.names import DATASETS

TRAIN_NAMES = ("TrainConfig", "load_config", "pick_device", "check_device", "check_amp", "ModelFileError",
               "read_torch_file", "load_model", "read_training_log", "atomic_save", "_truncate_log", "train",
               "TrainingError", "evaluate_dataset", "load_datasets", "MAX_MODEL_BYTES", "OPTIMIZERS")
DATASET_NAMES = ("DATASETS", "IMAGE_DATASETS", "SPLITS", "DatasetInfo", "DatasetNotFoundError", "DatasetFileError",
                 "MissingPackageError", "SpikeDataset", "dataset_info", "load_split", "rate_code",
                 "events_to_spikes", "check_events", "check_memory", "physical_memory", "read_sample_list",
                 "MEMORY_FRACTION", "REPO_ROOT")


@pytest.mark.parametrize("module, names", [("training.train", TRAIN_NAMES), ("training.datasets", DATASET_NAMES)])
def test_old_import_paths_still_work(module, names):
    mod = importlib.import_module(module)
    assert [n for n in names if not hasattr(mod, n)] == []
    assert [n for n in getattr(mod, "__all__", ()) if not hasattr(mod, n)] == []


def test_registry_covers_every_dataset_name():
    assert tuple(datasets.LOADERS) == DATASETS
    assert tuple(datasets.INFO) == DATASETS
    assert all(datasets.dataset_info(n).name == n for n in DATASETS)


def test_an_unknown_name_is_refused_before_any_loader():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; choose one of digits"):
        datasets.load_split("nope", "train", time_bins=4)
