"""Lava synapses of a file's skip connections (the graph extension of netx HDF5, ilif_lava/graph.py).

netx builds a file's layers as a chain (layer i feeds layer i + 1). :func:`attach_skips` adds, for every
``layer/<i>/skip/<j>`` group, one Lava ``Sparse`` synapse (``DelaySparse`` when the source is more than one layer
back) from the source layer's output to layer i's neurons, whose input port sums it with the layer's own synapse.
Weights go through netx's own ``optimize_weight_bits`` and the synapse gets the same ``weight_exp`` /
``num_weight_bits`` netx gives its Dense synapses, so each skip computes what a netx dense layer with the same
weights would. Delay: :func:`ilif_lava.graph.skip_delay` (pipelined timing).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import h5py
import numpy as np

from ilif_lava.graph import skip_delay, skip_matrix
from ilif_lava.netx_schema import K, T, decode


def lava_layer_index(layers: h5py.Group) -> Dict[int, int]:
    """{file layer index: index in netx's list of Lava blocks} for the layers that become blocks."""
    out: Dict[int, int] = {}
    for i in range(len(layers)):
        g = layers[str(i)]
        ltype = decode(g[K.TYPE][()])
        if ltype in (T.CONV, T.DENSE, T.DENSE_REC) or (ltype == T.INPUT and K.NEURON in g):
            out[i] = len(out)
    return out


def attach_skips(path: Union[str, Path], blocks: Sequence[Any], skip_layers: int = 0) -> List[Any]:
    """Build and connect the skip synapses of the (validated) file ``path`` between netx's ``blocks`` (the Lava
    blocks netx built, in order). Returns the synapse processes (keep them referenced)."""
    from lava.lib.dl.netx.utils import optimize_weight_bits
    from lava.proc.sparse.process import DelaySparse, Sparse
    from scipy.sparse import csr_matrix

    made: List[Any] = []
    with h5py.File(path, "r") as h:
        layers = h[K.LAYER]
        index = lava_layer_index(layers)
        for i, li in index.items():
            g = layers[str(i)]
            if K.SKIP not in g or li >= len(blocks):
                continue
            if skip_layers:
                raise ValueError(f"{path}: layer {i}: skip synapses cannot be built with skip_layers={skip_layers}")
            target = blocks[li].neuron
            for j in range(len(g[K.SKIP])):
                sg = g[K.SKIP][str(j)]
                src = int(decode(sg[K.SOURCE][()]))
                ls = index[src]
                w, h_, c = (int(v) for v in blocks[ls].out.shape)              # Lava (x, y, f) = (W, H, C)
                weight = np.asarray(sg[K.WEIGHT][()], dtype=np.float64)
                opt, bits, exp, _ = optimize_weight_bits(weight)
                stride = np.broadcast_to(np.asarray(sg[K.STRIDE][()]).reshape(-1), (2,))
                matrix = skip_matrix(np.asarray(opt), (c, h_, w), stride)
                delay = skip_delay(ls, li)
                kw = dict(weight_exp=int(exp), num_weight_bits=int(bits), num_message_bits=0,
                          name=f"skip_{i}_{j}")
                if delay > 0:
                    delays = csr_matrix((np.full(matrix.nnz, delay, dtype=int), matrix.indices, matrix.indptr),
                                        shape=matrix.shape)
                    syn = DelaySparse(weights=matrix, delays=delays, max_delay=delay, **kw)
                else:
                    syn = Sparse(weights=matrix, **kw)
                blocks[ls].out.flatten().connect(syn.s_in)
                syn.a_out.reshape(target.a_in.shape).connect(target.a_in)
                made.append(syn)
    return made
