"""Library use is quiet: importing the core prints neither slayer's Prophesee warning nor torch's CUDA notice."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ilif_lava.compat import patch_prophesee_source

ROOT = Path(__file__).resolve().parents[1]


def test_import_core_and_slayer_prints_nothing():
    code = "import ilif_lava.block, ilif_lava.neuron, lava.lib.dl.slayer, torch.utils.cpp_extension\nprint('ok')\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "ok\n" and res.stderr == "", (res.stdout, res.stderr)


def test_without_the_shim_slayer_is_noisy_so_the_test_above_can_fail():
    """The same import without ``import ilif_lava`` first (no shim): the Prophesee warning is printed."""
    code = "import sys; sys.path.remove(sys.path[0]) if sys.path[0] == '' else None\nimport lava.lib.dl.slayer\n"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd="/")
    assert "Prophesee Dataset Toolbox could not be found" in res.stdout


def test_patch_touches_only_the_three_notice_lines():
    src = ("try:\n    import x\nexcept ModuleNotFoundError:\n    src = 'u'\n"
           "    print(\"WARNING: Prophesee Dataset Toolbox could not be found!\")\n"
           "    print(\"         Only Prophesee DVS demo will not run properly.\")\n"
           "    print(f\"         Please install it from {src}\")\n\n\ndef f():\n    print('kept')\n")
    out = patch_prophesee_source(src)
    assert out.count("    pass\n") == 3 and "print('kept')" in out and "Prophesee" not in out
