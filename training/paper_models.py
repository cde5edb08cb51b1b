"""The paper's networks (``resnet18``, ``vgg11bn``): what they share. Both are built from deployable blocks:
``vgg11bn`` in :mod:`training.models`, ``resnet18`` in :mod:`training.resnet_blocks` (fan-in layers for the residual
additions, ilif_lava/graph.py). Their outputs are logits (an integer readout), so they train with ``--loss tet`` or
``rate``. ``ilif_lava.names.PAPER_ARCHS`` names them.

Widths are the paper's scaled by ``hidden / 512`` (at least 4 channels, :func:`scaled_width`), so ``hidden=512`` is
the paper's network and tiny widths run on a CPU.
"""
from __future__ import annotations


def scaled_width(channels: int, hidden: int) -> int:
    """``channels`` scaled by ``hidden / 512`` (the paper's width at 512), at least 4."""
    return max(4, int(channels * hidden / 512))
