"""Safe reading and writing of a run's files: ``model.pt`` / ``checkpoint.pt`` and ``log.jsonl``.

This is the model-file security boundary. A PyTorch file is opened without blocking, checked to be a regular file
of at most :data:`MAX_MODEL_BYTES` that starts like a torch file, then loaded with ``torch.load(weights_only=True)``
(only tensors and plain data, never code) and checked to hold the keys :func:`training.loop.train` writes. A
training log is never read through a symbolic link and at most :data:`MAX_LOG_BYTES` of it. Every refusal is one
:class:`ModelFileError` line naming the file.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Dict, List

import torch

from ilif_lava import atomic
from ilif_lava.errors import IlifLavaError
from ilif_lava.safe_read import open_regular, read_regular
from training.models import SpikingNet, model_from_meta


class ModelFileError(IlifLavaError, ValueError):
    """A ``model.pt`` / ``checkpoint.pt`` that is not a file this project wrote; refused before anything runs.

    The message is one line naming the file. Files are read with ``torch.load(weights_only=True)``: only
    tensors and plain data (dicts, lists, tuples, str, int, float, bool, None) can be in them, never code.
    """


MODEL_KEYS = ("model", "meta", "config", "quantized")
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "config", "meta")
TORCH_ZIP_MAGIC = b"PK\x03\x04"     # torch.save's format (a zip archive)
PICKLE_PROTO = b"\x80"              # torch's legacy format starts with a pickle protocol opcode ...
PICKLE_PROTOCOLS = range(2, 6)      # ... and a protocol number pickle knows (torch.save writes 2)
MAX_MODEL_BYTES = 4 << 30           # far beyond any network this project trains (VGG-11 at full width: ~40 MB)
MAX_LOG_BYTES = 256 << 20           # log.jsonl: about 1 KiB per epoch


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file then rename: a crash never leaves a half-written checkpoint (nor the temp file)."""
    with atomic.atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:         # torch reports a full disk as a RuntimeError
            raise atomic.write_error(path, exc) from None


def _plain_tensors(d: Any) -> bool:
    """``d`` is a dict of named tensors (a state dict)."""
    return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def read_torch_file(path: Path, kind: str = "model", device: Any = "cpu") -> Dict[str, Any]:
    """Load a ``model.pt`` (``kind='model'``) or ``checkpoint.pt`` (``kind='checkpoint'``) written by
    :func:`training.loop.train`.

    The file is opened without blocking and checked to be a regular, non-empty file before torch reads it (a FIFO
    or device never blocks), then loaded with ``weights_only=True`` (no code in the file can run) and checked to
    hold the keys this project writes. Anything else raises a one-line :class:`ModelFileError` naming the file.
    """
    path = Path(path)
    what = f"an ilif-lava {kind} file"
    with open_regular(path, MAX_MODEL_BYTES, ModelFileError, what) as fh:
        head = fh.read(8)
        fh.seek(0)
        legacy = head[:1] == PICKLE_PROTO and len(head) > 1 and head[1] in PICKLE_PROTOCOLS
        if not (head.startswith(TORCH_ZIP_MAGIC) or legacy):
            raise ModelFileError(f"{path}: not a PyTorch file (it starts with {head!r}; torch.save writes a zip "
                                 f"archive), expected {what}")
        try:
            ck = torch.load(fh, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            detail = " ".join(str(exc).split())[:160]
            raise ModelFileError(f"{path}: refused: holds objects other than tensors and plain data, or is not "
                                 f"{what} ({detail})") from None
        except Exception as exc:  # noqa: BLE001 - truncated zip, garbage, unknown format: all 'not ours'
            detail = " ".join(str(exc).split())[:160]
            raise ModelFileError(f"{path}: not {what} (truncated or corrupted?): {type(exc).__name__}: "
                                 f"{detail}") from None
    required = MODEL_KEYS[:3] if kind == "model" else CHECKPOINT_KEYS
    if not isinstance(ck, dict):
        raise ModelFileError(f"{path}: holds a {type(ck).__name__}, expected {what} (a dict)")
    missing = [k for k in required if k not in ck]
    if missing:
        raise ModelFileError(f"{path}: key {missing[0]!r} missing, expected {what}")
    if not _plain_tensors(ck["model"]):
        raise ModelFileError(f"{path}: key 'model' is not a dict of named tensors")
    for key in ("meta", "config") + (("optimizer", "scheduler") if kind == "checkpoint" else ()):
        if not isinstance(ck[key], dict):
            raise ModelFileError(f"{path}: key {key!r} is a {type(ck[key]).__name__}, expected a dict")
    if kind == "checkpoint" and (not isinstance(ck["epoch"], int) or isinstance(ck["epoch"], bool)
                                 or ck["epoch"] < 0):
        raise ModelFileError(f"{path}: key 'epoch' = {ck['epoch']!r}, expected an integer >= 0")
    return ck


def _log_lines(log_path: Path) -> List[str]:
    """The non-blank lines of a run's own ``log.jsonl`` ([] when absent). A symbolic link or a non-regular file
    at that name is refused (one line naming it) before it is opened: resuming never copies what a planted link
    points to into the run, and a FIFO never blocks."""
    if not log_path.exists() and not log_path.is_symlink():
        return []
    if log_path.is_symlink():
        raise ModelFileError(f"{log_path}: is a symbolic link, expected the run's own training log; remove it")
    atomic.check_input(log_path, what="the training log")
    try:
        text = read_regular(log_path, MAX_LOG_BYTES, ModelFileError, "the training log").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{log_path}: is not UTF-8 text ({exc.reason})") from None
    return [ln for ln in text.splitlines() if ln.strip()]


def truncate_log(log_path: Path, keep_epochs: int) -> None:
    """Keep the first ``keep_epochs`` lines of ``log.jsonl`` (a resumed run rewrites the epochs after them)."""
    if not log_path.exists() and not log_path.is_symlink():
        return
    lines = _log_lines(log_path)
    atomic.write_text(log_path, "".join(ln + "\n" for ln in lines[:keep_epochs]))


def read_training_log(train_dir: Path) -> List[Dict[str, Any]]:
    """The epochs of ``<train_dir>/log.jsonl`` as written by :func:`training.loop.train` (empty when there is no
    log); a line that is not a JSON object is one :class:`ModelFileError` line naming the file and line."""
    path = Path(train_dir) / "log.jsonl"
    out = []
    for i, line in enumerate(_log_lines(path), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{path}: line {i}: invalid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ModelFileError(f"{path}: line {i}: holds a JSON {type(rec).__name__}, expected an object")
        out.append(rec)
    return out


def load_model(path: Path, device: str = "cpu") -> SpikingNet:
    """Load ``model.pt``/``checkpoint.pt`` into a fresh network (quantized flag restored)."""
    path = Path(path)
    ck = read_torch_file(path, "model", "cpu")     # a checkpoint.pt holds the same three keys
    try:
        model = model_from_meta(ck["meta"])
        model.load_state_dict(ck["model"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFileError(f"{path}: key 'meta'/'model' does not describe a network this project builds "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    model.set_quantized(bool(ck.get("quantized", False)))
    return model.to(device)
