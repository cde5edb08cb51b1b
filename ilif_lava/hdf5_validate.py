"""Structural validation of a netx HDF5 network file, before any Lava process is built.

:func:`validate_file` reads the whole file with h5py only (no Lava import) and raises one
:class:`NetworkFileError` for the first problem, naming the file, the layer index and the key, and saying
what was expected. It accepts exactly what ``lava.lib.dl.netx.hdf5.Network`` (through
:class:`ilif_lava.lava_proc.process.ILIFNetwork`) can build (lava-internals.md section 3):

* the file: exists, is HDF5 and readable (truncated or corrupted files included), has a group ``layer`` whose
  children are exactly ``'0'`` .. ``'N-1'``, each a group;
* layer types netx builds: ``input`` (layer 0 only), ``dense``, ``conv``, ``flatten`` (followed by a dense);
  the required keys of each type and the form of each key (the layer tables of :mod:`ilif_lava.netx_schema`);
* values: weights are real, finite, integer and in [-256, 255] (netx's weight range), and a dense layer's are
  not all zero (netx's ``optimize_weight_bits`` divides by the largest weight); delays are integers in
  [0, 62], one per output; biases are finite, one per output channel, and of the form the neuron type's
  ``bias_rule`` says (ILIF: integer mantissas in [-4096, 4095]; all zero for a type without ``has_bias``);
* shapes: dense weight == (outFeatures, inFeatures), conv weight == (outChannels, inChannels / groups, kH, kW)
  with ``groups`` dividing both channel counts, ``shape`` consistent with outFeatures / outChannels;
* sizes along the network: a layer's input size equals the previous layer's output size, and a conv's
  declared ``shape`` equals the output computed from the previous shape, kernel, stride, padding, dilation;
* neurons: a type of the :class:`~ilif_lava.netx_schema.NeuronRegistry` handed in (default: the built-in tables,
  :data:`ilif_lava.netx_schema.NEURON_TYPES`; ILIFNetwork hands in :func:`ilif_lava.netx.neuron_registry`) and its
  keys, as scalars of the right kind and range.

Loihi bit-width head-room (even weights, 13-bit bias, ...) stays in :mod:`ilif_lava.loihi2`; only what a
loader needs in order to build a network that means what the file says is checked here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import h5py
import numpy as np

from ilif_lava import netx_schema as schema
from ilif_lava import safe_hdf5
from ilif_lava.file_limits import DEFAULT_LIMITS, FileLimits, current_limits, use_limits  # noqa: F401
from ilif_lava.netx_schema import (LAYER_TYPES, NEURON_TYPES, Choice, Flag, Int, K, NeuronRegistry,  # noqa: F401
                                   Numbers, T, Text)
from ilif_lava.netx_schema.rules import MAX_NEURONS
from ilif_lava.safe_hdf5 import (NetworkFileError, Where, check_regular_file, children, open_checked,  # noqa: F401
                                 read, walk)

PathLike = Union[str, Path]

BIG_KEYS = schema.big_keys()        # datasets that may hold one value per synapse or neuron
STOCK_NEURON_NAMES = ("CUBA", "LOIHI", "SDNN")     # netx builds these itself (and would ignore skips)


class UnsupportedLayerError(NetworkFileError, NotImplementedError):
    """A layer type that netx does not build (``pool``, ``average``, ...); also a ``NotImplementedError``, which
    is what netx itself raises for these types."""


# ---------------------------------------------------------------------------------------------------------
# value checks
# ---------------------------------------------------------------------------------------------------------
def _text(w: Where, a: np.ndarray, key: str, expected: str) -> str:
    """A single ASCII string (bytes or str, 0-d or 1 element), as netx's ``NetDict`` decodes it."""
    try:
        return schema.text(a)
    except ValueError as exc:
        raise w.fail(key, f"= {exc}", expected) from None


def _check(w: Where, key: str, a: np.ndarray, rule: Any, n_neurons: int = 1) -> Any:
    """Check ``a`` against a rule; returns the value (int, tuple of ints, str or bool). ``n_neurons``: the layer's
    neuron count, the other size a per-neuron (``neurons`` form) value may have."""
    exp = schema.expected(rule)
    if isinstance(rule, Text):
        return _text(w, a, key, exp)
    if isinstance(rule, Choice):
        v = _text(w, a, key, exp)
        if a.ndim == 1 and a.dtype.kind == "O":        # ILIF's reader decodes 0-d or fixed-length strings only
            raise w.fail(key, f"= {v!r} is a 1-element variable-length string array (read as \"{a!s}\")",
                         f"{exp} as a scalar string")
        if v not in rule.values:
            raise w.fail(key, f"= {v!r}", exp)
        return v
    if a.dtype.kind not in ("biu" if isinstance(rule, Flag) else "iu"):
        raise w.fail(key, f"= {schema.show(a)} has dtype {a.dtype}", exp)
    if isinstance(rule, Flag):
        if a.size != 1 or a.ndim > 1 or int(a.reshape(-1)[0]) not in (0, 1):
            raise w.fail(key, f"= {schema.show(a)}", exp)
        return bool(a.reshape(-1)[0])
    sizes = {"scalar": (1,), "strict": (1,), "pair": (2,), "dims": (1, 2, 3), "neurons": (1, n_neurons)}[rule.form]
    ndim_ok = {"scalar": a.ndim <= 1, "strict": a.ndim == 0, "pair": a.ndim <= 1, "dims": a.ndim == 1,
               "neurons": a.ndim <= 1}[rule.form]
    if not ndim_ok or (a.size not in sizes and not (rule.form == "pair" and a.ndim == 0)):
        raise w.fail(key, f"= {schema.show(a)} has shape {a.shape}",
                     exp + (f" ({n_neurons} neurons)" if rule.form == "neurons" else ""))
    if (a < rule.lo).any() or (a > rule.hi).any():
        raise w.fail(key, f"= {schema.show(a)} is out of range", exp)
    vals = tuple(int(x) for x in a.reshape(-1))
    if rule.form == "pair":
        return vals * 2 if len(vals) == 1 else vals
    return vals if rule.form == "dims" or (rule.form == "neurons" and len(vals) > 1) else vals[0]


def _numbers(w: Where, key: str, a: np.ndarray, shapes: Sequence[Tuple[int, ...]], integer: bool,
             lo: float = -np.inf, hi: float = np.inf) -> np.ndarray:
    """A real numeric array of one of ``shapes``, finite, optionally integer-valued and in [lo, hi]."""
    want = " or ".join(str(s) for s in shapes)
    what = f"a real {'integer-valued ' if integer else ''}array of shape {want}"
    if np.isfinite(lo) or np.isfinite(hi):
        what += f" with values in [{lo:g}, {hi:g}]"
    if a.dtype.kind not in "iuf":
        raise w.fail(key, f"has dtype {a.dtype}", what)
    if a.shape not in [tuple(s) for s in shapes]:
        raise w.fail(key, f"has shape {a.shape}", what)
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise w.fail(key, f"holds {int((~np.isfinite(a)).sum())} NaN/inf value(s)", what)
    if integer and a.dtype.kind == "f" and (a != np.round(a)).any():
        bad = a[a != np.round(a)].reshape(-1)[0]
        raise w.fail(key, f"holds non-integer value(s), e.g. {bad:g}", what)
    if a.size and (a.min() < lo or a.max() > hi):
        raise w.fail(key, f"has values in [{a.min():g}, {a.max():g}]", what)
    return a


def _stream_numbers(w: Where, key: str, obj: Any, shapes: Sequence[Tuple[int, ...]], integer: bool,
                    lo: float = -np.inf, hi: float = np.inf) -> bool:
    """:func:`_numbers` for a dataset, read by :func:`ilif_lava.safe_hdf5.slabs` (never whole in memory).
    Returns whether any value is non-zero."""
    if not isinstance(obj, h5py.Dataset):
        raise w.fail(key, "is a group", "a dataset")
    try:
        dtype, shape, size = obj.dtype, obj.shape, obj.size
    except Exception as exc:  # noqa: BLE001 - damaged header
        raise w.fail(key, f"is unreadable ({type(exc).__name__}: {exc})", "a readable dataset") from None
    if dtype.kind not in "iuf" or dtype.subdtype is not None or not shape or not size:
        a = _numbers(w, key, read(w, obj, key), shapes, integer, lo, hi)      # small, odd or 0-d: as before
        return bool(a.any())
    want = " or ".join(str(s_) for s_ in shapes)
    what = f"a real {'integer-valued ' if integer else ''}array of shape {want}"
    if np.isfinite(lo) or np.isfinite(hi):
        what += f" with values in [{lo:g}, {hi:g}]"
    if shape not in [tuple(s_) for s_ in shapes]:
        raise w.fail(key, f"has shape {shape}", what)
    nonfinite, nonint, vmin, vmax, nonzero = 0, None, np.inf, -np.inf, False
    for a in safe_hdf5.slabs(obj, w, key):
        if a.dtype.kind == "f":
            bad = ~np.isfinite(a)
            if bad.any():
                nonfinite += int(bad.sum())
                continue
            if integer and nonint is None and (a != np.round(a)).any():
                nonint = float(a[a != np.round(a)].reshape(-1)[0])
        vmin, vmax = min(vmin, float(a.min())), max(vmax, float(a.max()))
        nonzero = nonzero or bool(a.any())
    if nonfinite:
        raise w.fail(key, f"holds {nonfinite} NaN/inf value(s)", what)
    if nonint is not None:
        raise w.fail(key, f"holds non-integer value(s), e.g. {nonint:g}", what)
    if vmin < lo or vmax > hi:
        raise w.fail(key, f"has values in [{vmin:g}, {vmax:g}]", what)
    return nonzero


# ---------------------------------------------------------------------------------------------------------
# layers
# ---------------------------------------------------------------------------------------------------------
def conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    """Lava ``conv.utils.output_shape`` along one axis (floor division)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _neuron(w: Where, node: Any, neurons: NeuronRegistry, n_neurons: int = 1) -> schema.NeuronType:
    """Check a layer's ``neuron`` group (of a layer of ``n_neurons`` neurons) against its type's table in
    ``neurons``; returns that table."""
    if not isinstance(node, h5py.Group):
        raise w.fail(K.NEURON, "is a dataset", "a group holding the neuron parameters")
    items = children(w, node, K.NEURON)
    type_key = f"{K.NEURON}/{schema.NEURON_TYPE_KEY}"
    if schema.NEURON_TYPE_KEY not in items:
        raise w.fail(type_key, "is missing", f"one of {list(neurons)}")
    ntype = _text(w, read(w, items[schema.NEURON_TYPE_KEY], type_key), type_key, f"one of {list(neurons)}")
    if ntype not in neurons:
        hint = (" (RF neurons need complex synapses, which netx cannot load)"
                if schema.COMPLEX_NEURON_HINT in ntype else "")
        raise w.fail(type_key, f"= {ntype!r} is not a neuron type ILIFNetwork can build{hint}",
                     f"one of {list(neurons)}")
    table = neurons[ntype]
    for key in table.forbidden:
        if key in items:
            raise w.fail(f"{K.NEURON}/{key}", f"is set, but {ntype} neurons never fire", f"no '{key}' key")
    for k in table.keys:
        name = f"{K.NEURON}/{k.name}"
        if k.name in items:
            _check(w, name, read(w, items[k.name], name), k.rule, n_neurons)
        elif k.required:
            raise w.fail(name, f"is missing (required for {ntype} neurons)", schema.expected(k.rule))
    return table


def _layer(w: Where, g: h5py.Group, idx: int, n_layers: int, prev: Optional[Tuple[int, ...]],
           prev_block: bool, after_flatten: bool, neurons: NeuronRegistry
           ) -> Tuple[str, Tuple[int, ...], bool, Optional[str]]:
    """Check one layer given the previous output shape (CHW or (F,), None if unknown).

    Returns (type, output shape, whether the layer becomes a Lava block, its neuron type or None)."""
    items = children(w, g, None)
    types = list(schema.BUILT_LAYER_TYPES)
    if K.TYPE not in items:
        raise w.fail(K.TYPE, "is missing", f"one of {types}")
    ltype = _text(w, read(w, items[K.TYPE], K.TYPE), K.TYPE, f"one of {types}")
    if ltype not in types:
        cls = UnsupportedLayerError if ltype in schema.REFUSED_LAYER_TYPES else NetworkFileError
        raise w.fail(K.TYPE, f"= {ltype!r} is not a layer type netx builds", f"one of {types}", cls)
    if after_flatten and ltype != "dense":
        raise w.fail(K.TYPE, f"= {ltype!r} follows a flatten layer", "'dense' after 'flatten'")
    table = LAYER_TYPES[ltype]
    for key in table.required:
        if key not in items:
            raise w.fail(key, f"is missing (required for '{ltype}' layers)", "it to be present")
    vals: Dict[str, Any] = {k: _check(w, k, read(w, items[k], k), rule)
                            for k, rule in schema.layer_key_rules().items() if k in items}
    shape = vals[K.SHAPE]
    cap = min(MAX_NEURONS, current_limits().max_neurons_per_layer)
    if int(np.prod(shape)) > cap:
        raise w.fail(K.SHAPE, f"= {list(shape)} holds {int(np.prod(shape))} neurons", f"at most {cap} per layer")
    neuron = (_neuron(w, items[K.NEURON], neurons, int(np.prod(shape)))
              if table.key(K.NEURON) is not None and K.NEURON in items else None)

    if ltype == T.INPUT:
        if idx != 0:
            raise w.fail(K.TYPE, "= 'input' is not the first layer", "'input' only as layer 0")
        for key in (K.WEIGHT, K.BIAS):                      # netx: int(layer['weight']) / int(layer['bias'])
            if key in items and neuron is not None:
                _numbers(w, key, read(w, items[key], key), [(), (1,)], integer=False)   # slayer writes (1,)
        return ltype, shape, neuron is not None, None if neuron is None else neuron.name

    if ltype == T.FLATTEN:
        if prev is not None and int(np.prod(prev)) != int(np.prod(shape)):
            raise w.fail(K.SHAPE, f"= {list(shape)} ({int(np.prod(shape))} values) does not match the previous "
                         f"layer's output {list(prev)}", f"{int(np.prod(prev))} values")
        if prev_block and len(prev) != 3:
            raise w.fail(K.TYPE, f"= 'flatten' follows a layer of shape {list(prev)}",
                         "a 3-D (C, H, W) previous layer")
        if idx == n_layers - 1:
            raise w.fail(K.TYPE, "= 'flatten' is the last layer", "a dense layer after it")
        return ltype, (int(np.prod(shape)),), False, None

    if ltype in (T.DENSE, T.DENSE_REC):
        n_in, n_out = vals[K.IN_FEATURES], vals[K.OUT_FEATURES]
        if int(np.prod(shape)) != n_out:
            raise w.fail(K.SHAPE, f"= {list(shape)} does not match {K.OUT_FEATURES} = {n_out}", f"[{n_out}]")
        if prev is not None and int(np.prod(prev)) != n_in:
            raise w.fail(K.IN_FEATURES, f"= {n_in} does not match the previous layer's output {list(prev)}",
                         f"{int(np.prod(prev))}")
        if prev_block and not after_flatten and len(prev) != 1:
            raise w.fail(K.TYPE, f"= {ltype!r} follows a layer of shape {list(prev)} without a flatten layer",
                         "a 'flatten' layer in between")
        wshape = (n_out, n_in)
        n_per_out = n_out
        if ltype == T.DENSE_REC:
            if K.DELAY in items:
                raise w.fail(K.DELAY, "is given for a 'dense_rec' layer (netx would build the recurrent delays "
                             "from the feed-forward delay matrix)", "no delay on recurrent layers")
            rule = table.key(K.WEIGHT_REC).rule
            _stream_numbers(w, K.WEIGHT_REC, items[K.WEIGHT_REC], [(n_out, n_out)], integer=rule.integer,
                            lo=rule.lo, hi=rule.hi)
        shape = (n_out,)        # netx builds a dense layer of (prod(shape),) neurons; old slayer wrote [n, 1, 1]
        flat_weight = (n_out * n_in,)     # netx: a 1-d dense weight is reshaped to (neurons, -1)
    else:  # conv
        c_in, c_out, groups = vals[K.IN_CHANNELS], vals[K.OUT_CHANNELS], vals[K.GROUPS]
        k, s, p, d = (vals[x] for x in (K.KERNEL_SIZE, K.STRIDE, K.PADDING, K.DILATION))
        if c_in % groups or c_out % groups:
            raise w.fail(K.GROUPS, f"= {groups} does not divide {K.IN_CHANNELS} = {c_in} and "
                         f"{K.OUT_CHANNELS} = {c_out}",
                         "a common divisor")
        if len(shape) != 3 or shape[0] != c_out:
            raise w.fail(K.SHAPE, f"= {list(shape)} does not match {K.OUT_CHANNELS} = {c_out}",
                         f"[{c_out}, H, W]")
        if prev is not None:
            if len(prev) != 3:
                raise w.fail(K.TYPE, f"= 'conv' follows a layer of shape {list(prev)}", "a 3-D (C, H, W) input")
            if prev[0] != c_in:
                raise w.fail(K.IN_CHANNELS, f"= {c_in} does not match the previous layer's {prev[0]} channels",
                             f"{prev[0]}")
            out_hw = tuple(conv_out(prev[1 + a], k[a], s[a], p[a], d[a]) for a in (0, 1))
            if shape[1:] != out_hw:
                raise w.fail(K.SHAPE, f"= {list(shape)} does not match the convolution of the previous "
                             f"output {list(prev)} (kernel {list(k)}, stride {list(s)}, padding {list(p)}, "
                             f"dilation {list(d)})", f"{[c_out, *out_hw]}")
        wshape = (c_out, c_in // groups) + tuple(k)
        n_per_out = c_out
    # netx reshapes a conv weight to its first 4 axes, so older slayer files' trailing time axis of size 1 is read
    shapes = [wshape, wshape + (1,)] if ltype == T.CONV else [wshape, flat_weight]
    rule = table.key(K.WEIGHT).rule
    nonzero = _stream_numbers(w, K.WEIGHT, items[K.WEIGHT], shapes, integer=rule.integer, lo=rule.lo, hi=rule.hi)
    if ltype in (T.DENSE, T.DENSE_REC) and not nonzero:   # netx optimize_weight_bits divides by the largest weight
        raise w.fail(K.WEIGHT, "is all zero (netx cannot scale an all-zero dense weight matrix)",
                     "at least one non-zero weight")
    for key in (K.DELAY, K.BIAS):
        if key in items:
            rule = table.key(key).rule
            if key == K.BIAS and neuron is not None and neuron.has_bias:
                rule = neuron.bias_rule              # the neuron type's bias (ILIF: 13-bit integer mantissas)
            vals[key] = _numbers(w, key, read(w, items[key], key), [(n_per_out,)], integer=rule.integer,
                                 lo=rule.lo, hi=rule.hi)
    if K.BIAS in items and neuron is not None and not neuron.has_bias and vals[K.BIAS].any():
        raise w.fail(K.BIAS, f"is non-zero for an {neuron.name} layer (the {neuron.name} process has no bias)",
                     "all zeros")
    return ltype, shape, True, None if neuron is None else neuron.name


def _skips(w: Where, g: h5py.Group, idx: int, ltype: str, shape: Tuple[int, ...], neuron_name: Optional[str],
           outputs: Dict[int, Tuple[str, Tuple[int, ...], int]], depth: int, pipelined: bool) -> int:
    """Check the skip synapses of layer ``idx`` (``layer/<idx>/skip/<j>``, the graph extension; ilif_lava/graph.py)
    against the earlier layers' ``outputs`` ({layer: (type, output shape, Lava depth)}); ``depth`` is this layer's
    Lava depth. Returns the number of skip synapses (fan-in x neurons summed over the skips)."""
    items = children(w, g, None)
    if K.SKIP not in items:
        return 0
    if ltype not in schema.SKIP_TARGET_TYPES:
        raise w.fail(K.SKIP, f"is given for a {ltype!r} layer",
                     f"skip synapses only on {list(schema.SKIP_TARGET_TYPES)} layers")
    if not pipelined:
        raise w.fail(K.SKIP, "is given in a file without pipelined timing",
                     f"the root attribute {K.TIMING!r} = {K.PIPELINED!r} (skips are aligned by pipelined delays)")
    if neuron_name is None or neuron_name in STOCK_NEURON_NAMES:
        raise w.fail(K.SKIP, f"feeds a {neuron_name or 'neuron-less'} layer (stock netx would build it without its "
                     f"skips, a different network)", "a non-stock neuron type, e.g. ILIF")
    group = items[K.SKIP]
    if not isinstance(group, h5py.Group):
        raise w.fail(K.SKIP, "is a dataset", "a group of skips '0' .. 'n-1'")
    try:
        n = len(group)
    except Exception as exc:  # noqa: BLE001 - any h5py failure on a damaged file
        raise w.fail(K.SKIP, f"is unreadable ({type(exc).__name__}: {exc})", "a readable HDF5 group") from None
    if not 1 <= n <= schema.MAX_SKIPS:
        raise w.fail(K.SKIP, f"holds {n} skips", f"1 to {schema.MAX_SKIPS}")
    skips = children(w, group, K.SKIP)
    if sorted(skips) != sorted(str(j) for j in range(n)):
        raise w.fail(K.SKIP, f"has children {sorted(skips)[:8]}", f"skips numbered '0' .. '{n - 1}'")
    synapses = 0
    for j in range(n):
        key = f"{K.SKIP}/{j}"
        sg = skips[str(j)]
        if not isinstance(sg, h5py.Group):
            raise w.fail(key, "is a dataset", "a group")
        sitems = children(w, sg, key)
        for k in schema.SKIP_KEYS:
            if k.required and k.name not in sitems:
                raise w.fail(f"{key}/{k.name}", "is missing", "it to be present")
        vals = {k.name: _check(w, f"{key}/{k.name}", read(w, sitems[k.name], k.name), k.rule)
                for k in schema.SKIP_KEYS if isinstance(k.rule, Int)}
        src = vals[K.SOURCE]
        if src >= idx:
            raise w.fail(f"{key}/{K.SOURCE}", f"= {src} is not an earlier layer (cycles and forward references "
                         f"are not allowed)", f"a layer index below {idx}")
        if src not in outputs or outputs[src][0] != T.CONV:
            raise w.fail(f"{key}/{K.SOURCE}", f"= {src} is not a conv layer of this file",
                         "an earlier conv layer (its spikes feed the skip)")
        _, src_shape, src_depth = outputs[src]
        c_in, c_out = vals[K.IN_CHANNELS], vals[K.OUT_CHANNELS]
        if c_in != src_shape[0]:
            raise w.fail(f"{key}/{K.IN_CHANNELS}", f"= {c_in} does not match layer {src}'s {src_shape[0]} channels",
                         f"{src_shape[0]}")
        if c_out != shape[0]:
            raise w.fail(f"{key}/{K.OUT_CHANNELS}", f"= {c_out} does not match this layer's {shape[0]} channels",
                         f"{shape[0]}")
        stride = vals[K.STRIDE]
        out_hw = tuple((src_shape[1 + a] - 1) // stride[a] + 1 for a in (0, 1))
        if out_hw != tuple(shape[1:]):
            raise w.fail(f"{key}/{K.STRIDE}", f"= {list(stride)} maps layer {src}'s {list(src_shape)} to "
                         f"{list(out_hw)}, this layer is {list(shape)}", "branch shapes that match")
        delay = depth - src_depth - 1
        if delay > schema.DELAY_RANGE[1]:
            raise w.fail(f"{key}/{K.SOURCE}", f"= {src} is {depth - src_depth} layers back (delay {delay} steps)",
                         f"at most {schema.DELAY_RANGE[1] + 1} layers back (Loihi 2 synaptic delay limit)")
        rule = schema.SKIP_KEYS[-1].rule
        nonzero = _stream_numbers(w, f"{key}/{K.WEIGHT}", sitems[K.WEIGHT], [(c_out, c_in)], integer=rule.integer,
                                  lo=rule.lo, hi=rule.hi)
        if not nonzero:
            raise w.fail(f"{key}/{K.WEIGHT}", "is all zero (netx cannot scale an all-zero weight matrix)",
                         "at least one non-zero weight")
        synapses += c_in * int(np.prod(shape))
    return synapses


def check_container(path: PathLike, limits: Optional[FileLimits] = None) -> Path:
    """The container checks of :func:`validate_file` alone (:func:`ilif_lava.safe_hdf5.check_container` with the
    netx datasets that may be large); no layer rules."""
    return safe_hdf5.check_container(path, limits, big_keys=BIG_KEYS)


def validate_file(path: PathLike, input_shape: Optional[Sequence[int]] = None,
                  limits: Optional[FileLimits] = None, neurons: Optional[NeuronRegistry] = None,
                  num_layers: Optional[int] = None) -> None:
    """Raise :class:`NetworkFileError` unless ``path`` is a netx HDF5 network that ILIFNetwork can build.

    ``input_shape`` (optional, netx's (x, y, f) order, as ``hdf5.Network(input_shape=...)``) is the network
    input when layer 0 is not an ``input`` layer; it lets the first layer's sizes be checked too.
    ``limits`` (default: :func:`current_limits`, i.e. :data:`DEFAULT_LIMITS` unless :func:`use_limits` is active)
    bounds layers, neurons, synapses and bytes; the file is opened only if it is a regular file, and every link
    and dataset is checked from metadata (:func:`ilif_lava.safe_hdf5.walk`) before any value is read.
    ``neurons``: the neuron types accepted (default: the built-in tables,
    :data:`ilif_lava.netx_schema.NEURON_TYPES`).
    ``num_layers``: netx's argument of that name; only the first ``num_layers`` layers are built, so only they
    are checked (the container checks still cover the whole file).
    """
    limits = limits or current_limits()
    with use_limits(limits):
        _validate(Path(path), input_shape, limits, NEURON_TYPES if neurons is None else neurons, num_layers)


def _validate(path: Path, input_shape: Optional[Sequence[int]], limits: FileLimits,
              neuron_types: NeuronRegistry, num_layers: Optional[int] = None) -> None:
    top = Where(path)
    with open_checked(path) as h:
        walk(path, h, limits, big_keys=BIG_KEYS)
        root = children(top, h, "/")
        if K.LAYER not in root:
            raise top.fail(K.LAYER, "is missing", f"a top-level group '{K.LAYER}'")
        if not isinstance(root[K.LAYER], h5py.Group):
            raise top.fail(K.LAYER, "is a dataset", f"a top-level group '{K.LAYER}'")
        try:                                      # counted before any layer object is opened
            n_layers = len(root[K.LAYER])
        except Exception as exc:  # noqa: BLE001 - any h5py failure on a damaged file
            raise top.fail(K.LAYER, f"is unreadable ({type(exc).__name__}: {exc})", "a readable HDF5 group") from None
        if n_layers > limits.max_layers:
            raise top.fail(K.LAYER, f"has {n_layers} layers", f"at most {limits.max_layers}")
        layers = children(top, root[K.LAYER], K.LAYER)
        names = [str(i) for i in range(len(layers))]
        if not layers or sorted(layers) != sorted(names):
            extra = sorted(set(layers) - set(names))
            raise top.fail(K.LAYER, f"has children {sorted(layers)}" + (f" ({extra} unexpected)" if extra else ""),
                           "layers numbered '0' .. 'N-1' (at least one)")
        if num_layers is not None:                 # netx: min(num_layers, len(layers)) layers are built
            names = names[:max(0, int(num_layers))]
        prev: Optional[Tuple[int, ...]] = None
        if input_shape is not None:
            prev = tuple(int(v) for v in tuple(input_shape)[::-1])      # (x, y, f) -> (C, H, W)
        prev_block = after_flatten = False
        n_blocks = n_neurons = n_synapses = 0
        pipelined = schema.decode(h.attrs.get(K.TIMING, "")) == K.PIPELINED
        outputs: Dict[int, Tuple[str, Tuple[int, ...], int]] = {}     # layer -> (type, shape, Lava depth)
        for i, name in enumerate(names):
            w = Where(path, i)
            if not isinstance(layers[name], h5py.Group):
                raise w.fail(None, "is a dataset", "a group")
            ltype, prev, block, neuron_name = _layer(w, layers[name], i, len(names), prev, prev_block,
                                                     after_flatten, neuron_types)
            after_flatten = ltype == T.FLATTEN
            prev_block = prev_block or block
            n_synapses += _skips(w, layers[name], i, ltype, prev, neuron_name, outputs, n_blocks,
                                 pipelined)
            if block:
                outputs[i] = (ltype, prev, n_blocks)
            n_blocks += int(block)
            if ltype == T.FLATTEN:
                continue
            neurons = int(np.prod(prev))
            n_neurons += neurons
            if n_neurons > limits.max_neurons:
                raise w.fail(K.SHAPE, f"brings the network to {n_neurons} neurons",
                             f"at most {limits.max_neurons} in total")
            if ltype in (T.DENSE, T.DENSE_REC, T.CONV):
                wshape = layers[name][K.WEIGHT].shape                      # checked by _layer
                rows = prev[0] if ltype == T.CONV else neurons                 # output channels / neurons
                fan_in = int(np.prod(wshape)) // rows + (neurons if ltype == T.DENSE_REC else 0)
                n_synapses += fan_in * neurons
                if n_synapses > limits.max_synapses:
                    raise w.fail(K.WEIGHT, f"brings the network to {n_synapses} synapses (fan-in x neurons)",
                                 f"at most {limits.max_synapses} in total")
        if n_blocks == 0:
            raise top.fail(K.LAYER, "has no dense, conv or input-with-neuron layer",
                           "at least one layer that builds a Lava block")
