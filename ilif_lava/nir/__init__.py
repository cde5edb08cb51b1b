"""NIR interchange (Neuromorphic Intermediate Representation, PyPI ``nir`` 1.0.8) for ILIF networks.

* :func:`to_nir` / :func:`write_nir`: our network -> ``nir.NIRGraph`` (+ a lossiness report, always computed);
* :func:`from_nir` / :func:`read_nir`: NIR graphs with LIF / CubaLIF / IF / Affine / Linear / Conv2d / Flatten /
  SumPool2d / Scale / Delay nodes (as snnTorch, Norse, SpikingJelly write them) -> our blocks;
* :func:`simulate_nir`: the float NIR semantics of a graph, metadata-blind (the reference the import report
  compares the deployed network with, and the "consumer that ignores metadata" of the lossiness check).

Conventions (docs/nir.md): one NIR time step ``dt`` (default 1.0) is one of our steps; forward Euler; our
weights are in threshold units, so NIR's input gain ``r * dt / tau`` is exported as 1. Tensors are
[N, C, H, W, T] or [N, F, T], time last, as everywhere in ilif_lava. Imports only ilif_lava.* (core).
"""
from ilif_lava.nir.convention import NIRConversionError
from ilif_lava.nir.export import export_layers, lossiness_report, to_nir, write_nir
from ilif_lava.nir.files import read_nir
from ilif_lava.nir.importer import NIRImport, from_nir
from ilif_lava.nir.reference import NIRSemanticsError, simulate_nir

__all__ = ["NIRConversionError", "NIRImport", "NIRSemanticsError", "export_layers", "from_nir", "lossiness_report",
           "read_nir", "simulate_nir", "to_nir", "write_nir"]
