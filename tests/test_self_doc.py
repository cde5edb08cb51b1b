"""The neuron and the blocks document themselves as slayer's do (code-health issue, item 6).

* ``Neuron``'s class docstring states the dynamics as math, ``Shape:`` and an ``Example::`` that runs (doctest);
  the ``Dense`` example runs too.
* ``print(neuron)`` shows variant, threshold, tau, kappa, beta, inhibition, surrogate, kernel, quantized mode, the
  bias and a non-default input shift; ``print(block)`` shows it inside the block.
* ``help(ilif_lava.block.X)`` lists every argument of slayer's abstract block (composed from slayer's own docstring
  at import time, not copied into our source) plus ours (bias, batch_norm, pre_pool, graded_input).
"""
from __future__ import annotations

import doctest
import inspect
from pathlib import Path

import pytest

import ilif_lava  # noqa: F401
from ilif_lava import block
from ilif_lava.neuron import Neuron
from lava.lib.dl.slayer.block import base as slayer_base

BLOCKS = {"Input": (slayer_base.AbstractInput, ()), "Flatten": (slayer_base.AbstractFlatten, ()),
          "Dense": (slayer_base.AbstractDense, ("bias", "batch_norm")),
          "Conv": (slayer_base.AbstractConv, ("bias", "batch_norm", "pre_pool", "graded_input")),
          "Pool": (slayer_base.AbstractPool, ()), "Readout": (slayer_base.AbstractDense, ("bias", "pre_pool")),
          "Affine": (slayer_base.AbstractAffine, ())}


def _run_doctests(obj, name: str) -> doctest.TestResults:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(recurse=False).find(obj, name, globs={}):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("obj", [Neuron, block.Dense], ids=lambda o: o.__name__)
def test_examples_run(obj):
    result = _run_doctests(obj, obj.__name__)
    assert result.attempted >= 2 and result.failed == 0, result


def test_neuron_docstring_sections():
    doc = inspect.getdoc(Neuron)
    for part in (".. math::", r"\kappa", r"\max(C[t], 0)", "Shape:", "Example::", "Parameters"):
        assert part in doc, part


def test_neuron_repr():
    text = repr(Neuron(threshold=1.25, tau=2.0, kappa=0.05, beta=0.5, variant="MPIU", inhibition="sigmoid",
                       surrogate="exp", kernel="torch", quantized=True))
    assert text == ("Neuron(variant='MPIU', threshold=1.25, tau=2.0, kappa=0.05, beta=0.5, inhibition='sigmoid', "
                    "surrogate='exp', kernel='torch', quantized=True)")
    n = Neuron(tau=2.0, variant="PLIF")
    assert "tau=2.0 (learned)" in repr(n)
    n.add_bias(5)
    assert repr(n).endswith("bias=5)")
    assert "input_shift" not in repr(n)
    conv = block.Conv({"threshold": 1.0}, 3, 4, 3, graded_input=True, batch_norm=True, delay_shift=False)
    text = repr(conv)
    assert "delay_shift=False, graded_input=True" in text
    assert "bias='batch_norm', input_shift=0)" in text and "(neuron): Neuron(variant='ILIF'" in text
    assert "current_decay=0.5" in repr(Neuron(current_decay=0.5)) and "current_decay" not in repr(Neuron())


def test_repr_changes_nothing():
    n = Neuron(requires_grad=True)
    n.voltage_decay.data.fill_(5000.0)              # out of range: only a use clamps it (slayer's CUBA rule)
    assert "tau=1.0 (learned)" in repr(n) and n.voltage_decay.item() == 5000.0


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_help_lists_slayer_and_own_arguments(name):
    cls = getattr(block, name)
    slayer_cls, own = BLOCKS[name]
    doc = inspect.getdoc(cls)
    theirs = inspect.cleandoc(slayer_cls.__doc__).partition("Parameters\n----------\n")[2]
    entries = [line for line in theirs.splitlines() if line and not line[0].isspace()]
    assert entries, name
    for header in entries:                          # every slayer argument, with slayer's own header line
        assert header in doc.splitlines(), (name, header)
    for arg in own:
        assert any(line.startswith(f"{arg} : ") for line in doc.splitlines()), (name, arg)
    assert "Shape:" in doc and "Parameters\n----------" in doc
    assert "This should never be instantiated" not in doc       # slayer's abstract summary is not ours
    assert doc.index("count_log : ") > max((doc.index(f"{a} : ") for a in own), default=0)


def test_slayer_text_is_not_copied_into_our_source():
    source = Path(block.__file__).read_text()
    for phrase in ("flag to enable weight normalization", "number of blocked connections",
                   "flag to return event count log"):
        assert phrase in inspect.getdoc(block.Conv) and phrase not in source
