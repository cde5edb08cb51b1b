"""``ILIF.record_states``: the ``fixed_pt`` process writes u, v, c, m after every step into a file.

The file must hold exactly what ``Var.get()`` reads after each single step (the slow way it replaces), in
:data:`ilif_lava.fixed_point.STATE_NAMES` order, with step t in column ``(t - 1) % buffer`` (so a buffer shorter
than the run keeps the last ``buffer`` steps), and must not change the spikes.
"""
from __future__ import annotations

import numpy as np
import pytest

import ilif_lava  # noqa: F401  (Lava's Python 3.11 fix)
from ilif_lava import fixed_point as fx
from ilif_lava.lava_proc.file_sink import read_buffer_file


def _run(currents: np.ndarray, record, buffer: int, per_step: bool):
    """Run one ILIF process [n] on integer input ``currents`` [n, T]; returns (spikes [n, T],
    states read with Var.get() after each step {name: [n, T]} when ``per_step``, the recorded file or None)."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    from ilif_lava.lava_proc.process import ILIF

    n, steps = currents.shape
    src = io.source.RingBuffer(data=currents.astype(np.int32))
    lif = ILIF(shape=(n,), vth=900, v_decay=600, c_decay=300, m_decay=3000, i_decay=2000, bias_mant=5)
    sink = io.sink.RingBuffer(shape=(n,), buffer=steps)
    src.s_out.connect(lif.a_in)
    lif.s_out.connect(sink.a_in)
    path = lif.record_states(record, buffer) if record is not None else None
    cfg = Loihi2SimCfg(select_tag="fixed_pt")
    got = {k: [] for k in fx.STATE_NAMES}
    try:
        for _ in range(steps if per_step else 1):
            lif.run(condition=RunSteps(num_steps=1 if per_step else steps), run_cfg=cfg)
            if per_step:
                for k in fx.STATE_NAMES:
                    got[k].append(np.array(getattr(lif, k).get(), dtype=np.int64))
        spikes = np.array(sink.data.get())
    finally:
        lif.stop()
    states = {k: np.stack(v, axis=-1) for k, v in got.items()} if per_step else None
    return spikes, states, (read_buffer_file(path) if path is not None else None)


@pytest.fixture(scope="module")
def currents() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.integers(-40, 160, size=(6, 12)) * 8        # [n, T] integer synaptic input


def test_recorded_states_equal_var_reads_after_every_step(currents, tmp_path):
    spikes_ref, states_ref, _ = _run(currents, None, 0, per_step=True)
    spikes, _, rec = _run(currents, tmp_path / "s.npy", currents.shape[1], per_step=False)
    assert rec.shape == (len(fx.STATE_NAMES), currents.shape[0], currents.shape[1]) and rec.dtype == np.int32
    np.testing.assert_array_equal(spikes, spikes_ref)
    assert spikes.sum() > 0 and all(np.abs(states_ref[k]).sum() > 0 for k in fx.STATE_NAMES)   # the test can fail
    for j, k in enumerate(fx.STATE_NAMES):
        np.testing.assert_array_equal(rec[j], states_ref[k], err_msg=f"state {k}")


def test_short_buffer_keeps_the_last_steps_in_ring_order(currents, tmp_path):
    steps, buffer = currents.shape[1], 5
    _, _, full = _run(currents, tmp_path / "full.npy", steps, per_step=False)
    _, _, ring = _run(currents, tmp_path / "ring.npy", buffer, per_step=False)
    for t in range(steps - buffer, steps):                  # 0-based step t (Lava's t + 1) -> column t % buffer
        np.testing.assert_array_equal(ring[..., t % buffer], full[..., t])
