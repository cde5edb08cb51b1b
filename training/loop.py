"""Train loop: float training, then quantization-aware fine-tuning (QAT) with the bit-exact integer forward.

Writes into ``out_dir``: ``checkpoint.pt`` (latest, atomic), ``model.pt`` (final), ``config.json`` and
``log.jsonl`` (one JSON object per epoch: loss, train/test accuracy, per-layer firing rates, phase).
Resuming from ``checkpoint.pt`` continues the same run: same seed, same per-epoch data order.

Under ``torchrun`` (training/distributed.py) every process trains its share of each global batch with
DistributedDataParallel and evaluates its share of the test set; only rank 0 writes files, prints and shows the
progress bar, and every rank resumes from the same ``checkpoint.pt``. ``amp`` ('bf16' / 'fp16', CUDA only) runs
the forward pass under ``torch.autocast`` (fp16 with a gradient scaler).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ilif_lava import atomic, metrics
from ilif_lava.errors import IlifLavaError
from ilif_lava.progress import bar as progress_bar
from ilif_lava.safe_read import open_regular
from training import distributed
from training.checkpoint import MAX_MODEL_BYTES, ModelFileError, atomic_save, read_torch_file, truncate_log
from training.config import TrainConfig, same_run
from training.datasets import dataset_info, load_split
from training.device import pick_device
from training.losses import get_loss, predict
from training.models import build_model

EVAL_BATCH = 128


class TrainingError(IlifLavaError, RuntimeError):
    """Training cannot continue (e.g. non-finite loss); the last good checkpoint is kept."""

    exit_code = 1


def _loss(name: str, logits: bool) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss ``name`` for spike outputs, or for logit outputs (training/paper_models.py) when ``logits``."""
    return get_loss(name, logits=True) if logits else get_loss(name)


def load_datasets(cfg: TrainConfig) -> Tuple[Any, Any]:
    """(train, test) datasets of ``cfg`` (``len``, ``tensors(indices)`` -> ``x [N, C, H, W, T]``, ``y [N]``,
    ``labels``; training/datasets.py)."""
    common = dict(time_bins=cfg.time_bins, data_dir=cfg.data_dir, download=cfg.download)
    tr = load_split(cfg.dataset, "train", limit=cfg.limit_train, augment=cfg.augment, **common)
    te = load_split(cfg.dataset, "test", limit=cfg.limit_test, **common)
    return tr, te


@torch.no_grad()
def evaluate_dataset(model: torch.nn.Module, ds: Any, device: torch.device,
                     env: distributed.DistEnv = distributed.DistEnv(), batch_size: int = EVAL_BATCH,
                     workers: int = 0) -> Dict[str, Any]:
    """Accuracy, predictions ``[N]`` and per-layer firing / continuous firing rates of ``model`` on ``ds``, each
    rank evaluating its share (training/distributed.py) and every rank receiving the totals."""
    model.eval()
    batches = distributed.eval_batches(len(ds), batch_size, env)
    idx_all: List[int] = []
    preds: List[np.ndarray] = []
    sums: Optional[np.ndarray] = None   # per layer: spikes, elements, continuously active pairs, pairs
    for idx, (x, _) in zip(batches, distributed.loader(ds, batches, workers, device.type == "cuda")):
        out, spikes = model(x.to(device, non_blocking=True))
        preds.append(predict(out))
        idx_all += idx
        part = []
        for sp in spikes:
            sp = sp.float()
            pairs = sp[..., 0].numel()
            part += [metrics.firing_rate(sp) * sp.numel(), sp.numel(),
                     metrics.continuous_firing_rate(sp) * pairs, pairs]
        sums = np.asarray(part) if sums is None else sums + np.asarray(part)
    n_layers = len(model.spiking_blocks())
    local = sums if sums is not None else np.zeros(4 * n_layers)
    total = np.asarray(distributed.all_sum(local, env, device)).reshape(-1, 4)
    pred = distributed.gather_predictions(np.asarray(idx_all, dtype=np.int64),
                                          np.concatenate(preds) if preds else np.zeros(0, np.int64), len(ds), env)
    y = ds.labels.numpy()
    return {"accuracy": float((pred == y).mean()) if len(y) else math.nan, "pred": pred,
            "firing_rate_per_layer": [float(a / max(b, 1)) for a, b, _, _ in total],
            "continuous_firing_rate_per_layer": [float(c / max(d, 1)) for _, _, c, d in total]}


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``model``'s parameters at learning rate ``lr``."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)


def _phase(cfg: TrainConfig, epoch: int) -> str:
    """'float' for the first ``cfg.epochs`` epochs (0-based ``epoch``), then 'qat'."""
    return "float" if epoch < cfg.epochs else "qat"


def train(cfg: TrainConfig, out_dir: Path, resume: bool = True, progress: bool = True) -> Path:
    """Train (float, then QAT) and return the path of the final ``model.pt`` (under torchrun: data parallel)."""
    cfg.validate()
    env = distributed.env_from_torchrun()
    device = pick_device(distributed.device_for(cfg.device, env))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns_group = env.distributed and not torch.distributed.is_initialized()
    env = distributed.setup(device)
    try:
        return _train(cfg, Path(out_dir), resume, progress and env.main, env, device)
    finally:
        if owns_group:
            distributed.shutdown(env)


def _train(cfg: TrainConfig, out_dir: Path, resume: bool, progress: bool, env: distributed.DistEnv,
           device: torch.device) -> Path:
    ckpt_path, log_path = out_dir / "checkpoint.pt", out_dir / "log.jsonl"
    ck = _agreed_checkpoint(ckpt_path, resume, env, out_dir) if env.distributed else None   # first collective
    info = dataset_info(cfg.dataset)
    _check_network_memory(cfg, info, distributed.per_rank_batch(cfg.batch_size, env), device)
    if not env.main:
        distributed.barrier(env)        # rank 0 fills the dataset caches first
    tr, te = load_datasets(cfg)         # before creating the folder: a missing dataset leaves nothing behind
    if env.main:
        distributed.barrier(env)
        out_dir.mkdir(parents=True, exist_ok=True)
    batch = distributed.per_rank_batch(cfg.batch_size, env)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, info.shape, info.num_classes, cfg.neuron, cfg.neuron_overrides, cfg.hidden,
                        weight_scale=cfg.weight_scale, dropout=cfg.dropout).to(device)
    loss_fn = _loss(cfg.loss, getattr(model, "output_is_logits", False))
    total = cfg.epochs + cfg.qat_epochs
    start, opt, sched = 0, None, None
    if resume and ckpt_path.exists():
        ck = ck if ck is not None else read_torch_file(ckpt_path, "checkpoint", device)
        if not same_run(ck["config"], cfg):
            raise TrainingError(f"{ckpt_path}: checkpoint was written with a different configuration; "
                                "use a new output folder or --no-resume")
        if ck["epoch"] >= total:
            raise ModelFileError(f"{ckpt_path}: key 'epoch' = {ck['epoch']} is beyond the {total} epochs configured")
        start = ck["epoch"] + 1
        try:
            model.load_state_dict(ck["model"])
            opt, sched = _phase_optim(cfg, model, start - 1)
            opt.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelFileError(f"{ckpt_path}: does not fit this network ({type(exc).__name__}: "
                                 f"{' '.join(str(exc).split())[:160]})") from None
        if env.main:
            truncate_log(log_path, start)
            if progress:
                print(f"resumed from {ckpt_path} after epoch {start}/{total}", flush=True)
    elif env.main and (log_path.exists() or log_path.is_symlink()):   # a planted link is removed, not followed
        log_path.unlink()
    # written only after the checkpoint check: a refused resume must not relabel the existing run
    if env.main:
        atomic.write_json(out_dir / "config.json", asdict(cfg), indent=2)
    net = _parallel(model, env, device)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.amp or "")
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp == "fp16")
    pin = device.type == "cuda"
    for epoch in range(start, total):
        phase = _phase(cfg, epoch)
        if opt is None or epoch == cfg.epochs:  # a fresh optimizer at the start of each phase
            opt, sched = _phase_optim(cfg, model, epoch)
        model.set_quantized(phase == "qat")
        net.train()
        batches = distributed.train_batches(len(tr), batch, env, cfg.seed, epoch)
        losses: List[float] = []
        bar = progress_bar(distributed.loader(tr, batches, cfg.workers, pin), total=len(batches),
                           desc=f"epoch {epoch + 1}/{total} ({phase})", unit="batch", enabled=progress and env.main)
        for step, (xb, yb) in enumerate(bar):
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                out, _ = net(xb.to(device, non_blocking=pin))
            loss = loss_fn(out.float(), yb.to(device, non_blocking=pin))
            if not torch.isfinite(loss):
                raise TrainingError(f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, batch {step}; "
                                    f"last good checkpoint kept at {ckpt_path}")
            opt.zero_grad()
            scaler.scale(loss).backward()
            bad = [] if scaler.is_enabled() else [n for n, p in model.named_parameters()
                                                  if p.grad is not None and not torch.isfinite(p.grad).all()]
            if bad:
                raise TrainingError(f"non-finite gradient in {bad[0]} at epoch {epoch + 1}; "
                                    f"last good checkpoint kept at {ckpt_path}")
            scaler.step(opt)
            scaler.update()
            losses.append(loss.item())
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{np.mean(losses):.4f}")
        sched.step()
        ev = evaluate_dataset(model, te, device, env, workers=cfg.workers)
        mean_loss = distributed.all_sum([float(np.sum(losses)), float(len(losses))], env, device)
        rates = ev["firing_rate_per_layer"]
        rec = {"epoch": epoch + 1, "phase": phase, "loss": mean_loss[0] / mean_loss[1] if mean_loss[1] else math.nan,
               "test_accuracy": ev["accuracy"], "firing_rate_per_layer": rates,
               "continuous_firing_rate_per_layer": ev["continuous_firing_rate_per_layer"],
               "lr": opt.param_groups[0]["lr"], "time": time.time()}
        if env.main:
            atomic.append_line(log_path, json.dumps(rec))      # never through a link planted at log.jsonl
            if progress:
                print(f"epoch {epoch + 1}/{total} [{phase}] loss {rec['loss']:.4f} test acc {ev['accuracy']:.3f} "
                      f"firing {np.mean(rates):.3f}", flush=True)
            atomic_save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "epoch": epoch, "config": asdict(cfg), "meta": model.meta}, ckpt_path)
    model.set_quantized(cfg.qat_epochs > 0)
    final = out_dir / "model.pt"
    if env.main:
        atomic_save({"model": model.state_dict(), "meta": model.meta, "config": asdict(cfg),
                     "quantized": cfg.qat_epochs > 0}, final)
    distributed.barrier(env)
    return final


def _agreed_checkpoint(ckpt_path: Path, resume: bool, env: distributed.DistEnv,
                       out_dir: Path) -> Optional[Dict[str, Any]]:
    """Under torchrun, before any other collective: every rank reads its ``checkpoint.pt`` (epoch and SHA-256
    of the file, or none), the ranks exchange what they found, and all stop with one line naming the run folder
    unless they all resume from the same checkpoint (a run folder that is not shared between machines would
    otherwise deadlock in a later collective). Returns this rank's checkpoint (None: start from epoch 0)."""
    import hashlib
    state: Dict[str, Any] = {"epoch": None, "sha256": None, "error": None}
    ck = None
    if resume and (ckpt_path.exists() or ckpt_path.is_symlink()):
        try:
            digest = hashlib.sha256()
            with open_regular(ckpt_path, MAX_MODEL_BYTES, ModelFileError, "an ilif-lava checkpoint file") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(chunk)
            ck = read_torch_file(ckpt_path, "checkpoint", "cpu")
            state.update(epoch=int(ck["epoch"]), sha256=digest.hexdigest()[:16])
        except (ModelFileError, OSError, TypeError, ValueError) as exc:
            state["error"] = " ".join(str(exc).split())[:200]
    states = distributed.all_gather(state, env)
    for rank, st in enumerate(states):
        if st["error"]:
            raise ModelFileError(f"{out_dir}: rank {rank} cannot resume: {st['error']}")
    if any(st != states[0] for st in states):
        seen = "; ".join(f"rank {r}: " + ("no checkpoint.pt" if st["epoch"] is None else
                                          f"epoch {st['epoch'] + 1} (sha256 {st['sha256']})")
                         for r, st in enumerate(states))
        raise TrainingError(f"{out_dir}: the ranks would resume from different checkpoints ({seen}); the run "
                            "folder must be one folder that all machines share")
    return ck


def _check_network_memory(cfg: TrainConfig, info: Any, batch: int, device: torch.device) -> None:
    """The network's memory estimate (:mod:`training.ram`) against this machine's RAM or this GPU's memory."""
    from training.datasets import physical_memory
    from training.ram import check_network_memory
    available = (torch.cuda.get_device_properties(device).total_memory if device.type == "cuda"
                 else physical_memory())
    check_network_memory(cfg, info.shape, info.num_classes, batch, device, available)


def _parallel(model: torch.nn.Module, env: distributed.DistEnv, device: torch.device) -> torch.nn.Module:
    """``model`` itself in one process; under torchrun wrapped in DistributedDataParallel (batch norm
    synchronised across GPUs; on CPUs, where SyncBatchNorm does not run, each rank keeps its own statistics)."""
    if not env.distributed:
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                                     else None)


def _phase_optim(cfg: TrainConfig, model: torch.nn.Module,
                 epoch: int) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Optimizer + cosine schedule of the phase ``epoch`` belongs to (QAT: lr / 10)."""
    if _phase(cfg, epoch) == "float":
        opt = _make_optimizer(cfg, model, cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    else:
        opt = _make_optimizer(cfg, model, cfg.lr * 0.1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.qat_epochs, 1))
    return opt, sched

