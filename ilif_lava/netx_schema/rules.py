"""Forms, ranges and Loihi 2 limits of netx HDF5 values, and the one decoder of the strings netx files hold.

Plain Python + numpy (no torch, Lava or h5py), so every layer of the project can import it.

* A **rule** says what a loader needs a key to be: :class:`Int` (integer scalar / pair / dims in a range),
  :class:`Choice` (one of some strings), :class:`Flag` (a bool or 0 / 1), :class:`Text` (any ASCII string),
  :class:`Numbers` (a real array, optionally integer-valued, in a range; its shape is given by the layer).
* A :class:`Limit` says what Loihi 2 can hold (bit width, evenness); :mod:`ilif_lava.loihi2` reports head-room
  against it. The word widths below are the chip's, as the bit-accurate Lava CPU models implement them
  (lava-nc 0.10 ``proc/lif/models.py``, ``proc/dense/models.py``; docs/fixed-point.md).
* :func:`text` / :func:`decode`: how a netx value (``b'dense'``, ``[b'dense']``, ``np.bytes_``, ``str``,
  numpy scalars) becomes Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple, Union

import numpy as np

# ---------------------------------------------------------------------------------------------------------
# Loihi 2 word widths (the fixed-point model, ilif_lava/fixed_point.py, computes with the same numbers)
# ---------------------------------------------------------------------------------------------------------
DECAY_BITS = 12                         # du, dv (and ILIF's cDecay, mDecay): 12-bit, 4096 = empty every step
DECAY_ONE = 1 << DECAY_BITS
VTH_MANT_BITS = 17                      # threshold mantissa; effective threshold vThMant << 6
VTH_MANT_MAX = (1 << VTH_MANT_BITS) - 1
WEIGHT_BITS = 8                         # weight mantissa, x2 in mixed sign mode: even integers in [-256, 254]
WEIGHT_MANT_MIN, WEIGHT_MANT_MAX = -256, 254
BIAS_MANT_BITS = 13                     # bias mantissa, with a 3-bit exponent (netx: bias_exp = 6)
BIAS_EXP = 6                            # the bias exponent netx passes (CUBA) and ILIF layers are loaded with
MAX_DELAY = 62                          # axonal delay steps (slayer Delay(max_delay=62); netx clamps larger)
STATE_BITS = 24                         # neuron states u, v (and ILIF's c, m)
INTEGER_INHIBITIONS = ("plan",)         # ILIF inhibition functions with a shift/add integer form
MAX_NEURONS = 1 << 24                   # per layer: a guard against allocation bombs, far beyond any Loihi 2 system


# ---------------------------------------------------------------------------------------------------------
# rules: what a loader needs
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Int:
    """Integer dtype in [lo, hi]. ``form``: ``scalar`` (one value, 0-d or 1 element), ``strict`` (a 0-d dataset,
    as ``np.isscalar`` / ``int()`` need), ``pair`` (0-d or exactly 2 values: netx indexes ``[0]`` and ``[1]``),
    ``dims`` (1 to 3 values), ``neurons`` (one value, or a 1-d array of one value per neuron of the layer: slayer
    writes CUBA decays that way for ``shared_param=False``, and netx hands the array to Lava's LIF process)."""

    lo: int
    hi: int
    form: str = "scalar"


@dataclass(frozen=True)
class Choice:
    """One of ``values`` (a single ASCII string)."""

    values: Tuple[str, ...]


@dataclass(frozen=True)
class Flag:
    """A bool, or an integer 0 / 1."""


@dataclass(frozen=True)
class Text:
    """Any single ASCII string."""


@dataclass(frozen=True)
class Numbers:
    """A real, finite numeric array in [lo, hi] (``integer``: integer-valued); the shape is the layer's to say."""

    lo: float = -np.inf
    hi: float = np.inf
    integer: bool = False


Rule = Union[Int, Choice, Flag, Text, Numbers]


def expected(rule: Rule) -> str:
    """The words that say what ``rule`` accepts (the 'expected ...' of an error message)."""
    if isinstance(rule, Choice):
        return f"one of {list(rule.values)}"
    if isinstance(rule, Flag):
        return "a bool (or 0 / 1)"
    if isinstance(rule, Text):
        return "a single ASCII string"
    if isinstance(rule, Numbers):
        what = f"a real {'integer-valued ' if rule.integer else ''}array"
        return what + (f" with values in [{rule.lo:g}, {rule.hi:g}]" if np.isfinite([rule.lo, rule.hi]).any() else "")
    what = {"scalar": "an integer", "strict": "a scalar (0-d) integer", "pair": "a scalar (0-d) or 2 integers",
            "dims": "1 to 3 integers", "neurons": "an integer or one integer per neuron"}[rule.form]
    return f"{what} in [{rule.lo}, {rule.hi}]"


# ---------------------------------------------------------------------------------------------------------
# Loihi 2 limits: what the chip can hold
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limit:
    """Allowed integer range of one parameter on Loihi 2; ``ref`` = max(|lo|, |hi|) is the head-room reference."""

    name: str
    lo: int
    hi: int
    integer: bool = True
    even: bool = False
    source: str = ""

    @property
    def ref(self) -> int:
        return max(abs(self.lo), abs(self.hi))


# netx exports ``w * 64`` as even integers; a per-layer weight exponent scales it further (not in our files)
WEIGHT_LIMIT = Limit(f"{WEIGHT_BITS}-bit weight mantissa, even", WEIGHT_MANT_MIN, WEIGHT_MANT_MAX, even=True,
                     source="lava proc/dense/models.py weights precision=8")
# 4096 is reachable for the current through the +1 offset (effective u decay = du + 1)
DECAY_LIMIT = Limit(f"{DECAY_BITS}-bit decay", 0, DECAY_ONE, source="lava proc/lif/models.py du, dv precision=12")
VTH_MANT_LIMIT = Limit(f"{VTH_MANT_BITS}-bit threshold mantissa", 0, VTH_MANT_MAX,
                       source="lava proc/lif/models.py vth precision=17")
BIAS_LIMIT = Limit(f"{BIAS_MANT_BITS}-bit bias mantissa", -(1 << (BIAS_MANT_BITS - 1)), (1 << (BIAS_MANT_BITS - 1)) - 1,
                   source="lava proc/lif/models.py bias_mant precision=13")
DELAY_LIMIT = Limit(f"axonal delay <= {MAX_DELAY}", 0, MAX_DELAY, source="slayer Delay(max_delay=62), netx")
# v (and c, m) saturate at +-(2**23 - 1); u wraps
STATE_LIMIT = Limit(f"{STATE_BITS}-bit state", -((1 << (STATE_BITS - 1)) - 1), (1 << (STATE_BITS - 1)) - 1,
                    source="lava proc/lif/models.py u, v precision=24, uv_bitwidth=24")


# ---------------------------------------------------------------------------------------------------------
# decoding: the one place a netx value becomes a Python string or number
# ---------------------------------------------------------------------------------------------------------
def show(a: Any) -> str:
    """A short rendering of a value for messages: the values when few, else dtype and shape."""
    a = np.asarray(a)
    return repr(a.tolist()) if a.size <= 6 else f"{a.dtype} array of shape {a.shape}"


def text(value: Any, strict: bool = True) -> str:
    """The single string a netx value holds: ``b'x'``, ``np.bytes_``, ``'x'`` or a 0-d / 1-element array of one.

    ``strict``: raise ``ValueError`` (its message is what is wrong with the value, e.g. ``"[1, 2] is not a single
    string"``) unless the value is exactly one ASCII string. Otherwise decode whatever is there (first element,
    undecodable bytes replaced; ``''`` for an empty array, ``str(value)`` for a non-string).
    """
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "SOU" or value.size != 1 or value.ndim > 1:
            if strict:
                raise ValueError(f"{show(value)} is not a single string")
            value = value.reshape(-1)[0] if value.size else ""
        else:
            value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("ascii")
        except UnicodeDecodeError:
            if strict:
                raise ValueError(f"{bytes(value)!r} is not ASCII") from None
            return bytes(value).decode("ascii", "replace")
    if isinstance(value, str) and (value.isascii() or not strict):
        return str(value)
    if strict:
        raise ValueError(f"{value!r} is not an ASCII string")
    return str(value)


def decode(value: Any) -> Any:
    """A netx value as Python: strings (also a 1-element string array) decoded, numpy scalars as Python numbers;
    numeric arrays are returned unchanged (a 1-element array stays an array)."""
    if isinstance(value, (bytes, np.bytes_)) or (isinstance(value, np.ndarray) and value.dtype.kind in "SO"
                                                  and value.size == 1):
        return text(value, strict=False)
    if isinstance(value, np.generic):
        return value.item()
    return value
