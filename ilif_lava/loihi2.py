"""Loihi 2 constraint checks and a resource *estimate* for an exported netx HDF5 network.

There is no public Loihi 2 compiler (the Lava extension for Loihi is INRC-only), so:

* the **parameter limits** below come from the public bit-accurate Lava CPU models that netx targets
  (lava-nc 0.10.0 ``proc/lif/models.py`` and ``proc/dense/models.py``);
  they are Loihi-1-derived and are what the Lava fixed-point simulation (our reference) implements;
* the **per-core capacities** are estimates from secondary sources and from the compiler log printed in Intel's
  public PilotNet benchmark notebooks (lava-dl ``tutorials/lava/lib/dl/netx/pilotnet_snn/benchmark.ipynb``).
  Every resource number this module returns is flagged ``estimate=True``; the real mapper is closed.

The HDF5 layout, the keys, which are required and their Loihi 2 limits are the tables of
:mod:`ilif_lava.netx_schema`.

Dependencies: numpy and h5py (plus the numpy-only fan-out helper of :mod:`ilif_lava.metrics`).
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from ilif_lava import netx_schema as schema
from ilif_lava.file_limits import CHIP_CORES, CHIP_NEURONS, CHIP_SYNAPSES, SRAM_BYTES_PER_CORE  # noqa: F401
from ilif_lava.metrics import fan_out_conv
from ilif_lava.netx_schema import K, T
from ilif_lava.netx_schema.rules import (BIAS_LIMIT, DECAY_LIMIT, DELAY_LIMIT, INTEGER_INHIBITIONS,  # noqa: F401
                                         STATE_BITS, STATE_LIMIT, VTH_MANT_LIMIT, WEIGHT_BITS, WEIGHT_LIMIT, Limit)


# ---------------------------------------------------------------------------------------------------------
# limits
# ---------------------------------------------------------------------------------------------------------
# Per-core and per-chip capacities. ALL ARE ESTIMATES (docs/api.md, Background):
# * up to ~8 K neurons per core: secondary sources (summaries of the Intel Loihi 2 brief); an upper bound.
NEURONS_PER_CORE_MAX = 8192
# * 2048 .. 3168 neurons per core observed for PilotNet LIF conv layers in the public benchmark notebook.
NEURONS_PER_CORE_OBSERVED_CONV = (2048, 3168)
# * synaptic memory register seen in the same notebook's compiler log: ``registers[SynMem]=12000``.
SYNMEM_WORDS_PER_CORE = 12000
# * ~128 KB of flexibly partitioned SRAM per core (SRAM_BYTES_PER_CORE): see ilif_lava/file_limits.py.
# * Stored synapses per SynMem word: our calibration, not a documented figure. In the PilotNet log a dense layer
#   with 2560 inputs ends at 8 neurons per core after ``allocation=61440 ... max_ratio=6``; 61440 words hold
#   48 neurons * 2560 inputs at 2 synapses per word, and 48 / 6 = 8 neurons per core, matching the table.
SYNAPSES_PER_WORD = 2
# * Chip: 128 neuro-cores, up to 1 M neurons and 120 M synapses: see ilif_lava/file_limits.py.
# Neuron state words the per-core neuron cap refers to (CUBA/LIF: u and v).
REFERENCE_STATE_WORDS = 2

# the Loihi 2 limit of every key that has one, and the types the check knows (from the netx schema tables)
LAYER_KEY_LIMITS: Dict[str, Limit] = schema.layer_key_limits()
NEURON_KEY_LIMITS: Dict[str, Limit] = schema.neuron_key_limits()
KNOWN_LAYER_TYPES = tuple(n for n, t in schema.LAYER_TYPES.items() if t.resources)
STATE_NAMES = ("u", "v", "c", "m")


class Loihi2ConstraintError(ValueError):
    """A network violates a Loihi 2 parameter/state limit or the core budget."""


# ---------------------------------------------------------------------------------------------------------
# findings
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Finding:
    """Result of checking one parameter (or state) of one layer against its limit.

    ``headroom_bits`` = log2(limit_ref / max|value|): 0 at the limit, negative when exceeded, ``inf`` when all
    values are zero, ``nan`` when not applicable (e.g. strings).
    """

    layer: int
    key: str
    value_min: Optional[float]
    value_max: Optional[float]
    limit_min: Optional[float]
    limit_max: Optional[float]
    headroom_bits: float
    ok: bool
    message: str

    def to_dict(self) -> Dict[str, Any]:
        return {k: _jsonable(v) for k, v in asdict(self).items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def headroom_bits(max_abs: float, ref: float) -> float:
    """log2(ref / max_abs); ``inf`` when max_abs == 0."""
    if max_abs == 0:
        return math.inf
    return math.log2(float(ref) / float(max_abs))


STREAM_BYTES = 8 << 20      # datasets are checked in slabs of at most this many bytes (never whole in memory)


class _Stats:
    """Running range / integer / evenness statistics of the values of one parameter, slab by slab."""

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.size = self.nonfinite = self.n_out = self.n_nonint = self.n_odd = 0
        self.vmin, self.vmax, self.maxabs = math.inf, -math.inf, 0.0
        self.nonint_example: Optional[float] = None
        self.odd_example: Optional[float] = None

    def add(self, values: Any) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        self.size += v.size
        finite = np.isfinite(v)
        if not finite.all():
            self.nonfinite += int((~finite).sum())
            v = v[finite]
        if not v.size:
            return
        lim = self.limit
        self.vmin, self.vmax = min(self.vmin, float(v.min())), max(self.vmax, float(v.max()))
        self.maxabs = max(self.maxabs, float(np.abs(v).max()))
        self.n_out += int(((v < lim.lo) | (v > lim.hi)).sum())
        if lim.integer:
            nonint = v != np.round(v)
            if nonint.any():
                self.n_nonint += int(nonint.sum())
                if self.nonint_example is None:
                    self.nonint_example = float(v[nonint][0])
            if lim.even:
                odd = (~nonint) & (np.mod(v, 2) != 0)
                if odd.any():
                    self.n_odd += int(odd.sum())
                    if self.odd_example is None:
                        self.odd_example = float(v[odd][0])

    def finding(self, layer: int, key: str) -> Finding:
        limit = self.limit
        if self.size == 0:
            return Finding(layer, key, None, None, limit.lo, limit.hi, math.inf, True, f"layer {layer} {key}: empty")
        problems: List[str] = []
        if self.nonfinite:
            problems.append(f"{self.nonfinite} non-finite value(s)")
        if self.nonfinite == self.size:
            return Finding(layer, key, None, None, limit.lo, limit.hi, math.nan, False,
                           f"layer {layer} {key}: all values non-finite")
        head = headroom_bits(self.maxabs, limit.ref)
        if self.n_out:
            problems.append(f"{self.n_out} value(s) outside [{limit.lo}, {limit.hi}]")
        if self.n_nonint:
            problems.append(f"{self.n_nonint} non-integer value(s), e.g. {self.nonint_example:g}")
        if self.n_odd:
            problems.append(f"{self.n_odd} odd value(s), e.g. {self.odd_example:g} (must be even)")
        msg = (f"layer {layer} {key}: {self.vmin:g}..{self.vmax:g} vs [{limit.lo}, {limit.hi}] ({limit.name}), "
               f"headroom {head:.2f} bits")
        if problems:
            msg += "; " + "; ".join(problems)
        return Finding(layer, key, self.vmin, self.vmax, float(limit.lo), float(limit.hi), head, not problems, msg)


def check_values(layer: int, key: str, values: Any, limit: Limit) -> Finding:
    """Check an array of values against ``limit``: range, integer-ness and (for weights) evenness."""
    st = _Stats(limit)
    st.add(values)
    return st.finding(layer, key)


def _check_dataset(layer: int, key: str, ds: h5py.Dataset, limit: Limit) -> Tuple[Finding, bool]:
    """:func:`check_values` of a dataset read in slabs along its first axis; also whether all values are finite."""
    st = _Stats(limit)
    if ds.ndim == 0 or ds.size == 0 or ds.dtype.kind not in "biuf":
        st.add(ds[()])
    else:
        rows = max(1, STREAM_BYTES // max(1, ds.dtype.itemsize * (ds.size // ds.shape[0])))
        for i in range(0, ds.shape[0], rows):
            st.add(ds[i:i + rows])
    return st.finding(layer, key), st.nonfinite == 0


# ---------------------------------------------------------------------------------------------------------
# HDF5 reading
# ---------------------------------------------------------------------------------------------------------
PathOrH5 = Union[str, Path, h5py.File, h5py.Group]


@contextmanager
def _open_layers(path_or_h5: PathOrH5) -> Iterator[h5py.Group]:
    """Yield the ``layer`` group of a path, an open file or a group (the ``layer`` group itself is accepted)."""
    if isinstance(path_or_h5, (str, Path)):
        from ilif_lava.hdf5_validate import open_checked     # lazy: hdf5_validate imports this module
        with open_checked(path_or_h5) as f:                   # a FIFO / device / directory is never opened
            yield f[K.LAYER]
        return
    g = path_or_h5
    yield g[K.LAYER] if K.LAYER in g else g


def _layer_items(layers: h5py.Group) -> List[Tuple[int, h5py.Group]]:
    return sorted(((int(k), layers[k]) for k in layers.keys()), key=lambda kv: kv[0])


def _layer_type(g: h5py.Group) -> str:
    return schema.text(g[K.TYPE][()], strict=False).lower() if K.TYPE in g else ""


def _neuron_type(g: h5py.Group) -> Optional[str]:
    if K.NEURON not in g or not isinstance(g[K.NEURON], h5py.Group):
        return None
    n = g[K.NEURON]
    key = schema.NEURON_TYPE_KEY
    return schema.text(n[key][()], strict=False).upper() if key in n else schema.DEFAULT_NEURON_TYPE


def _ints(v: Any) -> Tuple[int, ...]:
    return tuple(int(x) for x in np.asarray(v).ravel())


# ---------------------------------------------------------------------------------------------------------
# parameter and state checks
# ---------------------------------------------------------------------------------------------------------
def check_parameters(path_or_h5: PathOrH5) -> List[Finding]:
    """Check every layer parameter of a netx HDF5 file against its Loihi 2 bit width and range.

    Returns one :class:`Finding` per (layer, key) present: weights (even integers in [-256, 254]), bias (13-bit),
    delay (<= 62), neuron decays (integers in [0, 4096]), vThMant (0 .. 2**17 - 1), ILIF ``inhibition``
    (must have an integer form), plus findings for missing required neuron keys and unknown types.
    Keys are paths relative to the layer group (``'weight'``, ``'neuron/vDecay'``).
    """
    findings: List[Finding] = []
    with _open_layers(path_or_h5) as layers:
        for idx, g in _layer_items(layers):
            ltype = _layer_type(g)
            if ltype not in KNOWN_LAYER_TYPES:
                findings.append(Finding(idx, K.TYPE, None, None, None, None, math.nan, False,
                                        f"layer {idx}: unknown layer type {ltype!r}"))
            for key, lim in LAYER_KEY_LIMITS.items():
                if key in g and isinstance(g[key], h5py.Dataset):
                    finding, finite = _check_dataset(idx, key, g[key], lim)
                    findings.append(finding)
                    if key == K.WEIGHT and ltype == T.DENSE and finite:
                        _flag_inhibitory_weights(finding)
            if K.NEURON in g and isinstance(g[K.NEURON], h5py.Group):
                findings.extend(_check_neuron(idx, g[K.NEURON]))
    return findings


def _flag_inhibitory_weights(f: Finding) -> None:
    """Fail the weight finding of a dense layer that Lava's inhibitory weight path would silently change.

    With no positive weight (all <= 0, some < 0) Lava's Dense model picks the INHIBITORY sign mode. netx's
    ``optimize_weight_bits`` scales the weights so that the most negative one lands on -256 whenever its magnitude
    is a power of two, and the model then clips -256 to -255 and truncates to ``num_weight_bits``: {-256, -2}
    runs as {-254, -2}, all -2 as all 0, {-64, -10, 0} as {-63, -10, 0} (measured with Lava 0.10 fixed_pt).
    Other all-negative layers (e.g. {-6, -10}) run exactly; conv layers are unaffected (netx passes their
    weights unscaled and the Conv model has no sign mode).
    """
    if f.value_min is None or f.value_max is None or f.value_max > 0 or f.value_min >= 0:
        return                                  # (called only for all-finite weights)
    mag = -float(f.value_min)
    if mag == 2.0 ** round(math.log2(mag)):
        f.ok = False
        f.message += (f"; no positive weight and min {-mag:g} is a power of two: Lava's inhibitory weight path "
                      f"changes such weights (e.g. {{-256, -2}} -> {{-254, -2}}, all -2 -> 0); "
                      f"add a positive weight or avoid a power-of-two minimum")


def _check_neuron(idx: int, n: h5py.Group) -> List[Finding]:
    out: List[Finding] = []
    type_key = schema.NEURON_TYPE_KEY
    ntype = schema.text(n[type_key][()], strict=False).upper() if type_key in n else schema.DEFAULT_NEURON_TYPE
    table = schema.NEURON_TYPES.get(ntype)
    if table is None or not table.fixed_point:
        out.append(Finding(idx, f"{K.NEURON}/{type_key}", None, None, None, None, math.nan, False,
                           f"layer {idx}: neuron type {ntype!r} has no known Loihi 2 / fixed-point model"))
    for key in (table.required if table is not None and table.fixed_point else ()):
        if key not in n:
            out.append(Finding(idx, f"{K.NEURON}/{key}", None, None, None, None, math.nan, False,
                               f"layer {idx}: {ntype} neuron is missing '{key}'"))
    for key, lim in NEURON_KEY_LIMITS.items():
        if key in n:
            out.append(check_values(idx, f"{K.NEURON}/{key}", n[key][()], lim))
    if K.INHIBITION in n:
        name = schema.text(n[K.INHIBITION][()], strict=False).lower()
        ok = name in INTEGER_INHIBITIONS
        msg = (f"layer {idx} {K.NEURON}/{K.INHIBITION}: {name!r}"
               + ("" if ok else f" has no shift/add integer form (use one of {INTEGER_INHIBITIONS})"))
        out.append(Finding(idx, f"{K.NEURON}/{K.INHIBITION}", None, None, None, None, math.nan, ok, msg))
    return out


def check_state_ranges(state_maxabs: Mapping[Tuple[int, str], Union[int, float]]) -> List[Finding]:
    """Recorded max |state| per (layer index, state name in u/v/c/m) against the 24-bit range (2**23 - 1).

    Exceeding it means ``u`` would wrap and ``v``, ``c``, ``m`` would saturate on Loihi (and in the Lava model).
    ``value_min`` is ``None`` (only the magnitude is recorded).
    """
    out: List[Finding] = []
    for (layer, name), maxabs in sorted(state_maxabs.items(), key=lambda kv: (int(kv[0][0]), str(kv[0][1]))):
        if name not in STATE_NAMES:
            raise ValueError(f"unknown state {name!r} for layer {layer}; expected one of {STATE_NAMES}")
        m = abs(float(maxabs))
        head = headroom_bits(m, STATE_LIMIT.ref)
        ok = m <= STATE_LIMIT.hi
        effect = "wraps" if name == "u" else "saturates"
        msg = (f"layer {layer} state/{name}: max |{name}| = {m:.0f} vs {STATE_LIMIT.hi} (24-bit), "
               f"headroom {head:.2f} bits" + ("" if ok else f"; exceeded: {name} {effect}"))
        out.append(Finding(int(layer), f"state/{name}", None, m, float(STATE_LIMIT.lo), float(STATE_LIMIT.hi),
                           head, ok, msg))
    return out


# ---------------------------------------------------------------------------------------------------------
# resource estimate
# ---------------------------------------------------------------------------------------------------------
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
        return {k: _jsonable(v) for k, v in asdict(self).items()}


def _state_layout(g: h5py.Group) -> Tuple[int, int, str]:
    """(24-bit state words, extra bits, note) per neuron for the layer's neuron type."""
    ntype = _neuron_type(g)
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
    neurons = int(np.prod(_ints(g[K.SHAPE][()]))) if K.SHAPE in g else 0
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
        kernel = _ints(g[K.KERNEL_SIZE][()]) if K.KERNEL_SIZE in g else (1, 1)
        kernel = kernel * 2 if len(kernel) == 1 else kernel
        stride = _ints(g[K.STRIDE][()]) if K.STRIDE in g else (kernel if ltype == T.POOL else (1, 1))
        padding = _ints(g[K.PADDING][()]) if K.PADDING in g else (0, 0)
        dilation = _ints(g[K.DILATION][()]) if K.DILATION in g else (1, 1)
        stride, padding, dilation = (t * 2 if len(t) == 1 else t for t in (stride, padding, dilation))
        if ltype == T.CONV:
            cin = int(np.asarray(g[K.IN_CHANNELS][()]))
            cout = int(np.asarray(g[K.OUT_CHANNELS][()]))
            groups = int(np.asarray(g[K.GROUPS][()])) if K.GROUPS in g else 1
            stored = cout * (cin // groups) * kernel[0] * kernel[1]
        else:
            cin = cout = int(_ints(g[K.SHAPE][()])[0])
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
    with _open_layers(path_or_h5) as layers:
        prev_shape: Optional[Tuple[int, ...]] = None
        prev_neurons = 0
        for idx, g in _layer_items(layers):
            ltype = _layer_type(g)
            shape = _ints(g[K.SHAPE][()]) if K.SHAPE in g else ()
            neurons = int(np.prod(shape)) if shape else 0
            if ltype == T.FLATTEN:
                prev_shape = (int(np.prod(prev_shape)),) if prev_shape else shape
                continue
            fin, syn, stored, fo_mean_in, fo_max_in, note = _incoming(g, ltype, prev_shape, prev_neurons)
            words, extra, snote = _state_layout(g)
            rows.append(dict(index=idx, ltype=ltype, neuron_type=_neuron_type(g), neurons=neurons, fan_in=fin,
                             synapses=syn, stored_weights=stored, words=words, extra=extra,
                             notes="; ".join(x for x in (snote, note) if x),
                             in_fo=(fo_max_in, fo_mean_in)))
            prev_shape, prev_neurons = shape, neurons

    out: List[LayerResource] = []
    for i, r in enumerate(rows):
        nxt = rows[i + 1]["in_fo"] if i + 1 < len(rows) else (0, 0.0)
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


# ---------------------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Loihi2Report:
    """Parameter/state findings plus the resource estimate of one network."""

    path: str
    findings: List[Finding]
    state_findings: List[Finding] = field(default_factory=list)
    resources: List[LayerResource] = field(default_factory=list)
    max_cores: Optional[int] = None
    neurons_per_core: int = NEURONS_PER_CORE_MAX
    synmem_words_per_core: int = SYNMEM_WORDS_PER_CORE

    @property
    def failures(self) -> List[Finding]:
        return [f for f in self.findings + self.state_findings if not f.ok]

    @property
    def total_neurons(self) -> int:
        return sum(r.neurons for r in self.resources)

    @property
    def total_synapses(self) -> int:
        return sum(r.synapses for r in self.resources)

    @property
    def total_cores(self) -> int:
        return sum(r.cores for r in self.resources)

    @property
    def cores_ok(self) -> bool:
        return self.max_cores is None or self.total_cores <= self.max_cores

    @property
    def ok(self) -> bool:
        return not self.failures and self.cores_ok

    def to_dict(self) -> Dict[str, Any]:
        """JSON-able dict (infinite headroom is written as the string ``"inf"``, n/a as ``None``)."""
        return {
            "path": self.path,
            "ok": self.ok,
            "estimate": True,
            "total_neurons": self.total_neurons,
            "total_synapses": self.total_synapses,
            "total_cores": self.total_cores,
            "max_cores": self.max_cores,
            "cores_ok": self.cores_ok,
            "chip_cores": CHIP_CORES,
            "neurons_per_core": self.neurons_per_core,
            "synmem_words_per_core": self.synmem_words_per_core,
            "findings": [f.to_dict() for f in self.findings],
            "state_findings": [f.to_dict() for f in self.state_findings],
            "resources": [r.to_dict() for r in self.resources],
        }

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    def to_markdown(self) -> str:
        """Markdown summary: verdict, findings table, resource table (estimates)."""
        def fmt(x: Any) -> str:
            if x is None:
                return "-"
            if isinstance(x, float):
                if math.isnan(x):
                    return "-"
                if math.isinf(x):
                    return "inf"
                return f"{x:.2f}" if x != int(x) else f"{int(x)}"
            return str(x)

        lines = [f"# Loihi 2 check: {self.path}", "",
                 f"**{'OK' if self.ok else 'FAIL'}**: {len(self.failures)} failing finding(s); estimated cores "
                 f"{self.total_cores}" + (f" (budget {self.max_cores})" if self.max_cores is not None else "")
                 + f", chip has {CHIP_CORES}. Resource numbers are estimates.", "",
                 "| layer | key | min | max | limit min | limit max | headroom bits | ok |",
                 "|---|---|---|---|---|---|---|---|"]
        for f in self.findings + self.state_findings:
            lines.append(f"| {f.layer} | {f.key} | {fmt(f.value_min)} | {fmt(f.value_max)} | {fmt(f.limit_min)} | "
                         f"{fmt(f.limit_max)} | {fmt(f.headroom_bits)} | {'yes' if f.ok else '**NO**'} |")
        lines += ["", "| layer | type | neuron | neurons | fan-in | fan-out max | synapses | stored weights | "
                  "SynMem words | state words | neurons/core | cores (est.) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in self.resources:
            lines.append(f"| {r.layer} | {r.type} | {r.neuron_type or '-'} | {r.neurons} | {r.fan_in} | "
                         f"{r.fan_out_max} | {r.synapses} | {r.stored_weights} | {r.synapse_words} | "
                         f"{r.state_words_per_neuron}{'+1b' if r.state_extra_bits_per_neuron else ''} | "
                         f"{r.neurons_per_core} | {r.cores} |")
        return "\n".join(lines) + "\n"


def check_network(path: PathOrH5, state_maxabs: Optional[Mapping[Tuple[int, str], Union[int, float]]] = None,
                  max_cores: Optional[int] = None, **resource_kwargs: Any) -> Loihi2Report:
    """Run :func:`check_parameters`, :func:`check_state_ranges` (when ``state_maxabs`` is given) and
    :func:`estimate_resources` (``resource_kwargs`` are passed on). ``report.ok`` is False on any failing finding
    or when the estimated total cores exceed ``max_cores``."""
    findings = check_parameters(path)
    states = check_state_ranges(state_maxabs) if state_maxabs else []
    resources = estimate_resources(path, **resource_kwargs)
    name = str(path) if isinstance(path, (str, Path)) else str(getattr(path, "filename", path))
    return Loihi2Report(path=name, findings=findings, state_findings=states, resources=resources,
                        max_cores=max_cores,
                        neurons_per_core=int(resource_kwargs.get("neurons_per_core", NEURONS_PER_CORE_MAX)),
                        synmem_words_per_core=int(resource_kwargs.get("synmem_words_per_core",
                                                                      SYNMEM_WORDS_PER_CORE)))


def assert_fits(report: Loihi2Report) -> None:
    """Raise :class:`Loihi2ConstraintError` listing each failing layer/key with its numbers (and the core budget)."""
    if report.ok:
        return
    lines = [f.message for f in report.failures]
    if not report.cores_ok:
        per_layer = ", ".join(f"layer {r.layer}: {r.cores}" for r in report.resources if r.cores)
        lines.append(f"estimated cores {report.total_cores} > max_cores {report.max_cores} ({per_layer})")
    raise Loihi2ConstraintError(f"{report.path} does not fit Loihi 2 constraints:\n  " + "\n  ".join(lines))
