"""Small helpers shared by the torch-vs-Lava tests."""
from __future__ import annotations

from typing import List

import numpy as np
import torch


def forward_all(blocks, x: torch.Tensor) -> List[torch.Tensor]:
    """Run blocks in sequence without gradients; the output of every block."""
    outs, h = [], x
    with torch.no_grad():
        for b in blocks:
            h = b(h)
            outs.append(h)
    return outs


def flat(t: torch.Tensor) -> np.ndarray:
    """[N, C(, H, W), T] -> [N, C*H*W, T] (slayer CHW order, as run_network returns)."""
    return t.reshape(t.shape[0], -1, t.shape[-1]).cpu().numpy()
