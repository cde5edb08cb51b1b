"""Reading ``lava_test.npz`` (written by ``ilif-lava simulate``, pipeline/run.py) as untrusted input, memory bounded.

The file is a zip of ``.npy`` members: ``labels`` [N], ``pred`` [N], ``steps`` (scalar), ``wall_s``, ``data_json``
(the evaluation record), ``spikes_<i>`` [N, neurons_i, steps] per layer and ``state_<layer>_<name>`` [n <= N,
neurons, steps]. Before any member is decompressed, :func:`read_lava_results`:

* opens the file as a regular file of at most :data:`MAX_FILE_BYTES` (:func:`ilif_lava.safe_read.open_regular`);
* reads every member's declared size from the zip directory and its ``.npy`` header (a few hundred bytes): a
  real numeric dtype (no object, string or compound data), a shape whose byte count is the declared size, at most
  the active file limits' neurons per layer (:func:`ilif_lava.file_limits.current_limits`) in a spike or state
  array, and all members together at most ``max_bytes`` (default 80 % of this machine's memory);
* checks that the required members are there and agree: N from ``labels`` everywhere, ``steps`` as the last axis.

Decompression then stops at each member's declared size (Python's zipfile). Every refusal is one ``ValueError``
line naming the file and the member.
"""
from __future__ import annotations

import ast
import re
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
from ilif_lava.errors import IlifLavaError

MAX_FILE_BYTES = 16 << 30
MEMORY_FRACTION = 0.8
REQUIRED = ("labels", "pred", "steps", "spikes_0")
MAX_RECORD_BYTES = 1 << 20      # the data_json record: a few hundred bytes
_HEADER_BYTES = 64 * 1024       # an .npy header is at most a few hundred bytes (format 2/3: 4 GiB allowed, not used)


class ResultsFileError(IlifLavaError, ValueError):
    """A ``lava_test.npz`` that cannot be used; one line naming the file and the member."""


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str,
            kinds: str = "biuf") -> Tuple[Tuple[int, ...], np.dtype]:
    """(shape, dtype) from a member's ``.npy`` header, decompressing at most :data:`_HEADER_BYTES`; ``kinds``:
    the dtype kinds allowed (real numbers; the text record ``data_json`` also 'U')."""
    with zf.open(info) as fh:
        head = fh.read(_HEADER_BYTES)
    if head[:6] != b"\x93NUMPY" or len(head) < 10:
        raise ResultsFileError(f"{where}: not an .npy array")
    major = head[6]
    if major == 1:
        hlen, start = int.from_bytes(head[8:10], "little"), 10
    elif major in (2, 3):
        hlen, start = int.from_bytes(head[8:12], "little"), 12
    else:
        raise ResultsFileError(f"{where}: .npy format version {major} is not supported")
    if start + hlen > len(head):
        raise ResultsFileError(f"{where}: .npy header of {hlen} bytes is too long")
    try:
        d = ast.literal_eval(head[start:start + hlen].decode("latin1"))
        dtype = np.dtype(d["descr"])
        shape = tuple(int(v) for v in d["shape"])
        fortran = bool(d["fortran_order"])
    except (ValueError, SyntaxError, TypeError, KeyError) as exc:
        raise ResultsFileError(f"{where}: damaged .npy header ({type(exc).__name__})") from None
    if dtype.kind not in kinds or dtype.fields is not None or fortran and len(shape) > 1:
        raise ResultsFileError(f"{where}: holds {dtype} data{' in Fortran order' if fortran else ''}; expected "
                               "C-ordered real numbers")
    if dtype.kind == "U" and (shape != () or info.file_size > MAX_RECORD_BYTES):
        raise ResultsFileError(f"{where}: text of shape {list(shape)} and {info.file_size} bytes; expected one "
                               f"string of at most {MAX_RECORD_BYTES} bytes")
    if any(v < 0 for v in shape):
        raise ResultsFileError(f"{where}: negative shape {list(shape)}")
    if start + hlen + int(np.prod(shape, dtype=object)) * dtype.itemsize != info.file_size:
        raise ResultsFileError(f"{where}: shape {list(shape)} x {dtype} does not match the member's declared size "
                               f"{info.file_size} bytes")
    return shape, dtype


def read_lava_results(path: Path, max_bytes: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Every member of a ``lava_test.npz`` as an array, after the checks of the module docstring."""
    from ilif_lava.file_limits import current_limits
    from ilif_lava.safe_read import open_regular
    from training.datasets import physical_memory

    path = Path(path)
    cap = int(physical_memory() * MEMORY_FRACTION) if max_bytes is None else int(max_bytes)
    max_neurons = current_limits().max_neurons_per_layer
    with open_regular(path, MAX_FILE_BYTES, ResultsFileError, "a Lava results file (lava_test.npz)") as fh:
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise ResultsFileError(f"{path}: not a Lava results file (not a zip archive: {exc})") from None
        with zf:
            infos = {}
            for info in zf.infolist():
                if not info.filename.endswith(".npy") or "/" in info.filename:
                    raise ResultsFileError(f"{path}: member {info.filename!r} is not an array of the results")
                infos[info.filename[:-4]] = info
            missing = [k for k in REQUIRED if k not in infos]
            if missing:
                raise ResultsFileError(f"{path}: key {missing[0]!r} is missing (not written by 'ilif-lava simulate'; "
                                       "run it again)")
            total = sum(i.file_size for i in infos.values())
            if total > cap:
                raise ResultsFileError(f"{path}: members declare {total} bytes uncompressed, more than the {cap} "
                                       f"bytes allowed ({MEMORY_FRACTION:.0%} of this machine's memory)")
            heads = {k: _header(zf, i, f"{path}: member {k!r}", "biufU" if k == "data_json" else "biuf")
                     for k, i in infos.items()}
            _check_shapes(path, heads, max_neurons)
            out: Dict[str, np.ndarray] = {}
            for k, info in infos.items():
                try:
                    with zf.open(info) as member:
                        out[k] = np.lib.format.read_array(member, allow_pickle=False)
                except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
                    raise ResultsFileError(f"{path}: member {k!r} is damaged ({type(exc).__name__}: "
                                           f"{' '.join(str(exc).split())[:120]})") from None
    steps = out["steps"]
    if steps.ndim != 0 or steps.dtype.kind not in "iu" or int(steps) != heads["spikes_0"][0][-1]:
        raise ResultsFileError(f"{path}: member 'steps' = {steps.tolist()!r} is not the spikes' step count "
                               f"{heads['spikes_0'][0][-1]}")
    return out


def _check_shapes(path: Path, heads: Dict[str, Tuple[Tuple[int, ...], Any]], max_neurons: int) -> None:
    """labels/pred [N], spikes_i [N, neurons <= max_neurons, T] with one T, states [n <= N, neurons, T]."""
    n_shape = heads["labels"][0]
    if len(n_shape) != 1:
        raise ResultsFileError(f"{path}: member 'labels' has shape {list(n_shape)}, expected [samples]")
    n = n_shape[0]
    if heads["pred"][0] != (n,):
        raise ResultsFileError(f"{path}: member 'pred' has shape {list(heads['pred'][0])}, expected [{n}]")
    layers = sorted((k for k in heads if k.startswith("spikes_")),
                    key=lambda k: (len(k), k))                  # numeric order: spikes_2 before spikes_10
    if layers != [f"spikes_{i}" for i in range(len(layers))]:
        raise ResultsFileError(f"{path}: spike members {layers} are not spikes_0 .. spikes_{len(layers) - 1}")
    steps = heads["spikes_0"][0][-1] if len(heads["spikes_0"][0]) == 3 else None
    for k, (shape, _) in heads.items():
        if k.startswith("state_") and not re.fullmatch(r"state_\d{1,4}_[a-z]{1,8}", k):
            raise ResultsFileError(f"{path}: member {k!r} is not named state_<layer>_<state>")
        if not (k.startswith("spikes_") or k.startswith("state_")):
            continue
        first_ok = shape[:1] == (n,) if k.startswith("spikes_") else len(shape) == 3 and shape[0] <= n
        if len(shape) != 3 or not first_ok or shape[2] != steps or shape[1] > max_neurons:
            raise ResultsFileError(f"{path}: member {k!r} has shape {list(shape)}, expected [{n}, neurons <= "
                                   f"{max_neurons}, {steps}]")
