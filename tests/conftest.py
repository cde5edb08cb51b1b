"""Shared test fixtures: paths to the shared real data, skipped with a clear message when absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import ilif_lava  # noqa: F401  (installs the Lava Python 3.11 shim before any test imports Lava)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ILIF_LAVA_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def nmnist_dir() -> Path:
    d = SHARED_DATA / "nmnist_small"
    if not (d / "train.txt").exists():
        pytest.skip(f"N-MNIST subset not found at {d} (set ILIF_LAVA_DATA to the folder holding nmnist_small/)")
    return d


@pytest.fixture(scope="session")
def pokerdvs_dir() -> Path:
    d = SHARED_DATA / "pokerdvs"
    if not (d / "pips_train.tar.gz").exists():
        pytest.skip(f"POKER-DVS archives not found at {d} (set ILIF_LAVA_DATA to the folder holding pokerdvs/)")
    return d
