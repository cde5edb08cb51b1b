"""The paper's batch-norm networks at tiny width on the CPU, both built from deployable blocks (resnet18:
training/resnet_blocks.py, with fan-in layers for the residual additions; vgg11bn: training/models.py): shape of
the layout, forward, backward, save/load, batch-norm folding, and export."""
from __future__ import annotations

import pytest
import torch

import h5py

from export.export_net import export_model
from training.losses import get_loss
from training.models import build_model, model_from_meta
from ilif_lava import block as ilif_block
from ilif_lava.block import fold_batchnorm
from ilif_lava.graph import FanInConv
from ilif_lava.netx_schema import K

TINY = dict(neuron_overrides={"tau": 1.1, "surrogate": "rectangle"}, hidden=8, dropout=0.1)


def tiny(arch: str, neuron: str = "ILIF", in_shape=(3, 32, 32), classes: int = 10):
    torch.manual_seed(0)
    return build_model(arch, in_shape, classes, neuron, **({} if neuron == "CUBA" else TINY))


@pytest.mark.parametrize("arch,in_shape,units,convs", [("resnet18", (3, 32, 32), 17, 17),
                                                       ("vgg11bn", (2, 32, 32), 8, 8)])
def test_layout_forward_backward(arch, in_shape, units, convs):
    net = tiny(arch, in_shape=in_shape)
    assert len(net.spiking_blocks()) == units
    # ResNet-18: stem + 16 block convs (8 of them fan-in layers: 5 identity and 3 1x1 shortcuts); VGG-11: 8
    assert sum(isinstance(m, ilif_block.Conv) for m in net.modules()) == convs
    if arch == "resnet18":
        fan_in = [b for b in net.blocks if isinstance(b, FanInConv)]
        kinds = [s.identity for b in fan_in for s in b.skip_specs]
        assert len(fan_in) == 8 and kinds.count(True) == 5 and kinds.count(False) == 3
        assert all(s.source == i - 2 for i, b in enumerate(net.blocks) if isinstance(b, FanInConv)
                   for s in b.skip_specs)
    x = torch.randn(3, *in_shape, 4)
    out, spikes = net(x)
    assert out.shape == (3, 10, 4) and len(spikes) == units
    scale = 1.0 / (1.0 - TINY["dropout"])        # vgg11bn: slayer's neuron dropout scales the kept spikes
    assert all(bool(((s == 0) | (s == 1) | torch.isclose(s, torch.tensor(scale))).all()) for s in spikes)
    assert any(s.sum() > 0 for s in spikes)
    loss = get_loss("tet", logits=True)(out, torch.tensor([0, 3, 9]))
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    first = net.blocks[0].synapse.weight
    assert first.grad.abs().sum() > 0
    if arch == "resnet18":                           # the projection shortcuts learn too
        assert all(s.weight.grad.abs().sum() > 0 for b in net.blocks if isinstance(b, FanInConv)
                   for s in b.skips if s.weight.requires_grad)


def test_resnet_lif_builds_and_cuba_is_refused_in_one_line():
    net = tiny("resnet18", "LIF")
    out, _ = net(torch.randn(2, 3, 32, 32, 2))
    assert out.shape == (2, 10, 2)
    with pytest.raises(ValueError, match="resnet18 needs an ILIF-family neuron"):
        tiny("resnet18", "CUBA")


def test_meta_round_trip_gives_the_same_network():
    net = tiny("resnet18").eval()
    again = model_from_meta(net.meta)
    again.load_state_dict(net.state_dict())
    again.eval()
    x = torch.randn(2, 3, 32, 32, 3)
    assert torch.equal(net(x)[0], again(x)[0])


def test_fold_batchnorm_matches_conv_then_bn():
    torch.manual_seed(1)
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, bias=True)
    bn = torch.nn.BatchNorm2d(5)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-0.5, 0.5)
    bn.eval()
    x = torch.randn(4, 3, 8, 8)
    w, b = fold_batchnorm(conv.weight, conv.bias, bn)
    torch.testing.assert_close(torch.nn.functional.conv2d(x, w, b, padding=1), bn(conv(x)), rtol=1e-5, atol=1e-5)


def test_quantized_switch_reaches_every_ilif_neuron():
    net = tiny("resnet18", in_shape=(3, 16, 16))
    net.set_quantized(True)
    assert all(b.neuron.quantized for b in net.spiking_blocks()) and len(net.spiking_blocks()) == 17
    out, _ = net.eval()(torch.rand(1, 3, 16, 16, 2))
    assert torch.isfinite(out).all()


def test_resnet18_exports_as_a_graph_file(tmp_path):
    net = tiny("resnet18", in_shape=(3, 16, 16))
    path, _ = export_model(net, tmp_path / "r.net", force=True)
    with h5py.File(path, "r") as h:
        layers = h[K.LAYER]
        assert len(layers) == 19 and h.attrs[K.TIMING] == K.PIPELINED         # 17 convs, flatten, readout
        skips = {int(i): int(layers[i][K.SKIP]["0"][K.SOURCE][()]) for i in layers if K.SKIP in layers[i]}
        assert skips == {i: i - 2 for i in range(2, 17, 2)}


def test_deployable_vgg11_still_exports(tmp_path):
    net = build_model("vgg11", (2, 32, 32), 4, "ILIF", hidden=16)
    path, report = export_model(net, tmp_path / "vgg.net", force=True)
    assert path.is_file()


def _config(argv: list):
    from pipeline.cli import build_parser
    from pipeline.cli_train import train_config
    args = build_parser().parse_args(["train", *argv])
    return train_config(args), args


@pytest.mark.parametrize("name,dataset,arch,T,batch,lr,wd,drop,kappa", [
    ("paper-cifar10-resnet18", "cifar10", "resnet18", 6, 128, 0.1, 5e-5, 0.1, 0.03),
    ("paper-cifar100-resnet18", "cifar100", "resnet18", 6, 128, 0.1, 5e-4, 0.1, 0.03),
    ("paper-cifar10dvs-vgg11", "cifar10dvs", "vgg11bn", 10, 128, 0.05, 5e-4, 0.3, 0.03),
    ("paper-dvsgesture-vgg11", "dvsgesture", "vgg11bn", 20, 16, 0.1, 5e-4, 0.4, 0.05)])
def test_named_recipes_are_table_4(name, dataset, arch, T, batch, lr, wd, drop, kappa):
    cfg, args = _config(["--recipe", name])
    assert (cfg.dataset, cfg.arch, cfg.time_bins, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.dropout) == \
        (dataset, arch, T, batch, lr, wd, drop)
    assert (cfg.epochs, cfg.optimizer, cfg.momentum, cfg.loss) == (200, "sgd", 0.9, "tet")
    assert cfg.neuron_overrides["kappa"] == kappa and cfg.neuron_overrides["beta"] == 1.0
    assert (args.dataset, args.arch) == (dataset, arch)            # the default run folder follows the recipe
    over, _ = _config(["--recipe", name, "-T", "4", "--epochs", "3"])
    assert (over.time_bins, over.epochs, over.lr) == (4, 3, lr)


def test_recipe_for_another_dataset_and_amp_on_cpu_are_one_line_errors(capsys):
    from tests.helpers import run_cli
    for argv, needle in ((["--recipe", "paper-cifar10-resnet18", "--dataset", "digits"], "--recipe"),
                         (["--amp", "bf16", "--device", "cpu"], "--amp bf16 needs a CUDA device"),
                         (["--arch", "resnet18", "--loss", "count"], "--loss count")):
        code, _, err = run_cli(["train", *argv, "--run-dir", "/nonexistent/never"], capsys)
        lines = [ln for ln in err.splitlines() if ln.startswith("ilif-lava")]
        assert code == 2 and len(lines) == 1 and needle in lines[0], err
