"""Export stage: trained model -> netx HDF5 file, with Loihi 2 constraint checks and a resource estimate."""
from __future__ import annotations

import contextlib
import gc
import io
import json
import sys
from pathlib import Path
from typing import Iterator, Optional, Tuple

import torch

from ilif_lava import atomic, loihi2
from ilif_lava.netx import export_blocks
from training.models import SpikingNet


@contextlib.contextmanager
def _quiet_unraisable() -> Iterator[None]:
    """On a failed write h5py also reports errors while releasing its handles through ``sys.unraisablehook``
    (tracebacks on stderr); the failure itself is raised, so those echoes are dropped while exporting."""
    old = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        with contextlib.redirect_stderr(io.StringIO()):     # h5py prints some of them itself
            try:
                yield
            finally:
                gc.collect()
    finally:
        sys.unraisablehook = old


def export_model(model: SpikingNet, path: Path, force: bool = False,
                 max_cores: Optional[int] = None) -> Tuple[Path, "loihi2.Loihi2Report"]:
    """Write ``model`` to ``path`` (netx HDF5) after checking it against Loihi 2 limits.

    The file is first written to a temporary name next to ``path`` and renamed when done (atomic); if the checks
    fail it is removed and :class:`ilif_lava.loihi2.Loihi2ConstraintError` is raised, unless ``force`` is set.
    The check report is saved (atomically) beside the file as ``<name>.loihi2.json``.
    """
    path = Path(path)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():   # netx would clip inf / NaN silently
            raise ValueError(f"{path}: not exported: {name} holds {int((~torch.isfinite(t)).sum())} "
                             f"non-finite value(s) (the model diverged in training)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as staging:        # removed on any failure (full disk, refused checks, Ctrl-C)
        inner = staging.with_name(staging.name + ".tmp")   # export_blocks' own temp file
        failure: Optional[OSError] = None
        with _quiet_unraisable():
            try:
                export_blocks([b for b in model.blocks], staging)
            except RuntimeError as exc:     # h5py reports a full disk as a RuntimeError
                failure = atomic.write_error(path, exc)
                exc.__traceback__ = None    # release h5py's handles now, while their echoes are dropped
            finally:
                with contextlib.suppress(OSError):
                    inner.unlink()
        if failure is not None:
            raise failure
        report = loihi2.check_network(staging, max_cores=max_cores)
        report.path = str(path)
        atomic.write_text(path.with_name(path.name + ".loihi2.json"),
                          json.dumps(report.to_dict(), indent=2, default=str))
        if not report.ok and not force:
            loihi2.assert_fits(report)
    return path, report
