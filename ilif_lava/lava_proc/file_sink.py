"""A Lava sink that records its input into a memory-mapped ``.npy`` file instead of a Var.

Lava's ``io.sink.RingBuffer`` keeps what it receives in a Var, and reading a Var back (``Var.get()``) moves one
element per message between processes: for a network of 30,000 neurons run for 180 steps that read-back took over
90 % of a ``simulate`` run. :class:`FileSink` writes each step's input into a ``.npy`` file that the caller created
(:func:`create_buffer_file`, int32 [*shape, buffer]) and maps; its process model (run in Lava's child process)
maps the same file, so the caller reads the whole recording at memory speed once the run is over
(:func:`read_buffer_file`). Step t (Lava counts from 1) goes to column ``(t - 1) % buffer``, as in ``RingBuffer``.
The file is the caller's: it lives in a private temporary folder and is removed after reading.
"""
from __future__ import annotations

from pathlib import Path
from typing import Tuple, Union

import numpy as np
from lava.magma.core.decorator import implements, requires, tag
from lava.magma.core.model.py.model import PyLoihiProcessModel
from lava.magma.core.model.py.ports import PyInPort
from lava.magma.core.model.py.type import LavaPyType
from lava.magma.core.process.ports.ports import InPort
from lava.magma.core.process.process import AbstractProcess
from lava.magma.core.resources import CPU
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol

DTYPE = np.int32          # what Lava's fixed-point ports carry (spikes, graded payloads, 24-bit accumulators)


def create_buffer_file(path: Union[str, Path], shape: Tuple[int, ...], buffer: int) -> Path:
    """Create the zero-filled ``.npy`` file a :class:`FileSink` of ``shape`` and ``buffer`` steps writes into."""
    path = Path(path)
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=DTYPE, shape=tuple(int(v) for v in shape) + (int(buffer),))
    del mm
    return path


def read_buffer_file(path: Union[str, Path]) -> np.ndarray:
    """The recording [*shape, buffer] (int32, in memory)."""
    return np.array(np.load(path, mmap_mode="r"))


class FileSink(AbstractProcess):
    """Records its input ``a_in`` of ``shape`` on every step into the file ``path`` (made by
    :func:`create_buffer_file` with the same ``shape`` and ``buffer``)."""

    def __init__(self, *, shape: Tuple[int, ...], buffer: int, path: Union[str, Path]) -> None:
        super().__init__(shape=shape, buffer=int(buffer), path=str(path))
        self.a_in = InPort(shape=shape)


@implements(proc=FileSink, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class PyFileSinkModel(PyLoihiProcessModel):
    """Writes each step's input into the mapped file (column ``(time_step - 1) % buffer``)."""

    a_in: PyInPort = LavaPyType(PyInPort.VEC_DENSE, DTYPE)

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        self._buffer = int(proc_params["buffer"])
        self._data = None

    def run_spk(self) -> None:
        data = self.a_in.recv()
        if self._data is None:                     # mapped in Lava's child process, on the first step
            self._data = np.load(self.proc_params["path"], mmap_mode="r+")
        self._data[..., (self.time_step - 1) % self._buffer] = data
