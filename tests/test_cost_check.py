"""``ilif-lava check FILE``'s Loihi 2 cost estimate for a bare netx file (simulations/cost_assumed.py): the
assumed activity gives the same estimate as measured activity of the same size, the input shape is recovered from
a conv first layer, and the CLI prints the estimate labelled as an estimate with its stated assumption."""
from __future__ import annotations

import json

import numpy as np
import pytest

from simulations import cost
from simulations import cost_assumed as ca
from tests.helpers import run_cli
from tests.test_cost_estimate import _toy_file


def test_assumed_activity_is_the_measured_estimate_of_that_activity(tmp_path):
    path = _toy_file(tmp_path / "toy.net", np.random.default_rng(5))       # conv (3, 7, 9) -> ... -> dense 5
    assert ca.input_shape(path) == (3, 7, 9)        # from the conv's output, kernel, stride, padding, dilation
    syns = cost.read_synapses(path, (3, 7, 9))
    # rate 1: every neuron spikes every step, exactly what the measured path computes from all-ones spikes
    est = ca.assumed_estimate(path, rate=1.0, steps=3)
    ref = cost.estimate_run(path, np.ones((1, 3, 7, 9, 3)), [np.ones((1, s.neurons, 3)) for s in syns])
    assert est.synops == ref.synops and est.spikes == ref.spikes and est.cores == ref.cores
    assert est.energy_per_inference_uj == pytest.approx(ref.energy_per_inference_uj)
    assert est.time_per_step_us == pytest.approx(ref.time_per_step_us) and est.steps == 3
    # rate r: synaptic ops = r x non-zero synapses (padding taps excluded) per step, spikes = r x neurons
    nonzero = sum(cost.nonzero_fan_out(s) * int(np.prod(s.in_shape)) for s in syns)
    low = ca.assumed_estimate(path, rate=0.25, steps=4)
    assert low.synops == pytest.approx(0.25 * nonzero * 4)
    assert low.spikes == pytest.approx(0.25 * sum(s.neurons for s in syns) * 4)
    assert low.calibrated and low.dynamic_energy_uj < ref.dynamic_energy_uj * 4 / 3
    with pytest.raises(ValueError, match="rate"):
        ca.assumed_estimate(path, rate=1.5)


def test_check_prints_the_cost_estimate_of_a_bare_file(tmp_path, capsys):
    from export.export_net import export_model
    from training.models import build_model
    net, _ = export_model(build_model("mlp", (1, 4, 4), 3, "ILIF", None, hidden=6), tmp_path / "mlp.net")
    code, out, err = run_cli(["check", str(net), "--rate", "0.2", "-T", "8"], capsys)
    assert code == 0, err
    assert "## Loihi 2 cost (estimate, assumed activity)" in out and "**OK**" in out
    assert "Activity assumed, not measured: every neuron (the input included) spikes with probability 0.2 at " \
           "each of T = 8 steps" in out and "calibrated on" in out
    code, out, _ = run_cli(["check", str(net), "--json"], capsys)
    rep = json.loads(out)
    c = rep["loihi2_cost"]
    assert code == 0 and rep["ok"] is True and (c["rate"], c["steps"]) == (0.1, 16) and c["estimate"] is True
    nonzero = sum(int((s.weight != 0).sum()) for s in cost.read_synapses(net, (16,)))
    assert c["synops"] == pytest.approx(0.1 * nonzero * 16) and c["energy_per_inference_uj"] > 0
    code, _, err = run_cli(["check", str(net), "--rate", "2"], capsys)
    assert code == 2 and "--rate" in err and "Traceback" not in err
