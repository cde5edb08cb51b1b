"""One home for the project's names (:mod:`ilif_lava.names`): it imports nothing heavy, the command line offers
exactly its names, and no other module spells the variant, network or dataset lists differently."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ilif_lava import names

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ilif_lava", "training", "export", "simulations", "pipeline")


def test_names_import_no_heavy_package():
    code = ("import sys, ilif_lava.names, ilif_lava.file_limits\n"
            "print(sorted(m for m in ('torch', 'numpy', 'h5py', 'lava', 'scipy') if m in sys.modules))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]", res.stdout


def _choices(sub: str, flag: str) -> tuple:
    from pipeline.cli import build_parser
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    action = next(a for a in subparsers.choices[sub]._actions if flag in a.option_strings)
    return tuple(action.choices)


@pytest.mark.parametrize("flag, expected", [("--neuron", names.NEURONS), ("--arch", names.ARCHS),
                                            ("--dataset", names.DATASETS), ("--inhibition", names.INHIBITIONS),
                                            ("--surrogate", names.SURROGATES), ("--amp", names.AMP_DTYPES)])
def test_cli_offers_exactly_the_names(flag, expected):
    assert _choices("train", flag) == expected


def test_the_core_and_stages_agree_with_the_names():
    from ilif_lava import file_limits, loihi2, neuron, surrogate
    from pipeline import study, study_cli
    from training import config, datasets, models
    assert neuron.VARIANTS == names.VARIANTS
    assert set(neuron.INHIBITION_FLOAT) == set(names.INHIBITIONS)
    assert surrogate.SURROGATES is names.SURROGATES
    assert models.NEURONS == names.NEURONS
    assert models.ARCHS is names.ARCHS and config.ARCHS is names.ARCHS
    assert datasets.DATASETS is names.DATASETS and tuple(datasets.LOADERS) == names.DATASETS
    assert set(study.VARIANTS) == set(names.VARIANTS) and study_cli.VARIANTS is names.VARIANTS
    assert file_limits.CHIP_CORES == loihi2.CHIP_CORES == names.CHIP_CORES
    assert file_limits.DEFAULT_LIMITS.max_layers == names.CHIP_CORES
    assert file_limits.DEFAULT_LIMITS.max_synapses == names.CHIP_SYNAPSES


# The lists as literals: a second spelling of one of them anywhere in the packages is a second home.
LISTS = {"variants": names.VARIANTS, "archs": names.ARCHS, "datasets": names.DATASETS}
# Modules that still spell a list themselves (checked equal above); each should read ilif_lava.names instead.
KNOWN: set = set()


LITERAL = re.compile(r"""[(\[]\s*((?:["'][^"'\n]*["']\s*,\s*)+["'][^"'\n]*["']\s*,?\s*)[)\]]""")


def _spells(text: str, values: tuple) -> bool:
    """``text`` holds a tuple or list literal of strings that names every one of ``values`` (in any order, maybe
    with others): the whole list written again, not a subset such as the variants with an MPIU."""
    return any(set(values) <= set(re.findall(r"""["']([^"'\n]*)["']""", m.group(1))) for m in LITERAL.finditer(text))


def test_no_module_spells_the_lists_again():
    found = set()
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "ilif_lava/names.py":
                continue
            text = path.read_text()
            for what, values in LISTS.items():
                if _spells(text, values):
                    found.add((rel, what))
    assert found - KNOWN == set(), "spell these lists through ilif_lava.names"
    assert KNOWN - found == set(), "these modules read ilif_lava.names now: remove them from KNOWN"


def test_the_scan_finds_a_spelled_list():
    """The scan above can fail: a whole list is found in any order and inside a longer one; subsets are not."""
    assert _spells('X = ("LIF", "MPIU", "CIU", "ILIF", "PLIF", "IPLIF")', names.VARIANTS)
    assert _spells("NEURONS = ['ILIF', 'MPIU', 'CIU', 'LIF', 'PLIF',\n 'IPLIF', 'CUBA']", names.VARIANTS)
    assert _spells(repr(tuple(reversed(names.DATASETS))), names.DATASETS)
    assert not _spells('mpiu = variant in ("ILIF", "MPIU", "IPLIF")', names.VARIANTS)
    assert not _spells('("mlp", "cnn", "vgg11")', names.ARCHS)
