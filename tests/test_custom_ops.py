"""The fused kernels as torch custom operators (:mod:`ilif_lava.kernels.custom_ops`).

``torch.library.opcheck`` checks each operator's schema (no output aliases an input or another output), its fake
implementation against the real one (shapes, dtypes, strides), its autograd registration and AOT dispatch.
``torch.compile(fullgraph=True)`` then traces slayer-style blocks that use them, with no graph break: the compiled
model's spikes are identical to eager and its gradients equal; the quantized integer forward compiles too.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from ilif_lava import block, kernels
from ilif_lava.kernels import cpu_build, custom_ops

HAVE_CPU = cpu_build.load() is not None
pytestmark = pytest.mark.skipif(not HAVE_CPU, reason=f"compiled CPU kernel unavailable: {cpu_build.error()}")
OPS = ("float_forward", "float_backward", "int_forward", "int_forward_float")


def _z(m: int, t: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, t, generator=g, dtype=dtype) * 1.2 + 0.5


FLOAT_FLAGS = list(itertools.product((True, False), (True, False), (0, 1), (0.0, 0.25)))  # mpiu, ciu, inh, cur


@pytest.mark.parametrize("mpiu,ciu,inhibition,cur_kept", FLOAT_FLAGS)
def test_float_ops_pass_opcheck(mpiu, ciu, inhibition, cur_kept):
    z = _z(21, 9).requires_grad_(True)           # 21 neurons: one whole block of 16 and a partial one
    lam = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    args = (z, lam, *custom_ops.float_args(0.9, 0.25, cur_kept, 1.0, mpiu, ciu, inhibition, 1, 0.5, 0.5, True, True),
            "cpu")
    torch.library.opcheck(torch.ops.ilif_lava.float_forward.default, args)
    out = custom_ops.float_forward(*args)
    saved = out[1:]
    go = torch.randn(21, 9, dtype=torch.float64)
    bargs = (go, z.detach(), *(s.detach() for s in saved), lam.detach(), 0.9, 0.25, cur_kept, 1.0, mpiu, ciu,
             inhibition, 1, 0.5, 0.5, True, True, "cpu")
    torch.library.opcheck(torch.ops.ilif_lava.float_backward.default, bargs)


def test_float_op_without_save_keeps_nothing():
    z = _z(5, 4)
    args = (z, torch.tensor([0.5], dtype=z.dtype),
            *custom_ops.float_args(1.0, 0.25, 0.0, 1.0, True, True, 1, 0, 1.0, 0.0, True, False), "cpu")
    out = custom_ops.float_forward(*args)
    assert [t.numel() for t in out[1:]] == [0, 0, 0, 0]
    torch.library.opcheck(torch.ops.ilif_lava.float_forward.default, args)


@pytest.mark.parametrize("record", (True, False))
def test_integer_ops_pass_opcheck(record):
    g = torch.Generator().manual_seed(3)
    a = torch.randint(-300, 900, (18, 7), generator=g)
    args = (a, 64 << 6, 2048, 2048, 3072, 3072, True, True, record, torch.float32, 6, "cpu")
    torch.library.opcheck(torch.ops.ilif_lava.int_forward.default, args)
    z = _z(2 * 3 * 4, 7, torch.float32) * 0.5     # rows are whole [C = 3, inner = 4] blocks of 2 samples
    bias = torch.tensor([-40, 0, 70])
    fargs = (z, 64.0, bias, 4, 64 << 6, 1024, 2048, 3072, 2048, True, True, record, torch.float64, 6, "cpu")
    torch.library.opcheck(torch.ops.ilif_lava.int_forward_float.default, fargs)


def test_fake_shapes_follow_the_backend_layout():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        z = torch.empty(33, 5, dtype=torch.float32)
        lam = torch.empty(1, dtype=torch.float32)
        coefs, codes = custom_ops.float_args(1.0, 0.5, 0.5, 1.0, True, True, 0, 2, 4.0, 0.0, True, True)
        cpu = custom_ops.float_forward(z, lam, coefs, codes, "cpu")
        gpu = custom_ops.float_forward(z, lam, coefs, codes, "gpu")
    assert [tuple(t.shape) for t in cpu] == [(33, 5)] + [(3, 5, 16)] * 2 + [(3, 5), (3, 5, 16)]
    assert cpu[3].dtype == torch.int32
    assert [tuple(t.shape) for t in gpu] == [(33, 5)] + [(5, 33)] * 4
    assert gpu[3].dtype == torch.float32


def _net(quantized: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    params = {"threshold": 1.0, "tau": 2.0, "kappa": 0.25, "inhibition": "plan", "kernel": "cpu"}
    net = torch.nn.Sequential(
        block.Conv(params, 2, 4, 3, padding=1, weight_scale=3),
        block.Pool(params, 2),
        block.Flatten(),
        block.Dense(params, 4 * 4 * 4, 5, weight_scale=10),
    ).double()
    if quantized:
        for m in net.modules():
            if hasattr(m, "neuron"):
                m.neuron.quantized = True
    return net


def _graph_ops(captured):
    return {str(n.target) for gm in captured for n in gm.graph.nodes if n.op == "call_function"}


def test_compile_traces_training_blocks_fullgraph():
    """A fresh model is compiled before any eager call (the neuron learns its shape inside the trace)."""
    x = (torch.rand(3, 2, 8, 8, 6, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    weights = torch.arange(1.0, 7.0)
    captured = []

    def backend(gm, example_inputs):
        captured.append(gm)
        from functorch.compile import make_boxed_func
        from torch._dynamo.backends.common import aot_autograd
        keep = lambda g, _: make_boxed_func(g)  # noqa: E731 - run the traced forward and backward graphs as they are
        return aot_autograd(fw_compiler=keep, bw_compiler=keep)(gm, example_inputs)

    torch._dynamo.reset()
    net_c = _net()
    out_c = torch.compile(net_c, backend=backend, fullgraph=True)(x)
    grads_c = torch.autograd.grad((out_c * weights).sum(), [p for p in net_c.parameters() if p.requires_grad])
    net = _net()
    out_eager = net(x)
    grads_eager = torch.autograd.grad((out_eager * weights).sum(), [p for p in net.parameters() if p.requires_grad])
    assert "ilif_lava.float_forward.default" in _graph_ops(captured)
    assert out_eager.sum() > 0, "the test net must spike"
    assert torch.equal(out_c, out_eager)
    assert len(grads_c) == len(grads_eager) > 0
    for a, b in zip(grads_c, grads_eager):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert kernels.last_used()["float"] == "cpu"


def test_compile_traces_quantized_forward():
    """The quantized forward reads its integer parameters from the learned decay as Python numbers (a graph break
    per neuron, documented in docs/compile.md); the integer kernel itself is traced as its custom op."""
    net = _net(quantized=True).eval()
    x = (torch.rand(2, 2, 8, 8, 5, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    with torch.no_grad():
        out_eager = net(x)
        captured = []

        def backend(gm, example_inputs):
            captured.append(gm)
            return gm.forward

        torch._dynamo.reset()
        out_c = torch.compile(net, backend=backend)(x)
    assert "ilif_lava.int_forward_float.default" in _graph_ops(captured)
    assert out_eager.sum() > 0
    assert torch.equal(out_c, out_eager)
