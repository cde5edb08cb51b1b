"""Read netx HDF5 files written by :func:`ilif_lava.netx.export_blocks` back into SLAYER blocks.

:func:`blocks_from_hdf5` is the inverse of ``export_blocks`` for the layer kinds this project writes:

* ``dense`` / ``conv`` with an ``ILIF`` neuron  -> :class:`ilif_lava.block.Dense` / :class:`ilif_lava.block.Conv`
  (neuron params from :func:`ilif_lava.neuron.neuron_params_from_device`, ``quantized=True``);
* ``dense`` / ``conv`` with a ``CUBA`` neuron   -> ``lava.lib.dl.slayer.block.cuba.Dense`` / ``Conv``
  (neuron params from ``slayer.neuron.cuba.neuron_params``);
* ``flatten``                                    -> :class:`ilif_lava.block.Flatten`.

Every rebuilt block uses ``delay_shift=True`` (the alignment with Lava, lava-internals.md section 4), gets the
file's weights (stored as ``weight * 64``, even integers) and has its shapes set from the file, so it can be run
and re-exported without a forward pass first.

Pooling: :class:`ilif_lava.block.Pool` is exported as a depthwise ``conv`` (``groups == inChannels ==
outChannels``, one shared kernel value), because netx has no pool loader. The file does not record that the
layer was a pool, so it is rebuilt as a depthwise ILIF :class:`~ilif_lava.block.Conv` (``groups = C``) with the
same kernel, stride, padding and dilation, and it re-exports to the same HDF5 contents. It computes exactly what
the pool computed (and what Lava runs) for non-overlapping pooling: stride == kernel, padding 0, input height and
width multiples of the kernel. Outside that geometry lava-dl's ``synapse.Pool`` itself is not a per-channel pool
(it zero-pads H by ``H % kernel`` rows and convolves channels stacked along H), so the export already differs.

Not supported (a :class:`~ilif_lava.netx.NetworkFileError` names file, layer and key): ``input`` layers and any
other layer type, biases of non-ILIF layers (an ILIF layer's ``bias``, its 13-bit mantissas, becomes the block's
``bias=``), complex weights, per-neuron (array) decays, and neuron types
other than ``ILIF`` / ``CUBA``.

:func:`describe_hdf5` lists the layers (type, shape, neuron entry, ...) without building anything.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Union

import h5py
import numpy as np
import torch

import ilif_lava  # noqa: F401  (Lava Python 3.11 shim before slayer/netx imports)
from ilif_lava import block as ilif_block
from ilif_lava import fixed_point as fx
from ilif_lava import netx_schema as schema
from ilif_lava.netx import NetworkFileError, validate_file
from ilif_lava.netx_schema import K, T
from ilif_lava.safe_hdf5 import open_checked
from ilif_lava.neuron import NEURON_TYPE, neuron_params_from_device

CUBA_TYPES = ("CUBA", "LOIHI")
SUPPORTED_LAYERS = (T.DENSE, T.CONV, T.FLATTEN)

PathLike = Union[str, Path]


# ---------------------------------------------------------------------------------------------------------
# low-level readers (every error names file, layer and key)
# ---------------------------------------------------------------------------------------------------------
def _get(g: h5py.Group, key: str, path: Path, layer: int) -> Any:
    if key not in g:
        raise NetworkFileError(f"{path}: layer {layer}: key '{key}' missing")
    obj = g[key]
    if not isinstance(obj, h5py.Dataset):
        raise NetworkFileError(f"{path}: layer {layer}: key '{key}' is a group, expected a dataset")
    return schema.decode(obj[()])


def _int_tuple(val: Any, path: Path, layer: int, key: str) -> tuple:
    arr = np.atleast_1d(np.asarray(val))
    if arr.dtype.kind not in "iu":
        raise NetworkFileError(f"{path}: layer {layer}: key '{key}' must hold integers, got {arr.dtype}")
    return tuple(int(v) for v in arr.reshape(-1))


def _pair(val: Any, path: Path, layer: int, key: str) -> tuple:
    t = _int_tuple(val, path, layer, key)
    if len(t) == 1:
        return (t[0], t[0])
    if len(t) != 2:
        raise NetworkFileError(f"{path}: layer {layer}: key '{key}' must have 1 or 2 values, got {t}")
    return t


def _neuron_entry(g: h5py.Group) -> Dict[str, Any]:
    if K.NEURON not in g:
        return {}
    return {k: schema.decode(g[K.NEURON][k][()]) for k in g[K.NEURON].keys()}


def _weights(g: h5py.Group, path: Path, layer: int) -> torch.Tensor:
    if K.WEIGHT in g and isinstance(g[K.WEIGHT], h5py.Group):
        raise NetworkFileError(f"{path}: layer {layer}: key '{K.WEIGHT}' holds complex weights (not supported)")
    w = np.asarray(_get(g, K.WEIGHT, path, layer), dtype=np.float64)  # shape, range: checked by validate_file
    if np.any(w % 2 != 0) or w.max() > fx.WEIGHT_MAX:  # slayer's grid is stricter than netx's [-256, 255]
        raise NetworkFileError(f"{path}: layer {layer}: key '{K.WEIGHT}' must hold even integers in "
                               f"[{fx.WEIGHT_MIN}, {fx.WEIGHT_MAX}] (weight * 64) to rebuild slayer blocks")
    return torch.tensor(w / fx.WEIGHT_SCALE, dtype=torch.float32)


def _neuron_params(entry: Dict[str, Any], path: Path, layer: int) -> tuple:
    """(kind, neuron_params) with kind 'ILIF' or 'CUBA'."""
    if not entry:
        raise NetworkFileError(f"{path}: layer {layer}: key '{K.NEURON}' missing (a spiking layer needs a neuron)")
    type_key = f"{K.NEURON}/{schema.NEURON_TYPE_KEY}"
    if schema.NEURON_TYPE_KEY not in entry:
        raise NetworkFileError(f"{path}: layer {layer}: key '{type_key}' missing")
    ntype = str(entry[schema.NEURON_TYPE_KEY])
    if ntype != NEURON_TYPE and ntype not in CUBA_TYPES:
        raise NetworkFileError(f"{path}: layer {layer}: key '{type_key}' = {ntype!r} is not supported "
                               f"(use {NEURON_TYPE!r} or one of {CUBA_TYPES})")
    table = schema.NEURON_TYPES[ntype]
    for key in table.rebuild_keys:
        if key.name not in entry:
            raise NetworkFileError(f"{path}: layer {layer}: key '{K.NEURON}/{key.name}' missing for a {ntype} "
                                   f"neuron")
        if isinstance(key.rule, schema.Int) and np.ndim(entry[key.name]) != 0:
            raise NetworkFileError(f"{path}: layer {layer}: key '{K.NEURON}/{key.name}' is per-neuron (array); only "
                                   f"shared (scalar) parameters can be rebuilt")
    try:
        if ntype == NEURON_TYPE:
            params = neuron_params_from_device(entry)
            params["quantized"] = True
            return NEURON_TYPE, params
        from lava.lib.dl.slayer.neuron import cuba
        return "CUBA", dict(cuba.neuron_params({k.name: entry[k.name] for k in table.rebuild_keys}))
    except (KeyError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise NetworkFileError(f"{path}: layer {layer}: key '{K.NEURON}': cannot rebuild neuron params "
                               f"({exc})") from None


def _check_neuron_params(blk: torch.nn.Module, kind: str, entry: Dict[str, Any], path: Path, layer: int) -> None:
    """The rebuilt neuron must deploy with exactly the integers stored in the file."""
    dp = blk.neuron.device_params
    for key in (k.name for k in schema.NEURON_TYPES[kind].rebuild_keys if isinstance(k.rule, schema.Int)):
        if int(np.asarray(dp[key])) != int(entry[key]):
            raise NetworkFileError(f"{path}: layer {layer}: key '{K.NEURON}/{key}' = {entry[key]} does not survive "
                                   f"the float round trip (rebuilt neuron gives {dp[key]})")


# ---------------------------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------------------------
def describe_hdf5(path: PathLike) -> List[Dict[str, Any]]:
    """One dict per layer: ``index``, ``type``, ``shape`` (tuple), ``neuron`` (dict, empty if none) and, where
    present, ``inFeatures``/``outFeatures`` or ``inChannels``/``outChannels``/``kernelSize``/``stride``/
    ``padding``/``dilation``/``groups``, ``weight_shape`` and ``has_delay``/``has_bias``."""
    path = Path(path)
    validate_file(path)
    out: List[Dict[str, Any]] = []
    rules = schema.layer_key_rules()
    with open_checked(path) as h:
        for i in range(len(h[K.LAYER])):
            g = h[K.LAYER][str(i)]
            d: Dict[str, Any] = {"index": i, K.TYPE: str(_get(g, K.TYPE, path, i)),
                                 K.SHAPE: _int_tuple(_get(g, K.SHAPE, path, i), path, i, K.SHAPE),
                                 K.NEURON: _neuron_entry(g)}
            for key, rule in rules.items():
                if key in g and key != K.SHAPE:
                    val = _get(g, key, path, i)
                    d[key] = _int_tuple(val, path, i, key) if rule.form in ("pair", "dims") else int(val)
            if K.WEIGHT in g and isinstance(g[K.WEIGHT], h5py.Dataset):
                d["weight_shape"] = tuple(g[K.WEIGHT].shape)
            d["has_delay"] = K.DELAY in g
            d["has_bias"] = K.BIAS in g
            out.append(d)
    return out


def _set_delay(blk: torch.nn.Module, g: h5py.Group, path: Path, layer: int) -> None:
    if K.DELAY not in g:
        return
    d = np.asarray(_get(g, K.DELAY, path, layer), dtype=np.float32).reshape(-1)  # length checked by validate_file
    blk.delay.delay.data = torch.tensor(d)
    blk.delay.init = True


def _bias_kw(bias: Any) -> Dict[str, Any]:
    """The ``bias=`` keyword of an ILIF block for a layer bias (none: no keyword, so CUBA blocks stay unchanged)."""
    return {} if bias is None else {"bias": torch.as_tensor(bias, dtype=torch.float64)}


def _build_layer(g: h5py.Group, path: Path, i: int, record_states: bool) -> torch.nn.Module:
    ltype = str(_get(g, K.TYPE, path, i))
    if ltype not in SUPPORTED_LAYERS:
        raise NetworkFileError(f"{path}: layer {i}: key '{K.TYPE}' = {ltype!r} is not supported "
                               f"(supported: {SUPPORTED_LAYERS})")
    shape = _int_tuple(_get(g, K.SHAPE, path, i), path, i, K.SHAPE)
    if ltype == T.FLATTEN:
        blk = ilif_block.Flatten()
        blk.shape = list(shape)
        return blk
    entry = _neuron_entry(g)
    kind, params = _neuron_params(entry, path, i)
    bias = None
    if K.BIAS in g:
        if kind != NEURON_TYPE:
            raise NetworkFileError(f"{path}: layer {i}: key '{K.BIAS}' present on a {kind} layer; only ILIF layers' "
                                   f"biases are rebuilt")
        mant = np.asarray(_get(g, K.BIAS, path, i)).reshape(-1)      # integer mantissas, checked by validate_file
        bias = fx.bias_to_float(mant.astype(np.int64), schema.ILIF_BIAS_EXP)   # threshold units, exact
    if kind == NEURON_TYPE and record_states:
        params["record_states"] = True
    has_delay = K.DELAY in g
    if kind == NEURON_TYPE:
        mod = ilif_block
    else:
        from lava.lib.dl.slayer.block import cuba as mod
    if ltype == T.DENSE:
        n_in, n_out = int(_get(g, K.IN_FEATURES, path, i)), int(_get(g, K.OUT_FEATURES, path, i))
        w = _weights(g, path, i)
        blk = mod.Dense(params, n_in, n_out, delay=has_delay, delay_shift=True, **_bias_kw(bias))
        blk.synapse.weight.data = w.reshape(blk.synapse.weight.shape)
        _set_delay(blk, g, path, i)
    else:  # conv (also a pool exported as depthwise conv)
        c_in, c_out = int(_get(g, K.IN_CHANNELS, path, i)), int(_get(g, K.OUT_CHANNELS, path, i))
        groups = int(_get(g, K.GROUPS, path, i))
        kernel, stride, padding, dilation = (_pair(_get(g, key, path, i), path, i, key)
                                             for key in (K.KERNEL_SIZE, K.STRIDE, K.PADDING, K.DILATION))
        w = _weights(g, path, i)
        blk = mod.Conv(params, c_in, c_out, kernel, stride=stride, padding=padding, dilation=dilation,
                       groups=groups, delay=has_delay, delay_shift=True, **_bias_kw(bias))
        blk.synapse.weight.data = w.reshape(blk.synapse.weight.shape)
        _set_delay(blk, g, path, i)   # slayer axonal delays are per channel
    blk.neuron.shape = torch.Size(shape)
    blk.neuron.num_neurons = int(np.prod(shape))
    _check_neuron_params(blk, kind, entry, path, i)
    return blk


def blocks_from_hdf5(path: PathLike, record_states: bool = False) -> torch.nn.ModuleList:
    """Rebuild the blocks of a netx HDF5 file (see the module docstring for what is supported).

    The blocks are in eval mode, with ``delay_shift=True``; ILIF neurons are ``quantized=True`` (bit-exact with
    Lava ``fixed_pt``) and keep their integer states when ``record_states``. Applying the blocks in order to an
    input ``[N, C(, H, W), T]`` reproduces the exported network. Raises :class:`NetworkFileError`.
    """
    path = Path(path)
    validate_file(path)
    blocks = torch.nn.ModuleList()
    with open_checked(path) as h:
        for i in range(len(h[K.LAYER])):
            blocks.append(_build_layer(h[K.LAYER][str(i)], path, i, record_states))
    blocks.eval()
    return blocks
