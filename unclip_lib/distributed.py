"""Where training runs: the device, the numeric precision, and the processes of a torchrun job.

The training commands need no change to run on several processes:

    torchrun --nproc_per_node 2 -m unclip_lib.cli train prior --kind diffusion --cache cache/photos
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_endpoint host:29500 -m unclip_lib.cli train decoder ...

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; `Runtime.from_env` then joins the process group
(gloo on CPU, NCCL on CUDA). Every rank builds the same global batch of a step (batches are a
pure function of (seed, step)) and trains on its contiguous slice. The loss's own randomness
(diffusion timesteps and noise, condition dropout) is drawn through a `RankGenerator`: every
draw is made for the whole global batch and the rank keeps its rows, so each example gets the
noise it would get in one process. DistributedDataParallel averages the gradients, so a step of
N processes is the step of one process on the whole batch, to float rounding. Rank 0 alone
logs, validates and writes checkpoints; every rank resumes from the step rank 0 saved.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

PRECISIONS = ("fp32", "bf16", "fp16")


def pick_device(name: str = "auto") -> torch.device:
    """"auto": CUDA if present, else Apple's MPS, else the CPU; or a name torch knows."""
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA GPU; use --device cpu or auto")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise RuntimeError(f"device {name!r} asked for, but MPS is not available; use --device cpu or auto")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class Runtime:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    started_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device: str = "auto") -> "Runtime":
        """The device, and the process group when run under torchrun (WORLD_SIZE > 1)."""
        world = int(os.environ.get("WORLD_SIZE", 1))
        dev = pick_device(device)
        if world == 1:
            return cls(0, 1, dev)
        if dev.type == "cuda":
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(dev)
        started = False
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
            started = True
        return cls(dist.get_rank(), dist.get_world_size(), dev, started)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over all ranks."""
        if self.world > 1:
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return float(value.detach())

    def max(self, value: float) -> float:
        """The largest of a number over all ranks."""
        return self._reduce(value, dist.ReduceOp.MAX)

    def min(self, value: float) -> float:
        """The smallest of a number over all ranks."""
        return self._reduce(value, dist.ReduceOp.MIN)

    def _reduce(self, value: float, op) -> float:
        if self.world == 1:
            return float(value)
        t = torch.tensor(float(value), dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return float(t)

    def close(self) -> None:
        if self.started_group and dist.is_initialized():
            dist.destroy_process_group()


@dataclass
class RankGenerator:
    """A training step's RNG for one rank of `world`: the draws of `batch_randn` and friends
    are made for world x the local rows and sliced to this rank's rows, so the N ranks
    together see exactly the draws one process makes for the whole batch."""
    generator: torch.Generator
    rank: int = 0
    world: int = 1


def _rows(draw, shape, generator, **kwargs) -> torch.Tensor:
    shape = tuple(int(s) for s in shape)
    if not isinstance(generator, RankGenerator):
        return draw(shape, generator=generator, **kwargs)
    n, g = shape[0], generator
    full = draw((n * g.world, *shape[1:]), generator=g.generator, **kwargs)
    return full[g.rank * n:(g.rank + 1) * n]


def batch_randn(shape, generator: torch.Generator | RankGenerator | None) -> torch.Tensor:
    """torch.randn(shape) whose dim 0 is the (local) batch; see RankGenerator."""
    return _rows(torch.randn, shape, generator)


def batch_rand(shape, generator: torch.Generator | RankGenerator | None) -> torch.Tensor:
    """torch.rand(shape) whose dim 0 is the (local) batch; see RankGenerator."""
    return _rows(torch.rand, shape, generator)


def batch_randint(high: int, shape, generator: torch.Generator | RankGenerator | None) -> torch.Tensor:
    """torch.randint(high, shape) whose dim 0 is the (local) batch; see RankGenerator."""
    return _rows(lambda size, generator: torch.randint(0, high, size, generator=generator), shape, generator)


def is_main_process() -> bool:
    """True outside a process group, and on rank 0 inside one."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank_slice(batch, rank: int, world: int):
    """This rank's contiguous share of a batch along dim 0 (tensors, lists; nested in tuples,
    lists or dicts). Every part of the batch must split evenly."""
    if world == 1:
        return batch
    if isinstance(batch, torch.Tensor) or (isinstance(batch, list) and batch and not isinstance(batch[0], (
            tuple, list, dict, torch.Tensor))):
        n = len(batch)
        if n % world:
            raise ValueError(f"a batch of {n} does not split over {world} processes; use a batch size divisible "
                             f"by {world}")
        k = n // world
        return batch[rank * k:(rank + 1) * k]
    if isinstance(batch, dict):
        return {key: rank_slice(v, rank, world) for key, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(rank_slice(v, rank, world) for v in batch)
    return batch


def to_device(batch, device: torch.device):
    """Move every tensor of a (nested) batch to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def autocast(device: torch.device, precision: str):
    """Mixed precision for the forward pass: bf16 (CPU or recent GPUs) or fp16 (GPUs, with a
    GradScaler); fp32 runs as is."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


class LossModule(torch.nn.Module):
    """Routes loss_fn(model, batch, generator) through forward(), so that DDP's gradient
    hooks see every parameter the loss uses, whichever method of the model it calls."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, loss_fn, batch, generator):
        return loss_fn(self.model, batch, generator)
