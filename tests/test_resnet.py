"""The paper's batch-norm networks at tiny width on the CPU (resnet18: training/paper_models.py; vgg11bn:
training/models.py, built from deployable blocks): shape of the layout, forward, backward, save/load, batch-norm
folding, and resnet18's export refusal naming the layer."""
from __future__ import annotations

import pytest
import torch

from export.export_net import ExportRefused, export_model
from training.losses import get_loss
from training.models import build_model, model_from_meta
from ilif_lava import block as ilif_block
from training.paper_models import SpikingUnit, fold_batchnorm

TINY = dict(neuron_overrides={"tau": 1.1, "surrogate": "rectangle"}, hidden=8, dropout=0.1)


def tiny(arch: str, neuron: str = "ILIF", in_shape=(3, 32, 32), classes: int = 10):
    torch.manual_seed(0)
    return build_model(arch, in_shape, classes, neuron, **({} if neuron == "CUBA" else TINY))


@pytest.mark.parametrize("arch,in_shape,units,convs", [("resnet18", (3, 32, 32), 17, 20),
                                                       ("vgg11bn", (2, 32, 32), 8, 8)])
def test_layout_forward_backward(arch, in_shape, units, convs):
    net = tiny(arch, in_shape=in_shape)
    assert len(net.spiking_blocks()) == units
    # ResNet-18: stem + 16 block convs + 3 1x1 shortcuts; VGG-11: 8 conv blocks
    conv_type = torch.nn.Conv2d if arch == "resnet18" else ilif_block.Conv
    assert sum(isinstance(m, conv_type) for m in net.modules()) == convs
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
    first = net.stem.weight if arch == "resnet18" else net.blocks[0].synapse.weight
    assert first.grad.abs().sum() > 0


def test_resnet_lif_and_cuba_build_and_run():
    for neuron in ("LIF", "CUBA"):
        net = tiny("resnet18", neuron)
        out, _ = net(torch.randn(2, 3, 32, 32, 2))
        assert out.shape == (2, 10, 2)


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
    assert all(u.neuron.quantized for u in net.modules() if isinstance(u, SpikingUnit))
    out, _ = net.eval()(torch.rand(1, 3, 16, 16, 2))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch,in_shape,layer", [("resnet18", (3, 32, 32), "layers.0: residual addition")])
def test_export_is_refused_naming_the_layer(tmp_path, arch, in_shape, layer):
    net = tiny(arch, in_shape=in_shape)
    path = tmp_path / "net.net"
    with pytest.raises(ExportRefused) as err:
        export_model(net, path)
    msg = str(err.value)
    assert "\n" not in msg and layer in msg and arch in msg and str(path) in msg
    assert not path.exists() and list(tmp_path.iterdir()) == []


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


def test_pipeline_refuses_an_undeployable_network_before_training(tmp_path, capsys):
    from tests.helpers import run_cli
    code, _, err = run_cli(["pipeline", "--arch", "resnet18", "--loss", "tet", "--run-dir", str(tmp_path / "r")],
                           capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("ilif-lava")]
    assert code == 2 and len(lines) == 1 and "cannot be exported" in lines[0] and "ilif-lava train" in lines[0]
    assert not (tmp_path / "r").exists()
