"""Data-parallel training under ``torchrun``: process group, per-rank samplers and cross-rank reductions.

Launch any script that calls :func:`hierarchy.training.train` with, on one machine with 4 GPUs::

    torchrun --standalone --nproc_per_node 4 my_training_script.py

(on CPUs the same command starts 4 processes; ``python -m torch.distributed.run`` is the same launcher).
Each process trains a replica wrapped in ``DistributedDataParallel`` (NCCL on GPUs, gloo on CPUs) on its
share of every global batch: ``TrainConfig.batch_size`` stays the global batch size, each rank takes
``batch_size / world_size`` images of it, so the batches, and hence the run, match a one-process run.
Rank 0 alone writes checkpoints and logs. Without ``torchrun`` (``WORLD_SIZE`` unset or 1) no process
group is created and nothing here costs anything.

A longer program (the experiment) holds one process group for its whole run: rank 0 does the work and hands
every step that needs all ranks (a training call) to the others as a job (:meth:`DistContext.share_job`),
which run it in :meth:`DistContext.follow_jobs` until rank 0 calls :meth:`DistContext.end_jobs`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from hierarchy.training.seeding import epoch_generator

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size``, its ``local_rank`` on the machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        """Whether several processes train together (a process group exists)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.distributed:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank (``[obj]`` in a single process)."""
        if not self.distributed:
            return [obj]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over ranks."""
        if not self.distributed:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), on every rank (``obj`` itself in a single process)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def share_job(self, job: Callable[[], T]) -> T:
        """On rank 0: send ``job`` (a picklable callable, e.g. a ``functools.partial`` of a module-level
        function) to the ranks waiting in :meth:`follow_jobs`, run it here too and return its result."""
        self.broadcast(job)
        return job()

    def follow_jobs(self) -> None:
        """On ranks other than 0: run every job rank 0 shares, in order, until it calls :meth:`end_jobs`."""
        while (job := self.broadcast(None)) is not None:
            job()

    def end_jobs(self) -> None:
        """On rank 0: tell the ranks in :meth:`follow_jobs` that no job follows (no-op in a single process)."""
        self.broadcast(None)

    def close(self) -> None:
        """Destroy the process group if :func:`init_distributed` created it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def is_main_process() -> bool:
    """Whether this process may write files: rank 0 of the process group, or of the ``torchrun`` job
    (``RANK``) before a group exists; True in a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def init_distributed(device: torch.device) -> DistContext:
    """Join the ``torchrun`` job described by the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``).

    Creates the process group (NCCL for a CUDA ``device``, after selecting GPU ``LOCAL_RANK``; gloo
    otherwise) unless one exists; returns a single-process context, with no process group, when
    ``WORLD_SIZE`` is unset or 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_world_size() != world_size or dist.get_rank() != rank:
        raise RuntimeError(f"the existing process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                           f"disagrees with the environment (RANK={rank}, WORLD_SIZE={world_size})")
    return DistContext(rank, world_size, local_rank, owns)


class EpochBatchShardSampler(Sampler[int]):
    """One shuffled pass per epoch, the same permutation on every rank, each global batch split over ranks.

    The permutation depends only on ``(seed, epoch)`` (:func:`epoch_generator`), so a resumed run repeats
    it. Global batch ``b`` is ``perm[b * batch_size:(b + 1) * batch_size]``; rank ``r`` takes the ``r``-th
    of ``world_size`` equal slices of it. With one rank this is a plain seeded shuffle. ``drop_last`` drops
    the incomplete last global batch; without it (a dataset smaller than one batch) the lone batch is split
    as evenly as possible.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 1

    def set_epoch(self, epoch: int) -> None:
        """Select epoch ``epoch``'s permutation (call before iterating)."""
        self.epoch = epoch

    def _indices(self) -> np.ndarray:
        generator = epoch_generator(self.seed, self.epoch)
        # The epoch generator's first draw seeds rank 0's DataLoader workers (the trainer passes the loader an
        # equal generator); drawing the permutation after it keeps one-process runs identical to earlier
        # versions, which shuffled with DataLoader(shuffle=True, generator=epoch_generator(seed, epoch)).
        torch.empty((), dtype=torch.int64).random_(generator=generator)
        perm = torch.randperm(self.n, generator=generator).numpy()
        if self.world_size == 1:
            return perm[: len(self)] if self.drop_last else perm
        if not self.drop_last:
            return np.array_split(perm, self.world_size)[self.rank]
        share = self.batch_size // self.world_size
        batches = perm[: (self.n // self.batch_size) * self.batch_size].reshape(-1, self.world_size, share)
        return batches[:, self.rank].reshape(-1)

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        if not self.drop_last:
            return len(np.array_split(np.arange(self.n), self.world_size)[self.rank])
        return (self.n // self.batch_size) * self.batch_size // self.world_size


class ShardSampler(Sampler[int]):
    """Rank ``rank``'s contiguous slice of ``range(n)`` (no shuffling, no padding): for evaluation."""

    def __init__(self, n: int, *, rank: int = 0, world_size: int = 1) -> None:
        self.indices = np.array_split(np.arange(n), world_size)[rank].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
