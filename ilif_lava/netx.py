"""netx HDF5 support for ILIF: write whole networks, read the ILIF neuron entry, validate files.

lava-dl's ``netx.hdf5.Network`` dispatches neuron types in one static method that its layer builders call by
explicit class name, so a subclass override has no effect (lava-internals.md 3.6). :func:`ilif_neuron_types`
therefore swaps that attribute for a wrapper that understands ``'ILIF'`` and delegates every other type to the
original, only while an :class:`~ilif_lava.lava_proc.process.ILIFNetwork` is being built. Nothing is copied
from netx; files with only stock neuron types build exactly as with stock netx.
"""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Union

import h5py
import numpy as np
from lava.lib.dl.netx import hdf5

from ilif_lava import hdf5_validate as _hdf5_validate
from ilif_lava.hdf5_validate import NetworkFileError, UnsupportedLayerError  # noqa: F401  (re-exported)
from ilif_lava.neuron import NEURON_TYPE

_lock = threading.RLock()


def _raw(cfg: Any, key: str) -> Any:
    """Read a neuron key from a dict or a netx ``NetDict`` (which wraps unknown keys instead of returning them)."""
    if isinstance(cfg, dict):
        val = cfg[key]
    elif isinstance(cfg, h5py.Group):
        val = cfg[key][()]
    else:  # netx NetDict
        val = cfg.f[key][()]
    if isinstance(val, bytes):
        return val.decode("ascii")
    if isinstance(val, np.ndarray) and val.dtype.kind == "S":
        return val.reshape(-1)[0].decode("ascii")
    return val


def ilif_lava_params(neuron_config: Any) -> Dict[str, Any]:
    """netx ``get_neuron_params`` result for an ILIF neuron entry."""
    from ilif_lava.lava_proc.process import ILIF
    return {"neuron_proc": ILIF, "bias_key": "bias_mant", "num_message_bits": 0,
            "vth": int(_raw(neuron_config, "vThMant")), "i_decay": int(_raw(neuron_config, "iDecay")),
            "v_decay": int(_raw(neuron_config, "vDecay")), "c_decay": int(_raw(neuron_config, "cDecay")),
            "m_decay": int(_raw(neuron_config, "mDecay")), "mpiu": bool(_raw(neuron_config, "mpiu")),
            "ciu": bool(_raw(neuron_config, "ciu")), "inhibition": str(_raw(neuron_config, "inhibition"))}


@contextlib.contextmanager
def ilif_neuron_types() -> Iterator[None]:
    """While active, ``netx.hdf5.Network`` builds ``neuron/type == 'ILIF'`` layers as ILIF processes."""
    with _lock:
        original = hdf5.Network.__dict__["get_neuron_params"]
        stock = original.__func__ if isinstance(original, staticmethod) else original

        def get_neuron_params(neuron_config, input=False, reset_interval=None, reset_offset=0, spike_exp=6):
            if neuron_config["type"] == NEURON_TYPE:
                if reset_interval is not None:
                    raise NotImplementedError("reset_interval is not supported for ILIF layers")
                return ilif_lava_params(neuron_config)
            return stock(neuron_config, input=input, reset_interval=reset_interval,
                         reset_offset=reset_offset, spike_exp=spike_exp)

        hdf5.Network.get_neuron_params = staticmethod(get_neuron_params)
        try:
            yield
        finally:
            hdf5.Network.get_neuron_params = original


# ---------------------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------------------
def export_blocks(blocks: Iterable[Any], path: Union[str, Path]) -> Path:
    """Write slayer/ILIF blocks as a netx HDF5 file (``layer/<i>/...``). Written to a temp file, then renamed.

    ``export_hdf5`` of lava-dl blocks disables weight norm (it mutates the model); we export a deep copy.
    """
    import copy
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as h:
        layer = h.create_group("layer")
        for i, blk in enumerate(blocks):
            copy.deepcopy(blk).export_hdf5(layer.create_group(str(i)))
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------------------------------------
# reading / validation
# ---------------------------------------------------------------------------------------------------------
def validate_file(path: Union[str, Path], input_shape=None) -> None:
    """Check, before any Lava process is built, that ``path`` is a netx HDF5 network ILIFNetwork can build.

    Delegates to :func:`ilif_lava.hdf5_validate.validate_file` (structure, keys, dtypes, shapes, values, layer
    sizes, neuron types and parameters). Raises :class:`NetworkFileError` naming the file, layer and key.
    """
    _hdf5_validate.validate_file(path, input_shape=input_shape)
