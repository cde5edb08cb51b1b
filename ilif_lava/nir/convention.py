"""The one mapping between our neuron parameters and NIR's continuous-time fields (docs/nir.md, "Conventions").

NIR states ODEs; a time step ``dt`` and forward Euler turn them into our per-step updates:

* LIF    ``tau dv/dt = (v_leak - v) + r I``  ->  ``v[t] = (1 - dt/tau) v[t-1] + (r dt / tau) I[t]``
* CubaLIF adds ``tau_syn dI/dt = -I + w_in z``  ->  ``I[t] = (1 - dt/tau_syn) I[t-1] + (w_in dt / tau_syn) z[t]``
  and the membrane uses the updated current (as snnTorch's ``Synaptic``);
* IF     ``dv/dt = r I``  ->  ``v[t] = v[t-1] + r dt I[t]``.

Ours (docs/neuron.md): ``H[t] = lam V[t-1] + I[t]`` with ``lam = 1 - 1/tau`` (``voltage_decay = 1/tau``) and
``I[t] = (1 - current_decay) I[t-1] + z[t]``, ``z`` in threshold units. Hence, exported with input gain 1:
``tau_nir = dt / (1 - lam) = dt * tau``, ``r = tau_nir / dt``; ``tau_syn = dt / current_decay``,
``w_in = tau_syn / dt``; lam = 1 (no leak) is an ``IF`` with ``r = 1 / dt``. ``v_leak = v_reset = 0``.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence, Tuple

import nir
import numpy as np
from ilif_lava.errors import IlifLavaError


class NIRConversionError(IlifLavaError, ValueError):
    """A graph or model that cannot be converted; the message is one line naming the node and its type."""


def node_error(name: str, node: Any, problem: str) -> NIRConversionError:
    return NIRConversionError(f"NIR node {name!r} ({type(node).__name__}): {problem}")


def _full(shape: Sequence[int], value: float) -> np.ndarray:
    return np.full(tuple(int(s) for s in shape), float(value), dtype=np.float64)


def neuron_node(lam: float, current_decay: Optional[float], threshold: float, shape: Sequence[int], dt: float,
                metadata: Dict[str, Any]) -> nir.NIRNode:
    """The NIR primitive of our LIF dynamics (leak ``lam``, CUBA ``current_decay`` or None, ``threshold``),
    one value per neuron of ``shape``: ``IF`` (lam = 1), ``LIF`` (no current memory) or ``CubaLIF``."""
    if current_decay is not None and current_decay < 1.0:
        if current_decay <= 0.0:
            raise NIRConversionError("current_decay = 0 (a current that never decays) has no NIR CubaLIF form "
                                     "(tau_syn would be infinite)")
        if lam >= 1.0:
            raise NIRConversionError("a leak-free membrane with a current decay has no NIR form (CubaLIF needs a "
                                     "finite tau_mem)")
        tau_syn, tau_mem = dt / current_decay, dt / (1.0 - lam)
        return nir.CubaLIF(tau_syn=_full(shape, tau_syn), tau_mem=_full(shape, tau_mem), r=_full(shape, tau_mem / dt),
                           v_leak=_full(shape, 0.0), v_threshold=_full(shape, threshold), v_reset=_full(shape, 0.0),
                           w_in=_full(shape, tau_syn / dt), metadata=metadata)
    if lam >= 1.0:
        return nir.IF(r=_full(shape, 1.0 / dt), v_threshold=_full(shape, threshold), v_reset=_full(shape, 0.0),
                      metadata=metadata)
    tau = dt / (1.0 - lam)
    return nir.LIF(tau=_full(shape, tau), r=_full(shape, tau / dt), v_leak=_full(shape, 0.0),
                   v_threshold=_full(shape, threshold), v_reset=_full(shape, 0.0), metadata=metadata)


FLOAT_BYTES = 8      # every numeric NIR field is converted to float64 (8 bytes per value) before use


def real_field(name: str, node: Any, field: str, value: Any = None, max_bytes: Optional[int] = None) -> np.ndarray:
    """``node.<field>`` (or ``value``) as a float64 array after checking, in one line naming the node: a real
    dtype (bool, int, uint or float: no complex, compound, string or object values), at most ``max_bytes`` once
    converted (counted at float64 *before* converting: a uint8 weight grows 8 times), every value finite."""
    raw = getattr(node, field) if value is None else value
    try:
        a = np.asarray(raw)
    except (TypeError, ValueError) as exc:
        raise node_error(name, node, f"{field} is not an array of numbers ({exc})") from None
    if a.dtype.kind not in "biuf":
        raise node_error(name, node, f"{field} has dtype {a.dtype}; NIR numeric fields must hold real numbers")
    if max_bytes is not None and a.size * FLOAT_BYTES > max_bytes:
        raise node_error(name, node, f"{field} holds {a.size} values ({a.size * FLOAT_BYTES} bytes as float64), "
                                     f"more than the {max_bytes} bytes a NIR field may take")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        bad = a[~np.isfinite(a)].ravel()[0]
        raise node_error(name, node, f"{field} holds a non-finite value ({bad}); every value must be finite")
    return a


def int_field(name: str, node: Any, field: str, minimum: int, value: Any = None, size: Tuple[int, ...] = (1, 2),
              maximum: int = 1 << 31) -> Tuple[int, ...]:
    """A small integer field (kernel size, stride, dilation, padding, groups, a shape) as a tuple of ints, each
    whole, finite and in ``minimum .. maximum``, with a number of values in ``size``; one line naming the node."""
    a = real_field(name, node, field, value).ravel()
    if a.size not in size:
        raise node_error(name, node, f"{field} has {a.size} values, expected {' or '.join(map(str, size))}")
    if np.any(a != np.round(a)) or np.any(a < minimum) or np.any(a > maximum):
        shown = [int(v) if v == round(v) else float(v) for v in a]
        raise node_error(name, node, f"{field} = {shown} must hold whole numbers >= {minimum}"
                                     + (f" and <= {maximum}" if maximum < (1 << 31) else ""))
    return tuple(int(v) for v in a)


def checked_pair(name: str, node: Any, field: str, minimum: int) -> Tuple[int, int]:
    """:func:`pair` of a validated field (:func:`int_field`): kernel size, stride, dilation >= 1, padding >= 0."""
    v = int_field(name, node, field, minimum)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _uniform(name: str, node: Any, field: str) -> float:
    """The single value of a per-neuron field (our neurons have one value per layer)."""
    a = real_field(name, node, field).ravel()
    if a.size == 0:
        raise node_error(name, node, f"{field} must be finite, got {a[:4].tolist()}")
    if not np.allclose(a, a[0], rtol=1e-6, atol=0.0):
        raise node_error(name, node, f"{field} differs between neurons ({a.min():.6g} .. {a.max():.6g}); our "
                                     f"neurons take one value per layer")
    return float(a[0])


def dynamics_of(name: str, node: nir.NIRNode, dt: float) -> Tuple[float, Optional[float], float, float]:
    """``(lam, current_decay or None, input_gain, v_threshold)`` of a NIR LIF / CubaLIF / IF node at step ``dt``.

    ``input_gain`` is what one unit of input adds to ``v`` (LIF ``r dt / tau``, CubaLIF ``w_in dt / tau_syn *
    r dt / tau_mem``, IF ``r dt``). Refused with one line: v_leak or v_reset other than 0, per-neuron values
    that differ, a step that makes a decay leave [0, 1] (the exporter used another ``dt``)."""
    for field in ("v_leak", "v_reset"):
        if hasattr(node, field) and _uniform(name, node, field) != 0.0:
            raise node_error(name, node, f"{field} = {_uniform(name, node, field):g} is not supported (our neurons "
                                         f"rest at 0 and reset by subtracting the threshold)")
    vth = _uniform(name, node, "v_threshold")
    if not vth > 0:
        raise node_error(name, node, f"v_threshold must be > 0, got {vth:g}")

    def kept(field: str) -> float:
        tau = _uniform(name, node, field)
        if not tau > 0 or dt / tau > 1.0:
            raise node_error(name, node, f"dt / {field} = {dt:g} / {tau:g} must lie in (0, 1]; pass the time step "
                                         f"the exporter used (--dt; snnTorch writes 1e-4, Norse 1e-3, "
                                         f"SpikingJelly 1)")
        return 1.0 - dt / tau

    if isinstance(node, nir.IF):
        return 1.0, None, _uniform(name, node, "r") * dt, vth
    if isinstance(node, nir.LIF):
        lam = kept("tau")
        return lam, None, _uniform(name, node, "r") * dt / _uniform(name, node, "tau"), vth
    if isinstance(node, nir.CubaLIF):
        lam, k_syn = kept("tau_mem"), kept("tau_syn")
        gain = (_uniform(name, node, "w_in") * dt / _uniform(name, node, "tau_syn")
                * _uniform(name, node, "r") * dt / _uniform(name, node, "tau_mem"))
        return lam, (None if k_syn == 0.0 else 1.0 - k_syn), gain, vth
    raise node_error(name, node, "is not a neuron node (LIF, CubaLIF, IF)")


def pair(v: Any) -> Tuple[int, int]:
    """A NIR int / 1- or 2-element array field (stride, padding, kernel size, ...) as (height, width)."""
    a = np.asarray(v).ravel()
    return (int(a[0]), int(a[0])) if a.size == 1 else (int(a[0]), int(a[1]))


def tau_from_lam(lam: float) -> float:
    """Our ``tau`` (lambda = 1 - 1/tau, :func:`ilif_lava.neuron.membrane_tau`) for a kept fraction ``lam``."""
    return math.inf if lam >= 1.0 else 1.0 / (1.0 - lam)


def steps_of_delay(name: str, node: nir.Delay, dt: float) -> int:
    """A NIR ``Delay`` (seconds) in whole steps of ``dt``; one value for all neurons."""
    d = _uniform(name, node, "delay") / dt
    if abs(d - round(d)) > 1e-6 or d < 0:
        raise node_error(name, node, f"delay / dt = {d:g} is not a whole number of steps")
    return int(round(d))
