"""docs/api.md: its Python example runs verbatim; import order never matters (multiprocessing start method).

Both run in a fresh interpreter (subprocess), so nothing this test session imported earlier can hide a problem.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
API_DOC = REPO / "docs" / "api.md"


def _python(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def example_code() -> str:
    """The first ```python block of docs/api.md, exactly as written there."""
    blocks = re.findall(r"^```python\n(.*?)^```$", API_DOC.read_text(), flags=re.MULTILINE | re.DOTALL)
    assert blocks, f"{API_DOC}: no ```python block"
    return blocks[0]


def test_api_example_runs_verbatim():
    code = example_code()
    assert 25 <= len(code.strip().splitlines()) <= 50          # "about 30 lines": the whole route, nothing hidden
    for piece in ("ilif_lava import block", "ILIFNetwork", "export_blocks", "fixed_pt", "quantized", ".backward()"):
        assert piece in code, piece
    res = _python(code)
    assert res.returncode == 0, res.stderr[-3000:]
    m = re.search(r"Lava spikes (\d+), mismatches (\d+)", res.stdout)
    assert m and int(m.group(1)) > 0 and int(m.group(2)) == 0, res.stdout


IMPORT_ORDER = r"""
import multiprocessing as mp
from training import datasets                          # the data loader first, no Lava yet
ds = datasets.load_split("digits", "test", time_bins=4, limit=2)
from tqdm import tqdm                                  # what the N-MNIST/POKER-DVS loaders and training do
for _ in tqdm(range(2), disable=True):
    pass
assert mp.get_start_method(allow_none=True) == "fork"  # the default context is now fixed
import numpy as np, torch
import ilif_lava
from ilif_lava import block
from ilif_lava.netx import export_blocks
from simulations.lava_run import run_network           # imports Lava's runtime
import tempfile
net = torch.nn.ModuleList([block.Dense({"threshold": 0.5, "quantized": True}, 64, 4, delay_shift=True)])
x = ds[0][0].reshape(1, 64, -1)
with torch.no_grad():
    ref = net[0](x)
res = run_network(export_blocks(net, tempfile.mkdtemp() + "/n.net"), x.numpy())
assert (res.spikes[0] == ref.numpy()).all()
print("ok", int(ref.sum()))
"""


def test_data_loader_and_progress_bar_before_lava():
    res = _python(IMPORT_ORDER)
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"^ok \d+$", res.stdout, flags=re.MULTILINE), res.stdout


def test_lava_start_method_patch_matches_installed_lava():
    """The shim's rewrite must find Lava's call (fails if an upgraded Lava changed that line)."""
    import importlib.util

    from ilif_lava import compat

    src = Path(importlib.util.find_spec(compat.MP_TARGET).origin).read_text()
    patched = compat.patch_mp_source(src)
    assert patched != src and "mp.get_start_method(allow_none=True) == 'fork' or" in patched
    assert patched.count("set_start_method") == src.count("set_start_method")
