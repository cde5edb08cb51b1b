"""Loihi 2 resource *estimate* of a netx HDF5 network, per layer (every number is flagged ``estimate=True``).

Neurons, fan-in / fan-out, synapses, stored weights, synaptic-memory words, state words and cores, from the
capacities of :mod:`ilif_lava.loihi2.limits` (estimates: the real mapper is closed).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from ilif_lava import netx_schema as schema
from ilif_lava.loihi2.findings import jsonable
from ilif_lava.loihi2.layers import PathOrH5, ints, layer_items, layer_type, neuron_type, open_layers
from ilif_lava.loihi2.limits import (NEURONS_PER_CORE_MAX, REFERENCE_STATE_WORDS, STATE_BITS, SYNAPSES_PER_WORD,
                                     SYNMEM_WORDS_PER_CORE, WEIGHT_BITS)
from ilif_lava.metrics import fan_out_conv
from ilif_lava.netx_schema import K, T


@dataclass
class LayerResource:
    """Estimated Loihi 2 resources of one layer (``estimate`` is always True: the real mapper is closed).

    ``fan_in``: synaptic inputs per neuron of this layer. ``fan_out_max`` / ``fan_out_mean``: neurons of the next
    synaptic layer reached by one neuron of this layer (0 for the last). ``synapses``: ``fan_in * neurons``
    (conv: taps on padding included). ``stored_weights``: weights held in synaptic memory (dense: in * out;
    conv: the shared kernel, out * in / groups * kh * kw; pool: the weight array). ``synapse_words`` =
    ceil(stored_weights / SYNAPSES_PER_WORD). ``state_words_per_neuron``: 24-bit words (CUBA: u, v; ILIF: u, v,
    c, m, dropping c with CIU off and m with MPIU off), ``state_extra_bits_per_neuron``: ILIF's previous spike
    (1 bit, needed by the CIU). ``cores`` = max(cores_by_neurons, cores_by_synmem).
    """

    layer: int
    type: str
    neuron_type: Optional[str]
    neurons: int
    fan_in: int
    fan_out_max: int
    fan_out_mean: float
    synapses: int
    stored_weights: int
    weight_bits: int
    weight_memory_bits: int
    synapse_words: int
    state_words_per_neuron: int
    state_extra_bits_per_neuron: int
    state_memory_bits: int
    neurons_per_core: int
    cores_by_neurons: int
    cores_by_synmem: int
    cores: int
    fits_one_core: bool
    estimate: bool = True
    notes: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {k: jsonable(v) for k, v in asdict(self).items()}


def _state_layout(g: h5py.Group) -> Tuple[int, int, str]:
    """(24-bit state words, extra bits, note) per neuron for the layer's neuron type."""
    ntype = neuron_type(g)
    if ntype is None:
        return 0, 0, ""
    if ntype == schema.ILIF_NEURON_TYPE:
        n = g[K.NEURON]
        table = schema.NEURON_TYPES[ntype]
        mpiu, ciu = (bool(np.asarray(n[k][()]).ravel()[0]) if k in n else bool(table.key(k).default)
                     for k in (K.MPIU, K.CIU))
        words = 2 + int(ciu) + int(mpiu)
        names = "u, v" + (", c" if ciu else "") + (", m" if mpiu else "")
        extra = 1 if ciu else 0
        return words, extra, f"ILIF state {names}" + (" + 1-bit previous spike" if ciu else "")
    return 2, 0, f"{ntype} state u, v"


def _conv_fan_out_bound(out_per_group: int, kernel: Sequence[int], stride: Sequence[int],
                        dilation: Sequence[int]) -> int:
    """Upper bound of a conv's fan-out when the input shape is unknown (taps per axis hitting one position)."""
    b = out_per_group
    for k, s, d in zip(kernel, stride, dilation):
        period = s // math.gcd(s, d)
        b *= min(k, -(-k // period))
    return int(b)


def _incoming(g: h5py.Group, ltype: str, in_shape: Optional[Tuple[int, ...]],
              in_neurons: int) -> Tuple[int, int, int, float, int, str]:
    """(fan_in, synapses, stored_weights, fan_out_mean over inputs, fan_out_max over inputs, note) of a layer."""
    neurons = int(np.prod(ints(g[K.SHAPE][()]))) if K.SHAPE in g else 0
    note = ""
    if ltype in (T.DENSE, T.DENSE_REC):
        fin = int(np.asarray(g[K.IN_FEATURES][()])) if K.IN_FEATURES in g else int(g[K.WEIGHT].shape[-1])
        fout = int(np.asarray(g[K.OUT_FEATURES][()])) if K.OUT_FEATURES in g else neurons
        stored = fin * fout
        if ltype == T.DENSE_REC:
            fin += fout
            stored += fout * fout
        return fin, fin * neurons, stored, float(fout), fout, note
    if ltype in (T.CONV, T.POOL):
        kernel = ints(g[K.KERNEL_SIZE][()]) if K.KERNEL_SIZE in g else (1, 1)
        kernel = kernel * 2 if len(kernel) == 1 else kernel
        stride = ints(g[K.STRIDE][()]) if K.STRIDE in g else (kernel if ltype == T.POOL else (1, 1))
        padding = ints(g[K.PADDING][()]) if K.PADDING in g else (0, 0)
        dilation = ints(g[K.DILATION][()]) if K.DILATION in g else (1, 1)
        stride, padding, dilation = (t * 2 if len(t) == 1 else t for t in (stride, padding, dilation))
        if ltype == T.CONV:
            cin = int(np.asarray(g[K.IN_CHANNELS][()]))
            cout = int(np.asarray(g[K.OUT_CHANNELS][()]))
            groups = int(np.asarray(g[K.GROUPS][()])) if K.GROUPS in g else 1
            stored = cout * (cin // groups) * kernel[0] * kernel[1]
        else:
            cin = cout = int(ints(g[K.SHAPE][()])[0])
            groups = cin
            stored = int(g[K.WEIGHT].size) if K.WEIGHT in g else 1      # metadata only
        fin = (cin // groups) * kernel[0] * kernel[1]
        if in_shape is not None and len(in_shape) == 3 and in_shape[0] == cin:
            fo = fan_out_conv(in_shape, cout, kernel, stride, padding, dilation, groups)
            fo_max, fo_mean = int(fo.max()), float(fo.mean())
        else:
            fo_max = _conv_fan_out_bound(cout // groups, kernel, stride, dilation)
            fo_mean = fin * neurons / in_neurons if in_neurons else float(fo_max)
            note = "fan-out of the inputs is a bound (input shape unknown)"
        return fin, fin * neurons, stored, fo_mean, fo_max, note
    return 0, 0, 0, 0.0, 0, note


def _skips_incoming(g: h5py.Group, neurons: int, shapes: Dict[int, Tuple[int, ...]],
                    skip_fan_out: Dict[int, List[np.ndarray]]) -> Tuple[int, int, int, str]:
    """(fan_in, synapses, stored_weights, note) added by a fan-in layer's skip synapses (``skip/<j>``: 1x1
    convolutions, ilif_lava/graph.py); records each skip's fan-out [C, H, W] under its source layer."""
    if K.SKIP not in g:
        return 0, 0, 0, ""
    fin = stored = 0
    for j in sorted(g[K.SKIP], key=int):
        sg = g[K.SKIP][j]
        cin, cout = int(np.asarray(sg[K.IN_CHANNELS][()])), int(np.asarray(sg[K.OUT_CHANNELS][()]))
        stride = ints(sg[K.STRIDE][()])
        stride = stride * 2 if len(stride) == 1 else stride
        fin += cin
        stored += cin * cout
        src = int(np.asarray(sg[K.SOURCE][()]))
        if src in shapes and len(shapes[src]) == 3:
            skip_fan_out.setdefault(src, []).append(fan_out_conv(shapes[src], cout, (1, 1), stride))
    n = len(g[K.SKIP])
    return fin, fin * neurons, stored, f"{n} skip synapse{'s' if n > 1 else ''} (1x1) included"


def estimate_resources(path_or_h5: PathOrH5, neurons_per_core: int = NEURONS_PER_CORE_MAX,
                       synmem_words_per_core: int = SYNMEM_WORDS_PER_CORE,
                       synapses_per_word: int = SYNAPSES_PER_WORD, weight_bits: int = WEIGHT_BITS,
                       scale_by_state_words: bool = True) -> List[LayerResource]:
    """Per-layer Loihi 2 resource estimate for every layer with neurons (flatten layers are skipped).

    ``neurons_per_core`` is the cap for a CUBA neuron (2 state words); with ``scale_by_state_words`` it is scaled
    by ``REFERENCE_STATE_WORDS / state_words`` (ILIF with 4 words: half). Estimated cores =
    max(ceil(neurons / neurons_per_core), ceil(synapse_words / synmem_words_per_core)). All numbers are
    estimates: 8192 neurons/core is a secondary-source upper bound (PilotNet conv layers were observed at
    2048-3168), 12000 SynMem words/core is the register value in the PilotNet benchmark notebook's compiler
    log, and 2 synapses/word is our calibration to that log (see the constants above).
    """
    rows: List[Dict[str, Any]] = []
    shapes: Dict[int, Tuple[int, ...]] = {}                       # layer -> output shape (C, H, W)
    skip_fan_out: Dict[int, List[np.ndarray]] = {}                 # source layer -> fan-out [C, H, W] per skip
    with open_layers(path_or_h5) as layers:
        prev_shape: Optional[Tuple[int, ...]] = None
        prev_neurons = 0
        for idx, g in layer_items(layers):
            ltype = layer_type(g)
            shape = ints(g[K.SHAPE][()]) if K.SHAPE in g else ()
            neurons = int(np.prod(shape)) if shape else 0
            if ltype == T.FLATTEN:
                prev_shape = (int(np.prod(prev_shape)),) if prev_shape else shape
                continue
            fin, syn, stored, fo_mean_in, fo_max_in, note = _incoming(g, ltype, prev_shape, prev_neurons)
            sfin, ssyn, sstored, snote_k = _skips_incoming(g, neurons, shapes, skip_fan_out)
            words, extra, snote = _state_layout(g)
            rows.append(dict(index=idx, ltype=ltype, neuron_type=neuron_type(g), neurons=neurons, fan_in=fin + sfin,
                             synapses=syn + ssyn, stored_weights=stored + sstored, words=words, extra=extra,
                             notes="; ".join(x for x in (snote, note, snote_k) if x),
                             in_fo=(fo_max_in, fo_mean_in)))
            prev_shape, prev_neurons = shape, neurons
            shapes[idx] = shape

    out: List[LayerResource] = []
    for i, r in enumerate(rows):
        nxt = rows[i + 1]["in_fo"] if i + 1 < len(rows) else (0, 0.0)
        for fo in skip_fan_out.get(r["index"], ()):     # a skip source: its spikes also reach the skip's targets
            nxt = (int(nxt[0]) + int(fo.max()), float(nxt[1]) + float(fo.mean()))     # max: an upper bound
        words = r["words"]
        npc = int(neurons_per_core)
        if scale_by_state_words and words > REFERENCE_STATE_WORDS:
            npc = max(1, (npc * REFERENCE_STATE_WORDS) // words)
        syn_words = -(-r["stored_weights"] // int(synapses_per_word))
        c_n = -(-r["neurons"] // npc) if r["neurons"] else 0
        c_s = -(-syn_words // int(synmem_words_per_core)) if syn_words else 0
        cores = max(c_n, c_s)
        out.append(LayerResource(
            layer=r["index"], type=r["ltype"], neuron_type=r["neuron_type"], neurons=r["neurons"], fan_in=r["fan_in"],
            fan_out_max=int(nxt[0]), fan_out_mean=float(nxt[1]), synapses=r["synapses"],
            stored_weights=r["stored_weights"], weight_bits=int(weight_bits),
            weight_memory_bits=r["stored_weights"] * int(weight_bits), synapse_words=syn_words,
            state_words_per_neuron=words, state_extra_bits_per_neuron=r["extra"],
            state_memory_bits=r["neurons"] * (words * STATE_BITS + r["extra"]), neurons_per_core=npc,
            cores_by_neurons=c_n, cores_by_synmem=c_s, cores=cores, fits_one_core=cores <= 1, estimate=True,
            notes=r["notes"]))
    return out
