"""netx HDF5 support for ILIF: a neuron-type registry for netx, whole-network export, file validation.

netx (``lava.lib.dl.netx.hdf5.Network``) knows the neuron types CUBA/LOIHI, SDNN and RF; it dispatches them in
one static method, ``get_neuron_params``, which its layer builders (``create_input/dense/conv``) call through
the module-level name ``Network``. :class:`~ilif_lava.lava_proc.process.ILIFNetwork` extends it without touching
netx: its ``get_neuron_params`` consults the registry below first (``ILIF`` is registered there, with
:func:`ilif_lava_params`) and delegates every other type to netx's own function, and its builders are netx's own
functions with ``Network`` resolved to the class being built (:func:`netx_builder`), so a subclass's
``get_neuron_params`` is honoured too. Nothing
is copied from netx and no netx attribute is replaced: stock ``netx.hdf5.Network`` is unchanged, and files
with only stock neuron types build exactly as with stock netx. A user may also rebind
``netx.hdf5.Network = ILIFNetwork`` so that existing scripts load ILIF files.

Adding a neuron type (a Lava process with ports ``a_in``/``s_out`` whose constructor takes ``shape`` and the
returned keys)::

    def my_params(neuron_config, input=False, reset_interval=None, reset_offset=0, spike_exp=6):
        return {"neuron_proc": MyLIF, "vth": int(read_key(neuron_config, "vth_key")), "num_message_bits": 0}
    ilif_lava.netx.register_neuron_type("MYLIF", my_params, keys={"vth_key": Int(0, 131071)})

(``Int``/``Choice``/``Flag``/``Text`` are the rules of :mod:`ilif_lava.netx_schema`.) What the validator accepts is a
:class:`~ilif_lava.netx_schema.NeuronRegistry` handed to it: :func:`neuron_registry` (the built-in types plus the
registered ones) for ILIFNetwork, the built-in ones for a plain ``hdf5_validate.validate_file`` call, whether or
not this module was imported.
"""
from __future__ import annotations

import functools
import sys
import types
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple, Union

import h5py
import numpy as np
from lava.lib.dl.netx import hdf5

from ilif_lava import hdf5_validate as _hdf5_validate
from ilif_lava.block import is_pipelined
from ilif_lava import netx_schema as schema
from ilif_lava.hdf5_validate import NetworkFileError, UnsupportedLayerError  # noqa: F401  (re-exported)
from ilif_lava.netx_schema import ILIF_NEURON_TYPE, K, NeuronRegistry

#: ``params_fn(neuron_config, input=False, reset_interval=None, reset_offset=0, spike_exp=6) -> dict``: netx's
#: ``neuron_params`` (``'neuron_proc'``: the Lava process class, then its constructor keywords; optional
#: ``'bias_key'``, ``'num_message_bits'``). ``neuron_config`` is a netx ``NetDict`` (read custom keys with
#: :func:`read_key`) or a plain dict.
NeuronParamsFn = Callable[..., Dict[str, Any]]

STOCK_NETWORK = hdf5.PyNetworkModel.implements_process   # netx's own Network, even after a user rebinds hdf5.Network
# this project's own types are registered by ilif_lava.lava_proc.process; netx itself dispatches the stock ones
# (and any type containing 'RF')
_OWN_TYPES = (ILIF_NEURON_TYPE, schema.READOUT_NEURON_TYPE)
STOCK_NEURON_TYPES = tuple(n for n in schema.NEURON_TYPES if n not in _OWN_TYPES)
_NEURON_TYPES: Dict[str, NeuronParamsFn] = {}
_registry: NeuronRegistry = schema.NEURON_TYPES   # what ILIFNetwork's validation accepts; replaced, never mutated


def read_key(cfg: Any, key: str) -> Any:
    """Read a neuron key from a dict, an h5py group or a netx ``NetDict`` (which wraps unknown keys instead of
    returning them), decoded by :func:`ilif_lava.netx_schema.decode` (strings decoded, numpy scalars as Python
    numbers, 1-element numeric arrays stay arrays). A missing key is a ``KeyError``."""
    if isinstance(cfg, dict):
        val = cfg[key]
    elif isinstance(cfg, h5py.Group):
        val = cfg[key][()]
    else:  # netx NetDict
        val = cfg.f[key][()]
    return schema.decode(val)


def register_neuron_type(name: str, params_fn: NeuronParamsFn, keys: Optional[Mapping[str, Any]] = None,
                         replace: bool = False) -> None:
    """Let :class:`~ilif_lava.lava_proc.process.ILIFNetwork` build layers whose ``neuron/type`` is ``name``.

    ``keys``: ``{key: rule}`` (``ilif_lava.netx_schema.Int/Choice/Flag/Text``) of the neuron keys ``params_fn``
    reads, all required, checked before any Lava process is built (None: keep the table of ``name``, or none);
    a :class:`~ilif_lava.netx_schema.NeuronType` is taken as it is. ``replace=True`` overrides an earlier
    registration or a stock netx type.
    """
    global _registry
    if not replace and (name in _NEURON_TYPES or name in STOCK_NEURON_TYPES or schema.COMPLEX_NEURON_HINT in name):
        raise ValueError(f"neuron type {name!r} is already known to netx / ilif_lava.netx; pass replace=True "
                         f"to override it")
    _NEURON_TYPES[name] = params_fn
    if isinstance(keys, schema.NeuronType):
        _registry = _registry.added(keys)
    elif keys is not None:
        _registry = _registry.added(schema.neuron_type_from_rules(name, keys))
    elif name not in _registry:
        _registry = _registry.added(schema.NeuronType(name))


def unregister_neuron_type(name: str) -> None:
    """Undo :func:`register_neuron_type` (its table included; a built-in type keeps its own table)."""
    global _registry
    _NEURON_TYPES.pop(name)
    builtin = schema.NEURON_TYPES.get(name)
    _registry = _registry.removed(name) if builtin is None else _registry.added(builtin)


def neuron_registry() -> NeuronRegistry:
    """The neuron types ILIFNetwork accepts: the built-in tables plus every :func:`register_neuron_type` one."""
    return _registry


def registered_neuron_types() -> Tuple[str, ...]:
    """Neuron types added to netx through :func:`register_neuron_type` (``'ILIF'`` once
    :mod:`ilif_lava.lava_proc.process`, the home of ``ILIFNetwork``, is imported)."""
    return tuple(_NEURON_TYPES)


def neuron_params(neuron_config: Any, input: bool = False, reset_interval: Optional[int] = None,
                  reset_offset: int = 0, spike_exp: int = 6) -> Dict[str, Any]:
    """netx ``get_neuron_params`` with the registry: registered types first, then netx's own dispatch."""
    fn = _NEURON_TYPES.get(str(neuron_config[schema.NEURON_TYPE_KEY]))
    if fn is None:
        fn = STOCK_NETWORK.get_neuron_params
    return fn(neuron_config, input=input, reset_interval=reset_interval, reset_offset=reset_offset,
              spike_exp=spike_exp)


@functools.lru_cache(maxsize=None)
def netx_builder(name: str, network_cls: type) -> Callable[..., Any]:
    """netx's static layer builder ``name`` (``create_input``, ...) with the name ``Network`` in its body bound
    to ``network_cls`` instead of stock netx's class (the same code object; netx's module is not modified)."""
    fn = getattr(STOCK_NETWORK, name)
    scope = dict(fn.__globals__, Network=network_cls)
    out = types.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__kwdefaults__, out.__doc__ = fn.__kwdefaults__, fn.__doc__
    return out


class NetxBuilder:
    """Class attribute standing for netx's builder of the same name, bound to the accessing class (see
    :func:`netx_builder`); callable like netx's static method, from the class or an instance."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type) -> Callable[..., Any]:
        return netx_builder(self.name, owner if obj is None else type(obj))


def ensure_network_model(network_cls: type) -> None:
    """Give a subclass of ``ILIFNetwork`` the Lava sub-process model the compiler needs (it matches process types
    exactly), unless its module already defines one; the model is placed in that module, where Lava looks first."""
    from lava.lib.dl.netx.blocks.models import AbstractPyBlockModel
    from lava.magma.core.decorator import implements
    from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

    module = sys.modules.get(network_cls.__module__)
    if module is None or any(getattr(v, "implements_process", None) is network_cls for v in vars(module).values()):
        return
    model = type(f"Py{network_cls.__name__}Model", (AbstractPyBlockModel,),
                 {"__module__": module.__name__, "__doc__": f"Sub-process model of {network_cls.__name__}."})
    setattr(module, model.__name__, implements(proc=network_cls, protocol=LoihiProtocol)(model))


def ilif_lava_params(neuron_config: Any, input: bool = False, reset_interval: Optional[int] = None,
                     reset_offset: int = 0, spike_exp: int = 6, *, neuron_proc: type) -> Dict[str, Any]:
    """netx ``neuron_params`` of an ILIF neuron entry: the Lava process class ``neuron_proc`` and its keywords, read
    as the ILIF table says. :mod:`ilif_lava.lava_proc.process` registers it as ``'ILIF'`` with its ``ILIF`` class
    bound (so this module does not import the process module, which imports this one)."""
    table = schema.NEURON_TYPES[ILIF_NEURON_TYPE]
    # netx passes the layer's ``bias`` (13-bit mantissas, one per output channel) as ``bias_key``; the exponent is
    # netx's fixed 6, as for CUBA layers
    out: Dict[str, Any] = {"neuron_proc": neuron_proc, "bias_key": table.bias_param,
                           "bias_exp": schema.ILIF_BIAS_EXP, "num_message_bits": 0}
    out.update(table.values(functools.partial(read_key, neuron_config), lava_only=True))
    if reset_interval is not None:       # netx's pipelined streaming: periodic reset, staggered by layer
        out.update(reset_interval=reset_interval, reset_offset=reset_offset)
    return out


def readout_lava_params(neuron_config: Any, input: bool = False, reset_interval: Optional[int] = None,
                        reset_offset: int = 0, spike_exp: int = 6, *, neuron_proc: type) -> Dict[str, Any]:
    """netx ``neuron_params`` of a READOUT entry (the integer readout, :func:`ilif_lava.fixed_point.readout_step`):
    the layer ``bias`` as 13-bit mantissas with exponent 6, graded 24-bit output (its accumulator)."""
    if input:
        raise ValueError("a READOUT layer cannot be a network's input layer")
    out: Dict[str, Any] = {"neuron_proc": neuron_proc, "bias_key": "bias_mant", "bias_exp": schema.ILIF_BIAS_EXP,
                           "num_message_bits": 24}
    if reset_interval is not None:
        out.update(reset_interval=reset_interval, reset_offset=reset_offset)
    return out



# ---------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------
def file_is_pipelined(path: Union[str, Path]) -> bool:
    """Whether a (validated) netx file asks for pipelined timing (its root attribute ``K.TIMING``; absent: no)."""
    with h5py.File(path, "r") as h:
        return schema.decode(h.attrs.get(K.TIMING, "")) == K.PIPELINED


def file_takes_graded_input(path: Union[str, Path]) -> bool:
    """Whether a (validated) netx file's first layer takes graded direct-encoded input (ILIF
    ``neuron/inputShift = 0``, :func:`ilif_lava.fixed_point.direct_input`)."""
    with h5py.File(path, "r") as h:
        layers = h.get(K.LAYER)
        neuron = layers["0"].get(K.NEURON) if layers is not None and "0" in layers else None
        return neuron is not None and K.INPUT_SHIFT in neuron and int(read_key(neuron, K.INPUT_SHIFT)) == 0


def export_blocks(blocks: Iterable[Any], path: Union[str, Path]) -> Path:
    """Write slayer/ILIF blocks as a netx HDF5 file (``layer/<i>/...``). Written to a temp file, then renamed.

    ``export_hdf5`` of lava-dl blocks disables weight norm (it mutates the model); we export a deep copy.
    """
    import copy
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    blocks = list(blocks)
    with h5py.File(tmp, "w") as h:
        if is_pipelined(blocks):     # ilif_lava.block.is_pipelined
            h.attrs[K.TIMING] = K.PIPELINED
        layer = h.create_group(K.LAYER)
        i = 0
        file_index = {}                      # block index -> its layer index in the file
        for b, blk in enumerate(blocks):
            shape = getattr(blk, "flatten_before", None)        # a readout on a feature map: flatten first
            if shape is not None:
                g = layer.create_group(str(i))
                g.create_dataset(K.TYPE, (1,), "S10", [schema.T.FLATTEN.encode("ascii")])
                g.create_dataset(K.SHAPE, data=np.asarray(shape))
                i += 1
            sources = getattr(blk, "skip_sources", None)       # a fan-in layer (ilif_lava.graph.FanInConv)
            if sources:
                missing = [s for s in sources if s not in file_index]
                if missing:
                    raise ValueError(f"block {b}: skip source(s) {missing} are not earlier blocks")
                copy.deepcopy(blk).export_hdf5(layer.create_group(str(i)), [file_index[s] for s in sources])
            else:
                copy.deepcopy(blk).export_hdf5(layer.create_group(str(i)))
            file_index[b] = i
            i += 1
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# reading / validation
# ---------------------------------------------------------------------------------------------------------
def validate_file(path: Union[str, Path], input_shape=None, num_layers: Optional[int] = None) -> None:
    """Check, before any Lava process is built, that ``path`` is a netx HDF5 network ILIFNetwork can build.

    Delegates to :func:`ilif_lava.hdf5_validate.validate_file` (structure, keys, dtypes, shapes, values, layer
    sizes, neuron types and parameters) with :func:`neuron_registry`. Raises :class:`NetworkFileError` naming the
    file, layer and key.
    """
    _hdf5_validate.validate_file(path, input_shape=input_shape, neurons=_registry, num_layers=num_layers)
