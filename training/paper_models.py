"""The paper's PreAct ResNet-18 (``resnet18``) with batch norm, as a PyTorch network (training only).

The paper's VGG-11-BN (``vgg11bn``) is built from deployable blocks in :mod:`training.models`; :data:`PAPER_ARCHS`
names both (logit outputs). Layout from ../shared/docs/ilif-model.md section 3.2 (the authors' model files):
analog stem ``Conv3x3(C_in, 64, bias=False)`` (direct encoding: the image current enters the first block), four
stages of two ``PreActBlock`` (64 s1, 128 s2, 256 s2, 512 s2), head ``BN -> neuron -> global AvgPool -> Dropout
-> Linear``. ``PreActBlock``: ``s = neuron(BN(x)); out = conv3x3(s, stride, bias); out =
conv3x3(Dropout(neuron(BN(out))), bias) + shortcut(s)``, shortcut = identity on the spikes ``s`` or a 1x1 conv
(bias) when the shape changes. Block outputs are real-valued currents.

Widths are scaled by ``hidden / 512`` (at least 4 channels), so ``hidden=512`` is the paper's network and tiny widths
run on a CPU. Tensors are ``[N, C, H, W, T]`` (time last); convolutions, pooling and the head run on each step.
Differences from the authors' code: batch norm takes its statistics over batch, space *and* time (``BatchNorm3d``
on ``[N, C, H, W, T]``; theirs normalises each step separately with shared running statistics); the outputs are
``Linear`` logits ``[N, K, T]`` (not spikes), so train them with ``--loss tet`` or ``rate``.

Deployment: not to netx HDF5 (see :meth:`PaperNet.deploy_problems`): residual additions have no netx layer.
``export`` refuses it with a message naming the layer.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ilif_lava import metrics
from ilif_lava.block import fold_batchnorm  # its one definition (the blocks fold with it at export and in QAT)
from ilif_lava.names import NOT_DEPLOYABLE_ARCHS, PAPER_ARCHS  # noqa: F401  (training/models.py reads them here)
from ilif_lava.neuron import Neuron
from training.net_switches import NeuronSwitches

_RESNET_STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))


def scaled_width(channels: int, hidden: int) -> int:
    """``channels`` scaled by ``hidden / 512`` (the paper's width at 512), at least 4."""
    return max(4, int(channels * hidden / 512))


def per_step(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a 2-d ``module`` to every step of ``x [N, C, H, W, T]``; returns ``[N, C', H', W', T]``
    (or ``[N, F, T]`` when the module flattens)."""
    n, t = x.shape[0], x.shape[-1]
    y = module(x.movedim(-1, 1).reshape(n * t, *x.shape[1:-1]))
    return y.reshape(n, t, *y.shape[1:]).movedim(1, -1)


class TimeSharedDropout(nn.Module):
    """Dropout whose mask is drawn once per sample and reused at every step (``[N, C, H, W, T]``); identity in
    eval mode (the authors' spikingjelly ``layer.Dropout``)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty(*x.shape[:-1], 1, device=x.device, dtype=x.dtype).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class SpikingUnit(nn.Module):
    """``BatchNorm3d`` then the neuron: currents ``[N, C, H, W, T]`` -> spikes, same shape (float32)."""

    def __init__(self, channels: int, neuron: str, params: Dict[str, Any]) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(channels)
        if neuron == "CUBA":
            from lava.lib.dl.slayer.neuron import cuba
            self.neuron = cuba.Neuron(**params)
        else:
            self.neuron = Neuron(**params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.bn(x).float())     # the neuron's time loop stays float32 under --amp


class PaperNet(NeuronSwitches, nn.Module):
    """Common interface with :class:`training.models.SpikingNet`: ``forward(x) -> (logits [N, K, T], spikes)``."""

    output_is_logits = True

    def __init__(self, meta: Dict[str, Any]) -> None:
        super().__init__()
        self.meta = meta
        self._spikes: List[torch.Tensor] = []

    def unit(self, channels: int) -> SpikingUnit:
        m = self.meta
        return SpikingUnit(channels, m["neuron"], m["neuron_params"])

    def spike(self, unit: SpikingUnit, x: torch.Tensor) -> torch.Tensor:
        s = unit(x)
        self._spikes.append(s)
        return s

    def spiking_blocks(self) -> List[nn.Module]:
        return [m for m in self.modules() if isinstance(m, SpikingUnit)]

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        self._spikes = []
        out = self.features(x)
        spikes, self._spikes = self._spikes, []
        return out, spikes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def deploy_problems(self) -> List[str]:
        """Why each layer that stops netx/Lava deployment cannot be deployed, in network order."""
        raise NotImplementedError

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)


class PreActBlock(nn.Module):
    """``s = neuron(BN(x)); out = conv2(Dropout(neuron(BN(conv1(s))))) + shortcut(s)`` (currents in and out)."""

    def __init__(self, net: PaperNet, c_in: int, c_out: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.sn1 = net.unit(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=True)
        self.sn2 = net.unit(c_out)
        self.drop = TimeSharedDropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=True)
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, bias=True) if stride != 1 or c_in != c_out
                         else nn.Identity())

    def forward(self, x: torch.Tensor, net: PaperNet) -> torch.Tensor:
        s = net.spike(self.sn1, x)
        out = net.spike(self.sn2, per_step(self.conv1, s))
        return per_step(self.conv2, self.drop(out)) + per_step(self.shortcut, s)


class ResNet18(PaperNet):
    """PreAct ResNet-18 for 32x32 images (``resnet18``; module docstring)."""

    def __init__(self, meta: Dict[str, Any]) -> None:
        super().__init__(meta)
        c, hidden, p = meta["in_shape"][0], meta["hidden"], meta.get("dropout", 0.0)
        width = scaled_width(64, hidden)
        self.stem = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        blocks = []
        for channels, stride in _RESNET_STAGES:
            out = scaled_width(channels, hidden)
            blocks += [PreActBlock(self, width, out, stride, p), PreActBlock(self, out, out, 1, p)]
            width = out
        self.layers = nn.ModuleList(blocks)
        self.head_sn = self.unit(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = TimeSharedDropout(p)
        self.fc = nn.Linear(width, meta["num_classes"])
        self._init_weights()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = per_step(self.stem, x)
        for blk in self.layers:
            x = blk(x, self)
        s = self.spike(self.head_sn, x)
        pooled = per_step(self.pool, s).flatten(1, -2)         # [N, C, T]
        pooled = self.drop(pooled)
        return self.fc(pooled.movedim(-1, 1)).movedim(1, -1)   # [N, K, T]

    def spike_fan_outs(self) -> List[np.ndarray]:
        """Per spiking unit (``spiking_blocks()`` order), the fan-out of each of its neurons, int64 [C, H, W]: the
        synaptic operations one spike causes downstream (the ACs of ../shared/docs/ilif-model.md section 4).
        A block's first unit feeds ``conv1`` and the shortcut (a 1x1 conv, or the identity: one addition per
        spike); its second unit feeds ``conv2``; the head unit feeds the global average pool and the Linear layer
        (each spike reaches every class once). The analog stem reads the image, no spikes: not counted."""
        was_training = self.training
        self.eval()
        with torch.no_grad():      # one zero sample, one step: the unit shapes
            _, spikes = self(torch.zeros(1, *self.meta["in_shape"], 1))
        self.train(was_training)
        shapes = [tuple(int(v) for v in s.shape[1:-1]) for s in spikes]

        def conv(shape: Sequence[int], c: nn.Conv2d) -> np.ndarray:
            return metrics.fan_out_conv(shape, c.out_channels, c.kernel_size, c.stride, c.padding, c.dilation,
                                        c.groups)

        out: List[np.ndarray] = []
        for blk in self.layers:
            s1, s2 = shapes[len(out)], shapes[len(out) + 1]
            short = (conv(s1, blk.shortcut) if isinstance(blk.shortcut, nn.Conv2d)
                     else np.ones(s1, dtype=np.int64))
            out += [conv(s1, blk.conv1) + short, conv(s2, blk.conv2)]
        out.append(np.full(shapes[len(out)], self.fc.out_features, dtype=np.int64))
        return out

    def deploy_problems(self) -> List[str]:
        residual = [f"layers.{i}: residual addition conv2(...) + shortcut(...) (netx HDF5 and Lava's netx loader "
                    f"have no residual/add layer)" for i in range(len(self.layers))]
        return residual + [
            "stem: analog first convolution of the image (netx input layers take spikes)",
            "head_sn/fc: average pooling of spikes and a non-spiking Linear readout have no netx layer",
            "batch norm: folds into the weights and the neuron bias (ilif_lava.block.fold_batchnorm), but this "
            "network's QAT does not quantize them as deployed (ilif_lava.block's batch_norm=True does)"]


def build_paper_model(meta: Dict[str, Any]) -> PaperNet:
    """``meta``: arch (one of :data:`PAPER_ARCHS`), in_shape (C, H, W), num_classes, neuron, neuron_params,
    hidden, dropout."""
    if meta["arch"] != "resnet18":
        raise ValueError(f"build_paper_model builds resnet18 (vgg11bn is built from blocks by "
                         f"training.models.build_model), got {meta['arch']!r}")
    return ResNet18(meta)


def in_shape_ok(arch: str, in_shape: Sequence[int]) -> None:
    """Raise ``ValueError`` when the input is too small for the three strides of ``resnet18``."""
    need = 8
    if min(int(in_shape[1]), int(in_shape[2])) < need:
        raise ValueError(f"--arch {arch} needs inputs of at least {need}x{need} pixels, got "
                         f"{in_shape[1]}x{in_shape[2]}")
