"""Process models for ILIF (``fixed_pt``: bit-accurate via ilif_lava.fixed_point; ``floating_pt``) and ILIFNetwork.

Absolute imports only: the Lava compiler executes this file by path.
"""
from __future__ import annotations

import numpy as np
from lava.lib.dl.netx.blocks.models import AbstractPyBlockModel
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from ilif_lava import fixed_point as fx
from ilif_lava.lava_proc.process import ILIF, ILIFNetwork, Readout


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyILIFModelFixed(PyLoihiProcessModel):
    """Bit-accurate ILIF: one call of :func:`ilif_lava.fixed_point.ilif_step` per time step."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    u: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    c: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    m: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    s: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=1)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    i_decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    v_decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    c_decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    m_decay: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=3)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.params: fx.ILIFParams = proc_params["int_params"]
        self.reset = proc_params.get("reset")
        self._state_file = proc_params.get("state_file")      # (path, buffer) from ILIF.record_states, or None
        self._states = None

    def _record(self) -> None:
        """Write this step's u, v, c, m into the state file's column ``(time_step - 1) % buffer``."""
        path, buffer = self._state_file
        if self._states is None:                    # mapped in Lava's child process, on the first step
            self._states = np.load(path, mmap_mode="r+")
        col = (self.time_step - 1) % buffer
        for j, k in enumerate(fx.STATE_NAMES):
            self._states[j, ..., col] = getattr(self, k)

    def run_spk(self) -> None:
        a = self.a_in.recv().astype(np.int64)
        if _reset_now(self.reset, self.time_step):
            for k in fx.STATE_NAMES + ("s",):
                getattr(self, k)[:] = 0
        state = fx.ILIFState(*(np.asarray(getattr(self, k), dtype=np.int64) for k in fx.STATE_NAMES + ("s",)))
        bias = fx.effective_bias(self.bias_mant, self.bias_exp)
        new = fx.ilif_step(state, a, self.params, bias)
        for k in fx.STATE_NAMES + ("s",):
            getattr(self, k)[:] = getattr(new, k)
        if self._state_file is not None:
            self._record()
        self.s_out.send(new.s.astype(np.int32))


@implements(proc=ILIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyILIFModelFloat(PyLoihiProcessModel):
    """Float ILIF following the paper's step order (threshold units; input ``a_in`` in threshold units).

    The bias ``bias_mant * 2**bias_exp / 4096`` threshold units joins the current, as in the fixed-point model."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    u: np.ndarray = LavaPyType(np.ndarray, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    c: np.ndarray = LavaPyType(np.ndarray, float)
    m: np.ndarray = LavaPyType(np.ndarray, float)
    s: np.ndarray = LavaPyType(np.ndarray, float)
    vth: np.ndarray = LavaPyType(np.ndarray, int)
    i_decay: np.ndarray = LavaPyType(np.ndarray, int)
    v_decay: np.ndarray = LavaPyType(np.ndarray, int)
    c_decay: np.ndarray = LavaPyType(np.ndarray, int)
    m_decay: np.ndarray = LavaPyType(np.ndarray, int)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, int)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.fp = proc_params["float_params"]
        self.flags = proc_params["int_params"]
        self.reset = proc_params.get("reset")

    def _inhibit(self, m: np.ndarray) -> np.ndarray:
        if self.fp.get("inhibition", "plan") == "sigmoid":
            return 1.0 / (1.0 + np.exp(-m))
        return fx.plan_sigmoid_float(m)

    def run_spk(self) -> None:
        a = self.a_in.recv().astype(np.float64)
        if _reset_now(self.reset, self.time_step):
            for k in fx.STATE_NAMES + ("s",):
                getattr(self, k)[:] = 0.0
        fp, th = self.fp, float(self.fp["threshold"])
        c = self.c
        if self.flags.ciu:
            c = fp["kappa"] * (self.c + self.u * self.s)
        u = fp["cur_kept"] * self.u + a + fx.bias_to_float(self.bias_mant, self.bias_exp)
        h = fp["lam"] * self.v + (u - np.maximum(c, 0.0) if self.flags.ciu else u)
        s = (h >= th).astype(np.float64)
        v = h - s * th
        m = self.m
        if self.flags.mpiu:
            m = fp["beta"] * (self.m + s * v)
            v = v - s * self._inhibit(m)
        self.u[:], self.v[:], self.c[:], self.m[:], self.s[:] = u, v, c, m, s
        self.s_out.send(s)


def _reset_now(reset, time_step: int) -> bool:
    """True on the steps where a process with ``reset = (interval, offset)`` returns to rest (netx's pipelined
    streaming; Lava counts steps from 1)."""
    return reset is not None and time_step % reset[0] == reset[1]


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyReadoutModelFixed(PyLoihiProcessModel):
    """Bit-accurate integer readout: :func:`ilif_lava.fixed_point.readout_step`; sends ``v`` (graded)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=13)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=3)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.reset = proc_params.get("reset")

    def run_spk(self) -> None:
        a = self.a_in.recv().astype(np.int64)
        if _reset_now(self.reset, self.time_step):
            self.v[:] = 0
        v = fx.readout_step(np.asarray(self.v, dtype=np.int64), a, fx.effective_bias(self.bias_mant, self.bias_exp))
        self.v[:] = v
        self.s_out.send(v.astype(np.int32))


@implements(proc=Readout, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class PyReadoutModelFloat(PyLoihiProcessModel):
    """Float readout: ``v += a + bias`` in threshold units (no saturation); sends ``v``."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, float)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    v: np.ndarray = LavaPyType(np.ndarray, float)
    bias_mant: np.ndarray = LavaPyType(np.ndarray, float)
    bias_exp: np.ndarray = LavaPyType(np.ndarray, int)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.reset = proc_params.get("reset")

    def run_spk(self) -> None:
        a = self.a_in.recv().astype(np.float64)
        if _reset_now(self.reset, self.time_step):
            self.v[:] = 0.0
        self.v[:] = self.v + a + fx.bias_to_float(self.bias_mant, self.bias_exp)
        self.s_out.send(self.v.copy())


@implements(proc=ILIFNetwork, protocol=LoihiProtocol)
class PyILIFNetworkModel(AbstractPyBlockModel):
    """Sub-process model of :class:`ILIFNetwork` (the compiler matches process types exactly)."""

    def __init__(self, proc: AbstractProcess) -> None:
        super().__init__(proc)
