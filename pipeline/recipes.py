"""Named training recipes per dataset (the defaults behind ``ilif-lava pipeline --dataset X``).

Sized so the offline datasets finish on 2 CPU cores: digits (the demo) in about a minute of training,
nmnist_small in a few minutes. The paper's full recipe (SGD 0.1, cosine, 200 epochs, TET loss) is available
through the flags ``--optimizer sgd --lr 0.1 --epochs 200 --loss tet``.
"""
from __future__ import annotations

from typing import Any, Dict

RECIPES: Dict[str, Dict[str, Any]] = {
    "digits": {"time_bins": 16, "epochs": 12, "qat_epochs": 2, "batch_size": 32, "lr": 1e-2, "hidden": 128},
    "nmnist": {"time_bins": 24, "epochs": 12, "qat_epochs": 2, "batch_size": 32, "lr": 3e-3, "hidden": 128},
    "pokerdvs": {"time_bins": 24, "epochs": 10, "qat_epochs": 2, "batch_size": 8, "lr": 3e-3, "hidden": 64,
                 "weight_scale": 4.0},
    "dvsgesture": {"time_bins": 20, "epochs": 200, "qat_epochs": 5, "batch_size": 16, "lr": 0.1,
                   "optimizer": "sgd", "loss": "tet", "neuron_overrides": {"kappa": 0.05}},
    "cifar10dvs": {"time_bins": 10, "epochs": 200, "qat_epochs": 5, "batch_size": 128, "lr": 0.05,
                   "optimizer": "sgd", "loss": "tet"},
}


def recipe(dataset: str, arch: str = "mlp") -> Dict[str, Any]:
    """A copy of the recipe for ``dataset`` (unknown datasets get the digits recipe)."""
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in RECIPES.get(dataset, RECIPES["digits"]).items()}
