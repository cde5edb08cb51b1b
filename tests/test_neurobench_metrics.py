"""NeuroBench metrics (simulations/neurobench_metrics.py): the definitions pinned on hand-computed toys (no package
needed), equality with the `neurobench` package on an snnTorch network both can measure (skipped when the optional
package is absent), and the compare report's entry on a tiny exported ILIF network."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from simulations import cost
from simulations import neurobench_metrics as nb

W_DENSE = np.array([[1, 0, 2], [0, 0, -1]])          # [out 2, in 3]: non-zero weights per input column 1, 0, 2


def _dense_toy():
    syn = cost.Synapse(0, "dense", (3,), (2,), W_DENSE.copy())
    pre = np.zeros((2, 3, 2))                         # [N, in, T]
    pre[0, :, 0] = [1, 0, 1]                          # inputs 0 and 2: 1 + 2 = 3 ops
    pre[0, :, 1] = [0, 1, 0]                          # input 1 meets only zero weights: 0 ops
    pre[1, :, 1] = [1, 1, 1]                          # 1 + 0 + 2 = 3 ops
    return syn, pre


def test_synaptic_operations_on_a_hand_computed_dense_layer():
    syn, pre = _dense_toy()
    ops = nb.synaptic_operations([syn], [pre])
    # effective: (3 + 0 + 0 + 3) / 2 samples; dense: 6 pairs x 2 steps per sample
    assert (ops["Effective_ACs"], ops["Effective_MACs"], ops["Dense"]) == (3.0, 0.0, 12.0)
    pre[1, 0, 1] = 0.5                                # a graded value: step 1 is a MAC step (binarised: same count)
    ops = nb.synaptic_operations([syn], [pre])
    assert (ops["Effective_ACs"], ops["Effective_MACs"], ops["Dense"]) == (1.5, 1.5, 12.0)
    assert ops["layers"][0]["layer"] == 0 and ops["layers"][0]["effective_macs"] == 1.5


def test_synaptic_operations_on_a_conv_with_padding():
    # C=1, H=1, W=3, kernel 1x3 = [1, 0, 1], padding (0, 1): taps on the padding cost nothing, in dense ops too
    syn = cost.Synapse(1, "conv", (1, 1, 3), (1, 1, 3), np.array([[[[1, 0, 1]]]]), padding=(0, 1))
    ops = nb.layer_synaptic_operations(syn, np.ones((1, 3, 1)))
    assert ops == {"effective_acs": 4.0, "effective_macs": 0.0, "dense": 7.0}      # 1 + 2 + 1 / 2 + 3 + 2


def test_sparsities_membrane_updates_and_footprints_by_hand(tmp_path):
    assert nb.connection_sparsity([W_DENSE, np.array([1, 0, 1])]) == 4 / 9
    s0 = np.zeros((1, 2, 4)); s0[0, 0, :3] = 1                                        # 3 of 8 fire
    s1 = np.zeros((1, 1, 4)); s1[0, 0, 2] = 1                                         # 1 of 4
    assert nb.activation_sparsity([s0, s1]) == 8 / 12
    v = np.array([[[0.5, 0.5, 0.3], [0.0, 0.0, 0.0]]])                                # [N 1, 2 neurons, T 3]
    assert nb.membrane_updates(v) == 2 + 1                                            # all at step 0, then 1 change
    assert nb.membrane_updates(np.concatenate([v, np.ones((1, 2, 3))])) == (3 + 2) / 2
    assert [nb.narrowest_int_bytes(np.array(a)) for a in ([-128, 127], [128], [-32769], [0.5], [2.0 ** 40])] \
        == [1, 2, 4, 4, 8]
    import torch
    lin = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    # Linear 6 + 2 floats, BatchNorm weight/bias 2 + 2 floats, buffers: 2 + 2 floats and one int64 counter
    assert nb.footprint_bytes(lin) == (8 + 4 + 4) * 4 + 8
    assert [w.shape for w in nb.torch_connection_weights(lin)] == [(2, 3)]
    path = tmp_path / "toy.net"
    with h5py.File(path, "w") as f:
        g = f.create_group("layer/0")
        g["type"], g["shape"] = np.array([b"dense"]), np.array([2])
        g["weight"] = W_DENSE.astype(np.float32)                       # 6 x 1 byte
        g["neuron/vThMant"], g["neuron/vDecay"] = 64, 2048              # 1 + 2 bytes
        g["neuron/mpiu"], g["neuron/type"] = True, b"ILIF"              # flags and names are not parameters
        g = f.create_group("layer/1")
        g["type"], g["shape"] = np.array([b"dense"]), np.array([2])
        g["weight"], g["bias"] = np.zeros((2, 2), np.float32), np.array([300, -5])   # 4 x 1 + 2 x 2 bytes
    assert [k for k, _ in nb.deployed_parameters(path)] == ["layer/0/weight", "layer/0/neuron/vDecay",
                                                           "layer/0/neuron/vThMant", "layer/1/weight", "layer/1/bias"]
    assert nb.deployed_footprint_bytes(path) == 6 + 2 + 1 + 4 + 4


# ---------------------------------------------------------------------------------------------------------
# the package itself, on a network it can measure
# ---------------------------------------------------------------------------------------------------------
def _snntorch_or_skip():
    try:
        import neurobench  # noqa: F401
        import snntorch  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the optional 'neurobench' package is not installed ({exc.name}); install it with "
                    f"'pip install --no-deps neurobench snntorch' to check our numbers against it")


@pytest.mark.parametrize("analog", [False, True], ids=["spike-input", "analog-input"])
def test_equal_to_the_neurobench_package_on_an_snntorch_net(analog):
    _snntorch_or_skip()
    import snntorch as snn
    import torch
    from snntorch import utils
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
    from neurobench.models import SNNTorchModel

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), snn.Leaky(beta=0.9, threshold=0.5, init_hidden=True),
                              torch.nn.Flatten(), torch.nn.Linear(75, 4),
                              snn.Leaky(beta=0.8, init_hidden=True, output=True))
    with torch.no_grad():
        net[0].weight[:, 0, 1, :] = 0                  # zero weights, conv padding taps
        net[3].weight[:, ::3] = 0
        net[3].weight[0] = 0                           # output neuron 0 gets no input: its membrane never changes
        net[3].bias[0] = 0
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(10, 6, 2, 5, 5, generator=g) < 0.3).float()            # [N, T, C, H, W] as NeuroBench wants
    if analog:
        x = x * torch.rand(x.shape, generator=g)
    ours_footprint = nb.footprint_bytes(net)           # before any forward: snnTorch's state buffers grow with it
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(10)), batch_size=4)
    res = Benchmark(SNNTorchModel(net), loader, [], [], [[Footprint, ConnectionSparsity],
                                                         [ActivationSparsity, SynapticOperations,
                                                          MembraneUpdates]]).run(quiet=True)
    # our side: record each connection layer's input and each neuron layer's spikes and membrane, step by step
    utils.reset(net)
    ins, spk, mem = [[], []], [[], []], [[], []]
    with torch.no_grad():
        for t in range(x.shape[1]):
            h = x[:, t]
            ins[0].append(h.reshape(10, -1))
            s = net[1](net[0](h))
            spk[0].append(s.reshape(10, -1)), mem[0].append(net[1].mem.reshape(10, -1).clone())
            ins[1].append(net[2](s))
            s, m = net[4](net[3](ins[1][-1]))
            spk[1].append(s), mem[1].append(m.clone())
    ins, spk, mem = ([torch.stack(a, -1).numpy() for a in group] for group in (ins, spk, mem))   # [N, neurons, T]
    syns = [cost.Synapse(0, "conv", (2, 5, 5), (3, 5, 5), net[0].weight.detach().numpy(), padding=(1, 1)),
            cost.Synapse(1, "dense", (75,), (4,), net[3].weight.detach().numpy())]
    ops = nb.synaptic_operations(syns, ins)
    assert ours_footprint == res["Footprint"]
    assert round(nb.connection_sparsity(nb.torch_connection_weights(net)), 4) == res["ConnectionSparsity"]
    assert nb.activation_sparsity(spk) == pytest.approx(res["ActivationSparsity"], rel=1e-12)
    for key in ("Effective_MACs", "Effective_ACs", "Dense"):
        assert ops[key] == pytest.approx(res["SynapticOperations"][key], rel=1e-12), key
    assert (ops["Effective_MACs"] > 0) == analog and ops["Effective_ACs"] > 0
    updates = sum(nb.membrane_updates(m) for m in mem)
    assert updates == pytest.approx(res["MembraneUpdates"], rel=1e-12)
    assert updates < (75 + 4) * 6                      # the silent neuron's membrane did not change


# ---------------------------------------------------------------------------------------------------------
# the compare report's entry on an exported ILIF network
# ---------------------------------------------------------------------------------------------------------
def test_report_entry_float_vs_deployed_on_an_exported_mlp(tmp_path):
    import torch
    from export.export_net import export_model
    from training.models import build_model
    torch.manual_seed(0)
    model = build_model("mlp", (1, 4, 4), 3, "ILIF", None, hidden=6)
    x = (torch.rand(5, 1, 4, 4, 6) < 0.4).float()

    def spikes(quantized):
        model.set_quantized(quantized)
        model.eval()
        with torch.no_grad():
            return [s.reshape(5, -1, 6).numpy().astype(np.int8) for s in model(x)[1]]

    flt = spikes(False)
    net, _ = export_model(model, tmp_path / "mlp.net", force=True)
    dep = spikes(True)
    e = nb.report_entry(model, net, x.numpy(), flt, dep)
    assert "error" not in e and e["samples"] == 5 and e["time_steps"] == 6
    f, d = e["float"], e["deployed"]
    assert f["footprint_bytes"] == (6 * 16 + 3 * 6) * 4 + 2 * 4          # float32 weights + the decay buffers
    file_w = [s.weight for s in cost.read_synapses(net, (16,))]
    assert d["connection_sparsity"] == sum((w == 0).sum() for w in file_w) / (6 * 16 + 3 * 6)
    assert d["footprint_bytes"] == nb.deployed_footprint_bytes(net) < f["footprint_bytes"]
    assert d["activation_sparsity"] == nb.activation_sparsity(dep)
    # deployed effective ops (binary spikes) == the cost estimate's effective synaptic operations
    rows = cost.layer_activity(net, x.numpy(), dep)
    assert d["synaptic_operations"]["Effective_ACs"] == pytest.approx(sum(r.synops.sum() for r in rows))
    assert f["synaptic_operations"]["Dense"] == d["synaptic_operations"]["Dense"] == (6 * 16 + 3 * 6) * 6
    assert all(0 < l["membrane_updates"] <= l["neurons"] * 6 for l in f["layers"] + d["layers"])
    md = nb.neurobench_markdown(e)
    assert md.startswith("## NeuroBench metrics") and "| metric | float model | deployed (integer) |" in md
    assert sum(line.startswith("| 0 | dense |") or line.startswith("| 1 | dense |") for line in md.splitlines()) == 2
    chk = e["package"]["float_static"]
    if chk is not None:                               # the package, where installed, sees the same float model
        assert chk == {"footprint_bytes": f["footprint_bytes"],
                       "connection_sparsity": round(f["connection_sparsity"], 4)}
    assert nb.neurobench_markdown({"error": "layer 3: no model"}).endswith("not computed: layer 3: no model\n")
