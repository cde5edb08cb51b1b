"""Build and load the compiled CPU kernel (``ilif_cpu.cpp``) as a PyTorch C++ extension.

Built once, by ``scripts/setup_env.sh`` (``python -m ilif_lava.kernels.cpu_build``) or on first use with a one-line
message, into a cache folder named by a key over everything that changes the binary or the build command
(:func:`build_inputs`: the source's SHA-256, the compiler command and the compiler's ``--version``, the flags, the
torch version, headers and ABI, the Python headers, the CPU's instruction-set flags for ``-march=native``). The
base folder is ``$ILIF_LAVA_KERNEL_CACHE`` if set, else ``<venv>/ilif-lava-kernels`` when writable, else
``~/.cache/ilif-lava/kernels``. Environments that share a base folder but differ in any input get their own
key folders instead of rebuilding one in turns; the build compiles a copy of the source kept in the key folder, so
the build command is the same wherever the checkout lives. Each key folder holds ``build-inputs.json``, the inputs
it was built from. Any failure (no compiler, no ninja, a compile error) is reported in one line and the caller falls
back to the torch path.

Two processes starting together (two commands, DataLoader workers, a torchrun job) build once: each takes the key
folder's build lock (:data:`LOCK_FILE`, an ``flock``) before building or loading; one that has to wait says so once
on stderr ("waiting for another process building the kernel in DIR") and gives up after
``$ILIF_LAVA_KERNEL_LOCK_TIMEOUT`` seconds (default :data:`LOCK_TIMEOUT_S`) with a :class:`KernelBuildLockTimeout`
line naming the folder and the lock (then the torch path runs, or ``ILIF_LAVA_KERNEL=cpu`` ends in that line).
The lock is the kernel's: a killed holder releases it at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterator, List, Optional, Sequence

from ilif_lava.errors import IlifLavaError

SOURCE = Path(__file__).with_name("ilif_cpu.cpp")
CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math"]

_lock = threading.Lock()
_state: dict = {"module": None, "error": None, "tried": False, "dir": None}


KEY_LENGTH = 16          # hex digits of the key folder's name
INPUTS_FILE = "build-inputs.json"
_version_cache: Dict[str, str] = {}


def _cpu_flags() -> str:
    """The CPU's instruction-set flags line (``-march=native`` compiles for exactly these)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[-1].strip()
    except OSError:
        pass
    return platform.processor()


def compiler_command() -> List[str]:
    """The compiler command torch's build writes into build.ninja: ``$CXX`` (default ``c++``), with the ccache or
    sccache wrapper torch puts in front when one is on PATH (unless ``TORCH_NO_COMPILER_WRAPPER`` is set)."""
    cxx = os.environ.get("CXX", "c++")
    if os.environ.get("TORCH_NO_COMPILER_WRAPPER"):
        return [cxx]
    wrapper = next((w for w in ("ccache", "sccache") if shutil.which(w)), None)
    return [wrapper, cxx] if wrapper else [cxx]


def compiler_version(cxx: str) -> str:
    """Resolved path and ``--version`` output of the compiler ``cxx`` ('unavailable: ...' when it does not run)."""
    path = shutil.which(cxx)
    real = os.path.realpath(path) if path else cxx
    if real not in _version_cache:
        try:
            res = subprocess.run([real, "--version"], capture_output=True, text=True, timeout=30)
            _version_cache[real] = f"{real}: {res.stdout.strip() or res.stderr.strip()}"
        except (OSError, subprocess.SubprocessError) as exc:
            _version_cache[real] = f"unavailable: {type(exc).__name__}"
    return _version_cache[real]


def build_inputs(cflags: Optional[Sequence[str]] = None, source: Optional[bytes] = None) -> Dict[str, str]:
    """Everything that changes the compiled binary or torch's build command, as strings. ``cflags`` defaults to
    :data:`CFLAGS`, ``source`` (the source text) to the bytes of :data:`SOURCE`."""
    import torch
    from torch.utils import cpp_extension

    try:
        src_hash = hashlib.sha256(SOURCE.read_bytes() if source is None else source).hexdigest()
    except OSError as exc:
        src_hash = f"unreadable: {type(exc).__name__}"
    cmd = compiler_command()
    return {
        "source_sha256": src_hash,
        "cflags": " ".join(CFLAGS if cflags is None else cflags),
        "compiler_command": " ".join(cmd),
        "compiler_version": compiler_version(cmd[-1]),
        "torch_version": torch.__version__,
        "torch_include": " ".join(cpp_extension.include_paths("cpu")),
        "torch_cxx11_abi": str(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", "")),
        "python": f"{sys.version.split()[0]} {sysconfig.get_config_var('SOABI')} "
                  f"{sysconfig.get_path('include', scheme='posix_prefix')}",
        "machine": os.uname().machine,
        "cpu_flags": _cpu_flags(),
    }


def cache_key(inputs: Optional[Dict[str, str]] = None) -> str:
    """Name of the cache folder: a short SHA-256 of :func:`build_inputs` (or of ``inputs``)."""
    text = json.dumps(build_inputs() if inputs is None else inputs, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:KEY_LENGTH]


def cache_base() -> Path:
    """The folder holding one key folder per build."""
    env = os.environ.get("ILIF_LAVA_KERNEL_CACHE")
    if env:
        return Path(env)
    if sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK):
        return Path(sys.prefix) / "ilif-lava-kernels"
    return Path.home() / ".cache" / "ilif-lava" / "kernels"


def cache_dir(inputs: Optional[Dict[str, str]] = None) -> Path:
    """Folder holding the compiled extension for these build inputs (default: this environment's)."""
    return cache_base() / cache_key(inputs)


def _stage_source(build_dir: Path, source: bytes, inputs: Dict[str, str]) -> Path:
    """Write ``source`` into the key folder (once, atomically; an unchanged copy is left alone so its time stamp
    does not trigger a rebuild) and record the inputs; returns the copy's path."""
    dst = build_dir / SOURCE.name
    if not dst.exists() or dst.read_bytes() != source:
        tmp = build_dir / f".{SOURCE.name}.{os.getpid()}.tmp"
        tmp.write_bytes(source)
        os.replace(tmp, dst)
    info = build_dir / INPUTS_FILE
    if not info.exists():
        tmp = build_dir / f".{INPUTS_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(inputs, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, info)
    return dst


def _built(path: Path) -> bool:
    return any(path.glob("ilif_cpu_ext*.so"))


LOCK_FILE = ".build.lock"        # our flock, in the key folder
LOCK_TIMEOUT_ENV = "ILIF_LAVA_KERNEL_LOCK_TIMEOUT"
LOCK_TIMEOUT_S = 900.0           # a cold build takes about a minute on 2 cores; a wait beyond 15 minutes is a hang
LOCK_NOTICE_AFTER_S = 1.0        # a wait shorter than this (another process loading a built kernel) is not reported
LOCK_POLL_S = 0.2


class KernelBuildLockTimeout(IlifLavaError, TimeoutError):
    """Another process held the kernel's build lock longer than the timeout (or the timeout is not a number)."""


def lock_timeout() -> float:
    """Seconds to wait for another process's build: ``$ILIF_LAVA_KERNEL_LOCK_TIMEOUT`` or :data:`LOCK_TIMEOUT_S`."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return LOCK_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise KernelBuildLockTimeout(f"{LOCK_TIMEOUT_ENV}={raw!r} is not a number of seconds >= 0")
    return value


@contextlib.contextmanager
def build_lock(build_dir: Path, timeout: Optional[float] = None, notice_after: float = LOCK_NOTICE_AFTER_S,
               quiet: bool = False) -> Iterator[None]:
    """Hold ``build_dir/.build.lock`` (an exclusive ``flock``, released when the process ends, however it ends).

    Waiting longer than ``notice_after`` seconds prints once to stderr "waiting for another process building the
    kernel in DIR" (unless ``quiet``); after ``timeout`` seconds (default :func:`lock_timeout`) raises
    :class:`KernelBuildLockTimeout`, one line naming the folder and the lock file.
    """
    timeout = lock_timeout() if timeout is None else float(timeout)
    lock = Path(build_dir) / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        start = time.monotonic()
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= timeout:
                    raise KernelBuildLockTimeout(
                        f"{build_dir}: gave up after {waited:.0f} s waiting for another process building the "
                        f"kernel there (it holds {lock}); let it finish, end it, or raise {LOCK_TIMEOUT_ENV}"
                    ) from None
                if not told and not quiet and waited >= notice_after:
                    print(f"[ilif-lava] waiting for another process building the kernel in {build_dir} "
                          f"(up to {timeout:.0f} s, {LOCK_TIMEOUT_ENV})", file=sys.stderr, flush=True)
                    told = True
                time.sleep(min(LOCK_POLL_S, max(0.0, timeout - waited)))
        yield
    finally:
        os.close(fd)


def load(quiet: bool = False) -> Optional[ModuleType]:
    """The compiled module, building it on first use; None (with a one-line notice) when it cannot be built."""
    with _lock:
        if _state["tried"]:
            return _state["module"]
        _state["tried"] = True
        try:
            from torch.utils import cpp_extension     # its CUDA notice is filtered by ilif_lava.compat
            source = SOURCE.read_bytes()  # read once: the key and the compiled copy are of the same text
            inputs = build_inputs(source=source)
            build_dir = cache_dir(inputs)
            _state["dir"] = build_dir
            build_dir.mkdir(parents=True, exist_ok=True)
            with build_lock(build_dir):      # one build at a time; a waiter says so once (even when quiet)
                if not _built(build_dir) and not quiet:
                    print(f"[ilif-lava] compiling the fused ILIF CPU kernel once (about a minute) into {build_dir}",
                          file=sys.stderr, flush=True)
                staged = _stage_source(build_dir, source, inputs)
                _state["module"] = cpp_extension.load(name="ilif_cpu_ext", sources=[str(staged)],
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


def loaded_from() -> Optional[Path]:
    """The key folder :func:`load` used (built or loaded), or None before it ran."""
    return _state["dir"]


def error() -> Optional[str]:
    """Why the last :func:`load` failed, or None."""
    return _state["error"]


def main() -> int:
    """Build the extension now (used by scripts/setup_env.sh); exit 0 even when it cannot be built."""
    mod = load()
    if mod is not None:
        print(f"[setup] compiled ILIF CPU kernel ready in {_state['dir']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
