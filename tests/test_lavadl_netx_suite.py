"""lava-dl's own netx test suite, run with stock ``netx.hdf5.Network`` and with ``ILIFNetwork`` in its place.

The installed lava-dl wheel ships its netx tests and the files they read (``tests/lava/lib/dl/netx/`` in
site-packages: ``test_hdf5.py``, ``test_blocks.py``, ``test_hdf5_nx.py``, ``tiny.net``, ``mnist.net``, ``gts/``).
Both runs are real pytest runs of copies of those files (links to the network files and ``gts/``), in two child
processes at once; the only difference is a plugin: the stock run imports ``ilif_lava`` (Lava's Python 3.11 fix,
nothing else), the other also rebinds ``lava.lib.dl.netx.hdf5.Network = ILIFNetwork`` as a lava-dl user would.
lava-dl's tests compare their outputs with the gold vectors in ``gts/``, so "passes" means "the same gold outputs".

Every test that passes stock must pass with ``ILIFNetwork``; the hardware-only tests (``test_hdf5_nx.py``, no
Loihi compiler here) skip in both runs. Both runs are part of ``make test`` (about 4 minutes of wall time on 2 cores,
most of it one ntidigits test reading a Lava ring buffer back); ``ILIF_LAVA_LAVADL_SUITE=0`` skips them.
``tests/test_lavadl_same_network.py`` checks that ILIFNetwork builds the same Lava network as stock netx from every
one of these files.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUITE_FILES = ("test_hdf5.py", "test_blocks.py", "test_hdf5_nx.py")
SUITE_ENV = "ILIF_LAVA_LAVADL_SUITE"     # 0: skip lava-dl's suite (about 4 minutes of wall time on 2 cores)
PLUGINS = {
    "stock": "import ilif_lava  # noqa: F401  (Lava's Python 3.11 fix only)\n",
    "ilif": ("import ilif_lava  # noqa: F401\nimport lava.lib.dl.netx.hdf5 as _hdf5\n"
             "from ilif_lava.lava_proc.process import ILIFNetwork\n_hdf5.Network = ILIFNetwork\n"),
}


def suite_dir() -> Path:
    import lava.lib.dl.netx as netx
    site = Path(netx.__file__).resolve().parents[4]
    return site / "tests" / "lava" / "lib" / "dl" / "netx"


def start_suite(mode: str, work: Path) -> Tuple[subprocess.Popen, Path]:
    """Start lava-dl's netx tests with the ``mode`` plugin in a child pytest; returns it and its JUnit XML path."""
    plugin_dir = work / mode
    plugin_dir.mkdir()
    (plugin_dir / f"ilif_suite_{mode}.py").write_text(PLUGINS[mode])
    # each run gets its own copy of the test files (they write recurrent_example.net next to themselves) with
    # links to the read-only network files and gold vectors; site-packages is never written
    suite = plugin_dir / "netx"
    suite.mkdir()
    for entry in suite_dir().iterdir():
        if entry.name in SUITE_FILES:
            shutil.copyfile(entry, suite / entry.name)
        elif entry.suffix == ".net" and entry.name != "recurrent_example.net" or entry.name == "gts":
            (suite / entry.name).symlink_to(entry)
    xml = work / f"{mode}.xml"
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
                             f"ilif_suite_{mode}", f"--junitxml={xml}", *(str(suite / f) for f in SUITE_FILES)],
                            cwd=plugin_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, xml


def outcomes(proc: subprocess.Popen, xml: Path) -> Dict[str, str]:
    """Wait for a run of :func:`start_suite`; test name -> 'passed' / 'failed' / 'skipped' / 'error'."""
    try:
        out, _ = proc.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    assert xml.is_file(), out[-3000:]
    result: Dict[str, str] = {}
    for case in ET.parse(xml).iter("testcase"):
        name = f"{Path(case.get('classname', '')).name}::{case.get('name')}"
        kinds = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        result[name] = kinds[0].replace("failure", "failed") if kinds else "passed"
    return result


def _suite_installed() -> None:
    if not (suite_dir() / "test_hdf5.py").is_file():
        pytest.skip(f"lava-dl's netx tests are not installed at {suite_dir()}")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Dict[str, Dict[str, str]]:
    if os.environ.get(SUITE_ENV, "1") == "0":
        pytest.skip(f"{SUITE_ENV}=0: lava-dl's netx suite skipped")
    _suite_installed()
    work = tmp_path_factory.mktemp("lavadl-suite")
    started = {mode: start_suite(mode, work) for mode in PLUGINS}          # both runs at once (one per core)
    return {mode: outcomes(*run) for mode, run in started.items()}


def test_stock_suite_runs_here(results):
    stock = results["stock"]
    assert sum(v == "passed" for v in stock.values()) >= 15, stock
    assert not [k for k, v in stock.items() if v in ("failed", "error")], stock


def test_every_test_that_passes_stock_passes_with_ilifnetwork(results):
    """Both runs hold the same tests; every test stock passes passes with ILIFNetwork (each compares its outputs
    with lava-dl's gold vectors, so passing means the same outputs as stock netx); only the hardware-only tests
    (``test_hdf5_nx.py``) skip."""
    stock, ours = results["stock"], results["ilif"]
    assert set(stock) == set(ours)
    regressions = sorted(k for k, v in stock.items() if v == "passed" and ours[k] != "passed")
    assert regressions == [], {k: ours[k] for k in regressions}
    bad = sorted(k for k, v in ours.items() if v in ("failed", "error")
                 or (v == "skipped" and "test_hdf5_nx" not in k.split("::")[0]))
    assert bad == [], {k: ours[k] for k in bad}
    blocks = [k for k in ours if "test_blocks" in k.split("::")[0]]
    assert len(blocks) >= 8 and sum(v == "passed" for v in ours.values()) >= 15, ours
