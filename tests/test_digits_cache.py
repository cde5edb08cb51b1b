"""The ``digits`` dataset without importing scikit-learn (training/data_digits.py): the table read from
scikit-learn's installed file equals ``load_digits()``, the split equals ``train_test_split`` computed then and read
back from the cache later (in a fresh interpreter that imports no scikit-learn), and a bad cache entry is ignored
and replaced."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from training import data_digits
from training.data_common import Request

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def _sklearn_reference():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    labels = np.asarray(d.target, dtype=np.int64)
    train, test = train_test_split(np.arange(len(labels)), test_size=0.2, random_state=0, stratify=labels)
    return np.rint(d.images).astype(np.int64), labels, train, test


def _ours(cache: Path):
    raw = data_digits.table_file().read_bytes()   # the installed scikit-learn's own file
    images, labels = data_digits.parse_table(raw)
    return (images, labels) + data_digits.split(labels, raw, cache)


def _request(split: str, limit, cache: Path) -> Request:
    return Request(name="digits", split=split, time_bins=8, data_dir=None, download=False, limit=limit, cache=cache)


def _entries(cache: Path):
    return sorted((cache / "digits").glob("split-*.npz"))


def test_table_and_split_equal_scikit_learn_and_the_split_is_cached(cache):
    ref = _sklearn_reference()
    assert not _entries(cache)
    first = _ours(cache)
    assert len(_entries(cache)) == 1
    second = _ours(cache)                                   # read back from the cache
    for want, got1, got2 in zip(ref, first, second):
        assert np.array_equal(want, got1) and np.array_equal(want, got2)
    assert (len(first[2]), len(first[3])) == (1437, 360)


def test_a_cached_split_is_read_in_a_fresh_interpreter_without_scikit_learn(cache):
    ref = _sklearn_reference()
    data_digits.load(_request("train", 5, cache))  # fills the cache
    code = ("import json, sys\n"
            "from training import data_digits\n"
            "from pathlib import Path\n"
            "from training.data_common import Request\n"
            f"ds = data_digits.load(Request('digits', 'test', 8, None, False, None, Path({str(cache)!r})))\n"
            "print(json.dumps({'sklearn': 'sklearn' in sys.modules, 'labels': ds.labels.tolist()}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["sklearn"] is False
    assert out["labels"] == ref[1][ref[3]].tolist()


@pytest.mark.parametrize("bad", ["not a zip", "wrong keys", "not a permutation", "wrong dtype", "symlink",
                                 "huge member", "huge header"])
def test_a_bad_cache_entry_is_ignored_and_replaced(cache, tmp_path, bad):
    ref = _sklearn_reference()
    _ours(cache)
    (entry,) = _entries(cache)
    n = len(ref[1])
    if bad == "not a zip":
        entry.write_bytes(b"garbage")
    elif bad == "wrong keys":
        np.savez(entry.open("wb"), a=np.arange(n))
    elif bad == "not a permutation":
        np.savez(entry.open("wb"), train=np.zeros(n - 360, np.int64), test=np.zeros(360, np.int64))
    elif bad == "wrong dtype":
        np.savez(entry.open("wb"), train=ref[2].astype(np.float64), test=ref[3].astype(np.float64))
    elif bad == "huge member":      # 4 MiB of zeros: compresses below the file limit, unpacks above it
        np.savez_compressed(entry.open("wb"), train=np.zeros(1 << 19, np.int64), test=ref[3])
    elif bad == "huge header":      # a .npy header claiming 2**40 int64 values, with 8 bytes of data
        import io
        import zipfile
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<i8", "fortran_order": False, "shape": (1 << 40,)})
        with zipfile.ZipFile(entry, "w") as zf:
            zf.writestr("train.npy", buf.getvalue() + bytes(8))
            zf.writestr("test.npy", buf.getvalue() + bytes(8))
    else:
        outside = tmp_path / "elsewhere.npz"
        np.savez(outside.open("wb"), train=ref[3], test=ref[2])   # a valid-looking split, swapped
        entry.unlink()
        entry.symlink_to(outside)
    got = _ours(cache)
    assert np.array_equal(got[2], ref[2]) and np.array_equal(got[3], ref[3])
    assert not entry.is_symlink()
    with np.load(entry, allow_pickle=False) as npz:              # replaced by a valid entry
        assert np.array_equal(npz["train"], ref[2]) and np.array_equal(npz["test"], ref[3])


def test_an_unwritable_cache_only_costs_the_import(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder would be")
    ref = _sklearn_reference()
    got = _ours(blocker)
    assert np.array_equal(got[2], ref[2]) and np.array_equal(got[3], ref[3])


def test_a_damaged_table_is_one_line_naming_what_is_wrong():
    import gzip
    with pytest.raises(ValueError, match="columns"):
        data_digits.parse_table(gzip.compress(b"1,2,3\n"))
    with pytest.raises(ValueError, match="labels outside"):
        data_digits.parse_table(gzip.compress((",".join(["0"] * 64) + ",11\n").encode()))
