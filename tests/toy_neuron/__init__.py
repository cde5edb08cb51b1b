"""A toy second neuron type, TOYIF, added end to end through the public extension points (docs/extending.md).

TOYIF is an integrate-and-fire neuron with a shift leak and a hard reset. Its files mirror the built-in neuron's:

* ``fixed_point.py``: the integer rule (:func:`toy_step`) and its netx table (``TOY_TABLE``), backend-neutral
  (torch int64 tensors and numpy int64 arrays), as ``ilif_lava/fixed_point.py`` and
  ``ilif_lava/netx_schema/tables.py`` are for ILIF;
* ``neuron.py``: the slayer neuron (float rule with a surrogate gradient, quantized forward = the integer rule)
  and a dense block, as ``ilif_lava/neuron.py`` / ``ilif_lava/block.py``;
* ``process.py`` / ``models.py``: the Lava process and its ``fixed_pt`` model, as ``ilif_lava/lava_proc/``. This
  folder holds only small modules: Lava's compiler executes every ``.py`` file next to a process definition
  when it searches for process models.

:func:`register` / :func:`unregister` add it to / remove it from ``ilif_lava.netx`` (tests/test_extending.py).
"""
from __future__ import annotations

TOY_NEURON_TYPE = "TOYIF"


def register() -> None:
    """Let ``ILIFNetwork`` build and validate TOYIF layers (``ilif_lava.netx.register_neuron_type`` with the table)."""
    from ilif_lava import netx
    from tests.toy_neuron.fixed_point import TOY_TABLE
    from tests.toy_neuron.process import toy_lava_params
    netx.register_neuron_type(TOY_NEURON_TYPE, toy_lava_params, keys=TOY_TABLE)


def unregister() -> None:
    from ilif_lava import netx
    netx.unregister_neuron_type(TOY_NEURON_TYPE)
