"""Which data an evaluation (``simulate`` / ``compare``) runs on, and where its results go.

A trained run is evaluated by default on the test split its ``train/config.json`` names. ``--dataset``,
``--data-dir``, ``-T`` and ``--limit`` choose other data; the results then go to their own folder
``<run>/eval-<dataset>-<folder>-T<T>/`` (or ``--out``) so the run's own results are never overwritten. A bare netx
file (no run folder) is evaluated with ``--net FILE --dataset NAME``; its results go to ``--out`` (default
``runs/eval-<file>-<dataset>-T<T>/``).

Every evaluation records an :class:`EvalData` (``data.json`` and inside ``lava_test.npz``): dataset, folder,
split, sample count, time bins and a SHA-256 of the input spikes and labels, so ``compare`` can prove it runs on
exactly the samples ``simulate`` ran. Light to import (no torch): the command line checks stage order with it.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

LAVA_RESULTS = "lava_test.npz"
DATA_RECORD = "data.json"
DEFAULT_LOOKUP = "default lookup ($ILIF_LAVA_DATA, then ../shared/data)"


@dataclass(frozen=True)
class EvalData:
    """The data of one evaluation. ``samples`` and ``sha256`` are filled once the data are loaded."""

    dataset: str
    data_dir: Optional[str]          # absolute folder, or None for the dataset's default lookup
    time_bins: int
    limit: Optional[int] = None
    split: str = "test"
    samples: Optional[int] = None
    sha256: Optional[str] = None

    def describe(self) -> str:
        """One line for reports: 'nmnist test split from /data/x (100 samples, T = 24)'."""
        where = self.data_dir or ("scikit-learn's bundled copy" if self.dataset == "digits" else DEFAULT_LOOKUP)
        n = "" if self.samples is None else f"{self.samples} samples, "
        return f"{self.dataset} {self.split} split from {where} ({n}T = {self.time_bins})"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: str = "data record") -> "EvalData":
        try:
            return cls(**{k: d[k] for k in ("dataset", "data_dir", "time_bins", "limit", "split", "samples",
                                            "sha256") if k in d})
        except TypeError as exc:
            raise ValueError(f"{source}: not an evaluation data record ({exc})") from None

    def same_samples(self, other: "EvalData") -> bool:
        return (self.dataset, self.split, self.time_bins, self.samples, self.sha256) == \
            (other.dataset, other.split, other.time_bins, other.samples, other.sha256)


def _abs(folder: Optional[str]) -> Optional[str]:
    return None if folder is None else str(Path(folder).expanduser().absolute())


def requested(config: Optional[Dict[str, Any]], dataset: Optional[str] = None, data_dir: Optional[str] = None,
              time_bins: Optional[int] = None, limit: Optional[int] = None) -> EvalData:
    """The data asked for: the run's ``config`` (a config.json dict, or None for a bare network file) with the
    command line's overrides. A bare file needs ``dataset``; its time bins default to the dataset's recipe."""
    if config is None:
        if dataset is None:
            raise ValueError("--dataset is required to evaluate a network file without a run folder")
        if time_bins is None:
            from pipeline.recipes import recipe
            time_bins = int(recipe(dataset)["time_bins"])
        return EvalData(dataset, _abs(data_dir), int(time_bins), limit)
    ds = dataset or config["dataset"]
    same_ds = ds == config["dataset"]
    folder = data_dir if data_dir is not None else (config.get("data_dir") if same_ds else None)
    t = int(time_bins if time_bins is not None else config["time_bins"])
    lim = limit if limit is not None else (config.get("limit_test") if same_ds and data_dir is None else None)
    return EvalData(ds, _abs(folder), t, lim)


def is_default(config: Optional[Dict[str, Any]], dataset: Optional[str], data_dir: Optional[str],
               time_bins: Optional[int]) -> bool:
    """True when a trained run is evaluated on the data it was trained for (results in the run folder itself)."""
    if config is None:
        return False
    return ((dataset is None or dataset == config.get("dataset"))
            and (data_dir is None or _abs(data_dir) == _abs(config.get("data_dir")))
            and (time_bins is None or int(time_bins) == int(config.get("time_bins", -1))))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:60] or "data"


def output_dir(run_dir: Optional[Path], net: Optional[Path], data: EvalData, default: bool,
               out: Optional[Path] = None) -> Path:
    """Where the evaluation's ``lava_test.npz``, ``data.json`` and ``report/`` go (see the module docstring)."""
    if out is not None:
        return Path(out)
    if run_dir is not None and default:
        return Path(run_dir)
    folder = _slug(Path(data.data_dir).name) if data.data_dir else "default"
    name = f"eval-{data.dataset}-{folder}-T{data.time_bins}"
    if run_dir is not None:
        return Path(run_dir) / name
    return Path("runs") / f"eval-{_slug(Path(net).stem) if net else 'net'}-{data.dataset}-T{data.time_bins}"


def fingerprint(x: Any, y: Any) -> str:
    """SHA-256 of the inputs and the labels (int64), shapes included: which samples were used.

    Spike or event-count input (integers in [0, 255]) is hashed as uint8; any other input (direct-encoded analog
    images) as float32 with its dtype in the header, so two different images never share a fingerprint."""
    import numpy as np
    h = hashlib.sha256()
    xa = np.asarray(x)
    counts = xa.size == 0 or (np.isfinite(xa).all() and np.array_equal(xa, np.rint(xa))
                              and xa.min() >= 0 and xa.max() <= 255)
    xa = np.ascontiguousarray(xa.astype(np.uint8 if counts else np.float32))
    ya = np.ascontiguousarray(np.asarray(y).astype(np.int64))
    header = [list(xa.shape), list(ya.shape)] + ([] if counts else ["float32"])
    h.update(json.dumps(header).encode())
    h.update(xa.tobytes())
    h.update(ya.tobytes())
    return h.hexdigest()


def read_record(folder: Path) -> Optional[EvalData]:
    """The :class:`EvalData` of a finished ``simulate`` in ``folder`` (None when there is none)."""
    path = Path(folder) / DATA_RECORD
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return EvalData.from_dict(raw, str(path))
