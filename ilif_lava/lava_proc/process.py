"""Lava processes: the ILIF neuron and a netx network that can hold ILIF layers."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
from lava.lib.dl.netx import hdf5
from lava.magma.core.process.ports.ports import InPort, OutPort
from lava.magma.core.process.process import AbstractProcess, LogConfig
from lava.magma.core.process.variable import Var

from ilif_lava import fixed_point as fx
from ilif_lava import netx as _netx
from ilif_lava.lava_proc.file_sink import create_buffer_file
from ilif_lava.netx_schema import ILIF_NEURON_TYPE, READOUT_NEURON_TYPE


class ILIF(AbstractProcess):
    """ILIF neurons (LIF + MPIU + CIU) with integer parameters in Loihi units.

    Ports: ``a_in`` (synaptic input per step: integer weight-mantissa sums for ``fixed_pt``, floats for
    ``floating_pt``) and ``s_out`` (binary spikes). Vars: ``u`` (current), ``v`` (membrane), ``c`` (CIU),
    ``m`` (MPIU), ``s`` (previous spike), plus the parameters.

    ``bias_mant`` (13-bit integers in [-4096, 4095]: a scalar, one per neuron of ``shape``, or anything that
    broadcasts to it, e.g. one per channel along the last axis as netx lays out conv layers) and ``bias_exp``
    (one integer in [0, 7]; netx passes 6): the per-neuron bias ``bias_mant << bias_exp`` (state units) joins the
    input current every step, :func:`ilif_lava.fixed_point.ilif_step`. Both are Vars (read every step).
    ``floating_pt`` adds the same bias in threshold units, :func:`ilif_lava.fixed_point.bias_to_float`.

    ``input_shift`` (6; 0 for a layer fed graded direct-encoded input): ``a_in << input_shift`` joins the
    current (:attr:`ilif_lava.fixed_point.ILIFParams.input_shift`).

    ``reset_interval`` / ``reset_offset`` (netx's pipelined streaming; None: never): at the start of every step
    whose ``time_step % reset_interval == reset_offset % reset_interval`` (Lava counts steps from 1) the states
    ``u, v, c, m, s`` return to rest before the step's input is integrated, as Lava's ``LIFReset`` does for
    CUBA layers; netx gives layer ``i`` the offset ``reset_offset + 1 + i``, so samples of ``reset_interval``
    steps stream back to back through the layers.

    ``float_params`` (optional, ``floating_pt`` only): dict with ``lam``, ``beta``, ``kappa``, ``cur_kept``,
    ``threshold`` (threshold units) and ``inhibition`` ('sigmoid' or 'plan'); derived from the integers when
    omitted.
    """

    def __init__(self, *, shape: Tuple[int, ...], vth: int, i_decay: int = fx.DECAY_ONE, v_decay: int = 3724,
                 c_decay: int = 3973, m_decay: int = 0, mpiu: bool = True, ciu: bool = True,
                 inhibition: str = "plan", input_shift: int = fx.ACT_SHIFT, bias_mant: Any = 0,
                 bias_exp: int = fx.BIAS_EXP,
                 float_params: Optional[Dict[str, Any]] = None, reset_interval: Optional[int] = None,
                 reset_offset: int = 0, name: Optional[str] = None,
                 log_config: Optional[LogConfig] = None, **kwargs) -> None:
        params = fx.ILIFParams(vth_mant=int(vth), i_decay=int(i_decay), v_decay=int(v_decay),
                               c_decay=int(c_decay), m_decay=int(m_decay), mpiu=bool(mpiu), ciu=bool(ciu),
                               inhibition=str(inhibition), input_shift=int(input_shift))
        where = name or "ILIF process"
        params.validate(where=where)
        bias_mant, bias_exp = fx.check_bias(bias_mant, bias_exp, shape, where=where)
        if float_params is None:
            float_params = {"lam": fx.kept_from_int(params.v_decay), "beta": fx.kept_from_int(params.m_decay),
                            "kappa": fx.kept_from_int(params.c_decay), "cur_kept": fx.kept_from_int(params.i_decay),
                            "threshold": params.vth_mant / fx.WEIGHT_SCALE, "inhibition": "plan"}
        reset = _check_reset(reset_interval, reset_offset, where)
        super().__init__(shape=shape, int_params=params, float_params=dict(float_params), reset=reset, name=name,
                         log_config=log_config, **kwargs)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        for state in fx.STATE_NAMES + ("s",):
            setattr(self, state, Var(shape=shape, init=0))
        self.vth = Var(shape=(1,), init=params.vth_mant)
        self.i_decay = Var(shape=(1,), init=params.i_decay)
        self.v_decay = Var(shape=(1,), init=params.v_decay)
        self.c_decay = Var(shape=(1,), init=params.c_decay)
        self.m_decay = Var(shape=(1,), init=params.m_decay)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=(1,), init=np.array([bias_exp]))

    def record_states(self, path: Union[str, Path], buffer: int) -> Path:
        """Make the ``fixed_pt`` model write ``u, v, c, m`` after every step into a new ``.npy`` file at ``path``
        (int32 [4, *shape, buffer], states in :data:`ilif_lava.fixed_point.STATE_NAMES` order; step t, counted
        from 1, goes to column ``(t - 1) % buffer``); call before the first run. Reading it back after the run
        (:func:`ilif_lava.lava_proc.file_sink.read_buffer_file`) is one memory copy, where ``Var.get()`` after each
        step moves one element per message."""
        path = create_buffer_file(path, (len(fx.STATE_NAMES),) + tuple(self.u.shape), int(buffer))
        self.proc_params.overwrite("state_file", (str(path), int(buffer)))
        return path

    def __del__(self) -> None:
        # a constructor that raised leaves no runtime; Lava's __del__ would print an ignored AttributeError
        if "_runtime" in self.__dict__:
            super().__del__()


def _check_reset(reset_interval: Optional[int], reset_offset: int, where: str) -> Optional[Tuple[int, int]]:
    """``(interval, offset % interval)`` of a periodic state reset, or None; one-line ValueError when invalid."""
    if reset_interval is None:
        return None
    try:
        interval, offset = int(reset_interval), int(reset_offset)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: reset_interval / reset_offset must be integers, got {reset_interval!r} / "
                         f"{reset_offset!r}") from None
    if interval < 1:
        raise ValueError(f"{where}: reset_interval must be >= 1, got {interval}")
    return interval, offset % interval


class Readout(AbstractProcess):
    """The integer readout: neurons that integrate their input and bias and never fire
    (:func:`ilif_lava.fixed_point.readout_step`; a network's analog Linear head on Loihi 2).

    Ports: ``a_in`` (integer synaptic input) and ``s_out``: the accumulator ``v`` (state units, one threshold =
    4096) every step as a graded 24-bit payload, so a sink records the running logits. Vars: ``v``, ``bias_mant``
    (13-bit, per neuron or broadcast), ``bias_exp``. ``reset_interval`` / ``reset_offset``: as :class:`ILIF`.
    """

    def __init__(self, *, shape: Tuple[int, ...], bias_mant: Any = 0, bias_exp: int = fx.BIAS_EXP,
                 reset_interval: Optional[int] = None, reset_offset: int = 0, name: Optional[str] = None,
                 log_config: Optional[LogConfig] = None, **kwargs) -> None:
        where = name or "Readout process"
        bias_mant, bias_exp = fx.check_bias(bias_mant, bias_exp, shape, where=where)
        reset = _check_reset(reset_interval, reset_offset, where)
        super().__init__(shape=shape, reset=reset, name=name, log_config=log_config, **kwargs)
        self.a_in = InPort(shape=shape)
        self.s_out = OutPort(shape=shape)
        self.v = Var(shape=shape, init=0)
        self.bias_mant = Var(shape=shape, init=bias_mant)
        self.bias_exp = Var(shape=(1,), init=np.array([bias_exp]))

    def __del__(self) -> None:
        if "_runtime" in self.__dict__:
            super().__del__()


_netx.register_neuron_type(ILIF_NEURON_TYPE, functools.partial(_netx.ilif_lava_params, neuron_proc=ILIF))
_netx.register_neuron_type(READOUT_NEURON_TYPE, functools.partial(_netx.readout_lava_params, neuron_proc=Readout))


class ILIFNetwork(hdf5.PyNetworkModel.implements_process):
    """``lava.lib.dl.netx.hdf5.Network`` that also builds ILIF layers and every neuron type registered with
    :func:`ilif_lava.netx.register_neuron_type` (stock CUBA/SDNN/RF layers are built by netx's own code).

    Same constructor as netx's ``Network``; the file is validated first (:func:`ilif_lava.netx.validate_file`).
    Works when used directly, subclassed (a subclass gets its Lava process model automatically and may override
    ``get_neuron_params``), or rebound as ``lava.lib.dl.netx.hdf5.Network = ILIFNetwork``.
    """

    create_input = _netx.NetxBuilder()
    create_dense = _netx.NetxBuilder()
    create_conv = _netx.NetxBuilder()
    get_neuron_params = staticmethod(_netx.neuron_params)

    def __init__(self, net_config: str, **kwargs) -> None:
        _netx.validate_file(net_config, input_shape=kwargs.get("input_shape"), num_layers=kwargs.get("num_layers"))
        if type(self) is not ILIFNetwork:
            _netx.ensure_network_model(type(self))
        super().__init__(net_config=net_config, **kwargs)

    def _create(self):
        """netx's chain of layers, then the skip synapses of a graph file (:mod:`ilif_lava.lava_proc.skips`)."""
        layers = super()._create()
        from ilif_lava.lava_proc.skips import attach_skips
        self.skip_synapses = attach_skips(self.filename, layers, self.skip_layers)
        return layers

    def __del__(self) -> None:
        # A file rejected by validate_file leaves the process half-built (no _runtime); Lava's __del__ would
        # raise AttributeError from the garbage collector (which can even break an ast.parse running then).
        if "_runtime" in self.__dict__:
            super().__del__()
