"""Start-up: the training path imports slayer's neurons and blocks without slayer's slow extras (torchvision and
torch's dynamo through ``object_detection``, matplotlib through ``io`` and ``utils.stats``), which still load on
first use (:func:`ilif_lava.compat.patch_lazy_source`); ``ilif-lava train --help`` imports neither torch nor Lava.

Checked by the modules a fresh interpreter holds (not by timing: the import time is measured by
``python -X importtime``, README's benchmark section).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ilif_lava.compat import SLAYER_TARGET, SLAYER_UTILS_TARGET, patch_lazy_source

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> dict:
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_train_help_imports_neither_torch_nor_lava():
    code = ("import json, sys\n"
            "from pipeline import cli\n"
            "sys.argv = ['ilif-lava', 'train', '--help']\n"
            "try:\n"
            "    cli.main()\n"
            "except SystemExit:\n"
            "    pass\n"
            "print(json.dumps([m for m in ('torch', 'lava.lib.dl.slayer', 'sklearn') if m in sys.modules]))\n")
    assert _run(code) == []


def test_blocks_import_without_torchs_compiler():
    """Importing the blocks (neuron, kernels and their custom operators) does not load torch's dynamo (about 1.3 s);
    ``torch.compile`` loads it when a user compiles."""
    code = ("import json, sys\n"
            "import ilif_lava.block, ilif_lava.kernels.custom_ops\n"
            "print(json.dumps(['torch._dynamo' in sys.modules, hasattr(__import__('torch').ops.ilif_lava,\n"
            "                  'float_forward')]))\n")
    assert _run(code) == [False, True]


def test_train_loads_only_the_training_code_and_slayers_extras_load_on_use(tmp_path):
    """A real (one-epoch, 8-sample) ``ilif-lava train`` loads neither Lava's runtime, the netx loader, the export,
    simulation and report stages nor slayer's slow extras (torchvision, matplotlib); it trains and writes its model.
    Afterwards slayer's lazy names (``io``, ``obd``, ``utils.LearningStats``) still resolve, loading them."""
    run_dir = tmp_path / "run"
    code = ("import json, sys\n"
            "from pipeline import cli\n"
            f"rc = cli.main(['train', '--dataset', 'digits', '--limit-train', '8', '--limit-test', '8',\n"
            f"               '--epochs', '1', '--qat-epochs', '0', '-T', '4', '--run-dir', {str(run_dir)!r}])\n"
            "heavy = ('lava.magma.runtime.runtime', 'lava.lib.dl.netx', 'export.export_net', 'pipeline.run',\n"
            "         'simulations.report', 'matplotlib', 'torchvision')\n"
            "loaded = [m for m in heavy if m in sys.modules]\n"
            "import lava.lib.dl.slayer as slayer\n"
            "from lava.lib.dl.slayer import io\n"
            "names = [slayer.obd.__name__, slayer.utils.LearningStats.__name__, slayer.utils.LearningStat.__name__,\n"
            "         io.__name__, slayer.io is io, 'bbox' in dir(slayer.obd)]\n"
            "try:\n"
            "    slayer.no_such_name\n"
            "    missing = 'no error'\n"
            "except AttributeError as exc:\n"
            "    missing = str(exc)\n"
            "after = [m for m in ('matplotlib', 'torchvision') if m in sys.modules]\n"
            "print(json.dumps({'rc': rc, 'loaded': loaded, 'torch': 'torch' in sys.modules, 'names': names,\n"
            "                  'missing': missing, 'after': after}))\n")
    out = _run(code)
    assert (out["rc"], out["loaded"], out["torch"]) == (0, [], True), out
    assert (run_dir / "train" / "model.pt").is_file()
    assert out["names"] == ["lava.lib.dl.slayer.object_detection", "LearningStats", "LearningStat",
                            "lava.lib.dl.slayer.io", True, True]
    assert out["after"] == ["matplotlib", "torchvision"]           # loaded on use, so the first check can fail
    assert out["missing"] == "module 'lava.lib.dl.slayer' has no attribute 'no_such_name'"


@pytest.mark.parametrize("stage", ["training", "simulations", "export"])
def test_a_stage_package_installs_the_shim_first(stage):
    """Importing a stage package alone installs ilif_lava's import shim (so ``import training.models`` patches
    slayer whatever the import order) and loads neither torch nor Lava."""
    code = ("import json, sys\n"
            f"import {stage}\n"
            "shim = any(type(f).__name__ == '_VarModelFinder' for f in sys.meta_path)\n"   # without importing ilif_lava
            "print(json.dumps([shim] + [m for m in ('torch', 'lava') if m in sys.modules]))\n")
    assert _run(code) == [True]


@pytest.mark.parametrize("target", [SLAYER_TARGET, SLAYER_UTILS_TARGET])
def test_lazy_patch_leaves_an_unexpected_source_alone(target):
    """A slayer version whose __init__ differs is imported as installed (eager), never half-patched."""
    src = "from . import neuron\nfrom . import something_else\n"
    assert patch_lazy_source(target, src) == src
