"""GPU check (run on a CUDA machine): training on CUDA works and the quantized ILIF path is bit-identical on GPU and CPU.

Usage: python scripts/gpu_check.py OUT_JSON
Writes a JSON with: device, CUDA training accuracy, quantized GPU-vs-CPU spike mismatches per layer (must be 0),
float GPU-vs-CPU agreement, and a training-step timing of ILIF vs CUBA on the GPU (same run, same card).
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import ilif_lava  # noqa: E402,F401
from training.datasets import dataset_info, load_split  # noqa: E402
from training.models import build_model  # noqa: E402
from training.train import TrainConfig, load_model, pick_device, train  # noqa: E402


def _spikes(model, x, device, quantized):
    model.to(device).eval()
    model.set_quantized(quantized)
    with torch.no_grad():
        _, sp = model(x.to(device))
    return [s.cpu() for s in sp]


def _step_time(model, x, y, reps=10):
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    times = []
    for i in range(reps + 3):
        torch.cuda.synchronize()
        t = time.perf_counter()
        out, _ = model(x)
        loss = torch.nn.functional.mse_loss(out.mean(-1), torch.nn.functional.one_hot(y, out.shape[1]).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        if i >= 3:
            times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def main(out_json: str, timing_only: bool = False) -> None:
    res = {"python": platform.python_version(), "torch": torch.__version__}
    dev = pick_device("cuda")
    res["device"] = torch.cuda.get_device_name(dev)
    if not timing_only:
        _checks(res, dev)
    _timing(res, dev)
    Path(out_json).write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "cuda_train_log"}, indent=2))


def _checks(res: dict, dev: torch.device) -> None:
    """CUDA training, and quantized/float spikes on GPU vs CPU."""
    tmp = Path(tempfile.mkdtemp())
    t0 = time.time()
    cfg = TrainConfig(dataset="digits", epochs=4, qat_epochs=1, device="cuda", hidden=128, lr=1e-2, batch_size=32)
    model_path = train(cfg, tmp / "mlp", progress=False)
    res["cuda_train_s"] = time.time() - t0
    res["cuda_train_log"] = [json.loads(l) for l in (tmp / "mlp" / "log.jsonl").read_text().splitlines()]
    te = load_split("digits", "test", time_bins=cfg.time_bins)
    x, y = te.tensors()
    for arch in ("mlp", "cnn"):
        if arch == "mlp":
            model = load_model(model_path)
        else:
            torch.manual_seed(0)
            model = build_model("cnn", dataset_info("digits").shape, 10, "ILIF", {"tau": 2.0}, hidden=32)
        q_gpu, q_cpu = _spikes(model, x, dev, True), _spikes(model, x, torch.device("cpu"), True)
        f_gpu, f_cpu = _spikes(model, x, dev, False), _spikes(model, x, torch.device("cpu"), False)
        res[f"{arch}_quantized_gpu_vs_cpu_mismatches"] = [int((a != b).sum()) for a, b in zip(q_gpu, q_cpu)]
        res[f"{arch}_quantized_spikes"] = [int(a.sum()) for a in q_cpu]
        res[f"{arch}_float_gpu_vs_cpu_agreement"] = [float((a == b).float().mean()) for a, b in zip(f_gpu, f_cpu)]


def _timing(res: dict, dev: torch.device) -> None:
    """Training step ILIF vs CUBA on this GPU (N-MNIST-shaped MLP, T = 32, batch 32, random 5% spikes)."""
    torch.manual_seed(0)
    xb = (torch.rand(32, 2, 34, 34, 32, device=dev) < 0.05).float()
    yb = torch.randint(0, 10, (32,), device=dev)
    for neuron in ("ILIF", "CUBA"):
        m = build_model("mlp", (2, 34, 34), 10, neuron, hidden=128).to(dev)
        res[f"train_step_s_{neuron}_mlp_T32"] = _step_time(m, xb, yb)
    res["ratio_ilif_over_cuba"] = res["train_step_s_ILIF_mlp_T32"] / res["train_step_s_CUBA_mlp_T32"]


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(args[0] if args else "gpu_check.json", timing_only="--timing-only" in sys.argv)
