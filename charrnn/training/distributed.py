"""Data-parallel training on several processes: torch.distributed + DistributedDataParallel.

Processes are started by torchrun (or by `charrnn train --nproc N`, which starts
torchrun), one per GPU with NCCL, or one per group of CPU cores with gloo. torchrun
puts RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process's
environment; `Dist.from_env` reads them. A plain process gets `Dist()`: one rank,
no process group, every method below a no-op, so the Trainer has one code path.

The global batch is the same B streams whatever the number of ranks N is, so a
run's hyperparameters mean the same thing on 1 or 8 GPUs. Each rank reads, and
carries the hidden state of, its own b = B // N contiguous streams (rows):

    rows of the B x T batch (see data.py)     read by
    [0, b)                                    rank 0
    [b, 2b)                                   rank 1
    ...
    [(N-1) b, B)                              rank N-1

Each rank's loss is the mean over its b x T characters and DDP averages the
gradients over the N ranks, which is the gradient of the mean over all B x T
characters: the same step as one process with the same B. Gradient clipping by
global norm runs after that all-reduce, so it matches too.

What survives a change of N on --resume: checkpoints hold the full (L, B, H)
hidden state, gathered from all ranks, and every rank's random generator states.
On resume each rank takes its own rows of the hidden state and, if the saved run
had a rank with its number, that rank's generator state (see `restore_rng`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from charrnn.errors import CharRNNError

State = tuple[torch.Tensor, ...]
# How gloo and NCCL word a lost peer or a timeout, in the RuntimeErrors they raise.
COMM_FAILURE = re.compile(r"gloo|nccl|connection (reset|closed)|timed out|timeout|broken pipe", re.IGNORECASE)


def launched() -> bool:
    """True in a process started by torchrun (or anything that sets its environment)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def torchrun_args(nproc: int, train_args: list[str]) -> list[str]:
    """torchrun's arguments for running `charrnn train train_args` on nproc local processes.

    --standalone starts a rendezvous on a free local port, so several runs can share
    a machine. The workers get train_args without --nproc (which torchrun's own parser
    would take for an abbreviation of its --nproc-per-node).
    """
    args, skip = [], False
    for a in train_args:
        if not skip and a != "--nproc" and not a.startswith("--nproc="):
            args.append(a)
        skip = a == "--nproc" and not skip
    return ["--standalone", f"--nproc-per-node={nproc}", "-m", "charrnn", "train", *args]


def run_torchrun(nproc: int, train_args: list[str], out: str) -> int:
    """Be torchrun in this process: start nproc workers and wait for them; the exit code.

    torchrun's own entry point ends with a traceback both when it is signalled (Ctrl-C
    reaches it with the workers) and when a worker fails. Here a signal, which torchrun
    forwards to the workers and which they answer by saving and saying so, ends the run
    with 0, as a signalled one-process run does; failed workers, which printed their own
    errors, end it with a CharRNNError naming each failed rank and how it ended, and
    --resume only where `out` holds a checkpoint to continue.
    torchrun's log folder (its workers' error files) is a temporary one, removed at the
    end: by default torchrun leaves a /tmp/torchelastic_* folder behind on every run.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # torchrun's own log lines (its OMP_NUM_THREADS banner: charrnn sets each rank's threads;
    # its "failed (exitcode ...)": the error below names every failed rank) would say it twice
    for name in ("torch.distributed.run", "torch.distributed.elastic"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        with tempfile.TemporaryDirectory(prefix="charrnn-torchrun-") as logs:
            run(parse_args([f"--log-dir={logs}", *torchrun_args(nproc, train_args)]))
    except SignalException:
        return 0
    except ChildFailedError as e:
        # Every failed rank, not torchrun's "first" one: its times are in whole seconds.
        how = [
            f"rank {rank} "
            + (f"was killed by {f.signal_name()}" if f.exitcode < 0 else f"exited with code {f.exitcode}")
            for rank, f in sorted(e.failures.items())
        ]
        from charrnn import checkpoint as ckpt

        then = "continue it with --resume" if ckpt.has_checkpoint(Path(out)) else "nothing was saved"
        raise CharRNNError(f"the run on {nproc} processes stopped ({', '.join(how)}); {then}") from e
    return 0


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None  # the rank's device; None for a plain process (the trainer picks)
    timeout: float = 0.0  # seconds a collective waits for the other ranks
    active: bool = False  # a process group is up

    @classmethod
    def from_env(cls, device: str, timeout: float) -> Dist:
        """Join the process group that torchrun's environment describes; `Dist()` outside torchrun.

        device is the --device value: with CUDA (cuda, or auto on a machine with a GPU)
        rank r uses cuda:LOCAL_RANK and NCCL; otherwise the CPU and gloo.
        """
        if not launched():
            return cls()
        rank, world, local = (
            int(os.environ["RANK"]),
            int(os.environ["WORLD_SIZE"]),
            int(os.environ.get("LOCAL_RANK", 0)),
        )
        if device == "mps":
            raise CharRNNError(
                "distributed training runs on CUDA GPUs (nccl) or on CPUs (gloo), not on mps: use --device cpu"
            )
        if device.startswith("cuda:"):
            raise CharRNNError(
                "under torchrun each rank uses cuda:LOCAL_RANK: pass --device cuda "
                "(choose GPUs with CUDA_VISIBLE_DEVICES)"
            )
        if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise CharRNNError("--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu")
            if local >= torch.cuda.device_count():
                raise CharRNNError(
                    f"rank {rank} has LOCAL_RANK {local} but this machine has {torch.cuda.device_count()} "
                    "GPU(s): start at most one process per GPU"
                )
            where, backend = torch.device("cuda", local), "nccl"
            torch.cuda.set_device(where)
        else:
            where, backend = torch.device("cpu"), "gloo"
        self = cls(rank, world, local, where, timeout, active=True)
        with self.errors():
            if not dist.is_initialized():
                dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
        return self

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and the progress bar."""
        return self.rank == 0

    def rows(self, batch_size: int) -> tuple[int, int]:
        """This rank's rows [start, end) of a B-row batch."""
        if batch_size % self.world_size:
            raise CharRNNError(
                f"--batch-size {batch_size} must be a multiple of the number of processes "
                f"({self.world_size}), so that every rank reads as many streams"
            )
        b = batch_size // self.world_size
        return self.rank * b, (self.rank + 1) * b

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module to train: DDP around `model` (which keeps the weights) when distributed.

        DDP broadcasts rank 0's weights at construction and all-reduces (averages)
        the gradients during backward.
        """
        if not self.active:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def seed_rank(self, seed: int) -> None:
        """Give ranks other than 0 their own random stream (dropout masks differ per rank).

        Rank 0 keeps the stream of a one-process run, so N=1 under torchrun equals a plain run.
        """
        if self.rank > 0:
            torch.manual_seed(_derived_seed(seed, self.rank, 0))

    # -- collectives: every rank must call them at the same point --------------------

    def reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """Element-wise sum or max of `values` over the ranks (float64)."""
        if not self.active:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return t.tolist()

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar tensor over the ranks (the global mean loss when ranks hold equal shares)."""
        if not self.active:
            return value
        t = value.detach().clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t / self.world_size

    def main_says(self, flag: bool) -> bool:
        """Rank 0's value of `flag`, on every rank (for decisions that read rank 0's files)."""
        if not self.active:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def gather_rows(self, state: State | None) -> State | None:
        """Every rank's (L, b, H) hidden state -> the full (L, B, H), rows in rank order."""
        if not self.active or state is None:
            return state
        full = []
        for s in state:
            parts = [torch.empty_like(s) for _ in range(self.world_size)]
            dist.all_gather(parts, s.contiguous())
            full.append(torch.cat(parts, dim=1))
        return tuple(full)

    def take_rows(self, state: State | None, batch_size: int) -> State | None:
        """This rank's rows of a full (L, B, H) hidden state -> (L, b, H)."""
        if state is None:
            return None
        start, end = self.rows(batch_size)
        return tuple(s[:, start:end].contiguous() for s in state)

    def gather_rng(self) -> list[dict[str, torch.Tensor]]:
        """Every rank's random generator states: [{"cpu": bytes, "cuda": bytes or empty}] in rank order."""
        cuda = self.device is not None and self.device.type == "cuda"
        mine = {
            "cpu": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(self.device) if cuda else torch.empty(0, dtype=torch.uint8),
        }
        if not self.active:
            return [mine]
        out = [{} for _ in range(self.world_size)]
        for key, t in mine.items():
            parts = [torch.empty_like(t, device=self.device) for _ in range(self.world_size)]
            dist.all_gather(parts, t.to(self.device))
            for r, p in enumerate(parts):
                out[r][key] = p.cpu()
        return out

    def restore_rng(self, saved: list[dict[str, torch.Tensor]], seed: int, step: int) -> None:
        """Restore this rank's generators from a checkpoint's `gather_rng()`.

        A rank that existed in the saved run gets its exact state back; a new rank
        (more ranks than the saved run had) a fresh stream seeded from (seed, rank, step).
        """
        if not saved:  # a checkpoint from before rng_ranks: rank 0's state is already restored
            return
        if self.rank < len(saved):
            torch.set_rng_state(saved[self.rank]["cpu"])
            if saved[self.rank]["cuda"].numel() and self.device is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(saved[self.rank]["cuda"], self.device)
        else:
            torch.manual_seed(_derived_seed(seed, self.rank, step))

    # -- lifetime -----------------------------------------------------------------------

    @contextmanager
    def errors(self):
        """Turn a failed collective (a rank died, or stalled past the timeout) into a one-line error.

        Collectives raise DistError, but DDP's gradient all-reduce inside backward raises a
        plain RuntimeError from gloo or NCCL, recognised here by its words.
        """
        try:
            yield
        except (dist.DistError, RuntimeError) as e:
            if not self.active or not (isinstance(e, dist.DistError) or COMM_FAILURE.search(str(e))):
                raise
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CharRNNError(
                f"rank {self.rank} of {self.world_size}: another rank died or did not answer within "
                f"--dist-timeout {self.timeout:g} s, so the run stopped ({why}); continue it with --resume"
            ) from e

    def close(self) -> None:
        """Tear the process group down on every rank together.

        Without the barrier a rank that finished first (rank 1 while rank 0 still writes
        the last checkpoint) tore down gloo while its peer was still connected, and about
        one run in ten then died with SIGABRT at exit ("terminate called without an active
        exception"), so torchrun reported a failure after a clean stop.
        """
        if self.active and dist.is_initialized():
            with self.errors():
                dist.barrier()
            dist.destroy_process_group()


def _derived_seed(seed: int, rank: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1)[0])
