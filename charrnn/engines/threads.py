"""CPU threads for training: as many as the cores other processes leave free.

Why training collapsed when another process was busy. PyTorch's CPU kernels (ATen,
MKL, oneDNN) share one OpenMP team; the Linux wheels ship GNU libgomp
(torch/lib/libgomp.so.1). Each parallel region ends at a barrier where the team waits
for its slowest thread. With one thread per core and one core taken by another
CPU-bound process, one of our threads is off the CPU for a scheduler slice
(milliseconds) at nearly every barrier, and an LSTM step is thousands of small regions
(T time steps x L layers, forward and backward). Worse, libgomp's waiting threads spin
(GOMP_SPINCOUNT 300,000 by default), so they take CPU from the very thread they wait
for. On 2 cores with one busy process, a 2x256 LSTM fell from ~7k to ~400 chars/s.

Two defaults fix it (benchmarks/under_load.py measures both):

- OMP_WAIT_POLICY=PASSIVE: a waiting thread sleeps at once. The OpenMP runtime reads
  it once, when `import torch` loads it; set later, it does nothing in this process.
  So `charrnn` sets it first thing (cli.main), and train() sets it when torch is not
  imported yet. A value the user exported wins.
- --threads 0 (auto): AdaptiveThreads keeps torch's thread count at the cores not busy
  with other processes, re-counted at most every 0.1 s, between training steps. It
  counts the runnable tasks the kernel reports (/proc/loadavg) less this process's own.
  Where there is no /proc (macOS, Windows), auto is torch's own default.

Bits: some of PyTorch's CPU kernels split a sum across threads, so another thread count
may round differently (here the LSTM backward does at H=64, not at H=256). A run whose
count changed with the load matches a quiet one to rounding, not bit for bit; where bits
matter (comparing runs, an exact resume under changing load), --threads N fixes the count.
This module imports torch only inside auto_threads: the CLI calls passive_waits() before torch loads.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

WAIT_POLICY = "OMP_WAIT_POLICY"


def passive_waits(environ=os.environ, modules=sys.modules) -> bool:
    """Ask the OpenMP runtime to put waiting threads to sleep (OMP_WAIT_POLICY=PASSIVE)
    unless the user set a policy, and only while torch, which loads the runtime, is not
    imported yet (later it would change nothing here, only the children's environment).
    Returns whether waits are passive in this process."""
    if "torch" in modules:
        return False
    environ.setdefault(WAIT_POLICY, "PASSIVE")
    return environ[WAIT_POLICY].upper() == "PASSIVE"


def pick_threads(cap: int, others: float) -> int:
    """Threads for `cap` cores when `others` runnable tasks of other processes compete for
    them (a mean over a few samples; x.5 rounds up): the free cores, at least 1."""
    return max(1, min(cap, cap - math.floor(others + 0.5)))


def _running_here(proc: Path) -> int:
    """This process's threads that are runnable now (state R in /proc/self/task/*/stat)."""
    n = 0
    for task in (proc / "self" / "task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # the thread ended between the listing and the read
            continue
        n += stat[stat.rindex(")") + 2] == "R"  # after "pid (comm) ": comm may hold spaces and parentheses
    return n


def others_running(proc: Path = Path("/proc"), cpus: int | None = None, online: int | None = None) -> float | None:
    """Runnable tasks of other processes, as a share of the `cpus` this process may run on
    (of `online` CPUs in all); None where the kernel does not say (no /proc).

    /proc/loadavg's fourth field is "runnable/total" tasks, machine-wide, at this instant;
    on a machine with more CPUs than ours the others are assumed spread evenly.
    """
    try:
        running = int((proc / "loadavg").read_text().split()[3].split("/")[0])
        ours = _running_here(proc)
    except (OSError, IndexError, ValueError):
        return None
    cpus = cpus or len(os.sched_getaffinity(0))
    online = online or os.cpu_count() or cpus
    return max(0, running - ours) * min(1.0, cpus / online)


class AdaptiveThreads:
    """Sets torch's thread count (through `set_threads`) to the cores of `cap` that other
    processes leave free: call tick() between steps. It samples others_running at most
    every `every` seconds and decides on the mean of the last `window` samples, so a
    passing blip does not change it, while a process that stays busy does within ~0.5 s."""

    def __init__(
        self,
        cap: int,
        set_threads: Callable[[int], None],
        others: Callable[[], float | None] = others_running,
        clock: Callable[[], float] = time.monotonic,
        every: float = 0.1,
        window: int = 5,
    ):
        self.cap, self.set_threads, self.others, self.clock, self.every = cap, set_threads, others, clock, every
        self.samples: deque[float] = deque(maxlen=window)
        self.threads, self.due = cap, -math.inf

    def tick(self) -> int:
        """Re-count if due; returns the thread count now in force."""
        now = self.clock()
        if now < self.due:
            return self.threads
        self.due = now + self.every
        n = self.others()
        if n is None:
            return self.threads
        self.samples.append(n)
        want = pick_threads(self.cap, sum(self.samples) / len(self.samples))
        if want != self.threads:
            self.set_threads(want)
            self.threads = want
        return self.threads


# The count auto last set -> the cap it lowered from, so that a later run in this
# process (a notebook) starts from the cap, not from whatever the load left.
_set_by_auto: dict[int, int] = {}


def auto_threads(threads: int, device_type: str, environ=os.environ) -> AdaptiveThreads | None:
    """Apply --threads: N fixes torch's thread count; 0 (auto) returns the AdaptiveThreads
    that training ticks on the CPU, capped at torch's current count (all cores unless
    torch.set_num_threads or OMP_NUM_THREADS said otherwise). None where nothing adapts:
    a fixed N, a GPU (the CPU only feeds it), OMP_NUM_THREADS set (torchrun's ranks) or one core."""
    import torch

    now = torch.get_num_threads()
    cap = _set_by_auto.get(now, now)
    _set_by_auto.clear()
    if threads:
        torch.set_num_threads(threads)
        return None
    if cap != now:
        torch.set_num_threads(cap)
    if device_type != "cpu" or environ.get("OMP_NUM_THREADS") or cap == 1:
        return None

    def set_threads(n: int) -> None:
        torch.set_num_threads(n)
        _set_by_auto.clear()
        _set_by_auto[n] = cap

    return AdaptiveThreads(cap, set_threads)
