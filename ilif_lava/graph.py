"""Residual (fan-in) layers: one ILIF neuron layer fed by several synapses, deployable to Lava bit-exactly.

A residual network such as the paper's PreAct ResNet-18 adds the output of a convolution to a shortcut from an
earlier layer's spikes (identity, or a 1x1 convolution when the shape changes) and normalises the sum before the
next neuron: ``s_i = neuron(BN(conv(s_{i-1}) + shortcut(s_j)))``. On Loihi 2 (and in Lava) that is one neuron
layer with two synapses: an InPort sums every connection that targets it. :class:`FanInConv` is that layer as a
slayer-style block: its own convolution from the previous block (``ilif_lava.block.Conv``, with everything that
block has: 8-bit weights, batch norm folded into the weights and the 13-bit neuron bias, dropout) plus
``skips``, each a 1x1 convolution with stride from the spikes of an earlier block. Batch norm acts on the sum,
so it folds into *every* synapse that feeds the neuron (each weight times the same scale) and one bias.

An identity shortcut is a 1x1 convolution whose weight is the identity (fixed, not trained); after folding it is
the batch-norm scale per channel, quantized to 8 bits like any weight, so quantization-aware training trains
exactly the deployed network.

Timing (pipelined networks only, ``delay_shift=False``): in Lava every hop costs one step, so layer ``i`` handles a
sample's step t on Lava step ``t + i + 2``; a skip from layer ``j`` to layer ``i`` runs on a Lava ``DelaySparse``
synapse with delay ``i - j - 1`` steps (:func:`skip_delay`), so both inputs of step t arrive together, as they
do in the PyTorch network. File format: ``layer/<i>/skip/<j>/`` (keys in :mod:`ilif_lava.netx_schema`,
``SKIP_KEYS``); the Lava synapse is :func:`skip_matrix`.

Limits: skips are 1x1 convolutions (identity or projection, any stride) into ``conv`` layers, from earlier conv
layers of the same network; a wider branch is a layer of its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
from lava.lib.dl.slayer.synapse import layer as synapse

from ilif_lava.block import Conv
from ilif_lava.netx_schema import MAX_SKIPS, K


@dataclass(frozen=True)
class Skip:
    """One skip synapse into a :class:`FanInConv`: from the spikes of block ``source`` (an index into the
    network's block list, earlier than the target) with ``in_channels`` channels, as a 1x1 convolution with
    ``stride``; ``identity=True``: the fixed identity map (``in_channels`` must equal the target's channels and
    ``stride`` be 1)."""

    source: int
    in_channels: int
    stride: int = 1
    identity: bool = False


class FanInConv(Conv):
    """An ILIF convolution block whose neurons also sum skip synapses from earlier blocks (module docstring).

    Takes :class:`ilif_lava.block.Conv`'s arguments (``delay_shift`` must be False: pipelined timing; no
    ``graded_input`` or ``pre_pool``) plus ``skips``, a sequence of :class:`Skip`. ``forward(x, skip_inputs)``:
    ``x`` [N, C_in, H, W, T] the previous block's spikes, ``skip_inputs`` one [N, C_j, H_j, W_j, T] spike tensor per
    skip (the source blocks' outputs); returns [N, C_out, H', W', T] spikes. Each skip's output must have the shape
    of the block's own synaptic output.
    """

    def __init__(self, *args, skips: Sequence[Skip] = (), **kwargs) -> None:
        if kwargs.get("delay_shift", True) is not False:
            raise ValueError("FanInConv: pass delay_shift=False (residual networks deploy with pipelined timing)")
        if kwargs.get("graded_input") or int(kwargs.get("pre_pool", 1)) != 1:
            raise ValueError("FanInConv: graded_input and pre_pool are not supported on a fan-in layer")
        super().__init__(*args, **kwargs)
        self._skip_inputs: Tuple[torch.Tensor, ...] = ()
        skips = tuple(skips)
        if not 1 <= len(skips) <= MAX_SKIPS:
            raise ValueError(f"FanInConv: give 1 to {MAX_SKIPS} skips, got {len(skips)}")
        out_ch = int(self.synapse.out_channels)
        self.skip_specs: Tuple[Skip, ...] = skips
        self.skips = torch.nn.ModuleList()
        for spec in skips:
            syn = synapse.Conv(int(spec.in_channels), out_ch, 1, stride=int(spec.stride),
                               pre_hook_fx=self.synapse.pre_hook_fx)
            if spec.identity:
                if spec.in_channels != out_ch or spec.stride != 1:
                    raise ValueError(f"FanInConv: an identity skip needs {out_ch} input channels and stride 1, got "
                                     f"{spec.in_channels} and {spec.stride}")
                with torch.no_grad():
                    syn.weight.copy_(torch.eye(out_ch).reshape(out_ch, out_ch, 1, 1, 1))
                syn.weight.requires_grad_(False)
            self.skips.append(syn)

    @property
    def skip_sources(self) -> List[int]:
        """Block indices of the skip sources, in skip order."""
        return [s.source for s in self.skip_specs]

    def extra_repr(self) -> str:
        parts = [super().extra_repr()]
        parts.append("skips=[" + ", ".join(f"{'identity' if s.identity else '1x1'} from {s.source}"
                                          + (f" stride {s.stride}" if s.stride != 1 else "")
                                          for s in self.skip_specs) + "]")
        return ", ".join(p for p in parts if p)

    def forward(self, x: torch.Tensor, skip_inputs: Sequence[torch.Tensor] = ()):  # type: ignore[override]
        """The block's forward (:class:`ilif_lava.block.Conv`) with the skip synapses' outputs added to its own
        synaptic input (:meth:`_synaptic_input`), so batch norm, folding, bias and timing are the block's."""
        if len(skip_inputs) != len(self.skips):
            raise ValueError(f"FanInConv: {len(self.skips)} skip input(s) expected, got {len(skip_inputs)}")
        self._skip_inputs = tuple(skip_inputs)
        try:
            return super().forward(x)
        finally:
            self._skip_inputs = ()

    def _synaptic_input(self, x: torch.Tensor) -> torch.Tensor:
        z = self.synapse(x)
        for j, (syn, xs) in enumerate(zip(self.skips, self._skip_inputs)):
            zs = syn(xs)
            if zs.shape != z.shape:
                raise ValueError(f"FanInConv: skip {j} (from block {self.skip_specs[j].source}) gives "
                                 f"{list(zs.shape)}, the block's own synapse {list(z.shape)}")
            z = z + zs
        return z

    def export_hdf5(self, handle, sources: Optional[Sequence[int]] = None) -> None:
        """The block's own ``conv`` layer (:meth:`ilif_lava.block.Conv.export_hdf5`), then ``skip/<j>/`` per skip:
        ``source`` (the source's layer index in the file: ``sources[j]``, default the block indices), channels,
        stride and the 8-bit weight mantissas [out, in] (batch norm folded, as the layer's own weight)."""
        super().export_hdf5(handle)
        sources = self.skip_sources if sources is None else list(sources)
        folding = getattr(self, "bn", None) is not None
        if folding:
            self.fold_now = True
        try:
            group = handle.create_group(K.SKIP)
            for j, (spec, syn, src) in enumerate(zip(self.skip_specs, self.skips, sources)):
                w = syn.pre_hook_fx(syn.weight, descale=True).detach().cpu().numpy()
                g = group.create_group(str(j))
                g.create_dataset(K.SOURCE, data=int(src))
                g.create_dataset(K.IN_CHANNELS, data=int(spec.in_channels))
                g.create_dataset(K.OUT_CHANNELS, data=int(syn.out_channels))
                g.create_dataset(K.STRIDE, data=np.array([int(spec.stride)] * 2))
                g.create_dataset(K.WEIGHT, data=w.reshape(w.shape[0], w.shape[1]).astype(np.float32))
        finally:
            if folding:
                self.fold_now = False


def skip_delay(source_depth: int, target_depth: int) -> int:
    """Extra Lava steps a skip synapse waits (pipelined timing: one step per hop, the synapse itself one hop)."""
    return int(target_depth) - int(source_depth) - 1


def skip_matrix(weight: np.ndarray, src_chw: Sequence[int], stride: Sequence[int]):
    """The skip synapse as a scipy CSR matrix [target neurons, source neurons] in Lava's neuron order.

    ``weight`` [C_out, C_in] integer mantissas; ``src_chw`` the source layer's (C, H, W); ``stride`` (along H,
    along W). Lava lays a conv layer out as (x, y, c) = (W, H, C), flattened in C order: neuron (x, y, c) has
    index ``(x * H + y) * C + c``. Output neuron (x', y', c') reads source (x' * s_W, y' * s_H, c) with weight
    ``weight[c', c]``.
    """
    from scipy.sparse import csr_matrix
    c_in, h, w = (int(v) for v in src_chw)
    c_out = int(weight.shape[0])
    if weight.shape != (c_out, c_in):
        raise ValueError(f"skip weight has shape {list(weight.shape)}, expected [{c_out}, {c_in}]")
    s_h, s_w = (int(v) for v in stride)
    ho, wo = (h - 1) // s_h + 1, (w - 1) // s_w + 1
    xo, yo = np.meshgrid(np.arange(wo), np.arange(ho), indexing="ij")          # [wo, ho]
    out_base = (xo * ho + yo).reshape(-1) * c_out                                # per output pixel
    in_base = ((xo * s_w) * h + yo * s_h).reshape(-1) * c_in
    co, ci = np.nonzero(weight)
    rows = (out_base[:, None] + co[None, :]).reshape(-1)
    cols = (in_base[:, None] + ci[None, :]).reshape(-1)
    vals = np.tile(weight[co, ci], out_base.size)
    return csr_matrix((vals.astype(np.int64), (rows, cols)), shape=(wo * ho * c_out, w * h * c_in))


__all__ = ["Skip", "FanInConv", "skip_delay", "skip_matrix"]
