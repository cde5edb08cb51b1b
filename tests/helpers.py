"""Small helpers shared by the tests (torch-vs-Lava runs, CLI calls)."""
from __future__ import annotations

from typing import List

import numpy as np
import torch


def forward_all(blocks, x: torch.Tensor) -> List[torch.Tensor]:
    """Run blocks in sequence without gradients; the output of every block."""
    outs, h = [], x
    with torch.no_grad():
        for b in blocks:
            h = b(h)
            outs.append(h)
    return outs


def flat(t: torch.Tensor) -> np.ndarray:
    """[N, C(, H, W), T] -> [N, C*H*W, T] (slayer CHW order, as run_network returns)."""
    return t.reshape(t.shape[0], -1, t.shape[-1]).cpu().numpy()


def run_netx(net, steps: int, x=None, input_bias=None) -> List[np.ndarray]:
    """Run a built netx ``Network`` (stock or ILIFNetwork) for ``steps`` on Loihi2SimCfg fixed_pt; the output of
    every layer, each [*layer.out.shape, steps] in Lava's order.

    ``x`` [*net.inp.shape, steps] feeds ``net.inp`` from a RingBuffer; ``input_bias`` [*shape] drives a netx
    ``input`` layer through its neurons' ``bias_mant`` instead (netx's Input block takes no port input).
    """
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc import io

    if x is not None:
        io.source.RingBuffer(data=np.asarray(x).astype(np.int32)).s_out.connect(net.inp)
    if input_bias is not None:
        net.layers[0].neuron.bias_mant.init = np.asarray(input_bias)
    sinks = []
    for layer in net.layers:
        sink = io.sink.RingBuffer(shape=layer.out.shape, buffer=steps)
        layer.out.connect(sink.a_in)
        sinks.append(sink)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        return [np.array(s.data.get()) for s in sinks]
    finally:
        net.stop()


def run_cli(argv: List[str], capsys) -> tuple:
    """(exit code, stdout, stderr) of ``pipeline.cli.main(argv)``, whether it returns or raises SystemExit."""
    from pipeline.cli import main
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err
