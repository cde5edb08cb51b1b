"""CIFAR-10/100 (training/cifar.py via training/datasets.py) on tiny folders written in the official pickle format."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import run_cli
from training.cifar import FORMATS, CifarFileError, random_crop_flip, read_batch
from training.datasets import DatasetNotFoundError, load_split


def write_cifar(root: Path, name: str, per_batch: int, seed: int = 0) -> dict:
    """Write ``name``'s batch files as the official archives hold them (protocol-2 pickled dicts, bytes keys)."""
    fmt = FORMATS[name]
    folder = root / fmt.folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    for f in (*fmt.train, *fmt.test):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, fmt.num_classes, size=per_batch)]
        batch = {b"batch_label": f.encode(), b"data": data, fmt.label_key.encode(): labels,
                 b"filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        (folder / f).write_bytes(pickle.dumps(batch, protocol=2))
        written[f] = (data, labels)
    return written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_offline_split_shape_values_labels(tmp_path, name):
    written = write_cifar(tmp_path, name, per_batch=6)
    fmt = FORMATS[name]
    T = 3
    tr = load_split(name, "train", time_bins=T, data_dir=tmp_path, cache_dir=tmp_path / "cache")
    te = load_split(name, "test", time_bins=T, data_dir=tmp_path / fmt.folder, limit=4)
    assert len(tr) == 6 * len(fmt.train) and len(te) == 4
    x, y = tr.tensors()
    assert x.shape == (len(tr), 3, 32, 32, T) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) < fmt.num_classes
    # direct encoding: the same normalised image at every step, decoded independently from the raw bytes
    raw = np.concatenate([written[f][0] for f in fmt.train]).reshape(-1, 3, 32, 32) / 255.0
    expect = (raw - np.array(fmt.mean)[None, :, None, None]) / np.array(fmt.std)[None, :, None, None]
    for t in range(T):
        np.testing.assert_allclose(x[..., t].numpy(), expect, rtol=1e-5, atol=1e-5)
    assert y.tolist() == [v for f in fmt.train for v in written[f][1]]
    # a limit keeps a class-balanced prefix: round-robin over classes (rank within class in file order, then label)
    full = written[fmt.test[0]][1]
    rank = [full[:i].count(v) for i, v in enumerate(full)]
    keyed = sorted((rank[i], v, i) for i, v in enumerate(full))
    assert te.labels.tolist() == [full[i] for _, _, i in keyed[:4]]
    assert np.array_equal(te.images.numpy(), np.stack([written[fmt.test[0]][0][i].reshape(3, 32, 32)
                                                       for _, _, i in keyed[:4]]))


def test_limit_of_a_class_sorted_test_file_is_class_balanced(tmp_path):
    """A class-sorted test batch (as the shared subset's): --limit-test 20 gives two of each of the 10 classes."""
    written = write_cifar(tmp_path, "cifar10", per_batch=30)
    folder = tmp_path / "cifar-10-batches-py"
    labels = [c for c in range(10) for _ in range(3)]
    data = written["test_batch"][0]
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
    te = load_split("cifar10", "test", time_bins=1, data_dir=tmp_path, limit=20)
    assert np.bincount(te.labels.numpy(), minlength=10).tolist() == [2] * 10
    assert te.labels.tolist()[:10] == list(range(10))
    assert np.array_equal(te.images[0].numpy().reshape(-1), data[0]) and np.array_equal(
        te.images[1].numpy().reshape(-1), data[3])


def test_augment_changes_train_images_only(tmp_path):
    write_cifar(tmp_path, "cifar10", per_batch=4)
    plain = load_split("cifar10", "train", time_bins=2, data_dir=tmp_path)
    torch.manual_seed(0)
    aug = load_split("cifar10", "train", time_bins=2, data_dir=tmp_path, augment=True)
    xa, xp = aug.tensors()[0], plain.tensors()[0]
    assert xa.shape == xp.shape and not torch.equal(xa, xp)
    assert not load_split("cifar10", "test", time_bins=2, data_dir=tmp_path, augment=True).augment


def test_random_crop_flip_is_a_shifted_window():
    img = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    torch.manual_seed(3)
    out = random_crop_flip(img, padding=2)
    for k in range(2):
        padded = torch.nn.functional.pad(img[k], (2, 2, 2, 2))
        windows = [padded[:, a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
        assert any(torch.equal(out[k], w) or torch.equal(out[k], w.flip(-1)) for w in windows)


def test_batch_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "data_batch_1"
    bad.write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}, protocol=2))
    with pytest.raises(CifarFileError, match="not allowed"):
        read_batch(bad, "labels", 10)


def test_missing_folder_one_line_names_folder_and_flags(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_split("cifar100", "train", time_bins=2, data_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "nowhere" / "cifar-100-python") in msg
    assert "--data-dir" in msg and "--download" in msg


def test_cli_download_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    """A real download attempt through a proxy that refuses connections (no network): one line, exit 2."""
    for var in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    code, out, err = run_cli(["train", "--dataset", "cifar10", "--download", "--data-dir", str(tmp_path / "dl"),
                              "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--device", "cpu"], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("ilif-lava")]   # (torch's CUDA notice aside)
    assert code == 2, err
    assert len(lines) == 1 and "--download failed" in lines[0] and "--data-dir" in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_cli_trains_on_tiny_cifar(tmp_path, capsys):
    write_cifar(tmp_path, "cifar10", per_batch=4)
    code, out, err = run_cli(["train", "--dataset", "cifar10", "--data-dir", str(tmp_path), "--arch", "resnet18",
                              "--hidden", "8", "-T", "2", "--epochs", "1", "--qat-epochs", "0", "--batch-size", "8",
                              "--limit-train", "8", "--limit-test", "4", "--augment", "--run-dir",
                              str(tmp_path / "run"), "--device", "cpu"], capsys)
    assert code == 0, err
    assert (tmp_path / "run" / "train" / "model.pt").is_file()


# --- the opcode-level reader: what real files hold is read exactly, everything else is one line, nothing crashes ---

def _s(b: bytes) -> bytes:
    """SHORT_BINSTRING (a Python 2 str, as the official archives pickle their keys and names)."""
    return b"U" + bytes([len(b)]) + b


def _i(v: int) -> bytes:
    return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + int(v).to_bytes(4, "little", signed=True)


def _g(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _uint8_array(shape, data: bytes, dtype_state: bytes = None, data_op: bytes = None) -> bytes:
    """numpy's protocol-2 pickle of a uint8 array, opcode by opcode (as Python 2's cPickle wrote CIFAR)."""
    dtype_state = dtype_state if dtype_state is not None else b"(" + _i(3) + _s(b"|") + b"NNN" + _i(-1) + _i(-1) + _i(0) + b"t"
    data_op = data_op if data_op is not None else b"T" + len(data).to_bytes(4, "little") + data
    dims = b"(" + b"".join(_i(d) for d in shape) + b"t"
    return (_g("numpy.core.multiarray", "_reconstruct") + _g("numpy", "ndarray") + _i(0) + b"\x85" + _s(b"b")
            + b"\x87R" + b"(" + _i(1) + dims + _g("numpy", "dtype") + _s(b"u1") + b"\x89\x88\x87R" + dtype_state + b"b"
            + b"\x89" + data_op + b"tb")


def _py2_batch(array_ops: bytes, labels) -> bytes:
    lab = b"](" + b"".join(_i(v) for v in labels) + b"e" if labels else b"]"
    return (b"\x80\x02}(" + _s(b"batch_label") + _s(b"training batch 1 of 5") + _s(b"data") + array_ops
            + _s(b"labels") + lab + _s(b"filenames") + b"](" + _s(b"a.png") + b"e" + b"u.")


def test_python2_archive_layout_reads_exactly(tmp_path):
    """The official archives' opcodes (Python 2 strs for keys and pixel bytes, BININT labels)."""
    rng = np.random.default_rng(1)
    pix = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    f = tmp_path / "data_batch_1"
    f.write_bytes(_py2_batch(_uint8_array((3, 3072), pix.tobytes()), [7, 0, 9]))
    x, y = read_batch(f, "labels", 10)
    assert np.array_equal(x, pix.reshape(3, 3, 32, 32)) and y.tolist() == [7, 0, 9]


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_python3_protocols_read_exactly(tmp_path, protocol):
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, size=(5, 3072), dtype=np.uint8)
    f = tmp_path / "test_batch"
    f.write_bytes(pickle.dumps({"data": data, "labels": [1, 2, 3, 4, 5], "filenames": ["x"] * 5}, protocol=protocol))
    x, y = read_batch(f, "labels", 10)
    assert np.array_equal(x.reshape(5, -1), data) and y.tolist() == [1, 2, 3, 4, 5]


def _read_in_child(path: Path) -> "subprocess.CompletedProcess":
    """read_batch in a fresh interpreter, so a memory corruption shows as a signal, not as a broken test run."""
    import subprocess
    import sys
    code = ("import sys\nfrom training.cifar import read_batch, CifarFileError\n"
            "try:\n    read_batch(sys.argv[1], 'labels', 10)\n    print('READ')\n"
            "except CifarFileError as e:\n    print('REFUSED', e)\n"
            "import gc; gc.collect()\n")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])


def test_dtype_build_with_object_flags_cannot_corrupt_memory(tmp_path):
    """A BUILD that makes the uint8 dtype an 8-byte item with the 'holds objects' flags, and 8 pixel bytes that
    would become a pointer: refused in one line, and the interpreter exits normally (no SIGSEGV)."""
    evil_state = b"(" + _i(3) + _s(b"|") + b"NNN" + _i(8) + _i(8) + _i(63) + b"t"
    f = tmp_path / "data_batch_1"
    f.write_bytes(_py2_batch(_uint8_array((1,), b"\x41" * 8, dtype_state=evil_state), [0]))
    assert len(f.read_bytes()) < 400
    res = _read_in_child(f)
    assert res.returncode == 0, (res.returncode, res.stderr[-500:])
    assert res.stdout.startswith("REFUSED") and "dtype state" in res.stdout and str(f) in res.stdout
    assert len(res.stdout.strip().splitlines()) == 1


@pytest.mark.parametrize("case,data_op,match", [
    ("no pixel bytes", b"T\x00\x00\x00\x00", "needs 30720000 bytes, the file brings 0"),
    ("pixels as a list", b"](" + _i(1) * 8 + b"e", "not raw bytes"),
])
def test_array_state_must_bring_its_counted_bytes(tmp_path, case, data_op, match):
    f = tmp_path / "data_batch_1"
    f.write_bytes(_py2_batch(_uint8_array((10000, 3072), b"", data_op=data_op), [0]))
    with pytest.raises(CifarFileError, match=match) as err:
        read_batch(f, "labels", 10, max_images=10_000)
    assert str(f) in str(err.value) and "\n" not in str(err.value)


def test_other_dtypes_and_protocol5_buffers_are_refused(tmp_path):
    f = tmp_path / "b"
    f.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.float32), "labels": [0, 1]}, protocol=2))
    with pytest.raises(CifarFileError, match="only the uint8 dtype"):
        read_batch(f, "labels", 10)
    f.write_bytes(pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0, 1]}, protocol=5))
    with pytest.raises(CifarFileError, match="not allowed"):
        read_batch(f, "labels", 10)


def test_encoded_bytes_budget_bounds_memory(tmp_path):
    """One 3 KiB str re-encoded through the memo 2,000 times would make 6 MiB from a 40 KiB file: refused."""
    body = (b"\x80\x02]q\x00(" + _g("_codecs", "encode") + b"q\x01" + b"X" + (3072).to_bytes(4, "little")
            + b"a" * 3072 + b"q\x02" + b"X\x06\x00\x00\x00latin1" + b"q\x03\x86R" + b"h\x01h\x02h\x03\x86R" * 2000 + b"e.")
    f = tmp_path / "b"
    f.write_bytes(body)
    with pytest.raises(CifarFileError, match="more encoded bytes than the file holds"):
        read_batch(f, "labels", 10)


def test_fifo_empty_and_oversized_files_refused_before_reading(tmp_path):
    fifo = tmp_path / "data_batch_1"
    os.mkfifo(fifo)
    with pytest.raises(CifarFileError, match="is a FIFO"):
        read_batch(fifo, "labels", 10)           # returns at once: a FIFO is never opened for a blocking read
    empty = tmp_path / "test_batch"
    empty.write_bytes(b"")
    with pytest.raises(CifarFileError, match="is empty"):
        read_batch(empty, "labels", 10)
    big = tmp_path / "data_batch_2"
    with open(big, "wb") as fh:
        fh.truncate(2 * 1024 * 1024)             # sparse: 2 MiB for a 10-image limit of 1.06 MiB
    with pytest.raises(CifarFileError, match="more than the"):
        read_batch(big, "labels", 10, max_images=10)


def test_mutated_batches_never_crash(tmp_path):
    """600 single-byte mutations of a valid protocol-2 batch, each read in one child: every one is read or refused
    with a CifarFileError; the child never dies of a signal or an unexpected exception."""
    import subprocess
    import sys
    good = pickle.dumps({b"data": np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072),
                         b"labels": [3, 4], b"filenames": [b"a", b"b"]}, protocol=2)
    (tmp_path / "good").write_bytes(good)
    code = (
        "import sys, numpy as np\nfrom pathlib import Path\nfrom training.cifar_pickle import parse_batch, CifarFileError\n"
        "raw = Path(sys.argv[1]).read_bytes(); rng = np.random.default_rng(0); counts = [0, 0]\n"
        "head = [i for i in range(len(raw)) if i < 400 or i > len(raw) - 200]\n"
        "for k in range(600):\n"
        "    b = bytearray(raw); i = head[int(rng.integers(len(head)))]; b[i] = int(rng.integers(256))\n"
        "    try:\n        parse_batch(bytes(b), 10); counts[0] += 1\n"
        "    except CifarFileError:\n        counts[1] += 1\n"
        "import gc; gc.collect(); print(counts[0], counts[1])\n")
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "good")], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, (res.returncode, res.stderr[-800:])
    read, refused = map(int, res.stdout.split())
    assert read + refused == 600 and refused > 100


def test_real_subset_reads(tmp_path):
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10_subset"
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"real CIFAR-10 subset not found at {root}")
    x, y = read_batch(root / "cifar-10-batches-py" / "test_batch", "labels", 10)
    assert x.shape == (1000, 3, 32, 32) and np.bincount(y).tolist() == [100] * 10   # its README: 100 per class
    assert 0.3 < x.mean() / 255 < 0.65 and x.std() > 30                             # natural images, not noise/zeros
