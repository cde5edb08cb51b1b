"""The project's names and bounds, in one torch-free module: neuron variants, networks, datasets, training bounds and
the Loihi 2 chip constants.

Importing it loads nothing but the standard library (no numpy, h5py, torch or Lava), so the command line builds
its parser and ``--help`` from it at once. The core (:mod:`ilif_lava.surrogate`, :mod:`ilif_lava.file_limits`,
:mod:`ilif_lava.loihi2`), the stages (``training/``, ``pipeline/``) and the command line read these tuples from
here; ``tests/test_names.py`` checks that any other list of the same names agrees with them.
"""
from __future__ import annotations

from typing import Tuple

# ---------------------------------------------------------------------------------------------------- neurons
#: the ILIF family (docs/neuron.md; which units each uses: ilif_lava.neuron.variant_flags): ILIF = LIF + MPIU + CIU,
#: MPIU / CIU one inhibitory unit each, LIF none, PLIF / IPLIF learn their decay (IPLIF with both units)
VARIANTS: Tuple[str, ...] = ("ILIF", "MPIU", "CIU", "LIF", "PLIF", "IPLIF")
#: every neuron a network of training/ can be built with (``--neuron``): the ILIF family and lava-dl's CUBA-LIF
NEURONS: Tuple[str, ...] = VARIANTS + ("CUBA",)
#: the float inhibition maps (``--inhibition``); 'plan' is the one with an integer form (docs/neuron.md)
INHIBITIONS: Tuple[str, ...] = ("plan", "sigmoid")
#: the surrogate gradients (``--surrogate``; :mod:`ilif_lava.surrogate`)
SURROGATES: Tuple[str, ...] = ("rectangle", "exp", "sigmoid")

# --------------------------------------------------------------------------------------------------- networks
#: network names (``--arch``): training/models.py builds them all (resnet18 from training/resnet_blocks.py)
ARCHS: Tuple[str, ...] = ("mlp", "cnn", "cnnbn", "vgg11", "resnet18", "vgg11bn")
#: the paper's networks: logit outputs (Linear / integer readout)
PAPER_ARCHS: Tuple[str, ...] = ("resnet18", "vgg11bn")

# --------------------------------------------------------------------------------------------------- datasets
#: dataset names (``--dataset``; :mod:`training.datasets` maps each to its loader)
DATASETS: Tuple[str, ...] = ("digits", "nmnist", "pokerdvs", "dvsgesture", "cifar10dvs", "cifar10", "cifar100")
#: analog input (direct encoding: the image at every step), not spikes
IMAGE_DATASETS: Tuple[str, ...] = ("cifar10", "cifar100")
SPLITS: Tuple[str, ...] = ("train", "test")

# ------------------------------------------------------------------------------------------- training bounds
# Checked at the command line and in training.config.TrainConfig.validate: a typo (``-T 100000000``, ``--hidden
# 10**9``) is one line, not a MemoryError deep inside training; every recipe and benchmark is far below them.
MAX_TIME_BINS = 10_000          # time steps per sample
MAX_HIDDEN = 16_384             # hidden width (MLP) / width scale (VGG-11)
MAX_EPOCHS = 100_000
MAX_BATCH = 65_536
#: ``--amp`` choices (CUDA only)
AMP_DTYPES: Tuple[str, ...] = ("bf16", "fp16")

# ------------------------------------------------------------------------------------------- Loihi 2 chip
# One chip: 128 neuro-cores, up to 1 M neurons and 120 M synapses (Intel newsroom / Loihi 2 brief, 2021).
# ilif_lava/file_limits.py derives a network file's size limits from them, ilif_lava/loihi2/ its resource estimate.
CHIP_CORES = 128
CHIP_NEURONS = 1_000_000
CHIP_SYNAPSES = 120_000_000
# ~128 KB of flexibly partitioned SRAM per core: secondary sources; AN ESTIMATE (docs/api.md, Background).
SRAM_BYTES_PER_CORE = 128 * 1024
