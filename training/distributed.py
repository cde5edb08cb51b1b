"""Data-parallel training with ``torch.distributed``: process group, per-rank batches, distributed evaluation.

Launch with ``torchrun --nproc_per_node N -m pipeline.cli train ...`` (one or many machines: add ``--nnodes``,
``--node_rank``, ``--rdzv_endpoint``). Each process reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from torchrun;
the backend is NCCL on CUDA devices (one GPU per process, ``cuda:LOCAL_RANK``) and gloo on CPUs. Without those
variables (or with ``WORLD_SIZE=1``) everything runs in one process and nothing here starts a process group.

Batches: ``--batch-size`` is the *global* batch. Each epoch's sample order is ``DistributedSampler(shuffle=True,
seed=seed * 100003, epoch)``, i.e. ``torch.randperm(n)`` seeded with ``seed * 100003 + epoch`` (the order
single-process training always used, training/train.py); rank ``r`` takes positions ``r, r + W, r + 2W, ...``, so
the union of the ranks' k-th batches is exactly the single process's k-th batch (when ``n`` is a multiple of the
global batch; otherwise DistributedSampler repeats a few samples to give every rank the same count).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Sequence, Tuple

import numpy as np
import torch
import torch.distributed as dist

SEED_STRIDE = 100003     # epoch e of seed s shuffles with generator seed s * SEED_STRIDE + e


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on rank 0, the only process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_from_torchrun() -> DistEnv:
    """The ranks torchrun set in the environment (a single process when absent)."""
    return DistEnv(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                   int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: torch.device) -> DistEnv:
    """Join the torchrun job (NCCL for CUDA, gloo for CPU) unless already joined or single-process; a rank of a
    job also dies with it (:func:`die_with_the_job`)."""
    env = env_from_torchrun()
    if env.distributed and not dist.is_initialized():
        die_with_the_job()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return env


PR_SET_PDEATHSIG = 1     # linux/prctl.h


def die_with_the_job() -> None:
    """Make this rank stop when the job does, even while it waits inside a collective (C++ code, where a Python
    signal handler never runs): SIGTERM gets its default action (the process ends at once; checkpoints are
    written atomically, so nothing is left half-written), and on Linux the kernel sends SIGTERM when the
    process that started this rank (torchrun's agent) dies, so ranks never outlive a killed torchrun."""
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent = os.getppid()
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        return              # not Linux: torchrun's own SIGTERM to its workers remains
    if os.getppid() != parent:          # the agent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def all_gather(obj: Any, env: DistEnv) -> List[Any]:
    """``obj`` of every rank, in rank order (one collective; ``[obj]`` in a single process)."""
    if not env.distributed:
        return [obj]
    parts: List[Any] = [None] * env.world_size
    dist.all_gather_object(parts, obj)
    return parts


def device_for(name: str, env: DistEnv) -> str:
    """The device string of this rank: ``cuda`` / ``auto`` on a CUDA machine become ``cuda:LOCAL_RANK``."""
    if env.distributed and torch.cuda.is_available() and name in ("auto", "cuda"):
        return f"cuda:{env.local_rank}"
    return name


def per_rank_batch(global_batch: int, env: DistEnv) -> int:
    """``global_batch / world_size``; a one-line ``ValueError`` naming the flag when it does not divide."""
    if global_batch % env.world_size:
        raise ValueError(f"--batch-size {global_batch} is the global batch and must be a multiple of the "
                         f"{env.world_size} processes")
    return global_batch // env.world_size


class _Batches(torch.utils.data.Dataset):
    """A dataset whose item ``i`` is a whole batch: ``dataset.tensors(indices_i)`` (one call, in a worker)."""

    def __init__(self, dataset: Any, batches: Sequence[List[int]]) -> None:
        self.dataset, self.batches = dataset, list(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        x, y = self.dataset.tensors(self.batches[i])
        return x.contiguous(), y


def train_batches(n: int, batch: int, env: DistEnv, seed: int, epoch: int) -> List[List[int]]:
    """This rank's index batches for ``epoch`` (module docstring)."""
    sampler = torch.utils.data.DistributedSampler(range(n), num_replicas=env.world_size, rank=env.rank,
                                                  shuffle=True, seed=seed * SEED_STRIDE, drop_last=False)
    sampler.set_epoch(epoch)
    order = list(sampler)
    return [order[i:i + batch] for i in range(0, len(order), batch)]


def eval_batches(n: int, batch: int, env: DistEnv) -> List[List[int]]:
    """This rank's share of ``0 .. n-1`` (positions ``rank, rank + W, ...``, no repeats), in batches."""
    mine = list(range(env.rank, n, env.world_size))
    return [mine[i:i + batch] for i in range(0, len(mine), batch)]


def loader(dataset: Any, batches: Sequence[List[int]], workers: int, pin_memory: bool) -> Iterator[Any]:
    """Iterate ``(x, y)`` batches through a DataLoader (``workers`` processes, pinned memory for CUDA)."""
    if workers == 0 and not pin_memory:
        return (_Batches(dataset, batches)[i] for i in range(len(batches)))
    return iter(torch.utils.data.DataLoader(_Batches(dataset, batches), batch_size=None, shuffle=False,
                                            num_workers=workers, pin_memory=pin_memory,
                                            persistent_workers=False))


def all_sum(values: Sequence[float], env: DistEnv, device: torch.device) -> List[float]:
    """Element-wise sum of ``values`` over the ranks (float64)."""
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    if env.distributed:
        dist.all_reduce(t)
    return t.cpu().tolist()


def gather_predictions(index: np.ndarray, pred: np.ndarray, n: int, env: DistEnv) -> np.ndarray:
    """Predictions of all ``n`` samples from every rank's (indices, predictions); each rank gets the whole."""
    if env.distributed:
        parts: List[Any] = [None] * env.world_size
        dist.all_gather_object(parts, (index.tolist(), pred.tolist()))
    else:
        parts = [(index.tolist(), pred.tolist())]
    out = np.full(n, -1, dtype=np.int64)
    for idx, p in parts:
        out[np.asarray(idx, dtype=np.int64)] = np.asarray(p, dtype=np.int64)
    return out


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def shutdown(env: DistEnv) -> None:
    """Leave the process group (after the last collective)."""
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
