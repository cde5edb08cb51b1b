"""Loss functions on output spikes [N, K, T] and the spike-count prediction rule used by every engine."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("count", "rate", "tet")
LOGIT_SCALE = 8.0  # maps a spike (0/1) to a logit; CE on 0/1 outputs would barely separate classes


def predict(out_spikes) -> np.ndarray:
    """Class = argmax of spike counts over time (ties -> lowest index). Accepts torch or numpy [N, K, T]."""
    counts = out_spikes.sum(-1)
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    return np.asarray(counts).argmax(-1)


def predict_readout(values) -> np.ndarray:
    """Class = argmax of an integer readout's accumulator after the last step (``values`` [N, K, T], torch or
    numpy; ties -> lowest index): the sum of the per-step logits, as :func:`predict` of the logits."""
    last = values[..., -1]
    if isinstance(last, torch.Tensor):
        last = last.detach().cpu().numpy()
    return np.asarray(last).argmax(-1)


def predict_output(values, readout: bool) -> np.ndarray:
    """:func:`predict_readout` for a readout's accumulator, else :func:`predict` (spike counts)."""
    return predict_readout(values) if readout else predict(values)


def rate_ce(out: torch.Tensor, y: torch.Tensor, logit_scale: float = LOGIT_SCALE) -> torch.Tensor:
    """Cross-entropy on the mean of each output over time, times ``logit_scale`` (1 for logit outputs)."""
    return F.cross_entropy(logit_scale * out.mean(-1), y)


def tet(out: torch.Tensor, y: torch.Tensor, lam: float = 0.05, logit_scale: float = LOGIT_SCALE) -> torch.Tensor:
    """The paper's TET-style loss: (1 - lam) * CE over per-step outputs + lam * MSE(per-step outputs, 1).

    Spike outputs are scaled by ``logit_scale`` first; logit outputs (training/paper_models.py) use 1."""
    n, k, t = out.shape
    logits = logit_scale * out.permute(2, 0, 1).reshape(t * n, k)
    return (1 - lam) * F.cross_entropy(logits, y.repeat(t)) + lam * F.mse_loss(logits, torch.ones_like(logits))


def spike_count(out: torch.Tensor, y: torch.Tensor, true_rate: float = 0.5, false_rate: float = 0.05) -> torch.Tensor:
    """lava-dl's own spike-rate loss (``slayer.loss.SpikeRate``, mean reduction): MSE between each output's rate
    over time and its target rate (``true_rate`` for the label, ``false_rate`` for the others). ``out`` [N, K, T]."""
    from lava.lib.dl.slayer.loss import SpikeRate
    return SpikeRate(true_rate=true_rate, false_rate=false_rate, reduction="mean")(out, y)


def get_loss(name: str, logits: bool = False) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``name``; ``logits=True`` for networks whose outputs are logits, not spikes ('count' refused)."""
    table = {"rate": rate_ce, "tet": tet, "count": spike_count}
    if name not in table:
        raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")
    if not logits:
        return table[name]
    if name == "count":
        raise ValueError("--loss count compares spike rates; this network outputs logits: use --loss tet or rate")
    fn = table[name]
    return lambda out, y: fn(out, y, logit_scale=1.0)
