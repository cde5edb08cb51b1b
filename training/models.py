"""Network definitions: MLP, small conv net, VGG-11 (paper, for DVS data), with ILIF or stock CUBA-LIF blocks;
the paper's batch-norm networks ``vgg11bn`` (here) and ``resnet18`` (training/resnet_blocks.py), built from
deployable blocks (same interface).

All networks take spikes [N, C, H, W, T] and return output spikes [N, classes, T] plus the spikes of every
block (for metrics). Every block uses ``delay_shift=True`` so slayer indices line up with Lava's (one step of
synaptic latency per layer). The output layer is spiking (deployable); the prediction is the spike count argmax.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from lava.lib.dl.slayer.block import cuba

from ilif_lava import block as ilif_block

from ilif_lava.names import ARCHS, NEURONS
from training.net_switches import NeuronSwitches

DEFAULT_ILIF = {"threshold": 1.0, "tau": 2.0, "beta": 1.0, "kappa": 0.03, "inhibition": "plan",
                "surrogate": "rectangle", "gamma": 1.0}
DEFAULT_CUBA = {"threshold": 1.0, "current_decay": 1.0, "voltage_decay": 0.5, "tau_grad": 0.1,
                "scale_grad": 1.0, "requires_grad": False}


def neuron_params_for(neuron: str, overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Default ``neuron_params`` for a neuron family ('CUBA' or an ILIF variant), updated by ``overrides``."""
    if neuron not in NEURONS:
        raise ValueError(f"unknown neuron {neuron!r}; choose one of {NEURONS}")
    params = dict(DEFAULT_CUBA) if neuron == "CUBA" else dict(DEFAULT_ILIF, variant=neuron)
    params.update(overrides or {})
    return params


def _blocks_module(neuron: str):
    return cuba if neuron == "CUBA" else ilif_block


class SpikingNet(NeuronSwitches, torch.nn.Module):
    """A feed-forward stack of slayer-style blocks. ``forward(x [N, C, H, W, T]) -> (out [N, K, T], spikes list)``."""

    def __init__(self, blocks: Sequence[torch.nn.Module], flatten_input: bool, meta: Dict[str, Any]) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.flatten_input = flatten_input
        self.meta = meta

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if self.flatten_input and x.ndim == 5:
            x = x.reshape(x.shape[0], -1, x.shape[-1])
        spikes = []
        outs: List[torch.Tensor] = []
        for blk in self.blocks:
            sources = getattr(blk, "skip_sources", None)      # a fan-in layer: its skips read earlier outputs
            x = blk(x, [outs[j] for j in sources]) if sources else blk(x)
            outs.append(x)
            if getattr(blk, "neuron", None) is not None and not getattr(blk, "is_readout", False):
                spikes.append(x)
        return x, spikes

    def spiking_blocks(self) -> List[torch.nn.Module]:
        """The blocks whose neurons fire (in order); a readout (:class:`ilif_lava.block.Readout`) is not one."""
        return [b for b in self.blocks if getattr(b, "neuron", None) is not None
                and not getattr(b, "is_readout", False)]

    @property
    def readout(self) -> Optional[torch.nn.Module]:
        """The integer readout block ending the network (its output is logits), or None."""
        last = self.blocks[-1] if len(self.blocks) else None
        return last if getattr(last, "is_readout", False) else None

    @property
    def output_is_logits(self) -> bool:
        return self.readout is not None

    @property
    def pipelined(self) -> bool:
        """True when the blocks have no one-step synapse delay (``delay_shift=False``): deployed with netx's
        pipelined timing (sample k's step t reaches layer i on Lava step k*T + t + i + 2; per-layer resets)."""
        return ilif_block.is_pipelined(self.blocks)



def build_model(arch: str, in_shape: Sequence[int], num_classes: int, neuron: str = "ILIF",
                neuron_overrides: Optional[Dict[str, Any]] = None, hidden: int = 128,
                weight_norm: bool = False, weight_scale: float = 2.0, dropout: float = 0.0) -> Any:
    """Build a network for inputs shaped (C, H, W) with ``num_classes`` outputs (spikes; logits for the paper
    nets ``resnet18``/``vgg11bn``, whose ``dropout`` is the paper's; the slayer-block nets have none)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown network {arch!r}; choose one of {ARCHS}")
    p = neuron_params_for(neuron, neuron_overrides)
    c, h, w = (int(v) for v in in_shape)
    if arch == "vgg11bn":
        if neuron == "CUBA":
            raise ValueError("--arch vgg11bn needs an ILIF-family neuron (batch norm folds into the ILIF neuron "
                             "bias); use --arch vgg11 with --neuron CUBA")
        return _vgg11bn((c, h, w), num_classes, p, hidden, float(dropout),
                        {"arch": arch, "in_shape": [c, h, w], "num_classes": num_classes, "neuron": neuron,
                         "neuron_params": p, "hidden": hidden, "dropout": float(dropout)})
    if arch == "resnet18":
        if neuron == "CUBA":
            raise ValueError("--arch resnet18 needs an ILIF-family neuron (batch norm folds into the ILIF neuron "
                             "bias); use --arch vgg11 with --neuron CUBA")
        from training.resnet_blocks import resnet18_blocks
        meta = {"arch": arch, "in_shape": [c, h, w], "num_classes": num_classes, "neuron": neuron,
                "neuron_params": p, "hidden": hidden, "dropout": float(dropout)}
        return _initialised(SpikingNet(resnet18_blocks((c, h, w), num_classes, p, hidden, float(dropout)),
                                       flatten_input=False, meta=meta))
    mod = _blocks_module(neuron)
    kw = dict(weight_norm=weight_norm, delay_shift=True)
    ws = weight_scale  # initial weight scale (slayer's); sparse DVS input needs more to start spiking
    meta = {"arch": arch, "in_shape": [c, h, w], "num_classes": num_classes, "neuron": neuron,
            "neuron_params": p, "hidden": hidden, "weight_norm": weight_norm,
            "weight_scale": weight_scale}
    if arch == "mlp":
        blocks = [mod.Dense(p, c * h * w, hidden, weight_scale=ws, **kw),
                  mod.Dense(p, hidden, num_classes, weight_scale=ws, **kw)]
        return _initialised(SpikingNet(blocks, flatten_input=True, meta=meta))
    if arch in ("cnn", "cnnbn"):
        c1, c2 = 8, 16
        (kh, ph), (kw_, pw) = _first_conv_geometry(h), _first_conv_geometry(w)
        h1, w1 = (h + 2 * ph - kh + 1) // 4, (w + 2 * pw - kw_ + 1) // 4
        # cnnbn: batch norm after both convs and the hidden dense (folded into weights and neuron bias in QAT and
        # at export, ilif_lava.block); ILIF variants only (slayer's CUBA blocks have no such option)
        bn = {}
        if arch == "cnnbn":
            if neuron == "CUBA":
                raise ValueError("--arch cnnbn needs an ILIF-family neuron (batch norm folds into the ILIF neuron "
                                 "bias); use --arch cnn with --neuron CUBA")
            bn = {"batch_norm": True}
        blocks = [mod.Conv(p, c, c1, (kh, kw_), padding=(ph, pw), stride=1, weight_scale=ws, **kw, **bn),
                  mod.Pool(p, 2, stride=2, delay_shift=True),
                  mod.Conv(p, c1, c2, 3, padding=1, stride=1, weight_scale=ws, **kw, **bn),
                  mod.Pool(p, 2, stride=2, delay_shift=True),
                  mod.Flatten(),
                  mod.Dense(p, c2 * h1 * w1, hidden, weight_scale=ws, **kw, **bn),
                  mod.Dense(p, hidden, num_classes, weight_scale=ws, **kw)]
        return _initialised(SpikingNet(blocks, flatten_input=False, meta=meta))
    # VGG-11 as in the paper's DVS experiments (conv widths scaled by hidden/512 so tiny CPU tests are possible)
    scale = hidden / 512.0
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    blocks, ch, size = [], c, h
    for v in cfg:
        if v == "M":
            blocks.append(mod.Pool(p, 2, stride=2, delay_shift=True))
            size //= 2
        else:
            width = max(4, int(v * scale))
            blocks.append(mod.Conv(p, ch, width, 3, padding=1, weight_scale=ws, **kw))
            ch = width
    blocks += [mod.Flatten(), mod.Dense(p, ch * size * size, num_classes, weight_scale=ws, **kw)]
    return _initialised(SpikingNet(blocks, flatten_input=False, meta=meta))


VGG11_CFG = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


_VGG_FIRST_CONV = ((3, 1), (3, 0), (4, 0), (2, 0), (5, 0))    # (kernel, padding) candidates, the paper's first


def vgg11bn_first_conv(n: int) -> Tuple[int, int]:
    """(kernel, padding) of vgg11bn's first conv along an axis of ``n`` pixels: the paper's 3x3 with padding 1 when
    ``n`` is a multiple of 32, else the first candidate whose output is (34 -> 3x3 no padding, 35 -> 4x4), so the
    five 2x2 average pools fold exactly. ``ValueError`` (one line) when none fits."""
    for k, pad in _VGG_FIRST_CONV:
        out = n + 2 * pad - k + 1
        if out >= 32 and out % 32 == 0:
            return k, pad
    raise ValueError(f"--arch vgg11bn needs an input size whose first 3x3/4x4/5x5 convolution gives a multiple of "
                     f"32 pixels (five 2x2 average pools, folded exactly), e.g. 32, 34, 35, 64, 128; got {n}")


def vgg11bn_in_shape_ok(in_shape: Sequence[int]) -> None:
    """Raise ``ValueError`` unless the first conv can bring H and W to multiples of 32 (:func:`vgg11bn_first_conv`)."""
    vgg11bn_first_conv(int(in_shape[1]))
    vgg11bn_first_conv(int(in_shape[2]))


def _vgg11bn(in_shape: Sequence[int], num_classes: int, p: Dict[str, Any], hidden: int, dropout: float,
             meta: Dict[str, Any]) -> SpikingNet:
    """The paper's VGG-11-BN built from deployable blocks: each ``Conv3x3 -> BN -> neuron`` is a
    :class:`ilif_lava.block.Conv` with ``batch_norm=True`` (folded into 8-bit weights and the 13-bit neuron bias in
    QAT and at export); each ``AvgPool2d(2)`` is folded into the next synapse (``pre_pool=2``); the head is
    ``AvgPool2d(2) -> Linear`` as an integer :class:`ilif_lava.block.Readout` (logits). Widths are the paper's
    scaled by ``hidden / 512`` (at least 4). No synapse delay (``delay_shift=False``): deployed with pipelined
    timing. Differences from the authors' model: the head reads the pooled last feature map directly (their
    ``AdaptiveAvgPool2d(7)`` repeats a 1x1 map 49 times for 32x32 input, a tied-weight Linear), dropout is
    slayer's neuron dropout (the same neurons at every step) on every conv block, and batch norm takes its
    statistics over batch, space and time."""
    from training.paper_models import scaled_width
    vgg11bn_in_shape_ok(in_shape)
    conv_p = dict(p)
    if dropout > 0:
        from lava.lib.dl.slayer.neuron.dropout import Dropout
        conv_p["dropout"] = Dropout(p=dropout)
    blocks: List[torch.nn.Module] = []
    (kh, ph), (kw, pw) = vgg11bn_first_conv(int(in_shape[1])), vgg11bn_first_conv(int(in_shape[2]))
    ch, pool = int(in_shape[0]), 1
    size_h, size_w = int(in_shape[1]) + 2 * ph - kh + 1, int(in_shape[2]) + 2 * pw - kw + 1
    for v in VGG11_CFG:
        if v == "M":
            pool = 2
            continue
        width = scaled_width(int(v), hidden)
        geometry = dict(kernel_size=(kh, kw), padding=(ph, pw)) if not blocks else dict(kernel_size=3, padding=1)
        blocks.append(ilif_block.Conv(conv_p, ch, width, stride=1, pre_pool=pool, batch_norm=True,
                                      delay_shift=False, graded_input=not blocks, **geometry))
        size_h, size_w, ch, pool = size_h // pool, size_w // pool, width, 1
    blocks.append(ilif_block.Readout(p, ch * (size_h // 2) * (size_w // 2), num_classes, pre_pool=2,
                                     delay_shift=False))
    return _initialised(SpikingNet(blocks, flatten_input=False, meta=meta))


def _first_conv_geometry(n: int) -> Tuple[int, int]:
    """(kernel, padding) of the first conv so that both 2x2 pools see even sizes (exportable to netx)."""
    for k, pad in ((3, 1), (3, 0), (2, 0), (4, 0)):
        if (n + 2 * pad - k + 1) % 4 == 0:
            return k, pad
    raise AssertionError("unreachable: one candidate fits every n mod 4")


def _initialised(net: SpikingNet) -> SpikingNet:
    """Run one tiny zero input so every neuron knows its shape (slayer sets it on the first forward); in eval mode,
    so batch norms keep their initial running statistics."""
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, *net.meta["in_shape"], 2))
    return net.train()


def model_from_meta(meta: Dict[str, Any]) -> SpikingNet:
    """Rebuild an untrained model from the ``meta`` dict saved in checkpoints."""
    p = dict(meta["neuron_params"])
    p.pop("variant", None) if meta["neuron"] != "CUBA" else None
    return build_model(meta["arch"], meta["in_shape"], meta["num_classes"], meta["neuron"],
                       neuron_overrides=p, hidden=meta["hidden"], weight_norm=meta.get("weight_norm", False),
                       weight_scale=meta.get("weight_scale", 2.0), dropout=meta.get("dropout", 0.0))
