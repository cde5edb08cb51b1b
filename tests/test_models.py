"""Model builders (MLP, CNN, VGG-11 at tiny size on CPU) and the loss functions."""
import pytest
import torch
import torch.nn.functional as F

import ilif_lava  # noqa: F401
from training.losses import get_loss, predict, spike_count, tet
from training.models import build_model, model_from_meta


@pytest.mark.parametrize("arch,in_shape", [("mlp", (2, 34, 34)), ("cnn", (1, 8, 8)), ("vgg11", (2, 32, 32))])
@pytest.mark.parametrize("neuron", ["ILIF", "CUBA"])
def test_forward_backward_shapes(arch, in_shape, neuron):
    torch.manual_seed(0)
    model = build_model(arch, in_shape, 11, neuron, hidden=32)
    x = (torch.rand(2, *in_shape, 6) < 0.3).float()
    out, spikes = model(x)
    assert out.shape == (2, 11, 6)
    assert len(spikes) == len(model.spiking_blocks())
    n_conv = sum(type(b).__name__ == "Conv" for b in model.blocks)
    assert n_conv == {"mlp": 0, "cnn": 2, "vgg11": 8}[arch]  # VGG-11: 8 conv layers as in the paper
    loss = get_loss("count")(out, torch.tensor([0, 3]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_model_from_meta_rebuilds_same_architecture():
    m = build_model("cnn", (1, 8, 8), 10, "ILIF", {"tau": 1.5, "kappa": 0.05}, hidden=16)
    m2 = model_from_meta(m.meta)
    assert [type(b).__name__ for b in m.blocks] == [type(b).__name__ for b in m2.blocks]
    assert m2.spiking_blocks()[0].neuron.kappa == 0.05 and m2.spiking_blocks()[0].neuron.tau == 1.5
    assert {k: v.shape for k, v in m.state_dict().items()} == {k: v.shape for k, v in m2.state_dict().items()}


def test_tet_loss_matches_definition():
    torch.manual_seed(1)
    out = (torch.rand(3, 4, 5) < 0.4).float()
    y = torch.tensor([0, 2, 3])
    from training.losses import LOGIT_SCALE
    per_step = [F.cross_entropy(LOGIT_SCALE * out[..., t], y) for t in range(5)]
    mse = torch.stack([F.mse_loss(LOGIT_SCALE * out[..., t], torch.ones(3, 4)) for t in range(5)]).mean()
    expected = 0.95 * torch.stack(per_step).mean() + 0.05 * mse
    torch.testing.assert_close(tet(out, y), expected)


def test_spike_count_loss_and_prediction():
    out = torch.zeros(2, 3, 10)
    out[0, 1, :5] = 1
    out[1, 2, :5] = 1
    y = torch.tensor([1, 2])
    # rates: correct neuron 0.5 (= true rate), others 0 vs false rate 0.05 -> 4 of 6 entries off by 0.05
    torch.testing.assert_close(spike_count(out, y), torch.tensor(4 * 0.05 ** 2 / 6))
    assert predict(out).tolist() == [1, 2]
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("nope")


def test_count_loss_is_lava_dl_spike_rate_written_out():
    """'count' is slayer's SpikeRate (mean reduction): mean over samples and classes of (rate - target)^2."""
    torch.manual_seed(2)
    out = (torch.rand(4, 5, 7) < 0.3).float()
    y = torch.tensor([0, 4, 2, 2])
    target = torch.full((4, 5), 0.05)
    target[torch.arange(4), y] = 0.5
    want = ((out.mean(-1) - target) ** 2).mean()
    assert torch.allclose(spike_count(out, y), want, rtol=0, atol=1e-7)
    assert torch.allclose(spike_count(out, y, true_rate=0.9, false_rate=0.0),
                          ((out.mean(-1) - 0.9 * torch.nn.functional.one_hot(y, 5)) ** 2).mean(), atol=1e-7)
