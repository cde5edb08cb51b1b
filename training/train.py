"""Train loop: float training, then quantization-aware fine-tuning (QAT) with the bit-exact integer forward.

Writes into ``out_dir``: ``checkpoint.pt`` (latest, atomic), ``model.pt`` (final), ``config.json`` and
``log.jsonl`` (one JSON object per epoch: loss, train/test accuracy, per-layer firing rates, phase).
Resuming from ``checkpoint.pt`` continues the same run: same seed, same per-epoch data order.
"""
from __future__ import annotations

import json
import sys
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ilif_lava import metrics
from training.datasets import dataset_info, load_split
from training.losses import get_loss, predict
from training.models import SpikingNet, build_model, model_from_meta

OPTIMIZERS = ("adam", "sgd")


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. non-finite loss); the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json)."""

    dataset: str = "digits"
    data_dir: Optional[str] = None
    arch: str = "mlp"
    neuron: str = "ILIF"
    neuron_overrides: Dict[str, Any] = field(default_factory=dict)
    hidden: int = 128
    weight_scale: float = 2.0
    time_bins: int = 16
    epochs: int = 8
    qat_epochs: int = 2
    batch_size: int = 64
    lr: float = 3e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    loss: str = "count"
    seed: int = 0
    device: str = "auto"
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None

    def validate(self) -> None:
        if self.time_bins <= 0:
            raise ValueError(f"time_bins (T) must be a positive integer, got {self.time_bins}")
        if self.epochs < 0 or self.qat_epochs < 0:
            raise ValueError("epochs and qat_epochs must be >= 0")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        get_loss(self.loss)


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        # slayer JIT-compiles its delay-shift kernel for sm_80 on any GPU >= 8.0; build for the real arch instead.
        import lava.lib.dl.slayer.jitconfig as jc
        major, minor = torch.cuda.get_device_capability(dev)
        jc.TORCH_CUDA_ARCH_LIST = f"{major}.{minor}"
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return dev


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temp file then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_data(cfg: TrainConfig) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
    tr = load_split(cfg.dataset, "train", time_bins=cfg.time_bins, data_dir=cfg.data_dir, limit=cfg.limit_train)
    te = load_split(cfg.dataset, "test", time_bins=cfg.time_bins, data_dir=cfg.data_dir, limit=cfg.limit_test)
    return tr.tensors(), te.tensors()


@torch.no_grad()
def evaluate(model: SpikingNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 128,
             device: torch.device = torch.device("cpu"), keep_spikes: bool = False) -> Dict[str, Any]:
    """Accuracy and per-layer spikes of ``model`` on ``x`` [N, C, H, W, T]."""
    model.eval()
    preds, layer_spikes = [], None
    for i in range(0, x.shape[0], batch_size):
        out, spikes = model(x[i:i + batch_size].to(device))
        preds.append(predict(out))
        if keep_spikes:
            spikes = [s.detach().cpu().to(torch.int8) for s in spikes]
            layer_spikes = spikes if layer_spikes is None else [torch.cat([a, b]) for a, b in zip(layer_spikes, spikes)]
    pred = np.concatenate(preds)
    res = {"accuracy": float((pred == y.numpy()).mean()), "pred": pred}
    if keep_spikes:
        res["spikes"] = layer_spikes
    return res


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module, lr: float):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)


def _phase(cfg: TrainConfig, epoch: int) -> str:
    return "float" if epoch < cfg.epochs else "qat"


def train(cfg: TrainConfig, out_dir: Path, resume: bool = True, progress: bool = True) -> Path:
    """Train (float, then QAT) and return the path of the final ``model.pt``."""
    cfg.validate()
    out_dir = Path(out_dir)
    device = pick_device(cfg.device)
    (xtr, ytr), (xte, yte) = load_data(cfg)  # before creating the folder: a missing dataset leaves nothing behind
    out_dir.mkdir(parents=True, exist_ok=True)
    info = dataset_info(cfg.dataset)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, info.shape, info.num_classes, cfg.neuron, cfg.neuron_overrides, cfg.hidden,
                        weight_scale=cfg.weight_scale).to(device)
    loss_fn = get_loss(cfg.loss)
    total = cfg.epochs + cfg.qat_epochs
    ckpt_path, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    start, opt, sched = 0, None, None
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck["config"] != asdict(cfg):
            raise TrainingError(f"{ckpt_path}: checkpoint was written with a different configuration; "
                                "use a new output folder or --no-resume")
        model.load_state_dict(ck["model"])
        start = ck["epoch"] + 1
        opt, sched = _phase_optim(cfg, model, start - 1)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        _truncate_log(log_path, start)
    elif log_path.exists():
        log_path.unlink()
    # written only after the checkpoint check: a refused resume must not relabel the existing run
    (out_dir / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    for epoch in range(start, total):
        phase = _phase(cfg, epoch)
        if opt is None or epoch == cfg.epochs:  # a fresh optimizer at the start of each phase
            opt, sched = _phase_optim(cfg, model, epoch)
        model.set_quantized(phase == "qat")
        model.train()
        gen = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        order = torch.randperm(xtr.shape[0], generator=gen)
        losses: List[float] = []
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}/{total} ({phase})",
                   unit="batch", disable=not (progress and sys.stderr.isatty()), leave=False)
        for i in bar:
            idx = order[i:i + cfg.batch_size]
            out, _ = model(xtr[idx].to(device))
            loss = loss_fn(out, ytr[idx].to(device))
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {i // cfg.batch_size}; "
                                    f"last good checkpoint kept at {ckpt_path}")
            opt.zero_grad()
            loss.backward()
            bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            if bad:
                raise TrainingError(f"non-finite gradient in {bad[0]} at epoch {epoch + 1}; "
                                    f"last good checkpoint kept at {ckpt_path}")
            opt.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        sched.step()
        ev = evaluate(model, xte, yte, device=device, keep_spikes=True)
        rates = [metrics.firing_rate(s.float()) for s in ev["spikes"]]
        rec = {"epoch": epoch + 1, "phase": phase, "loss": float(np.mean(losses)) if losses else math.nan,
               "test_accuracy": ev["accuracy"], "firing_rate_per_layer": rates,
               "continuous_firing_rate_per_layer": [metrics.continuous_firing_rate(s.float()) for s in ev["spikes"]],
               "lr": opt.param_groups[0]["lr"], "time": time.time()}
        with open(log_path, "a") as fh:
            fh.write(json.dumps(rec) + "\n")
        if progress:
            print(f"epoch {epoch + 1}/{total} [{phase}] loss {rec['loss']:.4f} test acc {ev['accuracy']:.3f} "
                  f"firing {np.mean(rates):.3f}", flush=True)
        atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch, "config": asdict(cfg), "meta": model.meta}, ckpt_path)
    model.set_quantized(cfg.qat_epochs > 0)
    final = out_dir / "model.pt"
    atomic_save({"model": model.state_dict(), "meta": model.meta, "config": asdict(cfg),
                 "quantized": cfg.qat_epochs > 0}, final)
    return final


def _phase_optim(cfg: TrainConfig, model: torch.nn.Module, epoch: int):
    """Optimizer + cosine schedule of the phase ``epoch`` belongs to (QAT: lr / 10)."""
    if _phase(cfg, epoch) == "float":
        opt = _make_optimizer(cfg, model, cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    else:
        opt = _make_optimizer(cfg, model, cfg.lr * 0.1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.qat_epochs, 1))
    return opt, sched


def _truncate_log(log_path: Path, keep_epochs: int) -> None:
    if not log_path.exists():
        return
    lines = [ln for ln in log_path.read_text().splitlines() if ln.strip()]
    log_path.write_text("".join(ln + "\n" for ln in lines[:keep_epochs]))


def load_model(path: Path, device: str = "cpu") -> SpikingNet:
    """Load ``model.pt``/``checkpoint.pt`` into a fresh network (quantized flag restored)."""
    ck = torch.load(path, map_location=device, weights_only=False)
    model = model_from_meta(ck["meta"])
    model.load_state_dict(ck["model"])
    model.set_quantized(bool(ck.get("quantized", False)))
    return model.to(device)
