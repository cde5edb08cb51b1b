"""Export stage: trained model -> netx HDF5 file, with Loihi 2 constraint checks and a resource estimate."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional, Tuple

from ilif_lava import loihi2
from ilif_lava.netx import export_blocks
from training.models import SpikingNet


def export_model(model: SpikingNet, path: Path, force: bool = False,
                 max_cores: Optional[int] = None) -> Tuple[Path, "loihi2.Loihi2Report"]:
    """Write ``model`` to ``path`` (netx HDF5) after checking it against Loihi 2 limits.

    The file is first written next to ``path``; if the checks fail it is removed and
    :class:`ilif_lava.loihi2.Loihi2ConstraintError` is raised, unless ``force`` is set.
    The check report is saved beside the file as ``<name>.loihi2.json``.
    """
    path = Path(path)
    staging = path.with_name(path.name + ".staging")
    export_blocks([b for b in model.blocks], staging)
    report = loihi2.check_network(staging, max_cores=max_cores)
    path.with_name(path.name + ".loihi2.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    if not report.ok and not force:
        staging.unlink()
        loihi2.assert_fits(report)
    os.replace(staging, path)
    return path, report
