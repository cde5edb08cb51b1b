"""``ilif-lava study`` end to end on the offline digits data with tiny settings (real training, real quantized
model): output files, resume (finished cells are never trained again), table means/stds recomputed from the
per-cell JSON, bad flags (one-line errors, exit 2)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli

TINY = ["--dataset", "digits", "-T", "4", "--epochs", "1", "--qat-epochs", "1", "--limit-train", "64",
        "--limit-test", "32", "--hidden", "16", "--batch-size", "32"]
GRID = ["--variants", "LIF,ILIF", "--seeds", "0,1", "--sweep", "gamma=0.5,2"]
CELLS = [f"{v}-gamma{g}-seed{s}" for g in ("0.5", "2") for v in ("LIF", "ILIF") for s in (0, 1)]
PLOTS = ("accuracy.png", "firing.png", "continuous_firing_per_layer.png", "spikes_per_step.png", "loss_curves.png")
TABLE_METRICS = ("float_accuracy", "deployed_accuracy", "firing_rate", "continuous_firing_rate", "overactivation",
                 "final_loss")


def _main_table(md: str):
    """Rows of study.md's first table: (variant, value, [(mean, std) per metric])."""
    rows = []
    lines = md.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("| variant | gamma | float acc"))
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        stats = [tuple(float(x) for x in c.split(" ± ")) for c in cells[2:2 + len(TABLE_METRICS)]]
        rows.append((cells[0], float(cells[1]), stats))
    return rows


def _close(shown: float, exact: float) -> bool:
    """``shown`` is ``exact`` printed with 4 significant digits."""
    return abs(shown - exact) <= 5e-4 * abs(exact) + 1e-12


def test_study_end_to_end_resume_and_tables(tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", *GRID, *TINY, "--out", str(out), "--work-dir", str(tmp_path / "work")]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    assert len(re.findall(r"^\[\d/8\] \S+: float ", stdout, re.M)) == 8     # one progress line per cell
    for name in ("study.json", "study.md", *PLOTS):
        assert (out / name).stat().st_size > 0, name
    assert sorted(p.stem for p in (out / "cells").glob("*.json")) == sorted(CELLS)
    study = json.loads((out / "study.json").read_text())
    assert study["trained"] == 8 and study["skipped"] == 0 and len(study["cells"]) == 8

    # every cell measured: accuracies, per-layer activity, loss curve of 2 epochs, overactivation share
    for c in study["cells"]:
        m = c["metrics"]
        assert 0 <= m["deployed_accuracy"] <= 1 and 0 <= m["overactivation"] <= 1
        assert len(m["layers"]) == 2 and len(m["layers"][0]["spikes_per_step"]) == 4
        assert [r["phase"] for r in m["loss_curve"]] == ["float", "qat"]
        assert c["config"]["neuron_overrides"]["gamma"] == c["value"]
    assert len({json.dumps(c["metrics"]["layers"][0]["spikes_per_step"]) for c in study["cells"]}) > 1

    # table means and stds equal those recomputed from the per-cell JSON files
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    rows = _main_table((out / "study.md").read_text())
    assert len(rows) == 4
    for variant, value, stats in rows:
        group = [c["metrics"] for c in cells if c["variant"] == variant and c["value"] == value]
        assert len(group) == 2
        for k, (mean, std) in zip(TABLE_METRICS, stats):
            vals = np.array([g[k] for g in group], dtype=np.float64)
            assert _close(mean, vals.mean()), (variant, value, k)
            assert _close(std, vals.std(ddof=1)), (variant, value, k)
        agg = next(r for r in study["aggregates"] if r["variant"] == variant and r["value"] == value)
        per_layer = np.array([[l["continuous_firing_rate"] for l in g["layers"]] for g in group])
        np.testing.assert_allclose(agg["continuous_firing_rate_per_layer"]["mean"], per_layer.mean(0), atol=1e-12)
        np.testing.assert_allclose(agg["loss_curve"]["std"],
                                   np.array([[r["loss"] for r in g["loss_curve"]] for g in group]).std(0, ddof=1),
                                   atol=1e-12)

    # the membrane potential H behind the overactivation share equals the forward formula of fixed_point.ilif_step
    _check_membrane_reconstruction(tmp_path / "work")

    # resume: an interrupted cell (no cell file yet) reruns; finished cells are not trained again
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    (out / "cells" / f"{CELLS[-1]}.json").unlink()
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    assert stdout.count("done before, skipped") == 7
    assert json.loads((out / "study.json").read_text())["trained"] == 1
    for p in (out / "cells").glob("*.json"):
        if p.stem != CELLS[-1]:
            assert p.stat().st_mtime_ns == mtimes[p.name], p.name
    assert (out / "cells" / f"{CELLS[-1]}.json").exists()

    # the same folder with other settings: refused with one line naming the cell file, nothing trained
    code, stdout, stderr = run_cli([*argv, "--lr", "0.5"], capsys)
    assert code == 2 and len(stderr.strip().splitlines()) == 1
    assert f"{CELLS[0]}.json" in stderr and "lr" in stderr

    # --report-only rebuilds the tables from the cell files alone
    (out / "study.md").unlink()
    code, _, stderr = run_cli([*argv, "--report-only"], capsys)
    assert code == 0, stderr
    assert _main_table((out / "study.md").read_text()) == rows


def _check_membrane_reconstruction(work: Path) -> None:
    """H (pipeline.study.membrane_before_reset, integrated forward) equals the after-reset v plus what the resets
    took: s * (vth + inhibition(m)) for MPIU variants, s * vth otherwise, with s the neuron's own spikes (the
    block output is shifted one step by delay_shift, so steps 0..T-2); and H >= vth exactly where s = 1."""
    import torch
    from ilif_lava import fixed_point as fx
    from pipeline.run import engine_spikes
    from pipeline.study import membrane_before_reset
    from training.datasets import load_split
    from training.train import load_model
    x, _ = load_split("digits", "test", time_bins=4, limit=16).tensors()
    for cell in ("LIF-gamma2-seed0", "ILIF-gamma2-seed0"):
        model = load_model(work / cell / "model.pt")
        spikes, states = engine_spikes(model, x, torch.device("cpu"), quantized=True, record=True)
        for li, blk in enumerate(model.spiking_blocks()):
            p, st = blk.neuron.int_params, states[li]
            h = membrane_before_reset(st, p)[..., :-1]
            s = spikes[li][..., 1:].astype(np.int64)
            vth = int(p.vth_mant) << fx.VTH_SHIFT
            inh = fx.INHIBITION_INT[p.inhibition](st["m"][..., :-1]) if p.mpiu else 0
            np.testing.assert_array_equal(h, st["v"][..., :-1] + s * (vth + inh), err_msg=f"{cell} layer {li}")
            assert ((h >= vth) == (s == 1)).all()


@pytest.mark.parametrize("extra, needle", [
    (["--sweep", "foo=1,2"], "--sweep"),
    (["--sweep", "gamma=0,1"], "--sweep"),
    (["--sweep", "T=2,x"], "--sweep"),
    (["--sweep", "gamma"], "--sweep"),
    (["--variants", "LIF,XYZ"], "--variants"),
    (["--variants", "CUBA"], "--variants"),
    (["--seeds", "0,0"], "--seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--sweep", "tau=2,4", "--tau", "3"], "--tau"),
    (["--sweep", "gamma=1,2", "--surrogate", "exp"], "--surrogate"),
    (["--neuron", "ILIF"], "--variants"),
    (["--epochs", "-1"], "--epochs"),
])
def test_bad_flags_one_line_exit_2(tmp_path, capsys, extra, needle):
    code, stdout, stderr = run_cli(["study", "--out", str(tmp_path / "s"), *extra], capsys)
    assert code == 2
    first, *rest = stderr.strip().splitlines()
    assert "error:" in first and needle in first, stderr
    assert rest in ([], [f"(see 'ilif-lava study --help')"]), stderr       # the parser's --help hint only
    assert not (tmp_path / "s").exists()


def test_missing_out_and_out_under_a_file(tmp_path, capsys):
    code, _, stderr = run_cli(["study"], capsys)
    assert code == 2 and "--out" in stderr.splitlines()[0]
    f = tmp_path / "file"
    f.write_text("x")
    code, _, stderr = run_cli(["study", "--out", str(f / "s"), *TINY], capsys)
    assert code == 2 and "--out" in stderr and len(stderr.strip().splitlines()) == 1


def test_plugin_module_is_light():
    """Importing the plug-in (as ``ilif-lava --help`` does) loads neither torch nor the study logic."""
    code = ("import sys, pipeline.study_cli; "
            "print(sorted(m for m in ('torch', 'lava', 'pipeline.study', 'matplotlib') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_sweep_of_time_steps(tmp_path, capsys):
    """A sweep of T (a training-config field, not a neuron parameter): each cell trains and measures with its T."""
    out = tmp_path / "t"
    tiny = [a for a in TINY if a not in ("-T", "4")]
    code, stdout, stderr = run_cli(["study", "--variants", "ILIF", "--seeds", "0", "--sweep", "T=2,3", *tiny,
                                    "--out", str(out), "--work-dir", str(tmp_path / "w")], capsys)
    assert code == 0, stderr
    study = json.loads((out / "study.json").read_text())
    assert [(c["id"], c["config"]["time_bins"]) for c in study["cells"]] == [("ILIF-T2-seed0", 2), ("ILIF-T3-seed0", 3)]
    assert [len(c["metrics"]["layers"][0]["spikes_per_step"]) for c in study["cells"]] == [2, 3]
    md = (out / "study.md").read_text()
    assert "| variant | T | float acc" in md and "| ILIF | 3 |" in md and "T = 16" not in md


# --------------------------------------------------------------------------------------------------------------
# the paper's deep networks, both deployable: vgg11bn and resnet18 (fan-in layers), real CIFAR-10 images, tiny width
# --------------------------------------------------------------------------------------------------------------
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_subset"
DEEP = ["--dataset", "cifar10", "--data-dir", str(CIFAR), "--hidden", "8", "-T", "2", "--epochs", "1",
        "--limit-train", "16", "--limit-test", "8", "--batch-size", "8", "--optimizer", "adam", "--lr", "1e-3",
        "--loss", "tet", "--device", "cpu", "--variants", "LIF,ILIF", "--seeds", "0,1"]
DEEP_PLOTS = PLOTS + ("continuous_firing_panels.png",)


def _table(md: str, title: str):
    """The markdown table under the heading (or first header cell) ``title``: (header, rows of cells)."""
    lines = md.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith(title))
    start = next(i for i in range(start, len(lines)) if lines[i].startswith("|"))
    head = [c.strip() for c in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return head, rows


def _stat(text: str):
    return tuple(float(v) for v in text.split(" ± "))


def _check_shown(text: str, vals, scale: float = 1.0) -> None:
    mean, std = _stat(text)
    vals = np.asarray(vals, dtype=np.float64) / scale
    assert _close(mean, vals.mean()) and _close(std, vals.std(ddof=1)), (text, vals)


def _synapse_acs(model, x) -> float:
    """ACs per sample counted independently of simulations/activity.py: forward hooks see what enters every
    synapse that reads spikes (sums of 2x2 spike windows behind a folded pool; the skip synapses of fan-in layers)
    and count, for each output, the spikes its receptive field holds (a convolution with all-ones weights), or
    spikes x classes for a Linear head; an identity skip adds each spike once."""
    import torch
    import torch.nn.functional as F
    total, hooks = [0.0], []

    def conv_hook(mod, inp, _out):
        z = inp[0].detach().double()
        w = torch.ones_like(mod.weight, dtype=torch.float64)
        conv = F.conv3d if z.ndim == 5 and mod.weight.ndim == 5 else F.conv2d
        total[0] += float(conv(z, w, None, mod.stride, mod.padding, mod.dilation, mod.groups).sum())

    def once_hook(_mod, inp, _out):
        total[0] += float(inp[0].double().sum())

    model.set_quantized(True)
    for blk in list(model.blocks)[1:]:          # the first block reads the analog image: not counted
        syn = blk.synapse
        if type(syn).__name__ == "Dense":
            hooks.append(syn.register_forward_hook(
                lambda mod, inp, _o: total.__setitem__(0, total[0] + float(inp[0].double().sum())
                                                       * mod.out_channels)))
        else:
            hooks.append(syn.register_forward_hook(conv_hook))
        for spec, skip in zip(getattr(blk, "skip_specs", ()), getattr(blk, "skips", ())):
            hooks.append(skip.register_forward_hook(once_hook if spec.identity else conv_hook))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total[0] / x.shape[0]


@pytest.mark.parametrize("arch, qat", [("vgg11bn", "1"), ("resnet18", "0")])
def test_deep_network_study_tables_energy_and_resume(tmp_path, capsys, arch, qat):
    """The grid runs for the paper's networks with every table and plot; the tables are the cell files' mean and
    sample std; ACs agree with an independent count; the float H of a float model crosses the threshold exactly where
    it spikes; a removed cell is trained again and no other."""
    if not (CIFAR / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"real CIFAR-10 subset not found at {CIFAR}")
    import torch
    from ilif_lava import metrics
    from pipeline.study import membrane_before_reset_float
    from training.datasets import load_split
    from training.train import load_model
    out, work = tmp_path / "study", tmp_path / "work"
    argv = ["study", *DEEP, "--arch", arch, "--qat-epochs", qat, "--out", str(out), "--work-dir", str(work)]
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    for name in ("study.json", "study.md", *DEEP_PLOTS):
        assert (out / name).stat().st_size > 0, name
    cells = {p.stem: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert sorted(cells) == sorted(f"{v}-seed{s}" for v in ("LIF", "ILIF") for s in (0, 1))
    n_layers = 8 if arch == "vgg11bn" else 17
    for c in cells.values():
        m = c["metrics"]
        assert m["deployable"] is True and m["activity_of"] == "deployed" and m["deployed_accuracy"] is not None
        assert len(m["layers"]) == n_layers and all(len(l["spikes_per_step"]) == 2 for l in m["layers"])
        k = 2 if c["variant"] == "ILIF" else 1
        assert m["macs_per_sample"] == 2 * k * sum(l["neurons"] for l in m["layers"])
        assert m["sop_energy_uj_per_sample"] == pytest.approx((0.9 * m["acs_per_sample"]
                                                               + 4.6 * m["macs_per_sample"]) * 1e-6)

    md = (out / "study.md").read_text()
    head, rows = _table(md, "| variant | float acc")
    assert [r[0] for r in rows] == ["LIF", "ILIF"]
    for r in rows:
        group = [c["metrics"] for c in cells.values() if c["variant"] == r[0]]
        for key, text in zip(TABLE_METRICS, r[1:1 + len(TABLE_METRICS)]):
            _check_shown(text, [g[key] for g in group])
        assert head[1 + len(TABLE_METRICS)] == "best epoch acc"
        _check_shown(r[1 + len(TABLE_METRICS)], [max(e["test_accuracy"] for e in g["loss_curve"]) for g in group])
    head, rows = _table(md, "### Energy per test sample")
    assert head == ["variant", "ACs (M)", "MACs (M)", "SOP (uJ)"]
    for r in rows:
        group = [c["metrics"] for c in cells.values() if c["variant"] == r[0]]
        _check_shown(r[1], [g["acs_per_sample"] for g in group], 1e6)
        _check_shown(r[2], [g["macs_per_sample"] for g in group], 1e6)
        _check_shown(r[3], [g["sop_energy_uj_per_sample"] for g in group])
    head, rows = _table(md, "### Spikes per time step")
    assert head == ["variant", "t = 0", "t = 1"]
    for r in rows:
        group = [c["metrics"] for c in cells.values() if c["variant"] == r[0]]
        for t in range(2):
            _check_shown(r[1 + t], [sum(l["spikes_per_step"][t] for l in g["layers"]) for g in group])
    head, rows = _table(md, "### Continuous firing per layer")
    assert len(head) == 1 + n_layers
    for r in rows:
        group = [c["metrics"] for c in cells.values() if c["variant"] == r[0]]
        for li in range(n_layers):
            _check_shown(r[1 + li], [g["layers"][li]["continuous_firing_rate"] for g in group])

    # ACs of one cell recounted from scratch; the float H (H > 2 V_th of a float model) against its own spikes
    x, _ = load_split("cifar10", "test", time_bins=2, data_dir=CIFAR, limit=8).tensors()
    model = load_model(work / "ILIF-seed0" / "model.pt").eval()
    assert cells["ILIF-seed0"]["metrics"]["acs_per_sample"] == pytest.approx(_synapse_acs(model, x), rel=1e-9)
    model.set_quantized(False)
    model.set_record_states(True)
    with torch.no_grad():
        _, spikes = model(x)
    for li, blk in enumerate(model.spiking_blocks()):
        st = {k: v.reshape(v.shape[0], -1, v.shape[-1]).numpy() for k, v in blk.neuron.states.items()}
        h = membrane_before_reset_float(st, blk.neuron)
        s = spikes[li].reshape(h.shape).numpy()
        assert ((h >= blk.neuron.threshold) == (s == 1)).all(), li
    assert metrics.neuron_macs(1, 1, "ILIF") == 2

    # resume: only the removed cell is trained again
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    (out / "cells" / "ILIF-seed1.json").unlink()
    code, stdout, stderr = run_cli(argv, capsys)
    assert code == 0, stderr
    assert stdout.count("done before, skipped") == 3
    assert json.loads((out / "study.json").read_text())["trained"] == 1
    for p in (out / "cells").glob("*.json"):
        if p.stem != "ILIF-seed1":
            assert p.stat().st_mtime_ns == mtimes[p.name], p.name
