"""The paper's PreAct ResNet-18 (``resnet18``) built from deployable blocks: every spiking layer an ILIF block with
batch norm folded into its synapses, the residual additions as fan-in layers (:class:`ilif_lava.graph.FanInConv`).

Layout (../shared/docs/ilif-model.md section 3.2, widths scaled by ``hidden / 512``, at least 4): the analog stem
``Conv3x3(C_in, 64)`` and the first block's ``BN -> neuron`` are one :class:`ilif_lava.block.Conv` with
``graded_input`` (direct encoding). A PreAct block ``s = neuron(BN(x)); out = conv2(neuron(BN(conv1(s)))) +
shortcut(s)`` whose output ``x'`` goes to the next ``BN -> neuron`` becomes two layers:

* ``neuron(BN(conv1(s)))``: a :class:`ilif_lava.block.Conv` (3x3, the block's stride) from the block's input spikes;
* ``neuron(BN(conv2(.) + shortcut(s)))``, the *next* block's input neurons (or the head's): a
  :class:`~ilif_lava.graph.FanInConv` (3x3) with one skip from ``s``: the identity, or a 1x1 convolution with the
  block's stride when the shape changes. Batch norm acts on the sum, so it folds into both synapses.

Head: ``BN -> neuron`` (the last fan-in layer) ``-> global AvgPool -> Linear`` as an integer
:class:`ilif_lava.block.Readout` whose ``pre_pool`` is the final map size (the global pool folded exactly). Dropout
(the paper's, on ``conv2``'s input) is slayer's neuron dropout of the middle layer of each block. No synapse delay
(``delay_shift=False``): pipelined timing; latency T + 18 steps in Lava.

Differences from the authors' model: conv biases in front of a batch norm are dropped (the batch norm's mean
removes them); batch norm takes its statistics over batch, space and time; the identity shortcut is quantized to
8 bits after folding, like every synapse.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from ilif_lava import block as ilif_block
from ilif_lava.graph import FanInConv, Skip
from training.paper_models import scaled_width

RESNET18_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))     # (paper width, first block's stride), two blocks each


def resnet18_blocks(in_shape: Sequence[int], num_classes: int, p: Dict[str, Any], hidden: int,
                    dropout: float = 0.0) -> List[torch.nn.Module]:
    """The blocks of a deployable PreAct ResNet-18 for ``in_shape`` (C, H, W), in order (module docstring)."""
    c, h, w = (int(v) for v in in_shape)
    if min(h, w) < 8:
        raise ValueError(f"--arch resnet18 needs inputs of at least 8x8 pixels, got {h}x{w}")
    mid_p = dict(p)
    if dropout > 0:
        from lava.lib.dl.slayer.neuron.dropout import Dropout
        mid_p["dropout"] = Dropout(p=dropout)
    width = scaled_width(64, hidden)
    common = dict(padding=1, batch_norm=True, delay_shift=False)
    blocks: List[torch.nn.Module] = [ilif_block.Conv(p, c, width, 3, stride=1, graded_input=True, **common)]
    for channels, first_stride in RESNET18_STAGES:
        out = scaled_width(channels, hidden)
        for stride in (first_stride, 1):
            src = len(blocks) - 1                      # the block's input neurons s
            blocks.append(ilif_block.Conv(mid_p, width, out, 3, stride=stride, **common))
            identity = stride == 1 and width == out
            blocks.append(FanInConv(p, out, out, 3, stride=1, skips=[Skip(src, width, stride, identity)], **common))
            h, w, width = (h - 1) // stride + 1, (w - 1) // stride + 1, out
    blocks.append(ilif_block.Readout(p, width, num_classes, pre_pool=_global_pool(h, w), delay_shift=False))
    return blocks


def _global_pool(h: int, w: int) -> int:
    """The ``pre_pool`` of a global average pool over an h x w map (square maps only: a sum pool is k x k)."""
    if h != w:
        raise ValueError(f"--arch resnet18 needs a square final feature map for its global average pool, got {h}x{w}")
    return h
