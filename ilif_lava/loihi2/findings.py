"""Loihi 2 parameter and state checks of a netx HDF5 network: one :class:`Finding` per (layer, key).

Each key with a Loihi 2 limit in the netx schema tables (:mod:`ilif_lava.netx_schema`) is checked for range,
integer-ness and (weights) evenness, with its head-room in bits; large datasets are read in slabs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import h5py
import numpy as np

from ilif_lava import netx_schema as schema
from ilif_lava.loihi2.layers import PathOrH5, layer_items, layer_type, open_layers
from ilif_lava.loihi2.limits import (INTEGER_INHIBITIONS, KNOWN_LAYER_TYPES, LAYER_KEY_LIMITS, NEURON_KEY_LIMITS,
                                     STATE_LIMIT, STATE_NAMES, Limit)
from ilif_lava.netx_schema import K, T
from ilif_lava.safe_hdf5 import slabs


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
        return {k: jsonable(v) for k, v in asdict(self).items()}


def jsonable(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    return v


def headroom_bits(max_abs: float, ref: float) -> float:
    """log2(ref / max_abs); ``inf`` when max_abs == 0."""
    if max_abs == 0:
        return math.inf
    return math.log2(float(ref) / float(max_abs))


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
    """:func:`check_values` of a dataset read by :func:`ilif_lava.safe_hdf5.slabs` (never whole in memory); also
    whether all values are finite."""
    st = _Stats(limit)
    if ds.ndim == 0 or ds.size == 0 or ds.dtype.kind not in "biuf":
        st.add(ds[()])
    else:
        for a in slabs(ds):
            st.add(a)
    return st.finding(layer, key), st.nonfinite == 0


def check_parameters(path_or_h5: PathOrH5) -> List[Finding]:
    """Check every layer parameter of a netx HDF5 file against its Loihi 2 bit width and range.

    Returns one :class:`Finding` per (layer, key) present: weights (even integers in [-256, 254]), bias (13-bit),
    delay (<= 62), neuron decays (integers in [0, 4096]), vThMant (0 .. 2**17 - 1), ILIF ``inhibition``
    (must have an integer form), plus findings for missing required neuron keys and unknown types.
    Keys are paths relative to the layer group (``'weight'``, ``'neuron/vDecay'``).
    """
    findings: List[Finding] = []
    with open_layers(path_or_h5) as layers:
        for idx, g in layer_items(layers):
            ltype = layer_type(g)
            if ltype not in KNOWN_LAYER_TYPES:
                findings.append(Finding(idx, K.TYPE, None, None, None, None, math.nan, False,
                                        f"layer {idx}: unknown layer type {ltype!r}"))
            for key, lim in LAYER_KEY_LIMITS.items():
                if key in g and isinstance(g[key], h5py.Dataset):
                    finding, finite = _check_dataset(idx, key, g[key], lim)
                    findings.append(finding)
                    if key == K.WEIGHT and ltype == T.DENSE and finite:
                        _flag_inhibitory_weights(finding)
            skips = g.get(K.SKIP)
            for j in (sorted(skips, key=int) if isinstance(skips, h5py.Group) else ()):   # a fan-in layer's skips
                sg = skips[j]
                if isinstance(sg, h5py.Group) and isinstance(sg.get(K.WEIGHT), h5py.Dataset):
                    key = f"{K.SKIP}/{j}/{K.WEIGHT}"
                    findings.append(_check_dataset(idx, key, sg[K.WEIGHT], LAYER_KEY_LIMITS[K.WEIGHT])[0])
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
