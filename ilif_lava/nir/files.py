"""Reading NIR files from others, bounded, and writing ours atomically.

A NIR file is HDF5 written by someone else: before ``nir.read`` parses it, :func:`read_nir` runs the project's
HDF5 container checks (:func:`ilif_lava.safe_hdf5.check_container`: a regular file, no external links,
external storage or virtual datasets, built-in filters only, per-dataset and total byte limits from metadata,
bounded links and nesting, global heaps walked) with the NIR field names that may be large.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import nir

from ilif_lava import atomic
from ilif_lava.file_limits import FileLimits, current_limits
from ilif_lava.safe_hdf5 import NetworkFileError, check_container

PathLike = Union[str, Path]

#: NIR fields that hold one value per synapse or neuron (may be large); every other dataset is small
NIR_BIG_KEYS = ("weight", "bias", "scale", "tau", "r", "v_leak", "v_threshold", "v_reset", "tau_syn", "tau_mem",
                "w_in", "threshold", "delay")
NIR_MAX_DEPTH = 10        # /node/nodes/<layer>/nodes/<core>/metadata/<key>: one composite level with room to spare


def _nir_limits(limits: Optional[FileLimits]) -> FileLimits:
    base = limits or current_limits()
    return base.scaled(max_depth=max(base.max_depth, NIR_MAX_DEPTH))


def read_nir(path: PathLike, limits: Optional[FileLimits] = None) -> nir.NIRGraph:
    """Check ``path`` as an HDF5 container (limits: ``limits`` or the active ones, default one Loihi 2 chip),
    then ``nir.read`` it. Types are not checked by ``nir`` here (an ilif_lava composite fails NIR's own type
    inference on purpose, see docs/nir.md); :func:`ilif_lava.nir.from_nir` checks what it converts. Raises
    :class:`~ilif_lava.safe_hdf5.NetworkFileError` (one line naming the file) for anything refused."""
    lim = _nir_limits(limits)
    path = check_container(path, lim, big_keys=NIR_BIG_KEYS, max_vlen=2 * lim.max_links)
    try:
        graph = nir.read(path, type_check=False)
    except Exception as exc:  # noqa: BLE001 - whatever nir raises on a file it cannot parse
        raise NetworkFileError(f"{path}: not a NIR graph nir {nir.version} can read ({type(exc).__name__}: "
                               f"{' '.join(str(exc).split())[:200]})") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NetworkFileError(f"{path}: holds a {type(graph).__name__}, expected a NIRGraph")
    return graph


def write_graph(graph: nir.NIRGraph, path: PathLike) -> Path:
    """``nir.write`` to a temporary name next to ``path``, renamed when complete (removed on failure)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return path
