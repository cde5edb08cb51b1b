"""Shared helpers for the benchmarks: machine description, timing, inputs, result files, progress output.

Every figure the benchmarks report is measured in the same run as the figure it is compared with; no stored
baseline numbers are used anywhere.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results"

NMNIST_SHAPE = (2, 34, 34)   # N-MNIST: 2 polarities x 34 x 34
NUM_CLASSES = 10
MLP_HIDDEN = 128
MLP_BATCH = 16
CNN_BATCH = 8
INPUT_DENSITY = 0.05         # random Bernoulli spike inputs (not real N-MNIST samples)

_T0 = time.perf_counter()


def log(msg: str) -> None:
    """Progress line with the elapsed wall time since the benchmarks started."""
    print(f"[{time.perf_counter() - _T0:7.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(pkg: str) -> Optional[str]:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> Optional[str]:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_modified() -> Optional[List[str]]:
    """Tracked files with uncommitted changes (the code measured may differ from ``git_commit``)."""
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
        return [ln[3:] for ln in out.stdout.splitlines() if ln.strip()]
    except (OSError, subprocess.SubprocessError):
        return None


def setup_process(threads: int) -> None:
    """Process settings every benchmark entry point applies first: ``threads`` torch intra-op threads (0 keeps
    torch's default) and, as the ``ilif-lava`` commands do, freed host memory kept for reuse
    (:mod:`ilif_lava.host_memory`; ``ILIF_LAVA_KEEP_FREED_MEMORY=0`` measures with glibc's defaults)."""
    import torch
    from ilif_lava import host_memory
    if threads > 0:
        torch.set_num_threads(threads)
    host_memory.apply_from_env()


def machine_info() -> Dict[str, Any]:
    import torch
    from ilif_lava import host_memory
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (non-Linux)
        affinity = os.cpu_count()
    info: Dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "lava_dl": _version("lava-dl"),
        "lava_nc": _version("lava-nc"),
        "numpy": _version("numpy"),
        "git_commit": _git_commit(),
        "git_modified_files": _git_modified(),
        "keep_freed_memory": host_memory.applied(),  # glibc keeps freed memory (ilif_lava/host_memory.py)
    }
    return info


# ---------------------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------------------
def sync(device) -> None:
    import torch
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device="cpu") -> float:
    """Wall time of one call of ``fn`` in seconds (CUDA synchronised before and after)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def interleaved_medians(fns: Dict[str, Callable[[], Any]], warmup: int, repeats: int, device="cpu",
                        budget_s: Optional[float] = None, min_repeats: int = 3) -> Dict[str, Dict[str, Any]]:
    """Time several callables round-robin (so slow drifts of a shared machine hit all of them alike).

    With ``budget_s``, ``repeats`` is lowered (not below ``min_repeats``) so that the timed rounds take about
    ``budget_s`` going by the last warm-up round. Returns per name: median, min, max and all samples (seconds).
    """
    round_s = 0.0
    for _ in range(warmup):
        t0 = time.perf_counter()
        for fn in fns.values():
            fn()
        sync(device)
        round_s = time.perf_counter() - t0
    if budget_s is not None and round_s > 0:
        repeats = max(min_repeats, min(repeats, int(budget_s // round_s)))
    samples: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            samples[k].append(timed(fn, device))
    return {k: summarise(v) for k, v in samples.items()}


def summarise(samples: Sequence[float]) -> Dict[str, Any]:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
            "samples_s": [round(s, 6) for s in samples]}


def ratio(a: float, b: float) -> Optional[float]:
    return None if not b else a / b


# ---------------------------------------------------------------------------------------------------------
# inputs and models
# ---------------------------------------------------------------------------------------------------------
def spike_input(batch: int, in_shape: Sequence[int], steps: int, density: float = INPUT_DENSITY,
                seed: int = 0, device="cpu"):
    """Random Bernoulli spikes [N, C, H, W, T] (float 0/1), reproducible from ``seed``."""
    import torch
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, *in_shape, steps, generator=g) < density).float()
    return x.to(device)


_CNN_SHAPE_CACHE: Dict[str, Any] = {}


def cnn_in_shape() -> Dict[str, Any]:
    """Input shape for the small conv net: N-MNIST (2, 34, 34) if ``build_model('cnn', ...)`` accepts it,
    else (2, 32, 32) (the builder assumes H, W divisible by 4, while slayer's pool rounds odd sizes up).
    Returns ``{'shape': (C, H, W), 'note': str or None}``.
    """
    if _CNN_SHAPE_CACHE:
        return _CNN_SHAPE_CACHE
    from training.models import build_model
    try:
        build_model("cnn", NMNIST_SHAPE, NUM_CLASSES, "ILIF", hidden=MLP_HIDDEN)
        _CNN_SHAPE_CACHE.update(shape=NMNIST_SHAPE, note=None)
    except Exception as exc:  # noqa: BLE001 - record why and fall back
        msg = str(exc).splitlines()[0][:200]
        _CNN_SHAPE_CACHE.update(shape=(2, 32, 32),
                                note=f"build_model('cnn', (2, 34, 34)) failed ({type(exc).__name__}: {msg}); "
                                     f"the conv net is benchmarked on (2, 32, 32) inputs instead")
    return _CNN_SHAPE_CACHE


def configs() -> List[Dict[str, Any]]:
    """The two network sizes of the training benchmarks."""
    cnn = cnn_in_shape()
    return [
        {"name": "mlp", "arch": "mlp", "in_shape": tuple(NMNIST_SHAPE), "batch": MLP_BATCH, "hidden": MLP_HIDDEN,
         "note": None},
        {"name": "cnn", "arch": "cnn", "in_shape": tuple(cnn["shape"]), "batch": CNN_BATCH, "hidden": MLP_HIDDEN,
         "note": cnn["note"]},
    ]


# ---------------------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------------------
def write_json(out_dir: Path, name: str, payload: Dict[str, Any]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable))
    tmp.replace(path)
    return path


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def round_robin(fns: Dict[str, Callable[[], Any]], warmup: int, repeats: int, budget_s: Optional[float] = None,
                min_repeats: int = 3) -> Dict[str, Dict[str, Any]]:
    """Call every function once per round, ``warmup`` untimed rounds then ``repeats`` timed ones (fewer, not below
    ``min_repeats``, when the last warm-up round says they would exceed ``budget_s``). Returns per name
    ``{'wall': ..., 'cpu': ...}``, each :func:`benchmarks.common.summarise` of seconds (median, min, max,
    samples); ``cpu`` is the calling thread's CPU time."""
    round_s = 0.0
    for _ in range(max(1, warmup)):
        t0 = time.perf_counter()
        for fn in fns.values():
            fn()
        round_s = time.perf_counter() - t0
    if budget_s is not None and round_s > 0:
        repeats = max(min_repeats, min(repeats, int(budget_s // round_s)))
    wall: Dict[str, List[float]] = {k: [] for k in fns}
    cpu: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            fn()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.thread_time() - c0)
    return {k: {"wall": summarise(wall[k]), "cpu": summarise(cpu[k])} for k in fns}
