"""Untrusted data, part two (issue 25 items 2-7): no writes through planted links, outputs never replace inputs,
no hangs on FIFOs, a DVS cache that verifies what it serves, range-checked events, validated study cells, NIR
fields checked per node, memory bounded before allocation, distributed resume checked before the first
collective. Real files, FIFOs, links and processes; hangs are bounded by :func:`deadline`."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ilif_lava import atomic
from tests.test_dvs import T, write_dvsgesture
from training.datasets import DatasetFileError, load_split

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail the test (instead of hanging the suite) when the block runs longer than ``seconds``."""
    def _fire(signum, frame):
        raise TimeoutError(f"still blocked after {seconds} s")
    old = signal.signal(signal.SIGALRM, _fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg, msg
    return msg


# ------------------------------------------------------------------------------------------- item 2: atomic writes
def test_temporary_names_are_random_and_exclusive(tmp_path):
    """A link planted at every name the old scheme used (``.<name>.<pid>.tmp``) is never written through."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    target = tmp_path / "out.npy"
    (tmp_path / f".{target.name}.{os.getpid()}.tmp").symlink_to(victim)
    atomic.save_npy(target, np.arange(3))
    assert victim.read_text() == "keep" and np.load(target).tolist() == [0, 1, 2]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") and not p.is_symlink()]


def test_atomic_write_replaces_a_link_at_the_target_not_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (tmp_path / "study.json").symlink_to(victim)
    atomic.write_text(tmp_path / "study.json", "new")
    assert victim.read_text() == "keep" and not (tmp_path / "study.json").is_symlink()


def test_append_line_refuses_links_and_fifos(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep\n")
    (tmp_path / "log.jsonl").symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        atomic.append_line(tmp_path / "log.jsonl", "{}")
    assert victim.read_text() == "keep\n"
    os.mkfifo(tmp_path / "fifo.jsonl")
    with deadline(10), pytest.raises(OSError, match="not a regular file"):
        atomic.append_line(tmp_path / "fifo.jsonl", "{}")
    atomic.append_line(tmp_path / "ok.jsonl", "{\"a\": 1}")
    atomic.append_line(tmp_path / "ok.jsonl", "{\"a\": 2}")
    assert (tmp_path / "ok.jsonl").read_text() == "{\"a\": 1}\n{\"a\": 2}\n"


def test_check_input_links_out_of_the_folder_and_fifos(tmp_path):
    (tmp_path / "run").mkdir()
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    (tmp_path / "run" / "config.json").symlink_to(outside)
    with pytest.raises(atomic.UnsafePathError) as err:
        atomic.check_input(tmp_path / "run" / "config.json")
    assert "symbolic link" in one_line(err.value) and "config.json" in str(err.value)
    (tmp_path / "run" / "real.json").write_text("{}")
    (tmp_path / "run" / "inside.json").symlink_to(tmp_path / "run" / "real.json")
    atomic.check_input(tmp_path / "run" / "inside.json")                   # a link inside its folder is fine
    os.mkfifo(tmp_path / "run" / "fifo.json")
    with deadline(10), pytest.raises(atomic.UnsafePathError, match="fifo.json: input is a FIFO"):
        atomic.check_input(tmp_path / "run" / "fifo.json")


def test_check_outputs_refuses_an_output_that_is_an_input(tmp_path):
    (tmp_path / "network.net").write_bytes(b"x")
    (tmp_path / "link.net").symlink_to(tmp_path / "network.net")
    with pytest.raises(atomic.UnsafePathError, match="FILE is also an output"):
        atomic.check_outputs([tmp_path / "network.net"], [("FILE", tmp_path / "link.net")])
    atomic.check_outputs([tmp_path / "other.net"], [("FILE", tmp_path / "network.net")])


# --------------------------------------------------------------------------------------- item 3: the DVS cache
@pytest.fixture()
def gesture_copy(tmp_path):
    root = tmp_path / "data"
    written = write_dvsgesture(root)
    return root, written, tmp_path / "cache"


def _entry(cache: Path):
    files = sorted((cache / "binned").iterdir())
    by = {".".join(p.name.split(".")[-2:]): p for p in files if not p.name.startswith(".")}
    return by["spikes.npy"], by["labels.npy"], by["meta.json"]


def _load(root, cache, **kw):
    return load_split("dvsgesture", "test", time_bins=kw.pop("T", T), data_dir=root, cache_dir=cache, limit=11, **kw)


def _rewrite_meta(meta_path: Path, **changes) -> None:
    meta = json.loads(meta_path.read_text())
    meta.update(changes)
    meta_path.write_text(json.dumps(meta))


def _tamper_cases():
    def swapped_labels(spikes, labels, meta):      # a consistent forgery: labels, checksum and meta all agree
        lab = np.load(labels)
        lab[[0, 1]] = lab[[1, 0]]
        np.save(labels, lab)
        import hashlib
        _rewrite_meta(meta, labels=lab.tolist(), labels_sha256=hashlib.sha256(lab.tobytes()).hexdigest())

    def out_of_range_labels(spikes, labels, meta):
        lab = np.load(labels)
        lab[0] = 99
        np.save(labels, lab)

    def other_shape(spikes, labels, meta):
        a = np.load(spikes)
        np.save(spikes, a[:, :, :64])

    def other_t(spikes, labels, meta):
        _rewrite_meta(meta, time_bins=T + 1)

    def other_resolution(spikes, labels, meta):
        _rewrite_meta(meta, resolution=[2, 64, 64])

    def flipped_byte(spikes, labels, meta):
        with open(spikes, "r+b") as fh:
            fh.seek(-1, os.SEEK_END)
            b = fh.read(1)
            fh.seek(-1, os.SEEK_END)
            fh.write(bytes([b[0] ^ 0xFF]))

    def link_to_foreign_file(spikes, labels, meta):
        foreign = spikes.with_name("foreign.npy")
        os.replace(spikes, foreign)
        spikes.symlink_to(foreign)

    def fifo_meta(spikes, labels, meta):
        meta.unlink()
        os.mkfifo(meta)

    def missing_meta(spikes, labels, meta):
        meta.unlink()

    return [swapped_labels, out_of_range_labels, other_shape, other_t, other_resolution, flipped_byte,
            link_to_foreign_file, fifo_meta, missing_meta]


@pytest.mark.parametrize("tamper", _tamper_cases(), ids=lambda f: f.__name__)
def test_dvs_cache_entry_that_does_not_verify_is_rebuilt(gesture_copy, tamper):
    root, _, cache = gesture_copy
    first = _load(root, cache)
    x, y = first.tensors()
    assert not first.cache_hit and _load(root, cache).cache_hit
    tamper(*_entry(cache))
    with deadline(60):
        again = _load(root, cache)
    assert not again.cache_hit
    x2, y2 = again.tensors()
    assert torch.equal(x2, x) and torch.equal(y2, y)
    assert _load(root, cache).cache_hit                          # the rebuilt entry verifies


def test_dvs_cache_another_t_is_another_entry_never_a_hit(gesture_copy):
    """Files of a T=4 entry renamed to the T=5 entry's names are not served for T=5."""
    root, _, cache = gesture_copy
    _load(root, cache)
    five = _load(root, cache, T=5)
    assert not five.cache_hit and five.tensors()[0].shape[-1] == 5


def _first_recording(written) -> Path:
    return Path(sorted(written["test"])[0])


def test_dvs_negative_coordinate_is_one_line_naming_the_file(gesture_copy):
    root, written, cache = gesture_copy
    p = _first_recording(written)
    ev = np.load(p)
    ev[3, 0] = -1
    np.save(p, ev)
    with pytest.raises(DatasetFileError) as err:
        load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=cache)
    msg = one_line(err.value)
    assert str(p) in msg and "outside the 128x128 sensor" in msg and "x in -1..".replace("..", "") in msg


@pytest.mark.parametrize("col,value,field", [(1, 128, "y"), (1, -3, "y"), (0, 500, "x"), (2, 2, "p"),
                                             (2, -1, "p")])
def test_dvs_events_outside_the_sensor(gesture_copy, col, value, field):
    root, written, cache = gesture_copy
    p = _first_recording(written)
    ev = np.load(p)
    ev[0, col] = value
    np.save(p, ev)
    with pytest.raises(DatasetFileError) as err:
        load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=cache)
    msg = one_line(err.value)
    assert str(p) in msg and f"{field} in" in msg


def test_dvs_three_column_recording_is_one_line(gesture_copy):
    root, written, cache = gesture_copy
    p = _first_recording(written)
    np.save(p, np.load(p)[:, :3])
    with pytest.raises(DatasetFileError) as err:
        load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=cache)
    assert str(p) in one_line(err.value) and "cannot be read as a dvsgesture recording" in str(err.value)
    assert "int64 [40, 3]" in str(err.value)


def test_dvs_label_out_of_range_from_the_file_name(gesture_copy):
    root, written, cache = gesture_copy
    p = _first_recording(written)
    os.replace(p, p.with_name("99.npy"))
    with pytest.raises(DatasetFileError) as err:
        load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=cache)
    msg = one_line(err.value)
    assert str(p.with_name("99.npy")) in msg and "label 99" in msg and "0..10" in msg


def test_dvs_file_name_without_a_label_is_one_line_naming_the_folder(gesture_copy):
    root, written, cache = gesture_copy
    p = _first_recording(written)
    os.replace(p, p.with_name("abc.npy"))
    with pytest.raises(DatasetFileError) as err:
        load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=cache)
    assert str(root / "DVSGesture") in one_line(err.value) and "'abc'" in str(err.value)


def test_dvs_fifo_recording_is_refused_without_blocking(gesture_copy):
    root, written, cache = gesture_copy
    p = _first_recording(written)
    p.unlink()
    os.mkfifo(p)
    with deadline(60), pytest.raises(ValueError) as err:
        load_split("dvsgesture", "test", time_bins=T, data_dir=root, cache_dir=cache)
    assert str(p) in one_line(err.value) and "FIFO" in str(err.value)


# ------------------------------------------------------------------------------------ item 4: study cells and lock
from tests.helpers import run_cli  # noqa: E402

STUDY_TINY = ["--dataset", "digits", "-T", "3", "--epochs", "1", "--qat-epochs", "1", "--limit-train", "32",
              "--limit-test", "16", "--hidden", "8", "--batch-size", "16", "--variants", "LIF", "--seeds", "0"]
CELL = "LIF-seed0"


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    """One real finished cell (trained once for the module); tests copy the folder before changing it."""
    import shutil
    out = tmp_path_factory.mktemp("study") / "s"
    from pipeline.cli import main
    assert main(["study", *STUDY_TINY, "--out", str(out)]) == 0
    shutil.rmtree(out / "train")
    return out


def _study_copy(finished_study, tmp_path) -> Path:
    import shutil
    out = tmp_path / "s"
    shutil.copytree(finished_study, out)
    return out


def _report_only(out: Path, capsys, extra=()):
    return run_cli(["study", *STUDY_TINY, *extra, "--out", str(out), "--report-only"], capsys)


def _edit_cell(out: Path, edit) -> Path:
    path = out / "cells" / f"{CELL}.json"
    cell = json.loads(path.read_text())
    edit(cell)
    path.write_text(json.dumps(cell))
    return path


def test_study_report_only_reads_the_real_cell(finished_study, tmp_path, capsys):
    out = _study_copy(finished_study, tmp_path)
    code, stdout, stderr = _report_only(out, capsys)
    assert code == 0, stderr and "1 skipped" in stdout


def _set(path_keys, value):
    def edit(cell):
        d = cell
        for k in path_keys[:-1]:
            d = d[k]
        d[path_keys[-1]] = value
    return edit


BAD_CELLS = {
    "nan_accuracy": (_set(["metrics", "deployed_accuracy"], float("nan")), "metrics.deployed_accuracy"),
    "negative_rate": (_set(["metrics", "firing_rate"], -0.1), "metrics.firing_rate"),
    "accuracy_above_one": (_set(["metrics", "float_accuracy"], 1.5), "metrics.float_accuracy"),
    "infinite_loss": (_set(["metrics", "final_loss"], float("inf")), "metrics.final_loss"),
    "string_metric": (_set(["metrics", "float_accuracy"], "NaN-text"),
                      "key 'metrics.float_accuracy' = 'NaN-text' is not a finite number"),
    "integer_beyond_float": (_set(["metrics", "final_loss"], 10 ** 400), "key 'metrics.final_loss' = 1000"),
    "string_seed": (_set(["seed"], "0"), "'seed'"),
    "bool_metric": (_set(["metrics", "overactivation"], True), "metrics.overactivation"),
    "layers_not_a_list": (_set(["metrics", "layers"], {"a": 1}), "metrics.layers"),
    "spikes_wrong_length": (lambda c: c["metrics"]["layers"][0]["spikes_per_step"].append(0.0),
                            "metrics.layers[0].spikes_per_step"),
    "spikes_above_neurons": (lambda c: c["metrics"]["layers"][0]["spikes_per_step"].__setitem__(0, 1e9),
                             "spikes_per_step[0]"),
    "epochs_out_of_order": (lambda c: c["metrics"]["loss_curve"].reverse(), "loss_curve[0].epoch"),
    "unknown_variant": (_set(["variant"], "XYZ"), "'variant'"),
    "other_grid_point": (_set(["id"], "ILIF-seed0"), "expected 'LIF-seed0'"),
    "not_an_object": (None, "(cell)"),
}


@pytest.mark.parametrize("case", sorted(BAD_CELLS))
def test_study_bad_cell_is_one_line_naming_file_and_key(finished_study, tmp_path, capsys, case):
    out = _study_copy(finished_study, tmp_path)
    edit, needle = BAD_CELLS[case]
    if edit is None:
        path = out / "cells" / f"{CELL}.json"
        path.write_text("[1, 2]")
    else:
        path = _edit_cell(out, edit)
    code, _, stderr = _report_only(out, capsys)
    assert code == 2, stderr
    line = stderr.strip()
    assert "\n" not in line and str(path) in line and needle in line, line


def test_study_cell_with_an_integer_python_will_not_read_is_one_line(finished_study, tmp_path, capsys):
    """A 5000-digit JSON integer (beyond Python's int parsing limit): one line naming the file, exit 2."""
    out = _study_copy(finished_study, tmp_path)
    path = out / "cells" / f"{CELL}.json"
    cell = json.loads(path.read_text())
    cell["seed"] = "SEED"
    path.write_text(json.dumps(cell).replace('"SEED"', "1" * 5000))
    code, _, stderr = _report_only(out, capsys)
    assert code == 2 and stderr.count("\n") == 1 and f"{path}: not a study cell file" in stderr, stderr


def test_study_fifo_cell_does_not_hang(finished_study, tmp_path, capsys):
    out = _study_copy(finished_study, tmp_path)
    path = out / "cells" / f"{CELL}.json"
    path.unlink()
    os.mkfifo(path)
    with deadline(60):
        code, _, stderr = _report_only(out, capsys)
    assert code == 2 and str(path) in stderr and "FIFO" in stderr and stderr.count("\n") == 1


def test_study_cell_linked_out_of_the_folder_is_refused(finished_study, tmp_path, capsys):
    out = _study_copy(finished_study, tmp_path)
    path = out / "cells" / f"{CELL}.json"
    elsewhere = tmp_path / "elsewhere.json"
    os.replace(path, elsewhere)
    path.symlink_to(elsewhere)
    code, _, stderr = _report_only(out, capsys)
    assert code == 2 and str(path) in stderr and "symbolic link" in stderr


def test_study_cells_folder_that_is_a_link_is_refused(finished_study, tmp_path, capsys):
    out = _study_copy(finished_study, tmp_path)
    os.replace(out / "cells", tmp_path / "elsewhere")
    (out / "cells").symlink_to(tmp_path / "elsewhere")
    code, _, stderr = _report_only(out, capsys)
    assert code == 2 and str(out / "cells") in stderr and "symbolic link" in stderr and stderr.count("\n") == 1


def test_study_plots_replace_planted_links_not_their_targets(finished_study, tmp_path, capsys):
    out = _study_copy(finished_study, tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    for name in ("accuracy.png", "study.md", "study.json"):
        (out / name).unlink()
        (out / name).symlink_to(victim)
    code, _, stderr = _report_only(out, capsys)
    assert code == 0, stderr
    assert victim.read_text() == "keep"
    assert not (out / "accuracy.png").is_symlink() and (out / "accuracy.png").read_bytes()[:4] == b"\x89PNG"


def test_study_lock_refuses_a_second_study_on_one_folder(finished_study, tmp_path, capsys):
    """A real second process holds the folder's lock; the study stops at once with one line naming the folder."""
    out = _study_copy(finished_study, tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from pipeline.study import study_lock\n"
         "with study_lock(Path(sys.argv[1])):\n    print('held', flush=True); time.sleep(60)", str(out)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert any(line.strip() == "held" for line in iter(holder.stdout.readline, ""))   # after any banner
        with deadline(30):
            code, _, stderr = _report_only(out, capsys)
        assert code == 2 and "another 'ilif-lava study' is running" in stderr and str(out) in stderr
    finally:
        holder.kill()
        holder.wait()
    code, _, stderr = _report_only(out, capsys)                  # released with its process
    assert code == 0, stderr


def test_study_sweep_values_with_one_cell_id_are_refused(tmp_path, capsys):
    code, _, stderr = run_cli(["study", *STUDY_TINY, "--sweep", "gamma=1.0000001,1.0000002",
                               "--out", str(tmp_path / "s")], capsys)
    assert code == 2 and "--sweep gamma" in stderr and "both give cell ids" in stderr and stderr.count("\n") == 1
    assert not (tmp_path / "s" / "cells").exists()


# ------------------------------------------------------------------------------ item 2: logs and config of a run
def test_resume_never_copies_what_a_linked_log_points_to(tmp_path):
    from training.train import ModelFileError, _truncate_log, read_training_log
    secret = tmp_path / "secret.txt"
    secret.write_text('{"epoch": 1}\nsecret line\n')
    run = tmp_path / "run" / "train"
    run.mkdir(parents=True)
    (run / "log.jsonl").symlink_to(secret)
    with pytest.raises(ModelFileError) as err:
        _truncate_log(run / "log.jsonl", 1)
    assert str(run / "log.jsonl") in one_line(err.value) and "symbolic link" in str(err.value)
    assert (run / "log.jsonl").is_symlink() and secret.read_text().endswith("secret line\n")
    with pytest.raises(ModelFileError):
        read_training_log(run)
    (run / "log.jsonl").unlink()
    os.mkfifo(run / "log.jsonl")
    with deadline(10), pytest.raises(ValueError, match="FIFO"):
        read_training_log(run)


@pytest.mark.parametrize("cmd", ["simulate", "compare"])
def test_fifo_config_json_does_not_hang(tmp_path, cmd):
    """``simulate/compare RUN`` with a FIFO at train/config.json: one line naming it, in a child process, bounded."""
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    os.mkfifo(run / "train" / "config.json")
    (run / "train" / "model.pt").write_bytes(b"x")
    (run / "network.net").write_bytes(b"\x89HDF\r\n\x1a\n")
    res = subprocess.run([str(REPO / ".venv" / "bin" / "ilif-lava"), cmd, str(run)], capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert res.returncode == 2, res.stderr
    assert "config.json" in res.stderr and "FIFO" in res.stderr and res.stderr.count("\n") == 1, res.stderr


# ------------------------------------------------------------------ items 7 and 5: NIR fields, memory, outputs
import nir  # noqa: E402

from ilif_lava.nir import NIRConversionError, from_nir  # noqa: E402
from tests.test_nir import _exact_graph, _lif  # noqa: E402


def _chain(*synapse_and_neurons, shape=(4,)):
    nodes = {"input": nir.Input(input_type=np.array(shape))}
    edges, prev = [], "input"
    for name, node in synapse_and_neurons:
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output(output_type=np.array([1]))
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _conv(**kw):
    f = dict(input_shape=(6, 6), weight=np.ones((2, 1, 3, 3)) / 8, stride=1, padding=0, dilation=1, groups=1,
             bias=np.zeros(2))
    f.update(kw)
    return nir.Conv2d(**f)


def _set_after(node, **fields):
    """Fields nir's constructor would refuse or trip on, set the way a file read with type_check=False can."""
    for k, v in fields.items():
        setattr(node, k, v)
    return node


def _pool(**kw):
    f = dict(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0]))
    f.update(kw)
    return nir.SumPool2d(**f)


COMPOUND = np.zeros((3, 4), dtype=[("a", "f8"), ("b", "f8")])
NIR_CASES = {
    "input_shape_inf": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 4)))), ("lif", _lif(3)),
                                       shape=np.array([np.inf])), "'input' (Input): input_type['input']"),
    "input_shape_zero": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 4)))), ("lif", _lif(3)),
                                        shape=np.array([0])), "'input' (Input): input_type['input']"),
    "compound_weight": (lambda: _chain(("lin", nir.Linear(weight=COMPOUND)), ("lif", _lif(3))),
                        "'lin' (Linear): weight has dtype"),
    "complex_weight": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 4)) * (1 + 2j))), ("lif", _lif(3))),
                       "'lin' (Linear): weight has dtype complex128"),
    "string_weight": (lambda: _chain(("lin", nir.Linear(weight=np.array([["a"] * 4] * 3))), ("lif", _lif(3))),
                      "'lin' (Linear): weight has dtype"),
    "nan_weight": (lambda: _chain(("lin", nir.Linear(weight=np.full((3, 4), np.nan))), ("lif", _lif(3))),
                   "'lin' (Linear): weight holds a non-finite value"),
    "infinite_weight": (lambda: _chain(("lin", nir.Linear(weight=np.full((3, 4), np.inf))), ("lif", _lif(3))),
                        "'lin' (Linear): weight holds a non-finite value"),
    "huge_weight": (lambda: _chain(("lin", nir.Linear(weight=np.full((3, 4), 1e30))), ("lif", _lif(3))),
                    "'lin' (Linear): weights x input gain"),
    "overflowing_gain": (lambda: _chain(("lin", nir.Linear(weight=np.full((3, 4), 1e300))),
                                        ("lif", _lif(3, r=np.full(3, 1e300)))), "'lin' (Linear): weights"),
    "empty_weight": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 0)))), ("lif", _lif(3))),
                     "'lin' (Linear): weight has shape [3, 0]"),
    "nan_threshold": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 4)))),
                                     ("lif", _lif(3, v_threshold=np.full(3, np.nan)))), "'lif' (LIF): v_threshold"),
    "complex_tau": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 4)))),
                                   ("lif", _lif(3, tau=np.full(3, 2 + 1j)))), "'lif' (LIF): tau has dtype complex"),
    "conv_dilation_0": (lambda: _chain(("conv", _conv(dilation=0)), ("lif", _lif(2)), shape=(1, 6, 6)),
                        "'conv' (Conv2d): dilation = [0, 0] must hold whole numbers >= 1"),
    "conv_stride_nan": (lambda: _chain(("conv", _set_after(_conv(), stride=np.array([np.nan, 1]))), ("lif", _lif(2)),
                                       shape=(1, 6, 6)), "'conv' (Conv2d): stride holds a non-finite value"),
    "conv_padding_negative": (lambda: _chain(("conv", _conv(padding=-1)), ("lif", _lif(2)), shape=(1, 6, 6)),
                              "'conv' (Conv2d): padding = [-1, -1] must hold whole numbers >= 0"),
    "conv_padding_word": (lambda: _chain(("conv", _set_after(_conv(), padding="full")), ("lif", _lif(2)),
                                         shape=(1, 6, 6)),
                          "'conv' (Conv2d): padding 'full'"),
    "conv_groups_0": (lambda: _chain(("conv", _conv(groups=0)), ("lif", _lif(2)), shape=(1, 6, 6)),
                      "'conv' (Conv2d): groups"),
    "conv_kernel_too_big": (lambda: _chain(("conv", _conv(weight=np.ones((2, 1, 9, 9)) / 100)), ("lif", _lif(2)),
                                           shape=(1, 6, 6)), "'conv' (Conv2d): output"),
    "pool_kernel_0": (lambda: _chain(("pool", _pool(kernel_size=np.array([0, 0]))), ("lif", _lif(2)),
                                     shape=(2, 4, 4)), "'pool' (SumPool2d): kernel_size"),
    "pool_stride_half": (lambda: _chain(("pool", _pool(stride=np.array([0.5, 0.5]))), ("lif", _lif(2)),
                                        shape=(2, 4, 4)), "'pool' (SumPool2d): stride"),
    "scale_complex": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 4)))),
                                     ("scale", nir.Scale(scale=np.full(3, 1j))), ("lif", _lif(3))),
                      "'scale' (Scale): scale has dtype complex"),
    "delay_nan": (lambda: _chain(("lin", nir.Linear(weight=np.ones((3, 4)))), ("lif", _lif(3)),
                                 ("delay", nir.Delay(delay=np.full(3, np.nan)))), "'delay' (Delay): delay"),
}


@pytest.mark.parametrize("case", sorted(NIR_CASES))
def test_nir_numeric_fields_one_line_naming_the_node(case):
    build, needle = NIR_CASES[case]
    with pytest.raises(NIRConversionError) as err:
        from_nir(build())
    msg = one_line(err.value)
    assert needle in msg, msg


def test_nir_exactly_representable_weights_still_import():
    """The representability rule refuses saturation only: the largest 8-bit weight (254/64) is accepted."""
    imp = from_nir(_chain(("lin", nir.Linear(weight=np.full((3, 4), 1.0))), ("lif", _lif(3))))
    assert imp.layers[0]["source"] == "nir"


def test_nir_uint8_weight_counted_at_float64_before_converting():
    """A uint8 weight within the byte limit as stored (16.8 MB) but 134 MB as float64 is refused before the
    conversion allocates (traced peak far below the float64 size)."""
    import tracemalloc
    w = np.ones((4096, 4097), dtype=np.uint8)
    g = _chain(("lin", nir.Linear(weight=w)), ("lif", _lif(4096)), shape=(4097,))
    tracemalloc.start()
    try:
        with pytest.raises(NIRConversionError) as err:
            from_nir(g)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "bytes as float64" in one_line(err.value) and "'lin' (Linear)" in str(err.value)
    assert peak < 40 << 20, peak


def test_nir_import_never_replaces_its_own_input(tmp_path, capsys):
    src = tmp_path / "network.net"
    nir.write(src, _exact_graph())
    before = src.read_bytes()
    code, _, err = run_cli(["nir", "import", str(src), "--run-dir", str(tmp_path), "--dt", "1e-3"], capsys)
    assert code == 2 and err.count("\n") == 1 and "FILE is also an output" in err and str(src) in err
    assert src.read_bytes() == before and not (tmp_path / "report").exists()


def test_nir_export_never_replaces_the_model(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "train").mkdir(parents=True)
    (run / "train" / "model.pt").write_bytes(b"model bytes")
    code, _, err = run_cli(["nir", "export", str(run), "--out", str(run / "train" / "model.pt")], capsys)
    assert code == 2 and err.count("\n") == 1 and "is also an output" in err
    assert (run / "train" / "model.pt").read_bytes() == b"model bytes"


@pytest.mark.parametrize("flag,value", [("--steps", "10001"), ("--samples", "65537")])
def test_nir_import_steps_and_samples_bounded(tmp_path, capsys, flag, value):
    nir.write(tmp_path / "g.nir", _exact_graph())
    code, _, err = run_cli(["nir", "import", str(tmp_path / "g.nir"), "--run-dir", str(tmp_path / "r"), flag, value],
                           capsys)
    assert code == 2 and flag in err and "at most" in err


def test_nir_import_memory_checked_before_allocation(tmp_path, capsys):
    nir.write(tmp_path / "g.nir", _exact_graph())
    with deadline(60):
        code, _, err = run_cli(["nir", "import", str(tmp_path / "g.nir"), "--run-dir", str(tmp_path / "r"),
                                "--dt", "1e-3", "--samples", "65536", "--steps", "10000"], capsys)
    assert code == 2 and err.count("\n") == 1 and "GiB of spike arrays" in err and "--steps" in err
    assert not (tmp_path / "r" / "network.net").exists()


# -------------------------------------------------------------------- item 5: lava_test.npz read memory-bounded
from simulations.lava_results import ResultsFileError, read_lava_results  # noqa: E402


def _results(path: Path, n=5, neurons=(6, 3), t=4, drop=(), **extra) -> dict:
    rng = np.random.default_rng(0)
    arrays = {"labels": rng.integers(0, 3, n), "pred": rng.integers(0, 3, n), "wall_s": np.float64(1.5),
              "steps": np.int64(t), "data_json": np.array('{"dataset": "digits"}')}
    for i, k in enumerate(neurons):
        arrays[f"spikes_{i}"] = (rng.random((n, k, t)) < 0.3).astype(np.int8)
    arrays["state_0_v"] = rng.integers(-9, 9, (2, neurons[0], t))
    arrays.update(extra)
    for k in drop:
        arrays.pop(k)
    np.savez_compressed(path, **arrays)
    return arrays


def test_lava_results_read_back_exactly(tmp_path):
    written = _results(tmp_path / "lava_test.npz")
    got = read_lava_results(tmp_path / "lava_test.npz")
    assert sorted(got) == sorted(written)
    for k in written:
        np.testing.assert_array_equal(got[k], written[k])


def test_lava_results_of_many_layers_read_in_numeric_order(tmp_path):
    """18 layers (a resnet18): spikes_10 sorts after spikes_9, not after spikes_1."""
    written = _results(tmp_path / "lava_test.npz", neurons=tuple(range(2, 20)))
    got = read_lava_results(tmp_path / "lava_test.npz")
    assert all(got[f"spikes_{i}"].shape[1] == i + 2 for i in range(18)) and sorted(got) == sorted(written)


@pytest.mark.parametrize("drop", ["pred", "labels", "steps", "spikes_0"])
def test_lava_results_missing_member_one_line(tmp_path, drop):
    _results(tmp_path / "z.npz", drop=(drop,))
    with pytest.raises(ResultsFileError) as err:
        read_lava_results(tmp_path / "z.npz")
    assert f"key {drop!r} is missing" in one_line(err.value) and "z.npz" in str(err.value)


@pytest.mark.parametrize("extra,needle", [
    ({"pred": np.zeros(4, np.int64)}, "member 'pred' has shape [4]"),
    ({"spikes_1": np.zeros((5, 3, 9), np.int8)}, "member 'spikes_1' has shape [5, 3, 9]"),
    ({"state_0_v": np.zeros((7, 6, 4), np.int64)}, "member 'state_0_v'"),
    ({"state_x_y_z": np.zeros((1, 6, 4), np.int64)}, "not named state_<layer>_<state>"),
    ({"spikes_3": np.zeros((5, 3, 4), np.int8)}, "are not spikes_0 .. spikes_"),
    ({"labels": np.array(["a"] * 5)}, "member 'labels': holds <U1 data"),
    ({"pred": np.array([object()] * 5, dtype=object)}, "member 'pred': holds object data"),
    ({"steps": np.int64(7)}, "member 'steps' = 7"),
])
def test_lava_results_inconsistent_members_one_line(tmp_path, extra, needle):
    _results(tmp_path / "z.npz", **extra)
    with pytest.raises(ResultsFileError) as err:
        read_lava_results(tmp_path / "z.npz")
    assert needle in one_line(err.value), str(err.value)


def test_lava_results_declared_size_bounded_before_decompressing(tmp_path):
    """64 MiB of zeros in a 64 KiB file: refused from the zip directory against the limit, nothing inflated."""
    import tracemalloc
    np.savez_compressed(tmp_path / "z.npz", labels=np.zeros(4, np.int64), pred=np.zeros(4, np.int64),
                        steps=np.int64(16), spikes_0=np.zeros((4, 1_000_000, 16), np.int8))
    assert (tmp_path / "z.npz").stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ResultsFileError) as err:
            read_lava_results(tmp_path / "z.npz", max_bytes=32 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "declare" in one_line(err.value) and "uncompressed" in str(err.value)
    assert peak < 4 << 20, peak
    assert len(read_lava_results(tmp_path / "z.npz")["spikes_0"]) == 4        # within the default (RAM) bound


def test_lava_results_more_neurons_than_a_layer_may_have(tmp_path):
    from ilif_lava.file_limits import current_limits
    big = current_limits().max_neurons_per_layer + 1
    _results(tmp_path / "z.npz", n=1, neurons=(big,), t=1, drop=("state_0_v",))
    with pytest.raises(ResultsFileError, match=r"member 'spikes_0' has shape \[1, %d, 1\]" % big):
        read_lava_results(tmp_path / "z.npz")


@pytest.mark.parametrize("content", [b"", b"not a zip", "fifo"])
def test_lava_results_not_a_zip_or_fifo(tmp_path, content):
    p = tmp_path / "lava_test.npz"
    if content == "fifo":
        os.mkfifo(p)
    else:
        p.write_bytes(content)
    with deadline(10), pytest.raises(ResultsFileError) as err:
        read_lava_results(p)
    assert str(p) in one_line(err.value)


# ----------------------------------------------------------------- item 5: the network's memory before training
EXE = REPO / ".venv" / "bin" / "ilif-lava"


@pytest.mark.parametrize("flags", [["--hidden", "16384", "-T", "10000"],
                                   ["--arch", "resnet18", "--loss", "tet", "--hidden", "16384"]])
def test_train_refuses_a_network_that_cannot_fit_before_allocating(tmp_path, flags):
    """In a child process (an allocation failure or a kill would show): one line naming the flags, exit 2,
    no run folder, well before any allocation of that size could finish."""
    res = subprocess.run([str(EXE), "train", "--dataset", "digits", "--epochs", "1", *flags,
                          "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300, cwd=REPO)
    err = [l for l in res.stderr.splitlines() if l.startswith("ilif-lava")]
    assert res.returncode == 2 and len(err) == 1 and "Traceback" not in res.stderr, res.stderr
    assert "--hidden 16384" in err[0] and "GiB" in err[0] and "lower --hidden, -T or --batch-size" in err[0]
    assert not (tmp_path / "run").exists()


def test_network_count_equals_a_real_forward_pass():
    """The meta-device count (scaled from 2 steps) equals the outputs of a real forward pass at 6 steps."""
    from training.models import build_model
    from training.ram import network_elements
    params, acts = network_elements("cnn", (2, 12, 12), 4, "ILIF", {}, 16, 3, 6)
    model = build_model("cnn", (2, 12, 12), 4, "ILIF", {}, 16)
    total = [0]
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda m, i, o: total.__setitem__(0, total[0] + sum(
        t.numel() for t in (o if isinstance(o, (tuple, list)) else (o,)) if isinstance(t, torch.Tensor))))
        for m in leaves]
    with torch.no_grad():
        model(torch.zeros(3, 2, 12, 12, 6))
    for h in hooks:
        h.remove()
    assert params == sum(p.numel() for p in model.parameters()) and acts == total[0] > 0


# --------------------------------------------------------------- item 6: distributed resume check and SIGTERM
from tests.test_distributed import ARGS as DIST_ARGS, descendants, rank_pid  # noqa: E402

# each rank trains in <base>/node<RANK>: two machines whose run folders are not one shared folder
NODE_DRIVER = ("import os, sys\nfrom pathlib import Path\nfrom pipeline.cli import main\n"
               "sys.exit(main(['train', *sys.argv[2:], '--run-dir', str(Path(sys.argv[1]) / ('node' + "
               "os.environ['RANK']))]))\n")


def _torchrun(argv: list, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             *argv], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, **kw)


def test_ranks_with_different_checkpoints_stop_before_any_other_collective(tmp_path, capsys):
    """Node 0 holds a finished checkpoint, node 1 none: both ranks stop with one line naming the run folder and
    what each found (no deadlock: bounded by the timeout)."""
    base = tmp_path / "runs"
    code, _, err = run_cli(["train", *DIST_ARGS, "--epochs", "1", "--qat-epochs", "0", "--limit-train", "64",
                            "--run-dir", str(base / "node0")], capsys)
    assert code == 0, err
    (tmp_path / "driver.py").write_text(NODE_DRIVER)
    job = _torchrun([str(tmp_path / "driver.py"), str(base), *DIST_ARGS, "--epochs", "1", "--qat-epochs", "0",
                     "--limit-train", "64"])
    try:
        out, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert job.returncode != 0, out
    lines = [l for l in out.splitlines() if "would resume from different checkpoints" in l]
    assert lines, out
    assert "rank 0: epoch 1 (sha256 " in lines[0] and "rank 1: no checkpoint.pt" in lines[0]
    assert str(base / "node") in lines[0]
    assert not (base / "node1" / "train").exists() or not (base / "node1" / "train" / "model.pt").exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _running_job(tmp_path) -> tuple:
    """A 2-rank torchrun job in its training loop (rank 0 printed an epoch); returns (job, rank pids)."""
    job = _torchrun(["-m", "pipeline.cli", "train", *DIST_ARGS, "--epochs", "500", "--qat-epochs", "0",
                     "--limit-train", "64", "--limit-test", "32", "--run-dir", str(tmp_path / "run")])
    ranks: list = []
    with deadline(300):
        for line in job.stdout:
            if line.startswith("epoch 1/500"):
                break
        ranks = [rank_pid(job.pid, r) for r in (0, 1)]
    assert all(ranks), ranks
    return job, ranks


@pytest.mark.parametrize("how", ["sigterm_to_torchrun", "sigkill_torchrun", "sigterm_to_rank_1"])
def test_ranks_stop_with_the_job(tmp_path, how):
    job, ranks = _running_job(tmp_path)
    everyone = [job.pid, *descendants(job.pid)]
    try:
        if how == "sigterm_to_torchrun":
            os.kill(job.pid, signal.SIGTERM)
        elif how == "sigkill_torchrun":
            os.kill(job.pid, signal.SIGKILL)           # the agent cannot forward anything: the kernel must
        else:
            os.kill(ranks[1], signal.SIGTERM)          # rank 0 waits in a collective for rank 1
        import time
        end = time.time() + 90
        while any(_alive(p) for p in ranks) and time.time() < end:
            time.sleep(0.2)
        assert not any(_alive(p) for p in ranks), f"ranks still running 90 s after {how}"
    finally:
        for pid in everyone:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        job.stdout.close()
        job.wait(timeout=60)


# ------------------------------------------------------------------------------ item 3: damaged .aedat4 files
from tests.test_dvs import T0_US, expected_split, write_aedat4, write_cifar10dvs  # noqa: E402


def _first_cifar10dvs_train_file(written) -> Path:
    return Path(expected_split(written, "train")[0])


@pytest.mark.parametrize("damage", ["truncated", "event_less", "outside_sensor"])
def test_cifar10dvs_damaged_recording(tmp_path, damage):
    """A truncated recording is one line naming it; one without events bins to silence (handled: a sample with
    no spikes); events outside the 128 x 128 sensor are one line naming it."""
    root, cache = tmp_path / "data", tmp_path / "cache"
    written = write_cifar10dvs(root)
    p = _first_cifar10dvs_train_file(written)
    if damage == "truncated":
        p.write_bytes(p.read_bytes()[:-40])
    elif damage == "event_less":
        write_aedat4(p, np.zeros((0, 4), dtype=np.int64), packets=1)
    else:
        write_aedat4(p, np.array([[3, 5, 1, T0_US], [200, 5, 1, T0_US + 9]], dtype=np.int64), width=256)
    with pytest.warns(UserWarning, match="CIFAR10-DVS has 10000"):
        if damage == "event_less":
            ds = load_split("cifar10dvs", "train", time_bins=T, data_dir=root, cache_dir=cache)
            assert float(ds.tensors()[0][0].sum()) == 0.0
            return
        with pytest.raises(DatasetFileError) as err:
            load_split("cifar10dvs", "train", time_bins=T, data_dir=root, cache_dir=cache)
    assert str(p) in one_line(err.value)
