"""ResNet-18 training throughput on one GPU, ILIF vs LIF: one prepared script for a CUDA machine.

Usage:  python scripts/gpu_resnet_bench.py [--out docs/gpu_resnet_bench_<gpu>.json] [--amp bf16]
        python scripts/gpu_resnet_bench.py --dry-run        (tiny network on the CPU: checks the script only)

The network is the paper's CIFAR ResNet-18 (training/resnet_blocks.py, ``--recipe paper-cifar10-resnet18``: width
512, T = 6, batch 128, SGD 0.1, TET loss, dropout 0.1, tau 1.1). Data are synthetic and CIFAR-shaped (normalised
``[B, 3, 32, 32]`` images, direct encoding over T, uniform labels; seeded), generated on the device, so the machine
needs no network and no dataset. For each neuron (ILIF, LIF): ``--warmup`` steps, then ``--steps`` timed training
steps (forward, backward, optimiser) and timed evaluation forwards, with ``torch.cuda.synchronize`` around the clock.
Reports images/s, ms per step, peak GPU memory, the ILIF kernel that ran (ilif_lava/kernels), and the estimated
time of one CIFAR-10 epoch (50,000 images) and of the paper's 200 epochs at that rate. Writes one JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CIFAR_TRAIN_IMAGES = 50_000


def bench_neuron(neuron: str, args: argparse.Namespace, device: torch.device) -> Dict[str, Any]:
    """Train/eval throughput of ResNet-18 with ``neuron`` on synthetic CIFAR-shaped batches."""
    from ilif_lava import kernels
    from pipeline.recipes import NAMED
    from training.losses import get_loss
    from training.models import build_model

    rec = NAMED["paper-cifar10-resnet18"]
    torch.manual_seed(0)
    model = build_model("resnet18", (3, 32, 32), 10, neuron, rec["neuron_overrides"], args.width,
                        dropout=rec["dropout"]).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=rec["lr"], momentum=rec["momentum"],
                          weight_decay=rec["weight_decay"])
    loss_fn = get_loss("tet", logits=True)
    gen = torch.Generator(device=device).manual_seed(1)
    x = torch.randn(args.batch, 3, 32, 32, generator=gen, device=device).unsqueeze(-1).expand(-1, -1, -1, -1, args.T)
    x = x.contiguous()
    y = torch.randint(0, 10, (args.batch,), generator=gen, device=device)
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp or "")
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp == "fp16")

    def step() -> float:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out, _ = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return float(loss.detach())

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    model.train()
    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    sync()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        model(x)
        sync()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                model(x)
        sync()
        eval_s = time.perf_counter() - t0
    ips = args.batch * args.steps / train_s
    return {"neuron": neuron, "train_images_per_s": ips, "train_ms_per_step": 1000 * train_s / args.steps,
            "eval_images_per_s": args.batch * args.steps / eval_s, "loss_first_last": [losses[0], losses[-1]],
            "peak_gpu_memory_gib": (torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda"
                                    else None),
            "kernel_used": kernels.last_used(),
            "est_cifar10_epoch_min": CIFAR_TRAIN_IMAGES / ips / 60, "est_200_epochs_h": 200 * CIFAR_TRAIN_IMAGES / ips / 3600}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--width", type=int, default=512, help="ResNet width (512 = the paper's)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("-T", type=int, default=6)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--amp", choices=("bf16", "fp16"), default=None)
    ap.add_argument("--neurons", default="ILIF,LIF")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default docs/gpu_resnet_bench_<gpu>.json)")
    ap.add_argument("--dry-run", action="store_true",
                    help="CPU, width 16, batch 4, T 2, 2 steps; writes /tmp/gpu_resnet_bench_dryrun.json")
    args = ap.parse_args()
    if args.dry_run:
        args.device, args.width, args.batch, args.T, args.steps, args.warmup = "cpu", 16, 4, 2, 2, 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_resnet_bench: no CUDA device here; use --dry-run to check the script on a CPU", file=sys.stderr)
        return 2
    if args.amp and device.type != "cuda":
        print(f"gpu_resnet_bench: --amp {args.amp} needs a CUDA device", file=sys.stderr)
        return 2
    if device.type == "cuda":
        from training.train import pick_device
        device = pick_device(str(device))
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({platform.processor() or platform.machine()})"
    rows = [bench_neuron(n.strip(), args, device) for n in args.neurons.split(",") if n.strip()]
    by = {r["neuron"]: r for r in rows}
    res = {"what": "ResNet-18 (training/resnet_blocks.py) training throughput on synthetic CIFAR-shaped data, 1 device",
           "device": name, "torch": torch.__version__, "dry_run": bool(args.dry_run),
           "settings": {k: getattr(args, k) for k in ("width", "batch", "T", "steps", "warmup", "amp")},
           "rows": rows,
           "ilif_over_lif_time": (by["LIF"]["train_images_per_s"] / by["ILIF"]["train_images_per_s"]
                                  if {"ILIF", "LIF"} <= set(by) else None),
           "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = args.out or (Path("/tmp/gpu_resnet_bench_dryrun.json") if args.dry_run else
                       ROOT / "docs" / f"gpu_resnet_bench_{name.lower().replace(' ', '_')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(res, indent=2, default=str))
    tmp.replace(out)
    for r in rows:
        print(f"{r['neuron']}: {r['train_images_per_s']:.1f} train img/s ({r['train_ms_per_step']:.1f} ms/step), "
              f"{r['eval_images_per_s']:.1f} eval img/s; est. {r['est_cifar10_epoch_min']:.1f} min per CIFAR-10 "
              f"epoch", flush=True)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
