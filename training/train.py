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
import pickle
import time
import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from ilif_lava import atomic, metrics
from ilif_lava.progress import bar as progress_bar
from ilif_lava.safe_read import open_regular, read_regular
from training import distributed
from training.datasets import dataset_info, load_split
from training.limits import AMP_DTYPES, ARCHS, MAX_BATCH, MAX_EPOCHS, MAX_HIDDEN, MAX_TIME_BINS
from training.losses import get_loss, predict
from training.models import SpikingNet, build_model, model_from_meta
from ilif_lava.errors import IlifLavaError

OPTIMIZERS = ("adam", "sgd")
MAX_WORKERS = 64
RUNTIME_KEYS = ("download", "workers")   # config keys that may differ between a run and its resume
EVAL_BATCH = 128


class TrainingError(IlifLavaError, RuntimeError):
    """Training cannot continue (e.g. non-finite loss); the last good checkpoint is kept."""

    exit_code = 1


class ModelFileError(IlifLavaError, ValueError):
    """A ``model.pt`` / ``checkpoint.pt`` that is not a file this project wrote; refused before anything runs.

    The message is one line naming the file. Files are read with ``torch.load(weights_only=True)``: only
    tensors and plain data (dicts, lists, tuples, str, int, float, bool, None) can be in them, never code.
    """


MODEL_KEYS = ("model", "meta", "config", "quantized")
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "config", "meta")
TORCH_ZIP_MAGIC = b"PK\x03\x04"     # torch.save's format (a zip archive)
PICKLE_PROTO = b"\x80"              # torch's legacy format starts with a pickle protocol opcode
MAX_MODEL_BYTES = 4 << 30           # far beyond any network this project trains (VGG-11 at full width: ~40 MB)
MAX_CONFIG_BYTES = 1 << 20           # a config.json is about 1 KiB
MAX_LOG_BYTES = 256 << 20           # log.jsonl: about 1 KiB per epoch


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
    dropout: float = 0.0
    augment: bool = False
    amp: Optional[str] = None
    download: bool = False
    workers: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` (one line naming the field) for a value training cannot use."""
        for name, typ in (("time_bins", int), ("epochs", int), ("qat_epochs", int), ("batch_size", int),
                          ("hidden", int), ("seed", int), ("lr", float), ("weight_scale", float),
                          ("momentum", float), ("weight_decay", float), ("dropout", float), ("workers", int)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float) if typ is float else int):
                raise ValueError(f"{name} must be {'a number' if typ is float else 'an integer'}, got {v!r}")
            if typ is float and not math.isfinite(v):
                raise ValueError(f"{name} must be finite, got {v}")
        if not 0 < self.time_bins <= MAX_TIME_BINS:
            raise ValueError(f"time_bins (T) must be an integer in [1, {MAX_TIME_BINS}], got {self.time_bins}")
        if not (0 <= self.epochs <= MAX_EPOCHS and 0 <= self.qat_epochs <= MAX_EPOCHS):
            raise ValueError(f"epochs and qat_epochs must be in [0, {MAX_EPOCHS}]")
        if not 0 < self.batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be in [1, {MAX_BATCH}], got {self.batch_size}")
        if not 0 < self.hidden <= MAX_HIDDEN:
            raise ValueError(f"hidden must be in [1, {MAX_HIDDEN}], got {self.hidden}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not self.weight_scale > 0:
            raise ValueError(f"weight_scale must be positive, got {self.weight_scale}")
        if not 0 <= self.momentum <= 1 or self.weight_decay < 0:
            raise ValueError(f"momentum must be in [0, 1] and weight_decay >= 0, got {self.momentum}, "
                             f"{self.weight_decay}")
        for name in ("limit_train", "limit_test"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v <= 0):
                raise ValueError(f"{name} must be a positive integer or null, got {v!r}")
        if not isinstance(self.neuron_overrides, dict):
            raise ValueError(f"neuron_overrides must be a dict, got {self.neuron_overrides!r}")
        for k, v in self.neuron_overrides.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"neuron_overrides[{k!r}] must be finite, got {v}")
        for name in ("dataset", "arch", "neuron", "optimizer", "loss", "device"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"data_dir must be a string or null, got {self.data_dir!r}")
        check_device(self.device)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {OPTIMIZERS}")
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {ARCHS}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be in [0, {MAX_WORKERS}], got {self.workers}")
        for name in ("augment", "download"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        check_amp(self.amp, self.device)
        from training.paper_models import PAPER_ARCHS
        _loss(self.loss, self.arch in PAPER_ARCHS)


def _loss(name: str, logits: bool):
    """The loss ``name`` for spike outputs, or for logit outputs (training/paper_models.py) when ``logits``."""
    return get_loss(name, logits=True) if logits else get_loss(name)


def check_amp(amp: Optional[str], device: str) -> None:
    """Raise a one-line ``ValueError`` unless ``amp`` is None or a CUDA-capable choice for ``device``."""
    if amp is None:
        return
    if amp not in AMP_DTYPES:
        raise ValueError(f"--amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    if device == "cpu" or not torch.cuda.is_available():
        raise ValueError(f"--amp {amp} needs a CUDA device; this run trains on the CPU (drop --amp)")


def check_device(name: str) -> None:
    """Raise ``ValueError`` unless ``name`` is 'auto', 'cpu', 'cuda' or 'cuda:N' and exists on this machine."""
    if name in ("auto", "cpu"):
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type != "cuda" or name.strip() != name:
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine (use cpu or auto)")
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                         f"device(s)")


def load_config(path: Path) -> "TrainConfig":
    """Read a run's ``config.json``; every problem is a one-line ``ValueError`` naming the file (and line/key)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise ValueError(f"{path}: no such file (train the run first: ilif-lava train)")
    atomic.check_input(path, what="the run's config.json")      # a FIFO never blocks, a link never leaves
    try:
        text = read_regular(path, MAX_CONFIG_BYTES, ValueError, "the run's config.json").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: line {exc.lineno} column {exc.colno}: invalid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: holds a JSON {type(raw).__name__}, expected an object of training settings")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    try:
        cfg = TrainConfig(**raw)
        cfg.validate()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return cfg


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU."""
    check_device(name)
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
    """torch.save to a temp file then rename: a crash never leaves a half-written checkpoint (nor the temp file)."""
    with atomic.atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:         # torch reports a full disk as a RuntimeError
            raise atomic.write_error(path, exc) from None


def _plain_tensors(d: Any) -> bool:
    return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def read_torch_file(path: Path, kind: str = "model", device: Any = "cpu") -> Dict[str, Any]:
    """Load a ``model.pt`` (``kind='model'``) or ``checkpoint.pt`` (``kind='checkpoint'``) written by :func:`train`.

    The file is opened without blocking and checked to be a regular, non-empty file before torch reads it (a FIFO
    or device never blocks), then loaded with ``weights_only=True`` (no code in the file can run) and checked to
    hold the keys this project writes. Anything else raises a one-line :class:`ModelFileError` naming the file.
    """
    path = Path(path)
    what = f"an ilif-lava {kind} file"
    with open_regular(path, MAX_MODEL_BYTES, ModelFileError, what) as fh:
        head = fh.read(8)
        fh.seek(0)
        if not (head.startswith(TORCH_ZIP_MAGIC) or head[:1] == PICKLE_PROTO):
            raise ModelFileError(f"{path}: not a PyTorch file (it starts with {head!r}; torch.save writes a zip "
                                 f"archive), expected {what}")
        try:
            ck = torch.load(fh, map_location=device, weights_only=True)
        except pickle.UnpicklingError as exc:
            detail = " ".join(str(exc).split())[:160]
            raise ModelFileError(f"{path}: refused: holds objects other than tensors and plain data, or is not "
                                 f"{what} ({detail})") from None
        except Exception as exc:  # noqa: BLE001 - truncated zip, garbage, unknown format: all 'not ours'
            detail = " ".join(str(exc).split())[:160]
            raise ModelFileError(f"{path}: not {what} (truncated or corrupted?): {type(exc).__name__}: "
                                 f"{detail}") from None
    required = MODEL_KEYS[:3] if kind == "model" else CHECKPOINT_KEYS
    if not isinstance(ck, dict):
        raise ModelFileError(f"{path}: holds a {type(ck).__name__}, expected {what} (a dict)")
    missing = [k for k in required if k not in ck]
    if missing:
        raise ModelFileError(f"{path}: key {missing[0]!r} missing, expected {what}")
    if not _plain_tensors(ck["model"]):
        raise ModelFileError(f"{path}: key 'model' is not a dict of named tensors")
    for key in ("meta", "config") + (("optimizer", "scheduler") if kind == "checkpoint" else ()):
        if not isinstance(ck[key], dict):
            raise ModelFileError(f"{path}: key {key!r} is a {type(ck[key]).__name__}, expected a dict")
    if kind == "checkpoint" and (not isinstance(ck["epoch"], int) or isinstance(ck["epoch"], bool)
                                 or ck["epoch"] < 0):
        raise ModelFileError(f"{path}: key 'epoch' = {ck['epoch']!r}, expected an integer >= 0")
    return ck


def load_datasets(cfg: TrainConfig) -> Tuple[Any, Any]:
    """(train, test) datasets of ``cfg`` (``len``, ``tensors(indices)``, ``labels``; training/datasets.py)."""
    common = dict(time_bins=cfg.time_bins, data_dir=cfg.data_dir, download=cfg.download)
    tr = load_split(cfg.dataset, "train", limit=cfg.limit_train, augment=cfg.augment, **common)
    te = load_split(cfg.dataset, "test", limit=cfg.limit_test, **common)
    return tr, te


def load_data(cfg: TrainConfig) -> Tuple[Tuple[torch.Tensor, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
    """Both splits as whole tensors ``x [N, C, H, W, T]``, ``y [N]``."""
    tr, te = load_datasets(cfg)
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


def _make_optimizer(cfg: TrainConfig, model: torch.nn.Module, lr: float):
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)


def _phase(cfg: TrainConfig, epoch: int) -> str:
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


def _same_run(saved: Dict[str, Any], cfg: TrainConfig) -> bool:
    """``saved`` (a checkpoint's config, older ones without the newer keys) describes the run ``cfg``."""
    now = {k: v for k, v in asdict(cfg).items() if k not in RUNTIME_KEYS}
    defaults = asdict(TrainConfig())
    return {k: saved.get(k, defaults[k]) for k in now} == now


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
        if not _same_run(ck["config"], cfg):
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
            _truncate_log(log_path, start)
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


def _phase_optim(cfg: TrainConfig, model: torch.nn.Module, epoch: int):
    """Optimizer + cosine schedule of the phase ``epoch`` belongs to (QAT: lr / 10)."""
    if _phase(cfg, epoch) == "float":
        opt = _make_optimizer(cfg, model, cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.epochs, 1))
    else:
        opt = _make_optimizer(cfg, model, cfg.lr * 0.1)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.qat_epochs, 1))
    return opt, sched


def _log_lines(log_path: Path) -> List[str]:
    """The non-blank lines of a run's own ``log.jsonl`` ([] when absent). A symbolic link or a non-regular file
    at that name is refused (one line naming it) before it is opened: resuming never copies what a planted link
    points to into the run, and a FIFO never blocks."""
    if not log_path.exists() and not log_path.is_symlink():
        return []
    if log_path.is_symlink():
        raise ModelFileError(f"{log_path}: is a symbolic link, expected the run's own training log; remove it")
    atomic.check_input(log_path, what="the training log")
    try:
        text = read_regular(log_path, MAX_LOG_BYTES, ModelFileError, "the training log").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFileError(f"{log_path}: is not UTF-8 text ({exc.reason})") from None
    return [ln for ln in text.splitlines() if ln.strip()]


def _truncate_log(log_path: Path, keep_epochs: int) -> None:
    if not log_path.exists() and not log_path.is_symlink():
        return
    lines = _log_lines(log_path)
    atomic.write_text(log_path, "".join(ln + "\n" for ln in lines[:keep_epochs]))


def read_training_log(train_dir: Path) -> List[Dict[str, Any]]:
    """The epochs of ``<train_dir>/log.jsonl`` as written by :func:`train` (empty when there is no log); a line
    that is not a JSON object is one :class:`ModelFileError` line naming the file and line."""
    path = Path(train_dir) / "log.jsonl"
    out = []
    for i, line in enumerate(_log_lines(path), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{path}: line {i}: invalid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ModelFileError(f"{path}: line {i}: holds a JSON {type(rec).__name__}, expected an object")
        out.append(rec)
    return out


def load_model(path: Path, device: str = "cpu") -> SpikingNet:
    """Load ``model.pt``/``checkpoint.pt`` into a fresh network (quantized flag restored)."""
    path = Path(path)
    ck = read_torch_file(path, "model", "cpu")     # a checkpoint.pt holds the same three keys
    try:
        model = model_from_meta(ck["meta"])
        model.load_state_dict(ck["model"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ModelFileError(f"{path}: key 'meta'/'model' does not describe a network this project builds "
                             f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]})") from None
    model.set_quantized(bool(ck.get("quantized", False)))
    return model.to(device)
