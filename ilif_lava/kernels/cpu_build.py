"""Build and load the compiled CPU kernel (``ilif_cpu.cpp``) as a PyTorch C++ extension.

Built once, by ``scripts/setup_env.sh`` (``python -m ilif_lava.kernels.cpu_build``) or on first use with a one-line
message, into a cache folder keyed by the CPU's instruction-set flags (the build uses ``-march=native``):
``$ILIF_LAVA_KERNEL_CACHE`` if set, else ``<venv>/ilif-lava-kernels`` when writable, else
``~/.cache/ilif-lava/kernels``. Any failure (no compiler, no ninja, a compile error) is reported in one line and
the caller falls back to the torch path.
"""
from __future__ import annotations

import hashlib
import os
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Optional

SOURCE = Path(__file__).with_name("ilif_cpu.cpp")
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]

_lock = threading.Lock()
_state: dict = {"module": None, "error": None, "tried": False}


def _cpu_key() -> str:
    """Short hash of the CPU flags and compiler options, so a cache built for another CPU is never loaded."""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = line
                break
    except OSError:
        pass
    import torch
    text = "|".join([flags, os.uname().machine, torch.__version__, sys.version.split()[0], " ".join(CFLAGS)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_dir() -> Path:
    """Folder holding the compiled extension for this machine."""
    env = os.environ.get("ILIF_LAVA_KERNEL_CACHE")
    if env:
        base = Path(env)
    elif sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK):
        base = Path(sys.prefix) / "ilif-lava-kernels"
    else:
        base = Path.home() / ".cache" / "ilif-lava" / "kernels"
    return base / _cpu_key()


def _built(path: Path) -> bool:
    return any(path.glob("ilif_cpu_ext*.so"))


def load(quiet: bool = False) -> Optional[ModuleType]:
    """The compiled module, building it on first use; None (with a one-line notice) when it cannot be built."""
    with _lock:
        if _state["tried"]:
            return _state["module"]
        _state["tried"] = True
        build_dir = cache_dir()
        try:
            build_dir.mkdir(parents=True, exist_ok=True)
            if not _built(build_dir) and not quiet:
                print(f"[ilif-lava] compiling the fused ILIF CPU kernel once (about a minute) into {build_dir}",
                      file=sys.stderr, flush=True)
            from torch.utils import cpp_extension     # its CUDA notice is filtered by ilif_lava.compat
            _state["module"] = cpp_extension.load(name="ilif_cpu_ext", sources=[str(SOURCE)],
                                                  extra_cflags=CFLAGS, build_directory=str(build_dir),
                                                  verbose=False)
        except Exception as exc:  # noqa: BLE001 - any build failure means: use the torch path
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            first = next((ln for ln in lines if "error" in ln.lower() and ln is not lines[0]), lines[0])[:200]
            _state["error"] = f"{type(exc).__name__}: {first}"
            if not quiet:
                print(f"[ilif-lava] notice: the compiled ILIF CPU kernel is unavailable ({_state['error']}); "
                      "using the torch path", file=sys.stderr, flush=True)
        return _state["module"]


def error() -> Optional[str]:
    """Why the last :func:`load` failed, or None."""
    return _state["error"]


def main() -> int:
    """Build the extension now (used by scripts/setup_env.sh); exit 0 even when it cannot be built."""
    mod = load()
    if mod is not None:
        print(f"[setup] compiled ILIF CPU kernel ready in {cache_dir()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
