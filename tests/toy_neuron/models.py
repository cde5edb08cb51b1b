"""TOYIF's Lava process model (``fixed_pt``: bit-accurate, one :func:`toy_step` per time step).

Absolute imports only: the Lava compiler executes this file by path."""
from __future__ import annotations

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort, PyOutPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

from tests.toy_neuron.fixed_point import toy_step
from tests.toy_neuron.process import ToyIF


@implements(proc=ToyIF, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt", "bit_accurate_loihi")
class PyToyIFModelFixed(PyLoihiProcessModel):
    """Bit-accurate TOYIF."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, np.int32, precision=24)
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32, precision=24)
    v: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=24)
    vth: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=17)
    leak_shift: np.ndarray = LavaPyType(np.ndarray, np.int32, precision=4)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self.params = proc_params["params"]

    def run_spk(self) -> None:
        a = self.a_in.recv().astype(np.int64)
        new = toy_step(np.asarray(self.v, dtype=np.int64), a, self.params)
        self.v[:] = new.v
        self.s_out.send(new.s.astype(np.int32))
