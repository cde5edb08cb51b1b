"""ilif-lava core: ILIF neuron, blocks, one fixed-point definition, Lava processes, netx support, metrics, Loihi 2 checks.

Importing this package first installs the Lava Python 3.11 compatibility shim (see :mod:`ilif_lava.compat`).
The core never imports the pipeline stages (training/, export/, simulations/).
"""
from ilif_lava import compat as _compat

_compat.install()

__version__ = "0.1.0"
