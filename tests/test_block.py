"""Tests of ilif_lava.block (SLAYER blocks with ILIF neurons): shapes, 8-bit weights, delay shift, HDF5 export,
the Pool-as-depthwise-conv export, and a small training smoke test.

Expected values are computed independently here (torch conv/linear with weights quantized by hand, the neuron
applied to the synaptic input, the spec's step delay), never copied from running the code under test.
"""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ilif_lava import block
from ilif_lava.neuron import Neuron

NEURON_PARAMS = {"threshold": 1.0, "tau": 1.1, "variant": "ILIF"}
ILIF_KEYS = ("iDecay", "vDecay", "cDecay", "mDecay", "vThMant", "inhibition", "mpiu", "ciu")


def _params(**kw):
    p = dict(NEURON_PARAMS)
    p.update(kw)
    return p


def _spikes(shape, p=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).float()


def q8(w: torch.Tensor) -> torch.Tensor:
    """8-bit weight quantization written from its definition: steps of 2/64, clipped to [-256, 254] / 64."""
    return (torch.round(w.detach() * 32) / 32).clamp(-4.0, 254 / 64)


def delayed(x: torch.Tensor) -> torch.Tensor:
    """One-step axonal delay along the last (time) axis, zero at t = 0."""
    return torch.cat([torch.zeros_like(x[..., :1]), x[..., :-1]], dim=-1)


def _scramble_weights(synapse, seed=0, scale=3.0):
    """Large random weights so that rounding and clipping of the 8-bit hook are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        synapse.weight.copy_(scale * torch.randn(synapse.weight.shape, generator=g))


# ---------------------------------------------------------------------------------------------------------
# 6a. shapes and the synaptic computation, time last
# ---------------------------------------------------------------------------------------------------------
def test_dense_shape_and_forward():
    blk = block.Dense(_params(), 20, 7, delay_shift=False)
    _scramble_weights(blk.synapse, scale=0.5)
    x = _spikes((3, 20, 10))
    y = blk(x)
    assert y.shape == (3, 7, 10)
    assert blk.shape == (7,)
    W = q8(blk.synapse.weight).reshape(7, 20)
    z = torch.einsum("oi,nit->not", W, x)
    torch.testing.assert_close(blk.synapse(x), z, rtol=0, atol=1e-6)
    expected = Neuron(**_params())(z)
    torch.testing.assert_close(y, expected, rtol=0, atol=0)
    assert 0 < y.mean() < 1


@pytest.mark.parametrize("stride,padding,out_hw", [(1, 1, 8), (2, 0, 3)])
def test_conv_shape_and_forward(stride, padding, out_hw):
    blk = block.Conv(_params(), 2, 4, 3, stride=stride, padding=padding, delay_shift=False)
    _scramble_weights(blk.synapse, seed=1, scale=0.5)
    x = _spikes((2, 2, 8, 8, 6), seed=1)
    y = blk(x)
    assert y.shape == (2, 4, out_hw, out_hw, 6)
    W = q8(blk.synapse.weight)[..., 0]                               # [out, in, kh, kw]
    z = torch.stack([F.conv2d(x[..., t], W, stride=stride, padding=padding) for t in range(6)], dim=-1)
    torch.testing.assert_close(blk.synapse(x), z, rtol=0, atol=1e-5)
    torch.testing.assert_close(y, Neuron(**_params())(z), rtol=0, atol=0)


def test_pool_shape():
    blk = block.Pool(_params(), 2, delay_shift=False)
    x = _spikes((2, 3, 8, 8, 5), p=0.6, seed=2)
    y = blk(x)
    assert y.shape == (2, 3, 4, 4, 5)
    # weight 1 -> synaptic input is the 2x2 sum pool of the spikes
    z = torch.stack([F.avg_pool2d(x[..., t], 2) * 4 for t in range(5)], dim=-1)
    torch.testing.assert_close(blk.synapse(x), z, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, Neuron(**_params())(z), rtol=0, atol=0)


def test_flatten_shape_and_order():
    x = torch.randn(2, 3, 4, 5, 6)
    y = block.Flatten()(x)
    assert y.shape == (2, 60, 6)
    # neuron index = c * H * W + h * W + w, time untouched
    assert torch.equal(y[1, 2 * 20 + 3 * 5 + 4, :], x[1, 2, 3, 4, :])


def test_affine_is_leaky_readout():
    blk = block.Affine(_params(tau=2.0), 12, 3)
    _scramble_weights(blk.synapse, seed=3, scale=0.5)
    x = _spikes((2, 12, 9), seed=3)
    y = blk(x)
    assert y.shape == (2, 3, 9)
    z = torch.einsum("oi,nit->not", q8(blk.synapse.weight).reshape(3, 12), x)
    v, expected = torch.zeros_like(z[..., 0]), []
    for t in range(9):
        v = 0.5 * v + z[..., t]  # lambda = 1 - 1/tau = 0.5, no firing, no reset
        expected.append(v)
    torch.testing.assert_close(y, torch.stack(expected, -1), rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 5, 7), (2, 3, 4, 4, 7)])
def test_input_block(shape):
    blk = block.Input(_params(), delay_shift=False)
    g = torch.Generator().manual_seed(4)
    x = 2.5 * torch.rand(shape, generator=g)
    y = blk(x)
    assert y.shape == shape
    assert blk.shape == shape[1:-1]
    torch.testing.assert_close(y, Neuron(**_params())(q8(x)), rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------
# 6b. 8-bit weight pre-hook
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [
    lambda: block.Dense(_params(), 16, 8),
    lambda: block.Conv(_params(), 3, 5, 3),
])
def test_weight_pre_hook_is_8bit(make):
    blk = make()
    _scramble_weights(blk.synapse, seed=5, scale=3.0)  # many weights beyond the 8-bit range
    wq = blk.synapse.pre_hook_fx(blk.synapse.weight).detach()
    steps = wq * 32
    assert torch.equal(steps, torch.round(steps))              # multiples of 2/64
    assert wq.min() >= -4.0 and wq.max() <= 254 / 64
    assert wq.min() == -4.0 and wq.max() == 254 / 64           # clipping happened at both ends
    torch.testing.assert_close(wq, q8(blk.synapse.weight), rtol=0, atol=0)
    assert len(torch.unique(wq)) > 50


# ---------------------------------------------------------------------------------------------------------
# 6c. delay_shift
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["dense", "conv", "pool", "input"])
def test_delay_shift_shifts_by_one_step(kind):
    def build(shift):
        torch.manual_seed(0)
        if kind == "dense":
            return (block.Dense(_params(), 10, 6, weight_scale=4, delay_shift=shift),
                    _spikes((2, 10, 8), p=0.5))
        if kind == "conv":
            return (block.Conv(_params(), 2, 3, 3, padding=1, weight_scale=4, delay_shift=shift),
                    _spikes((2, 2, 5, 5, 8), p=0.5))
        if kind == "pool":
            return block.Pool(_params(), 2, delay_shift=shift), _spikes((2, 2, 4, 4, 8), p=0.5)
        return block.Input(_params(), delay_shift=shift), 2 * torch.rand(2, 6, 8)
    b_on, x = build(True)
    b_off, _ = build(False)
    b_off.load_state_dict(b_on.state_dict())
    y_on, y_off = b_on(x), b_off(x)
    assert y_off.sum() > 0
    assert torch.equal(y_on, delayed(y_off))
    assert (y_on[..., 0] == 0).all()


@pytest.mark.parametrize("shape,transpose", [((3, 4, 6), False), ((2, 3, 2, 2, 1), False), ((4, 5, 7), True)])
def test_step_shift_and_its_gradient(shape, transpose):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if transpose:                                   # a non-contiguous input
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    x.requires_grad_(True)
    y = block.step_shift(x)
    assert torch.equal(y, delayed(x.detach()))
    up = torch.randn(shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, up)
    expected = torch.cat([up[..., 1:], torch.zeros_like(up[..., :1])], dim=-1)   # d/dx[t] of y[t+1]
    assert torch.equal(grad, expected)


@pytest.mark.parametrize("k", [2, 3])
def test_sum_pool_sums_windows_and_broadcasts_the_gradient(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randint(0, 2, (2, 3, 2 * k, 3 * k, 5), generator=g).double().requires_grad_(True)
    y = block.sum_pool(x, k, "test")
    windows = x.detach().reshape(2, 3, 2, k, 3, k, 5)
    assert torch.equal(y, windows.sum(dim=(3, 5)))
    up = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad(y, x, up)
    expected = up[:, :, :, None, :, None].expand(2, 3, 2, k, 3, k, 5).reshape(x.shape)
    assert torch.equal(grad, expected)
    with pytest.raises(ValueError, match="test: pre_pool=2 needs input H, W divisible by 2"):
        block.sum_pool(torch.zeros(1, 1, 3, 4, 2), 2, "test")


@pytest.mark.parametrize("kind", ["bias", "batch_norm"])
def test_delayed_input_equals_the_neurons_forward_delayed(kind):
    """A biased (or batch-normed) block behind delay_shift runs neuron(step_shift(z)); that must be the neuron's
    own definition, forward_delayed(z) (T + 1 steps, the last dropped), in value and gradient."""
    torch.manual_seed(3)
    extra = {"bias": 0.4} if kind == "bias" else {"batch_norm": True}
    blk = block.Dense(_params(), 12, 5, weight_scale=4, delay_shift=True, **extra)
    x = _spikes((4, 12, 9), p=0.4, seed=3)
    y = blk(x)
    z = blk.synapse(x) if kind == "bias" else blk.bn(blk.synapse(x))
    ref = blk.neuron.forward_delayed(z)
    assert y.sum() > 0 and torch.equal(y, ref)
    w = blk.synapse.weight
    (g_block,) = torch.autograd.grad(y.sum(), w)
    (g_ref,) = torch.autograd.grad(ref.sum(), w)
    torch.testing.assert_close(g_block, g_ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# 6d. HDF5 export
# ---------------------------------------------------------------------------------------------------------
def _check_neuron_group(g, variant="ILIF", tau=1.1):
    n = g["neuron"]
    assert n["type"][()] == b"ILIF"
    for k in ILIF_KEYS:
        assert k in n, k
    assert int(n["vDecay"][()]) == round(4096 / tau)
    assert int(n["cDecay"][()]) == round(4096 * 0.97)
    assert int(n["mDecay"][()]) == 0
    assert int(n["iDecay"][()]) == 4096
    assert int(n["vThMant"][()]) == 64
    assert n["inhibition"][()] == b"plan"
    assert bool(n["mpiu"][()]) == (variant in ("ILIF", "MPIU", "IPLIF"))
    assert bool(n["ciu"][()]) == (variant in ("ILIF", "CIU", "IPLIF"))


def _check_weight(w, expected_float):
    w = np.asarray(w)
    assert np.all(w == np.round(w)) and np.all(w.astype(np.int64) % 2 == 0)
    assert w.min() >= -256 and w.max() <= 254
    np.testing.assert_array_equal(w, expected_float * 64)


@pytest.mark.parametrize("variant", ["ILIF", "LIF", "MPIU"])
def test_export_dense(tmp_path, variant):
    blk = block.Dense(_params(variant=variant), 12, 5)
    _scramble_weights(blk.synapse, seed=6, scale=3.0)
    blk(_spikes((1, 12, 4)))
    wq = q8(blk.synapse.weight).reshape(5, 12).numpy()
    with h5py.File(tmp_path / "net.net", "w") as f:
        blk.export_hdf5(f.create_group("layer/0"))
    with h5py.File(tmp_path / "net.net", "r") as f:
        g = f["layer/0"]
        assert g["type"][0] == b"dense"
        assert tuple(g["shape"][()]) == (5,)
        assert g["weight"].shape == (5, 12)
        _check_weight(g["weight"][()], wq)
        assert g["weight"][()].min() == -256 and g["weight"][()].max() == 254
        _check_neuron_group(g, variant)


def test_export_dense_weight_norm(tmp_path):
    """With weight_norm the export writes the same 8-bit weights the forward pass used."""
    torch.manual_seed(1)
    blk = block.Dense(_params(), 12, 5, weight_norm=True)
    x = _spikes((1, 12, 6))
    blk(x)
    z_before = blk.synapse(x).detach()
    with h5py.File(tmp_path / "n.net", "w") as f:
        blk.export_hdf5(f.create_group("l"))
    with h5py.File(tmp_path / "n.net", "r") as f:
        w = f["l/weight"][()]
    _check_weight(w, w / 64)
    torch.testing.assert_close(torch.einsum("oi,nit->not", torch.from_numpy(w).float() / 64, x), z_before,
                               rtol=0, atol=1e-5)


def test_export_conv(tmp_path):
    blk = block.Conv(_params(), 3, 4, 3, stride=2, padding=1)
    _scramble_weights(blk.synapse, seed=7, scale=2.0)
    blk(_spikes((1, 3, 8, 8, 3)))
    with h5py.File(tmp_path / "c.net", "w") as f:
        blk.export_hdf5(f.create_group("layer/0"))
    with h5py.File(tmp_path / "c.net", "r") as f:
        g = f["layer/0"]
        assert g["type"][0] == b"conv"
        assert tuple(g["shape"][()]) == (4, 4, 4)
        assert g["weight"].shape == (4, 3, 3, 3)
        _check_weight(g["weight"][()], q8(blk.synapse.weight)[..., 0].numpy())
        assert tuple(g["stride"][()]) == (2, 2) and tuple(g["padding"][()]) == (1, 1)
        _check_neuron_group(g)


def test_export_input(tmp_path):
    blk = block.Input(_params(), weight=1.5, bias=0.25)
    blk(torch.rand(1, 6, 4))
    with h5py.File(tmp_path / "i.net", "w") as f:
        blk.export_hdf5(f.create_group("layer/0"))
    with h5py.File(tmp_path / "i.net", "r") as f:
        g = f["layer/0"]
        assert g["type"][0] == b"input"
        assert tuple(g["shape"][()]) == (6,)
        assert np.ravel(g["weight"][()])[0] == 96 and np.ravel(g["bias"][()])[0] == 16
        _check_neuron_group(g)


@pytest.mark.parametrize("kernel,stride,padding,weight_scale,C", [
    (2, None, 0, 1, 3),
    (3, None, 0, 1, 2),
    (4, 4, 0, 0.5, 4),
])
def test_pool_export_is_equivalent_depthwise_conv(tmp_path, kernel, stride, padding, weight_scale, C):
    blk = block.Pool(_params(), kernel, stride=stride, padding=padding, weight_scale=weight_scale)
    x = _spikes((2, C, 12, 12, 5), p=0.5, seed=8)  # 12 % kernel == 0 (see the xfail test below)
    blk(x)
    with h5py.File(tmp_path / "p.net", "w") as f:
        blk.export_hdf5(f.create_group("layer/0"))
    with h5py.File(tmp_path / "p.net", "r") as f:
        g = f["layer/0"]
        assert g["type"][0] == b"conv"
        assert int(g["groups"][()]) == C == int(g["inChannels"][()]) == int(g["outChannels"][()])
        w = g["weight"][()]
        assert w.shape == (C, 1, kernel, kernel)
        assert len(np.unique(w)) == 1
        _check_weight(w, np.full(w.shape, weight_scale, dtype=np.float32))
        _check_neuron_group(g)
        conv_kw = dict(stride=tuple(int(v) for v in g["stride"][()]),
                       padding=tuple(int(v) for v in g["padding"][()]),
                       dilation=tuple(int(v) for v in g["dilation"][()]))
        out_shape = tuple(g["shape"][()])
    kernel_t = torch.from_numpy(w).float() / 64  # integer mantissas back to float units
    z_conv = torch.stack([F.conv2d(x[..., t], kernel_t, groups=C, **conv_kw) for t in range(x.shape[-1])], -1)
    z_pool = blk.synapse(x).detach()
    assert z_pool.abs().sum() > 0
    torch.testing.assert_close(z_conv, z_pool, rtol=0, atol=1e-6)
    assert out_shape == tuple(z_pool.shape[1:-1])


@pytest.mark.parametrize("kernel,stride,padding,hw", [(2, None, 0, 7), (3, 1, 1, 9)])
def test_pool_export_refuses_unsupported_geometry(tmp_path, kernel, stride, padding, hw):
    """lava-dl's synapse.Pool is a per-channel pool only when non-overlapping, unpadded and with H, W divisible by
    the kernel (it runs conv3d on [N, 1, C*H, W, T] and pads H by H % kernel rows); export must refuse the rest
    instead of writing a depthwise conv that computes something else."""
    blk = block.Pool(_params(), kernel, stride=stride, padding=padding)
    blk(_spikes((1, 2, hw, hw, 3), p=0.5, seed=9))
    with h5py.File(tmp_path / "p.net", "w") as f:
        with pytest.raises(NotImplementedError, match="Pool export"):
            blk.export_hdf5(f.create_group("l"))


# ---------------------------------------------------------------------------------------------------------
# 7. training smoke test
# ---------------------------------------------------------------------------------------------------------
def _toy_data(n=64, n_in=20, T=16, seed=0):
    """Two rate-coded classes: class 0 drives inputs 0..9, class 1 drives inputs 10..19."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    rate = torch.full((n, n_in), 0.05)
    rate[y == 0, : n_in // 2] = 0.6
    rate[y == 1, n_in // 2:] = 0.6
    x = (torch.rand(n, n_in, T, generator=g) < rate[..., None]).float()
    return x, y


def test_training_reduces_loss():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        block.Dense(_params(), 20, 16, weight_scale=3),
        block.Dense(_params(), 16, 2, weight_scale=3),
    )
    x, y = _toy_data()
    target = torch.where(torch.nn.functional.one_hot(y, 2) == 1, 0.6, 0.05)

    def loss_fn():
        rate = net(x).mean(-1)          # output spike rate per class
        return F.mse_loss(rate, target), rate

    with torch.no_grad():
        loss0, rate0 = loss_fn()
    acc0 = (rate0.argmax(1) == y).float().mean().item()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    first_layer_grad = None
    for step in range(30):
        opt.zero_grad()
        loss, _ = loss_fn()
        loss.backward()
        if step == 0:
            first_layer_grad = net[0].synapse.weight.grad.abs().sum().item()
        opt.step()
    with torch.no_grad():
        loss1, rate1 = loss_fn()
    acc1 = (rate1.argmax(1) == y).float().mean().item()
    assert first_layer_grad > 0                     # gradients reach the first block through the ILIF neurons
    assert loss1.item() < 0.6 * loss0.item(), (loss0.item(), loss1.item())
    assert acc1 >= max(acc0, 0.9), (acc0, acc1)
