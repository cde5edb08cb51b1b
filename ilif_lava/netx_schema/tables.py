"""The netx HDF5 layout: one table per layer type and per neuron type.

A file holds ``layer/<i>/<key>`` for i = 0 .. N-1, and ``layer/<i>/neuron/<key>`` for the layer's neurons. Every
key name is spelled once, in :class:`K`; every key's form and range (what a loader needs), whether it is
required, its Loihi 2 limit and its default are a :class:`Key` row of a :class:`LayerType` or :class:`NeuronType`
table. The writer (``ilif_lava.neuron.Neuron.device_params``, ``ilif_lava.block.Pool.export_hdf5``), the loader
(``ilif_lava.netx``), the validator (``ilif_lava.hdf5_validate``), the Loihi 2 check (``ilif_lava.loihi2``) and the
readers (``export/hdf5_io.py``, ``ilif_lava.neuron.neuron_params_from_device``) all read these tables.

Adding a key to a neuron type is one :class:`Key` row; giving a neuron type netx's per-neuron layer ``bias``
(as CUBA uses it) is its ``has_bias`` flag.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from ilif_lava.netx_schema.rules import (BIAS_EXP, BIAS_LIMIT, DECAY_LIMIT, DECAY_ONE, DELAY_LIMIT, MAX_DELAY,
                                         MAX_NEURONS, VTH_MANT_LIMIT, VTH_MANT_MAX, WEIGHT_LIMIT, WEIGHT_MANT_MAX, WEIGHT_MANT_MIN,
                                         Choice, Flag,
                                         Int, Limit, Numbers, Rule, Text, INTEGER_INHIBITIONS, decode)


class K:
    """netx key names (the only place they are spelled in the code)."""

    LAYER = "layer"                                     # top-level group of the layers '0' .. 'N-1'
    TYPE = "type"                                       # layer type, and neuron type inside ``neuron``
    SHAPE = "shape"
    NEURON = "neuron"
    WEIGHT = "weight"
    WEIGHT_REAL = "weight/real"                         # complex weights (RF neurons)
    WEIGHT_IMAG = "weight/imag"
    WEIGHT_REC = "weight_rec"                           # dense_rec's recurrent weights
    BIAS = "bias"
    DELAY = "delay"
    IN_FEATURES, OUT_FEATURES = "inFeatures", "outFeatures"
    IN_CHANNELS, OUT_CHANNELS = "inChannels", "outChannels"
    KERNEL_SIZE, STRIDE, PADDING, DILATION, GROUPS = "kernelSize", "stride", "padding", "dilation", "groups"
    # neuron keys
    I_DECAY, V_DECAY, C_DECAY, M_DECAY = "iDecay", "vDecay", "cDecay", "mDecay"
    VTH_MANT = "vThMant"
    INHIBITION, MPIU, CIU = "inhibition", "mpiu", "ciu"
    VARIANT = "variant"
    REF_DELAY, GRADED_SPIKE = "refDelay", "gradedSpike"
    INPUT_SHIFT = "inputShift"                          # ILIF: synaptic input enters the current as a << shift
    # file attribute (on the root): "pipelined" for a network trained without the one-step synapse delay
    # (streamed with staggered per-layer resets, T + depth steps per sample); absent: slayer's delay_shift timing
    TIMING = "ilif_lava_timing"
    PIPELINED = "pipelined"
    # graph extension (a fan-in layer): ``layer/<i>/skip/<j>/`` holds one more synapse into layer i's neurons, a
    # 1x1 convolution (weight [outChannels, C_src], stride) from the spikes of the earlier layer ``source``
    SKIP = "skip"
    SOURCE = "source"


class T:
    """netx layer type names (the values of ``layer/<i>/type``)."""

    INPUT, DENSE, CONV, FLATTEN = "input", "dense", "conv", "flatten"
    POOL, CONV_T, UNPOOL, AVERAGE, CONCAT = "pool", "convT", "unpool", "average", "concat"
    DENSE_REC, DENSE_COMP = "dense_rec", "dense_comp"


@dataclass(frozen=True)
class Key:
    """One key of a layer or neuron table.

    ``rule``: form and range a loader needs (:mod:`ilif_lava.netx_schema.rules`). ``required``: a file without it is
    refused. ``loihi``: the Loihi 2 limit the check reports head-room against (None: none). ``default``: the value
    meant when the key is absent, and written when the writer has no value of its own. ``param``: the keyword
    this key becomes in the neuron's own vocabulary (the Lava process constructor; None: not a parameter).
    ``lava``: the Lava process takes ``param`` (False: only the float model does, e.g. ``variant``).
    ``rebuild``: needed to rebuild the float neuron from the file. ``big``: may hold one value per synapse or
    neuron (the larger per-dataset byte limit applies)."""

    name: str
    rule: Rule
    required: bool = False
    loihi: Optional[Limit] = None
    default: Any = None
    param: Optional[str] = None
    lava: bool = True
    rebuild: bool = False
    big: bool = False


class _Table:
    """What layer and neuron tables share: their ``keys`` (a tuple of :class:`Key`)."""

    keys: Tuple[Key, ...]

    def key(self, name: str) -> Optional[Key]:
        """The row of key ``name``, or None."""
        return next((k for k in self.keys if k.name == name), None)

    @property
    def required(self) -> Tuple[str, ...]:
        """Names of the required keys, in table order."""
        return tuple(k.name for k in self.keys if k.required)


@dataclass(frozen=True)
class LayerType(_Table):
    """The keys of one layer type. ``builds``: ILIFNetwork (netx) builds it (False: refused, naming the layer);
    ``resources``: the Loihi 2 resource estimate knows how to count it."""

    name: str
    keys: Tuple[Key, ...] = ()
    builds: bool = True
    resources: bool = True


@dataclass(frozen=True)
class NeuronType(_Table):
    """The ``neuron/<key>`` entries of one neuron type (``neuron/type`` itself is :data:`NEURON_TYPE_KEY`).

    ``bias_param``: the Lava process keyword that receives the layer's per-neuron ``bias`` (netx's ``bias_key``).
    ``has_bias``: the neuron adds that bias (False: a layer ``bias`` must be all zero). ``forbidden``: neuron keys a
    file must not set for this type (e.g. a threshold for a neuron that never fires). ``bias_rule``: what the
    layer ``bias`` of this neuron type must be (form and range; its shape, one value per output channel, is the
    layer's), e.g. 13-bit integer mantissas for ILIF; stock types keep netx's lenient reading (any real number,
    truncated by netx). ``fixed_point``: a bit-accurate fixed-point model exists (the Loihi 2 check knows the
    type)."""

    name: str
    keys: Tuple[Key, ...] = ()
    bias_param: str = "bias_mant"
    has_bias: bool = True
    bias_rule: Numbers = Numbers()
    fixed_point: bool = False
    forbidden: Tuple[str, ...] = ()

    @property
    def rebuild_keys(self) -> Tuple[Key, ...]:
        return tuple(k for k in self.keys if k.rebuild)

    def record(self, **params: Any) -> Dict[str, Any]:
        """The ``neuron/`` entries to write: ``type``, then every key from ``params`` (by its ``param`` name) or its
        default; keys with neither are left out. Unknown ``params`` are an error."""
        unknown = set(params) - {k.param for k in self.keys if k.param}
        if unknown:
            raise TypeError(f"neuron type {self.name}: no key for parameter(s) {sorted(unknown)}")
        out: Dict[str, Any] = {NEURON_TYPE_KEY: self.name}
        for k in self.keys:
            value = params.get(k.param, k.default) if k.param else k.default
            if value is not None:
                out[k.name] = value
        return out

    def values(self, read: Callable[[str], Any], lava_only: bool = False) -> Dict[str, Any]:
        """``{param: value}`` of the keys with a ``param``, read by ``read(key name)`` (decoded, converted by the
        key's rule: int, bool or str); an absent key gives its default, if it has one (else ``KeyError``).
        ``lava_only``: only the keys the Lava process takes."""
        out: Dict[str, Any] = {}
        for k in self.keys:
            if not k.param or (lava_only and not k.lava):
                continue
            try:
                raw = decode(read(k.name))
            except KeyError:
                if k.default is None:
                    raise
                raw = k.default
            out[k.param] = convert(k.rule, raw)
        return out


def convert(rule: Rule, value: Any) -> Any:
    """A decoded scalar value as the Python type its rule means (int, bool, str; arrays unchanged)."""
    if isinstance(rule, Int) and rule.form in ("scalar", "strict"):
        return int(value)
    if isinstance(rule, Flag):
        return bool(value)
    if isinstance(rule, (Choice, Text)):
        return str(value)
    return value


NEURON_TYPE_KEY = K.TYPE
DEFAULT_NEURON_TYPE = "CUBA"      # what a ``neuron`` group without ``type`` means (netx's default)
ILIF_NEURON_TYPE = "ILIF"         # this project's neuron; distinct from lava-dl's CUBA/ALIF and spikingjelly's ILIFNode
READOUT_NEURON_TYPE = "READOUT"   # this project's non-firing integer accumulator (a network's Linear head)
NEURON_TYPE_RULE = Text()

# ---------------------------------------------------------------------------------------------------------
# layer tables
# ---------------------------------------------------------------------------------------------------------
# netx's weight range: optimize_weight_bits' input (8-bit signed mantissa, x2 in mixed mode); Loihi wants even
WEIGHT_RANGE = (WEIGHT_MANT_MIN, WEIGHT_MANT_MAX + 1)
DELAY_RANGE = (0, MAX_DELAY)
_COUNT = Int(1, MAX_NEURONS)
_GEOM = Int(1, 1 << 12, "pair")

SHAPE = Key(K.SHAPE, Int(1, MAX_NEURONS, "dims"), required=True)
WEIGHT = Key(K.WEIGHT, Numbers(*WEIGHT_RANGE, integer=True), required=True, loihi=WEIGHT_LIMIT, big=True)
WEIGHT_PARTS = (Key(K.WEIGHT_REAL, Numbers(*WEIGHT_RANGE, integer=True), loihi=WEIGHT_LIMIT, big=True),
                Key(K.WEIGHT_IMAG, Numbers(*WEIGHT_RANGE, integer=True), loihi=WEIGHT_LIMIT, big=True))
BIAS = Key(K.BIAS, Numbers(), loihi=BIAS_LIMIT, big=True)
DELAY = Key(K.DELAY, Numbers(*DELAY_RANGE, integer=True), loihi=DELAY_LIMIT, big=True)
NEURON = Key(K.NEURON, Text())      # a group: its keys are the neuron type's table
CONV_KEYS = (Key(K.IN_CHANNELS, _COUNT, required=True), Key(K.OUT_CHANNELS, _COUNT, required=True),
             Key(K.KERNEL_SIZE, _GEOM, required=True), Key(K.STRIDE, _GEOM, required=True),
             Key(K.PADDING, Int(0, 1 << 12, "pair"), required=True), Key(K.DILATION, _GEOM, required=True),
             Key(K.GROUPS, Int(1, MAX_NEURONS, "strict"), required=True))

LAYER_TYPES: Mapping[str, LayerType] = {t.name: t for t in (
    LayerType(T.INPUT, (SHAPE, Key(K.WEIGHT, Numbers(), loihi=WEIGHT_LIMIT), Key(K.BIAS, Numbers(), loihi=BIAS_LIMIT),
                        NEURON)),
    LayerType(T.DENSE, (SHAPE, Key(K.IN_FEATURES, _COUNT, required=True), Key(K.OUT_FEATURES, _COUNT, required=True),
                        WEIGHT, *WEIGHT_PARTS, BIAS, DELAY, NEURON)),
    LayerType(T.CONV, (SHAPE, *CONV_KEYS, WEIGHT, *WEIGHT_PARTS, BIAS, DELAY, Key(K.NEURON, Text(), required=True))),
    LayerType(T.FLATTEN, (SHAPE,)),
    # netx builds dense_rec (slayer's Recurrent blocks) as a RecurrentDense block: weight [out, in] plus
    # weight_rec [out, out], one bit-width for both; a delay is refused (netx would build the recurrent delays
    # from the feed-forward delay matrix)
    LayerType(T.DENSE_REC, (SHAPE, Key(K.IN_FEATURES, _COUNT, required=True),
                            Key(K.OUT_FEATURES, _COUNT, required=True), WEIGHT,
                            Key(K.WEIGHT_REC, Numbers(*WEIGHT_RANGE, integer=True), required=True, loihi=WEIGHT_LIMIT,
                                big=True), BIAS, DELAY, NEURON)),
    # netx raises NotImplementedError / AttributeError for these; ILIFNetwork refuses them
    LayerType(T.POOL, (SHAPE, WEIGHT, BIAS, DELAY, NEURON), builds=False),
    LayerType(T.CONV_T, (SHAPE, WEIGHT, BIAS, DELAY, NEURON), builds=False, resources=False),
    LayerType(T.UNPOOL, (SHAPE, WEIGHT, NEURON), builds=False, resources=False),
    LayerType(T.AVERAGE, (SHAPE, NEURON), builds=False),
    LayerType(T.CONCAT, (SHAPE, NEURON), builds=False),
    LayerType(T.DENSE_COMP, (SHAPE, WEIGHT, BIAS, DELAY, NEURON), builds=False, resources=False),
)}
# one skip synapse (``layer/<i>/skip/<j>``, the graph extension; ilif_lava/graph.py): a 1x1 convolution with stride
# from the spikes of layer ``source`` (an earlier conv layer of the same file) into layer i's neurons, summed with
# the layer's own synapse; deployed on a Lava Sparse synapse delayed to the target's depth. ``weight`` [out, in].
MAX_SKIPS = 8                               # skip synapses per layer (fan-in = 1 + skips)
SKIP_KEYS: Tuple[Key, ...] = (
    Key(K.SOURCE, Int(0, 1 << 16, "strict"), required=True),
    Key(K.IN_CHANNELS, _COUNT, required=True), Key(K.OUT_CHANNELS, _COUNT, required=True),
    Key(K.STRIDE, _GEOM, required=True),
    Key(K.WEIGHT, Numbers(*WEIGHT_RANGE, integer=True), required=True, loihi=WEIGHT_LIMIT, big=True))
SKIP_TARGET_TYPES = (T.CONV,)               # layer types that may hold skip synapses

BUILT_LAYER_TYPES = tuple(n for n, t in LAYER_TYPES.items() if t.builds)
REFUSED_LAYER_TYPES = tuple(n for n, t in LAYER_TYPES.items() if not t.builds)

# ---------------------------------------------------------------------------------------------------------
# neuron tables
# ---------------------------------------------------------------------------------------------------------
_DECAY = Int(0, DECAY_ONE)
_DECAY_0D = Int(0, DECAY_ONE, "strict")   # ILIFNetwork reads with int(): 0-d (int() of 1-element arrays: deprecated)
# Stock CUBA threshold mantissa: slayer's cuba.Affine writes (1 << 18) - 1 ("never fires") and stock netx builds
# it; vth << 6 then exceeds the 24-bit saturated v, so it never fires in Lava either. The Loihi 2 check still
# reports anything above the 17-bit mantissa; ILIF layers keep the 17-bit cap.
CUBA_VTH_MANT_MAX = (1 << 18) - 1
_DECAY_PER_NEURON = Int(0, DECAY_ONE, "neurons")
_CUBA_KEYS = (Key(K.I_DECAY, _DECAY_PER_NEURON, required=True, loihi=DECAY_LIMIT, rebuild=True),
              Key(K.V_DECAY, _DECAY_PER_NEURON, required=True, loihi=DECAY_LIMIT, rebuild=True),
              Key(K.VTH_MANT, Int(0, CUBA_VTH_MANT_MAX), required=True, loihi=VTH_MANT_LIMIT, rebuild=True))
ILIF_VARIANT = Key(K.VARIANT, Text(), param="variant", lava=False, rebuild=True)
# ILIF layers: netx's layer ``bias`` (one value per output channel, as slayer's CUBA blocks write it) holds the
# 13-bit bias mantissas exactly (netx reads it with ``astype(int)``, so a fraction would be truncated silently);
# the process adds ``bias << ILIF_BIAS_EXP`` to the input current (docs/fixed-point.md, "The neuron bias")
ILIF_BIAS_RULE = Numbers(BIAS_LIMIT.lo, BIAS_LIMIT.hi, integer=True)
ILIF_BIAS_EXP = BIAS_EXP

NEURON_TYPE_TABLES: Tuple[NeuronType, ...] = (
    NeuronType("CUBA", _CUBA_KEYS, fixed_point=True),
    NeuronType("LOIHI", _CUBA_KEYS),
    NeuronType("SDNN", (Key(K.VTH_MANT, Int(0, (1 << 31) - 1), required=True, loihi=VTH_MANT_LIMIT),),
               bias_param="bias"),
    NeuronType(ILIF_NEURON_TYPE, (
        Key(K.I_DECAY, _DECAY_0D, required=True, loihi=DECAY_LIMIT, param="i_decay", rebuild=True),
        Key(K.V_DECAY, _DECAY_0D, required=True, loihi=DECAY_LIMIT, param="v_decay", rebuild=True),
        Key(K.C_DECAY, _DECAY_0D, required=True, loihi=DECAY_LIMIT, param="c_decay", rebuild=True),
        Key(K.M_DECAY, _DECAY_0D, required=True, loihi=DECAY_LIMIT, param="m_decay", rebuild=True),
        Key(K.VTH_MANT, Int(1, VTH_MANT_MAX, "strict"), required=True, loihi=VTH_MANT_LIMIT, param="vth",
            rebuild=True),
        Key(K.INHIBITION, Choice(INTEGER_INHIBITIONS), required=True, param="inhibition"),
        Key(K.MPIU, Flag(), required=True, default=True, param="mpiu"),
        Key(K.CIU, Flag(), required=True, default=True, param="ciu"),
        ILIF_VARIANT,
        # 6: binary spikes in (a << 6); 0: graded direct-encoded input (ilif_lava.fixed_point.direct_input)
        Key(K.INPUT_SHIFT, Int(0, 6, "strict"), default=6, param="input_shift"),
        Key(K.REF_DELAY, Int(1, 1), default=1),          # no refractory period: written for netx's CUBA reader
        Key(K.GRADED_SPIKE, Flag(), default=False),      # binary spikes
    ), has_bias=True, bias_rule=ILIF_BIAS_RULE, fixed_point=True),
    # the integer readout (ilif_lava.fixed_point.readout_step): integrates its input and the layer ``bias``
    # (13-bit mantissas, exponent 6, as ILIF) and never fires, so a threshold in the file is an error
    NeuronType(READOUT_NEURON_TYPE, (Key(K.VARIANT, Text(), param="variant", lava=False),),
               has_bias=True, bias_rule=ILIF_BIAS_RULE, fixed_point=True, forbidden=(K.VTH_MANT,)),
)
# netx maps any type containing "RF" to RF / RF_IZ, whose processes have complex inputs (a_real_in, a_imag_in): a
# plain dense/conv/input block cannot connect to them, and Lava 0.10 ships RF models for floating_pt only
# (lava/proc/rf/models.py), so no bit-exact fixed_pt run (this project's deployment target) exists for them.
COMPLEX_NEURON_HINT = "RF"


class NeuronRegistry(Mapping[str, NeuronType]):
    """An immutable set of neuron types, by name: what a validator accepts. :meth:`added` / :meth:`removed`
    return new registries, so a registry handed to a validator never changes under it."""

    def __init__(self, types: Iterable[NeuronType] = ()) -> None:
        self._types: Dict[str, NeuronType] = {t.name: t for t in types}

    def __getitem__(self, name: str) -> NeuronType:
        return self._types[name]

    def __iter__(self):
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)

    def __repr__(self) -> str:
        return f"NeuronRegistry({list(self._types)})"

    def added(self, neuron_type: NeuronType) -> "NeuronRegistry":
        """A registry with ``neuron_type`` added (replacing one of the same name)."""
        return NeuronRegistry([*(t for n, t in self._types.items() if n != neuron_type.name), neuron_type])

    def removed(self, name: str) -> "NeuronRegistry":
        return NeuronRegistry(t for n, t in self._types.items() if n != name)


#: the neuron types every reader knows: netx's stock CUBA / LOIHI / SDNN and this project's ILIF
NEURON_TYPES = NeuronRegistry(NEURON_TYPE_TABLES)


def neuron_type_from_rules(name: str, rules: Mapping[str, Rule]) -> NeuronType:
    """A neuron type whose keys are all required, from ``{key: rule}`` (what ``register_neuron_type(keys=...)``
    takes)."""
    return NeuronType(name, tuple(Key(k, r, required=True) for k, r in rules.items()))


def layer_key_rules() -> Dict[str, Rule]:
    """``{key: rule}`` of the integer layer keys of the layer types netx builds (one rule per key name)."""
    out: Dict[str, Rule] = {}
    for t in LAYER_TYPES.values():
        for k in t.keys:
            if t.builds and isinstance(k.rule, Int):
                out.setdefault(k.name, k.rule)
    return out


def layer_key_limits() -> Dict[str, Limit]:
    """``{key: Loihi 2 limit}`` of the layer keys of every layer type (one limit per key name)."""
    return {k.name: k.loihi for t in LAYER_TYPES.values() for k in t.keys if k.loihi is not None}


def neuron_key_limits(registry: Mapping[str, NeuronType] = NEURON_TYPES) -> Dict[str, Limit]:
    """``{neuron key: Loihi 2 limit}`` over the neuron types of ``registry`` (one limit per key name)."""
    return {k.name: k.loihi for t in registry.values() for k in t.keys if k.loihi is not None}


def big_keys() -> Tuple[str, ...]:
    """Dataset names that may hold one value per synapse or neuron (the larger byte limit applies to them)."""
    names = {k.name.split("/")[-1] for t in LAYER_TYPES.values() for k in t.keys if k.big}
    return tuple(sorted(names))
