"""Training recipes: the per-dataset defaults behind ``--dataset X`` and the paper's rows behind ``--recipe NAME``.

Per-dataset recipes (:data:`RECIPES`) are sized so the offline datasets finish on 2 CPU cores: digits (the demo) in
about a minute of training, nmnist_small in a few minutes.

Named recipes (:data:`NAMED`) are the rows of the paper's Table 4 (../shared/docs/ilif-model.md section 2.2 and
3.5): SGD (momentum 0.9) with a cosine schedule over 200 epochs, the TET-style loss, tau = 1.1 (the authors' code
default), beta = 1, kappa = 0.03 (0.05 for DVSGesture), the rectangle surrogate and the sigmoid inhibition map of
the paper. They set no QAT epochs (the paper trains float networks); add ``--qat-epochs N`` to train the folded,
quantized network that ``export`` deploys. Any flag given next to ``--recipe`` overrides that one value.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

RECIPES: Dict[str, Dict[str, Any]] = {
    "digits": {"time_bins": 16, "epochs": 12, "qat_epochs": 2, "batch_size": 32, "lr": 1e-2, "hidden": 128},
    "nmnist": {"time_bins": 24, "epochs": 12, "qat_epochs": 2, "batch_size": 32, "lr": 3e-3, "hidden": 128},
    "pokerdvs": {"time_bins": 24, "epochs": 10, "qat_epochs": 2, "batch_size": 8, "lr": 3e-3, "hidden": 64,
                 "weight_scale": 4.0},
    "dvsgesture": {"time_bins": 20, "epochs": 200, "qat_epochs": 5, "batch_size": 16, "lr": 0.1,
                   "optimizer": "sgd", "loss": "tet", "neuron_overrides": {"kappa": 0.05}},
    "cifar10dvs": {"time_bins": 10, "epochs": 200, "qat_epochs": 5, "batch_size": 128, "lr": 0.05,
                   "optimizer": "sgd", "loss": "tet"},
    "cifar10": {"time_bins": 6, "epochs": 200, "qat_epochs": 0, "batch_size": 128, "lr": 0.1, "optimizer": "sgd",
                "weight_decay": 5e-5, "loss": "tet"},
    "cifar100": {"time_bins": 6, "epochs": 200, "qat_epochs": 0, "batch_size": 128, "lr": 0.1, "optimizer": "sgd",
                 "weight_decay": 5e-4, "loss": "tet"},
}

_PAPER_NEURON = {"tau": 1.1, "beta": 1.0, "kappa": 0.03, "surrogate": "rectangle", "inhibition": "sigmoid"}
_PAPER_TRAIN = {"epochs": 200, "qat_epochs": 0, "optimizer": "sgd", "momentum": 0.9, "loss": "tet", "hidden": 512}


def _paper(dataset: str, arch: str, time_bins: int, batch: int, lr: float, wd: float, dropout: float,
           kappa: float = 0.03) -> Dict[str, Any]:
    return {**_PAPER_TRAIN, "dataset": dataset, "arch": arch, "time_bins": time_bins, "batch_size": batch,
            "lr": lr, "weight_decay": wd, "dropout": dropout, "neuron_overrides": {**_PAPER_NEURON, "kappa": kappa}}


#: ``--recipe`` name -> settings (Table 4: batch, epochs, lr, optimiser, weight decay, dropout, beta, kappa; T from
#: Table 1: CIFAR T = 6 (T = 4 is ``-T 4``), DVSCIFAR10 T = 10, DVSGesture T = 20)
NAMED: Dict[str, Dict[str, Any]] = {
    "paper-cifar10-resnet18": _paper("cifar10", "resnet18", 6, 128, 0.1, 5e-5, 0.1),
    "paper-cifar100-resnet18": _paper("cifar100", "resnet18", 6, 128, 0.1, 5e-4, 0.1),
    "paper-cifar10dvs-vgg11": _paper("cifar10dvs", "vgg11bn", 10, 128, 0.05, 5e-4, 0.3),
    "paper-dvsgesture-vgg11": _paper("dvsgesture", "vgg11bn", 20, 16, 0.1, 5e-4, 0.4, kappa=0.05),
}


def _copy(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items()}


def recipe(dataset: str, arch: str = "mlp") -> Dict[str, Any]:
    """A copy of the recipe for ``dataset`` (unknown datasets get the digits recipe)."""
    return _copy(RECIPES.get(dataset, RECIPES["digits"]))


def resolve(name: Optional[str], dataset: Optional[str], arch: Optional[str]) -> Dict[str, Any]:
    """Settings of ``--recipe name`` (or of the dataset recipe), always with 'dataset' and 'arch'.

    ``dataset`` / ``arch`` given on the command line win over the recipe's; a dataset other than the named
    recipe's is refused (the recipe's numbers are for its own data)."""
    if name is None:
        ds = dataset or "digits"
        return {**recipe(ds), "dataset": ds, "arch": arch or "mlp"}
    if name not in NAMED:
        raise ValueError(f"unknown --recipe {name!r}; choose one of {', '.join(sorted(NAMED))}")
    base = _copy(NAMED[name])
    if dataset is not None and dataset != base["dataset"]:
        raise ValueError(f"--recipe {name} is for --dataset {base['dataset']}, not {dataset}")
    base["arch"] = arch or base["arch"]
    return base
