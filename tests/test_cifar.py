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
    assert te.labels.tolist() == written[fmt.test[0]][1][:4]


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
