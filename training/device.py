"""The torch device a run trains on: checks of ``--device`` / ``--amp`` and :func:`pick_device`.

Every refusal is one ``ValueError`` line naming the value and what to use instead.
"""
from __future__ import annotations

from typing import Optional

import torch

from ilif_lava.names import AMP_DTYPES


def check_amp(amp: Optional[str], device: str) -> None:
    """Raise a one-line ``ValueError`` unless ``amp`` is None or a CUDA-capable choice for ``device``."""
    if amp is None:
        return
    if amp not in AMP_DTYPES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    if device == "cpu" or not torch.cuda.is_available():
        raise ValueError(f"--amp {amp} needs a CUDA device; this run trains on the CPU (drop --amp)")


def check_device(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is 'auto', 'cpu', 'cuda' or 'cuda:N' and exists on this machine."""
    if name in ("auto", "cpu"):
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type != "cuda" or name.strip() != name:
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine (use cpu or auto)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s)")


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU. On CUDA, slayer's kernels are built for this GPU's architecture and
    TF32 is off (float matmuls and convolutions in full float32)."""
    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        # slayer JIT-compiles its delay-shift kernel for sm_80 on any GPU >= 8.0; build for the real arch instead.
        import lava.lib.dl.slayer.jitconfig as jc
        major, minor = torch.cuda.get_device_capability(dev)
        jc.TORCH_CUDA_ARCH_LIST = f"{major}.{minor}"
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return dev
