"""The training flags of ``ilif-lava pipeline`` / ``train`` and the :class:`training.train.TrainConfig` they give."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ilif_lava.names import (AMP_DTYPES, ARCHS, DATASETS, INHIBITIONS, MAX_BATCH, MAX_EPOCHS, MAX_HIDDEN,
                             MAX_TIME_BINS, NEURONS, SURROGATES)
from pipeline.cli_types import (bounded_int, device, finite, nonneg_float, positive_float, positive_int, tau,
                                unit_float)


def add_train_args(p: argparse.ArgumentParser) -> None:
    from pipeline.recipes import NAMED
    p.add_argument("--recipe", choices=sorted(NAMED), default=None,
                   help="a paper row's settings (Table 4: dataset, network, T, epochs, optimiser, loss, dropout); "
                        "other flags override single values")
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, default=None,
                   help="digits (sklearn, offline, default), nmnist, pokerdvs (offline from --data-dir or "
                        "../shared/data), dvsgesture, cifar10dvs (tonic), cifar10, cifar100 (torchvision format)")
    g.add_argument("--data-dir", default=None, help="folder with the dataset files (default: $ILIF_LAVA_DATA, "
                                                    "then ../shared/data)")
    g.add_argument("--download", action="store_true",
                   help="fetch a missing dataset (cifar10/100, dvsgesture, cifar10dvs, nmnist) into --data-dir or "
                        "the cache ($ILIF_LAVA_CACHE, ~/.cache/ilif-lava)")
    g.add_argument("--augment", action="store_true", help="cifar10/100 only: random crop (pad 4) + horizontal flip")
    g.add_argument("--workers", type=bounded_int(0, 64), default=None,
                   help="DataLoader worker processes per training process (default 0: load in the main process)")
    g.add_argument("-T", "--time-bins", type=bounded_int(1, MAX_TIME_BINS), default=None,
                   help=f"time steps per sample (at most {MAX_TIME_BINS})")
    g.add_argument("--limit-train", type=positive_int, default=None, help="use only the first N training samples")
    g.add_argument("--limit-test", type=positive_int, default=None, help="use only the first N test samples")
    g = p.add_argument_group("network")
    g.add_argument("--arch", choices=ARCHS, default=None,
                   help="mlp (default), cnn, cnnbn (cnn with batch norm, folded at export), vgg11 (deployable "
                        "slayer blocks), vgg11bn (the paper's VGG-11-BN, deployable: batch norm and average pools "
                        "folded, integer readout, pipelined timing); resnet18 (the paper's PreAct ResNet-18, logit "
                        "outputs, not deployable)")
    g.add_argument("--dropout", type=unit_float, default=None, help="dropout of resnet18 / vgg11bn (paper 0.1-0.4)")
    g.add_argument("--neuron", choices=NEURONS, default="ILIF",
                   help="ILIF variant (paper Table 2/3) or stock lava-dl CUBA-LIF")
    g.add_argument("--hidden", type=bounded_int(1, MAX_HIDDEN), default=None,
                   help=f"hidden width (VGG-11: width scale x/512; at most {MAX_HIDDEN})")
    g.add_argument("--weight-scale", type=positive_float, default=None,
                   help="initial weight scale (slayer's; raise it when sparse inputs leave layers silent)")
    g.add_argument("--tau", type=tau, default=None, help="membrane time constant, lambda = 1 - 1/tau (>= 1)")
    g.add_argument("--kappa", type=unit_float, default=None, help="CIU decay (paper 0.03)")
    g.add_argument("--threshold", type=positive_float, default=None, help="firing threshold (float units)")
    g.add_argument("--inhibition", choices=INHIBITIONS, default=None,
                   help="inhibition function; 'plan' trains exactly what fixed point deploys")
    g.add_argument("--surrogate", choices=SURROGATES, default=None)
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=bounded_int(0, MAX_EPOCHS), default=None, help="float training epochs")
    g.add_argument("--qat-epochs", type=bounded_int(0, MAX_EPOCHS), default=None,
                   help="quantization-aware fine-tuning epochs")
    g.add_argument("--batch-size", type=bounded_int(1, MAX_BATCH), default=None)
    g.add_argument("--lr", type=positive_float, default=None)
    g.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="sgd = momentum 0.9 (paper)")
    g.add_argument("--loss", choices=("rate", "tet", "count"), default=None,
                   help="count (default): slayer-style spike-rate MSE; rate: CE on spike rates; tet: the paper's TET-style loss")
    g.add_argument("--momentum", type=unit_float, default=None, help="SGD momentum (default 0.9)")
    g.add_argument("--weight-decay", type=nonneg_float, default=None)
    g.add_argument("--seed", type=bounded_int(0, 2 ** 32 - 1), default=None)
    g.add_argument("--device", type=device, default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    g.add_argument("--amp", choices=AMP_DTYPES, default=None, help="mixed precision on CUDA (bf16 or fp16)")


def train_config(args: argparse.Namespace):
    """The run's :class:`TrainConfig`. Resolves ``--recipe`` / defaults into ``args.dataset`` and ``args.arch``
    (so the default run folder follows the recipe)."""
    from pipeline.recipes import resolve
    from training.train import TrainConfig
    base = resolve(args.recipe, args.dataset, args.arch)
    args.dataset, args.arch = base["dataset"], base["arch"]
    over = {k: v for k, v in {"time_bins": args.time_bins, "limit_train": args.limit_train,
                              "limit_test": args.limit_test, "hidden": args.hidden,
                              "weight_scale": args.weight_scale, "epochs": args.epochs,
                              "qat_epochs": args.qat_epochs, "batch_size": args.batch_size, "lr": args.lr,
                              "optimizer": args.optimizer, "loss": args.loss, "seed": args.seed,
                              "momentum": args.momentum, "weight_decay": args.weight_decay,
                              "dropout": args.dropout, "workers": args.workers, "amp": args.amp}.items()
            if v is not None}
    neuron_over = dict(base.get("neuron_overrides", {}))
    neuron_over.update({k: v for k, v in {"tau": args.tau, "kappa": args.kappa, "threshold": args.threshold,
                                          "inhibition": args.inhibition, "surrogate": args.surrogate}.items()
                        if v is not None})
    if args.neuron == "CUBA":
        neuron_over = {k: v for k, v in neuron_over.items() if k == "threshold"}
    cfg = TrainConfig(**{**base, **over, "data_dir": args.data_dir, "neuron": args.neuron,
                         "neuron_overrides": neuron_over, "device": args.device, "download": args.download,
                         "augment": args.augment or base.get("augment", False)})
    cfg.validate()
    return cfg


if TYPE_CHECKING:  # the type only: importing training.train here would load torch before the parser is built
    from training.train import TrainConfig


def stage_train(cfg: "TrainConfig", run_dir: Path, resume: bool = True, progress: bool = True) -> Path:
    """Train ``cfg`` (a :class:`training.train.TrainConfig`) into ``RUN/train/`` (model.pt, checkpoint.pt, log.jsonl,
    config.json); returns the model file. Imports only the training code (``ilif-lava train`` loads neither Lava's
    runtime nor the export, simulation and report stages)."""
    from training.train import train
    return train(cfg, Path(run_dir) / "train", resume=resume, progress=progress)
