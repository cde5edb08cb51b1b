"""Reading the layers of a netx HDF5 network for the Loihi 2 check (opened through :mod:`ilif_lava.safe_hdf5`)."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional, Tuple, Union

import h5py
import numpy as np

from ilif_lava import netx_schema as schema
from ilif_lava.netx_schema import K
from ilif_lava.safe_hdf5 import open_checked

PathOrH5 = Union[str, Path, h5py.File, h5py.Group]


@contextmanager
def open_layers(path_or_h5: PathOrH5) -> Iterator[h5py.Group]:
    """Yield the ``layer`` group of a path, an open file or a group (the ``layer`` group itself is accepted)."""
    if isinstance(path_or_h5, (str, Path)):
        with open_checked(path_or_h5) as f:                   # a FIFO / device / directory is never opened
            yield f[K.LAYER]
        return
    g = path_or_h5
    yield g[K.LAYER] if K.LAYER in g else g


def layer_items(layers: h5py.Group) -> List[Tuple[int, h5py.Group]]:
    return sorted(((int(k), layers[k]) for k in layers.keys()), key=lambda kv: kv[0])


def layer_type(g: h5py.Group) -> str:
    return schema.text(g[K.TYPE][()], strict=False).lower() if K.TYPE in g else ""


def neuron_type(g: h5py.Group) -> Optional[str]:
    if K.NEURON not in g or not isinstance(g[K.NEURON], h5py.Group):
        return None
    n = g[K.NEURON]
    key = schema.NEURON_TYPE_KEY
    return schema.text(n[key][()], strict=False).upper() if key in n else schema.DEFAULT_NEURON_TYPE


def ints(v: Any) -> Tuple[int, ...]:
    return tuple(int(x) for x in np.asarray(v).ravel())
