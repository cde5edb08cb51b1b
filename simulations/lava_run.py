"""Run a netx HDF5 network (stock CUBA and/or ILIF layers) in Lava on the CPU and record every layer.

One Lava network is built per call; samples run back to back, and between samples every neuron and synapse
state is set back to zero, so each sample starts from rest exactly as in a fresh run (and as in slayer). Every
layer's output is recorded by a file sink (:class:`ilif_lava.lava_proc.file_sink.FileSink`: a memory-mapped file in
a private temporary folder, read at memory speed after the run; Lava's own ``Var.get()`` moves one element per
message).
Lava processes are always stopped, also on errors and Ctrl-C.

Alignment: with slayer blocks built with ``delay_shift=True``, Lava sink index j equals slayer time index j for
every layer (lava-internals.md section 4), so sample k occupies sink columns [k*T, (k+1)*T).

Pipelined timing (``pipelined=True``, networks trained without the one-step synapse delay, ``delay_shift=False``):
the samples stream back to back through one Lava run of ``N*T + L`` steps (``L`` layers), as netx streams them:
layer ``i`` receives sample k's step t on Lava step ``k*T + t + i + 2`` (one step per hop, Lava counts from 1),
so its neurons return to rest on the steps ``k*T + i + 2`` (netx's ``reset_interval = T``, ``reset_offset``
staggered by depth) and its sink holds sample k in columns ``[k*T + i + 1, k*T + i + 1 + T)``. Latency: ``T + L``
steps for one sample; a test set of N samples takes ``N*T + L`` steps.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

import numpy as np

import ilif_lava  # noqa: F401  (Lava Python 3.11 shim)
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc import io

from ilif_lava import fixed_point as fx
from ilif_lava.lava_proc.file_sink import FileSink, create_buffer_file, read_buffer_file
from ilif_lava.lava_proc.process import ILIFNetwork
from ilif_lava.progress import bar

STATE_VARS = ("u", "v", "c", "m", "s")
SYNAPSE_VARS = ("a_buff", "a_buf")  # Dense/Sparse synapses: a_buff; Conv synapse: a_buf


@dataclass
class LavaResult:
    """Spikes per layer, each [N, neurons, T] (neurons in netx's flattened order), plus optional states.

    A READOUT layer's entry holds its accumulator after every step (int64, state units) instead of spikes."""

    spikes: List[np.ndarray]
    states: Dict[int, Dict[str, np.ndarray]] = field(default_factory=dict)  # layer -> name -> [N, neurons, T]
    layer_names: List[str] = field(default_factory=list)
    # wall seconds per phase: build (netx network + I/O processes), first_sample (Lava's compile + start + the
    # first sample), stepping (every later sample, state resets included), readback (sink buffers), stop
    timings: Dict[str, float] = field(default_factory=dict)
    readout: bool = False             # the last layer is an integer readout (predict with its last step's argmax)
    lava_steps: int = 0               # Lava steps run in all (pipelined: N*T + layers)
    latency_steps: int = 0            # steps from a sample's first input to its last output (T + layers pipelined)


#: the wall-time phases of a run, in order (:attr:`LavaResult.timings`; ``simulate`` prints and saves them)
LAVA_PHASES = ("build", "first_sample", "stepping", "readback", "stop")

STOP_TIMEOUT_S = 10.0     # a graceful process.stop() (Lava joins its runtime without a timeout) gets this long
KILL_TIMEOUT_S = 3.0      # then each remaining Lava child process gets this long after SIGTERM, then SIGKILL


def _call_with_timeout(fn, timeout: float) -> bool:
    """Run ``fn()`` in a daemon thread; True when it returned (or raised) within ``timeout`` seconds."""
    done = threading.Event()

    def target() -> None:
        try:
            fn()
        except BaseException:  # noqa: BLE001 - a failed stop is handled by the forced path
            pass
        finally:
            done.set()

    threading.Thread(target=target, name="lava-stop", daemon=True).start()
    return done.wait(timeout)


def _lava_children(process) -> List[mp.Process]:
    """The OS processes of ``process``'s Lava runtime: its actors, the shared-memory manager and the watchdog
    manager (when present)."""
    rt = getattr(process, "_runtime", None)
    mi = getattr(rt, "_messaging_infrastructure", None)
    out: List[mp.Process] = list(getattr(mi, "actors", None) or [])
    for owner, attr in ((mi, "_smm"), (getattr(rt, "_watchdog_manager", None), "_mp_manager")):
        mgr = getattr(owner, attr, None) if owner is not None else None
        proc = getattr(mgr, "_process", None)
        if isinstance(proc, mp.process.BaseProcess):
            out.append(proc)
    return [p for p in out if getattr(p, "_parent_pid", None) == os.getpid()]


def _alive(p: mp.Process) -> bool:
    try:
        return p.is_alive()
    except ValueError:          # closed by Lava's own join
        return False


def _force_stop(process) -> None:
    """Terminate the runtime's actor processes, then shut the shared-memory manager down (it unlinks every
    /dev/shm segment it created), killing whatever does not exit in time."""
    rt = getattr(process, "_runtime", None)
    mi = getattr(rt, "_messaging_infrastructure", None)
    smm = getattr(mi, "_smm", None)
    managers = {id(getattr(smm, "_process", None))}
    procs = _lava_children(process)
    actors = [p for p in procs if id(p) not in managers]
    for group in (actors, [p for p in procs if id(p) in managers]):
        if group is not actors and smm is not None:       # the manager: a clean shutdown first (unlinks segments)
            _call_with_timeout(smm.shutdown, STOP_TIMEOUT_S)
        for p in group:
            with contextlib.suppress(Exception):
                if _alive(p):
                    p.terminate()
        deadline = time.monotonic() + KILL_TIMEOUT_S
        for p in group:
            with contextlib.suppress(Exception):
                mp.process.BaseProcess.join(p, max(0.0, deadline - time.monotonic()))
                if _alive(p):
                    p.kill()
                    mp.process.BaseProcess.join(p, KILL_TIMEOUT_S)
    if rt is not None:
        rt._is_running = rt._is_started = False


def stop_runtime(process, graceful_timeout: float = STOP_TIMEOUT_S) -> None:
    """Stop ``process``'s Lava runtime within bounded time: ``process.stop()`` in a thread, and if it does not
    finish within ``graceful_timeout`` (or Lava children survive it), terminate the runtime's processes."""
    if getattr(process, "_runtime", None) is None:
        return
    finished = _call_with_timeout(process.stop, graceful_timeout)
    if not finished or any(_alive(p) for p in _lava_children(process)):
        _force_stop(process)


_forking = [False]          # True between os.fork()'s 'before' and 'after in parent' hooks
os.register_at_fork(before=lambda: _forking.__setitem__(0, True),
                    after_in_parent=lambda: _forking.__setitem__(0, False),
                    after_in_child=lambda: _forking.__setitem__(0, False))


class _Signals:
    """While active (main thread only): SIGINT and SIGTERM raise KeyboardInterrupt in this process, and are
    ignored by the Lava child processes forked meanwhile (they inherit the handler; the parent stops them), so a
    Ctrl-C sent to the whole process group never leaves tracebacks or half-stopped children. A SIGTERM that
    reaches a child directly ends it at once. ``shielded``: a further signal during cleanup is only recorded."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.shielded = False
        self.received: Optional[int] = None
        self.old: Dict[int, Any] = {}

    def handler(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.owner:                  # a forked Lava child
            if signum == signal.SIGTERM:
                os._exit(128 + signum)
            return
        self.received = signum
        # inside fork hooks (Lava forking its processes) an exception would be printed and dropped: then the
        # signal is only recorded, and :meth:`check` raises it at the next sample
        if not self.shielded and not _forking[0]:
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    def check(self) -> None:
        """Raise KeyboardInterrupt for a signal that was recorded but could not be raised where it arrived."""
        if self.received is not None and not self.shielded:
            raise KeyboardInterrupt(f"signal {signal.Signals(self.received).name}")

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, self.handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def running(process) -> Iterator["_Signals"]:
    """Stop the Lava runtime of ``process`` whatever happens inside the block (errors, Ctrl-C, SIGTERM), within
    bounded time (:func:`stop_runtime`); a second signal during that cleanup cannot interrupt it. Yields the
    signal state: call its ``check()`` between steps."""
    with _Signals() as sig:
        try:
            yield sig
        finally:
            sig.shielded = True
            try:
                stop_runtime(process, STOP_TIMEOUT_S if sig.received is None else KILL_TIMEOUT_S)
            finally:
                sig.shielded = False
        if sig.received is not None:               # a signal arrived during the final cleanup
            raise KeyboardInterrupt(f"signal {signal.Signals(sig.received).name}")


def _flat_input(x: np.ndarray, layer0_in_shape: Sequence[int]) -> np.ndarray:
    """[N, C, H, W, T] (slayer, CHW) -> [N, W, H, C, T] (Lava conv, XYZ), or [N, F, T] unchanged."""
    if x.ndim == 5 and len(layer0_in_shape) == 3:
        return x.transpose(0, 3, 2, 1, 4)
    if x.ndim == 5:
        return x.reshape(x.shape[0], -1, x.shape[-1])
    return x


def _reset_vars(net: ILIFNetwork) -> None:
    for layer in net.layers:
        for part in ("neuron", "synapse"):
            proc = getattr(layer, part, None)
            if proc is None:
                continue
            for name in STATE_VARS + SYNAPSE_VARS:
                var = getattr(proc, name, None)
                if var is not None and hasattr(var, "set"):
                    var.set(np.zeros(var.shape, dtype=var.init.dtype if hasattr(var.init, "dtype") else float))


def _to_slayer_order(arr: np.ndarray, lava_shape: Sequence[int]) -> np.ndarray:
    """Lava layer output [*XYZ, T] -> slayer order [C*H*W (CHW flattened), T]."""
    if len(lava_shape) == 3:
        w, h, c = lava_shape
        arr = arr.reshape(w, h, c, -1).transpose(2, 1, 0, 3)
    return arr.reshape(-1, arr.shape[-1])


def _windows(raw: np.ndarray, lava_shape: Sequence[int], n: int, steps: int, first: int) -> np.ndarray:
    """Sink/state columns of a pipelined run -> [N, neurons, T]: sample k is ``first + k*T .. + T``."""
    ordered = _to_slayer_order(raw, lava_shape)                            # [neurons, total]
    idx = first + np.arange(n)[:, None] * steps + np.arange(steps)[None, :]   # [N, T]
    return np.ascontiguousarray(ordered[:, idx].transpose(1, 0, 2))   # C order (a Fortran-ordered save is refused)


def run_network(path: Union[str, Path], x: np.ndarray, record_states: bool = False,
                progress: bool = False, desc: str = "Lava samples", pipelined: Optional[bool] = None) -> LavaResult:
    """Run ``x`` ([N, C, H, W, T] or [N, C, T], spikes 0/1) through the HDF5 network on Loihi2SimCfg fixed_pt.

    ``record_states`` records u, v, c, m of every ILIF layer after each step (each process writes them into a file).
    ``progress`` draws a bar (``desc``) on a terminal only. ``pipelined``: stream the samples through one run
    with staggered per-layer resets (module docstring), for networks trained without the synapse delay; None:
    as the file says (:func:`ilif_lava.netx.file_is_pipelined`).
    """
    from ilif_lava import netx as _netx
    _netx.validate_file(path)                 # before the flags are read (ILIFNetwork validates it again)
    graded = _netx.file_takes_graded_input(path)
    if pipelined is None:
        pipelined = _netx.file_is_pipelined(path)
    with tempfile.TemporaryDirectory(prefix="ilif-lava-sinks-") as folder:      # the sinks' recordings
        if pipelined:
            return _run_pipelined(path, x, record_states, progress, desc, graded, folder)
        return _run_per_sample(path, x, record_states, progress, desc, graded, folder)


def _run_per_sample(path: Union[str, Path], x: np.ndarray, record_states: bool, progress: bool, desc: str,
                    graded: bool, folder: str) -> LavaResult:
    """:func:`run_network` with slayer's timing: samples back to back, every state set to rest in between."""
    x, net, inp = _build(path, x, graded)
    n, steps = x.shape[0], x.shape[-1]
    tm: Dict[str, float] = {}
    t_phase = time.perf_counter()
    data = np.concatenate([inp[k] for k in range(n)], axis=-1)          # [*in_shape, N*T]
    sinks = _attach_io(net, data, folder)
    state_files = _attach_state_files(net, int(data.shape[-1]), folder) if record_states else {}
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    tm["build"] = time.perf_counter() - t_phase
    with running(net) as sig:
        for k in bar(range(n), desc=desc, unit="sample", enabled=progress):
            sig.check()
            if k == 1:
                now = time.perf_counter()
                tm["first_sample"], t_phase = now - t_phase, now
            if k > 0:
                _reset_vars(net)
            net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg)
        sig.check()
        now = time.perf_counter()
        tm["stepping" if n > 1 else "first_sample"], t_phase = now - t_phase, now
        tm.setdefault("stepping", 0.0)
        raw, t_phase = _read_sinks(sinks, tm, t_phase)
        states, t_phase = _read_states(state_files, tm, t_phase)
    tm["stop"] = time.perf_counter() - t_phase
    readout = _is_readout(net.layers[-1])
    spikes = []
    for li, (layer, r) in enumerate(zip(net.layers, raw)):
        ordered = _to_slayer_order(r, layer.out.shape)                    # [neurons, N*T]
        dtype = np.int64 if (readout and li == len(raw) - 1) else np.int8
        spikes.append(np.ascontiguousarray(ordered.reshape(ordered.shape[0], n, steps).transpose(1, 0, 2),
                                           dtype=dtype))
    out_states: Dict[int, Dict[str, np.ndarray]] = {}
    for i, per in states.items():
        shape = net.layers[i].out.shape
        out_states[i] = {}
        for name, arr in per.items():                                      # [*XYZ, N*T]
            arr = _to_slayer_order(arr, shape)
            out_states[i][name] = np.ascontiguousarray(arr.reshape(arr.shape[0], n, steps).transpose(1, 0, 2),
                                                       dtype=np.int64)
    return LavaResult(spikes=spikes, states=out_states, timings=tm, readout=readout, lava_steps=n * steps,
                      latency_steps=steps)


def _attach_io(net: ILIFNetwork, data: np.ndarray, folder: Union[str, Path]) -> List[Path]:
    """Connect a source playing ``data`` [*in_shape, steps] (int32) to the network's input and a file sink of
    ``steps`` entries (:class:`ilif_lava.lava_proc.file_sink.FileSink`, its file in ``folder``) to every layer's
    output; returns the sink files."""
    src = io.source.RingBuffer(data=data.astype(np.int32))
    src.s_out.connect(net.inp)
    files = []
    for i, layer in enumerate(net.layers):
        path = create_buffer_file(Path(folder) / f"layer{i}.npy", tuple(layer.out.shape), int(data.shape[-1]))
        sink = FileSink(shape=layer.out.shape, buffer=int(data.shape[-1]), path=path)
        layer.out.connect(sink.a_in)
        files.append(path)
    return files


def _read_sinks(files: Sequence[Path], tm: Dict[str, float], t_phase: float):
    """Every sink's recording (Lava order [*shape, steps]); records the ``readback`` time. Returns (arrays, now)."""
    raw = [read_buffer_file(p) for p in files]
    now = time.perf_counter()
    tm["readback"] = now - t_phase
    return raw, now


def _attach_state_files(net: ILIFNetwork, buffer: int, folder: Union[str, Path]) -> Dict[int, Path]:
    """Make every ILIF layer's process write its states after each step into a file in ``folder``
    (:meth:`ilif_lava.lava_proc.process.ILIF.record_states`, ``buffer`` steps); returns layer -> file."""
    return {i: net.layers[i].neuron.record_states(Path(folder) / f"states{i}.npy", buffer) for i in _ilif_layers(net)}


def _read_states(files: Dict[int, Path], tm: Dict[str, float], t_phase: float):
    """layer -> state name -> recording (Lava order [*shape, steps]); adds to the ``readback`` time.
    Returns (states, now)."""
    states = {}
    for i, p in files.items():
        rec = read_buffer_file(p)                                           # [4, *shape, steps]
        states[i] = {name: rec[j] for j, name in enumerate(fx.STATE_NAMES)}
    now = time.perf_counter()
    tm["readback"] = tm.get("readback", 0.0) + now - t_phase
    return states, now


def _is_readout(layer: Any) -> bool:
    from ilif_lava.lava_proc.process import Readout
    return isinstance(getattr(layer, "neuron", None), Readout)


def _ilif_layers(net: ILIFNetwork) -> List[int]:
    return [i for i, layer in enumerate(net.layers)
            if getattr(layer, "neuron", None) is not None and hasattr(layer.neuron, "m")]


def _build(path: Union[str, Path], x: np.ndarray, graded: bool, **net_kwargs: Any):
    """Check the input (integers; analog for a ``graded`` first layer), build the network; returns (x as sent,
    network, input in Lava's layout [N, *in, T])."""
    x = np.asarray(x)
    if graded:
        if not np.isfinite(x).all():
            raise ValueError(f"{path}: the input holds NaN/inf values")
        x = fx.direct_input(x)                 # graded payloads round(64 x), 16-bit
        net_kwargs["input_message_bits"] = fx.DIRECT_INPUT_BITS
    integral = np.isfinite(x).all() and np.array_equal(x, np.rint(x))
    if not integral or (x.size and (x.min() < np.iinfo(np.int32).min or x.max() > np.iinfo(np.int32).max)):
        bad = x[~(np.isfinite(x) & (x == np.rint(x)))] if not integral else x
        raise ValueError(f"{path}: the input is analog (e.g. {float(bad.flat[0]):.4g}), but the Lava network's input "
                         f"port takes integer spikes; casting it would truncate it, so it is refused "
                         f"(direct-encoded image input is not deployable yet: use an event dataset)")
    # netx cannot infer the input shape of a network whose first layer is a conv: give it (x, y, f) = (W, H, C)
    if x.ndim == 5:
        net_kwargs["input_shape"] = tuple(int(v) for v in x.shape[1:4][::-1])
    net = ILIFNetwork(net_config=str(path), **net_kwargs)
    want = tuple(int(v) for v in net.layers[0].inp.shape)
    inp = _flat_input(x, want)
    if tuple(inp.shape[1:-1]) != want:
        raise ValueError(f"{path}: the network's input layer takes {list(want)} per step, the data give "
                         f"{list(inp.shape[1:-1])} (sample [C, H, W] = {list(x.shape[1:-1])}); wrong dataset?")
    return x, net, inp


def _run_pipelined(path: Union[str, Path], x: np.ndarray, record_states: bool, progress: bool,
                   desc: str, graded: bool, folder: str) -> LavaResult:
    """:func:`run_network` with pipelined timing: one run of ``N*T + L`` steps, per-layer staggered resets."""
    tm: Dict[str, float] = {}
    t_phase = time.perf_counter()
    n, steps = int(np.shape(x)[0]), int(np.shape(x)[-1])
    # netx: layer i resets on steps with time_step % T == (1 + 1 + i) % T, the step its sample's first input
    # arrives (input on step 1, one step per hop)
    x, net, inp = _build(path, x, graded, reset_interval=steps, reset_offset=1)
    depth = len(net.layers)
    total = n * steps + depth
    data = np.concatenate([inp[k] for k in range(n)] + [np.zeros(inp.shape[1:-1] + (depth,))], axis=-1)
    sinks = _attach_io(net, data, folder)
    state_files = _attach_state_files(net, total, folder) if record_states else {}
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    tm["build"] = time.perf_counter() - t_phase
    # one run call per sample, then the pipeline's drain
    chunks = [steps] * n + [depth]
    with running(net) as sig:
        done = 0
        for step in bar(chunks, desc=desc, unit="sample", enabled=progress):
            sig.check()
            net.run(condition=RunSteps(num_steps=step), run_cfg=cfg)
            if done == 0:
                now = time.perf_counter()
                tm["first_sample"], t_phase = now - t_phase, now
            done += step
        sig.check()
        now = time.perf_counter()
        tm["stepping"], t_phase = now - t_phase, now
        raw, t_phase = _read_sinks(sinks, tm, t_phase)
        states, t_phase = _read_states(state_files, tm, t_phase)
    tm["stop"] = time.perf_counter() - t_phase
    readout = _is_readout(net.layers[-1])
    spikes = []
    for i, (layer, r) in enumerate(zip(net.layers, raw)):
        dtype = np.int64 if (readout and i == depth - 1) else np.int8
        spikes.append(_windows(r, layer.out.shape, n, steps, i + 1).astype(dtype))
    out_states: Dict[int, Dict[str, np.ndarray]] = {}
    for i, per in states.items():
        out_states[i] = {name: _windows(arr, net.layers[i].out.shape, n, steps, i + 1).astype(np.int64)
                         for name, arr in per.items()}
    return LavaResult(spikes=spikes, states=out_states, timings=tm, readout=readout, lava_steps=total,
                      latency_steps=steps + depth)
