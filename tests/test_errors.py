"""One base for every error the project raises on purpose (ilif_lava/errors.py), and the CLI's one line for each."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

from ilif_lava.errors import IlifLavaError
from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ilif_lava", "training", "export", "simulations", "pipeline")


def _exception_classes():
    """(module, class name) of every public class in the packages that derives from an exception class."""
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            for node in tree.body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    bases = [ast.unparse(b) for b in node.bases]
                    if any(b.endswith(("Error", "Exception", "Refused", "Unavailable")) for b in bases):
                        yield mod, node.name


def test_every_project_error_derives_from_the_base():
    found = list(_exception_classes())
    assert len(found) >= 15, found
    stray = [f"{m}.{c}" for m, c in found if not issubclass(getattr(importlib.import_module(m), c), IlifLavaError)]
    assert stray == []


def test_mixins_are_kept():
    from ilif_lava.safe_hdf5 import NetworkFileError
    from pipeline.run import DeploymentMismatchError
    from training.datasets import DatasetNotFoundError
    from training.train import TrainingError
    assert issubclass(NetworkFileError, ValueError) and issubclass(DatasetNotFoundError, FileNotFoundError)
    assert TrainingError.exit_code == DeploymentMismatchError.exit_code == 1 and NetworkFileError.exit_code == 2


def test_bad_kernel_choice_is_one_line_not_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ILIF_LAVA_KERNEL", "bogus")
    code, _, err = run_cli(["train", "--dataset", "digits", "--epochs", "1", "--qat-epochs", "0", "--hidden", "8",
                            "-T", "2", "--limit-train", "16", "--limit-test", "8", "--device", "cpu",
                            "--run-dir", str(tmp_path / "run")], capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("ilif-lava")]
    assert code == 2 and "Traceback" not in err, err
    assert lines == ["ilif-lava train: error: ILIF_LAVA_KERNEL='bogus' is not a kernel; choose one of auto, torch, "
                     "cpu, gpu"], err
