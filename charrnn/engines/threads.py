"""CPU threads for training: as many as the cores other processes leave free.

Why training collapsed when another process was busy. PyTorch's CPU kernels (ATen,
MKL, oneDNN) share one OpenMP team; the Linux wheels ship GNU libgomp
(torch/lib/libgomp.so.1). Each parallel region ends at a barrier where the team waits
for its slowest thread, and an LSTM step is thousands of small regions (T time steps x
L layers, forward and backward). With one thread per core and one core taken by another
CPU-bound process, one of our threads is off the CPU for a scheduler slice at nearly
every barrier, while libgomp's waiting threads spin (GOMP_SPINCOUNT 300,000) and take
CPU from the very thread they wait for. On 2 cores, a 2x256 LSTM step went from 0.7 s
to 11 s beside one busy process.

The default, --threads 0 (auto): AdaptiveThreads, ticked between training steps, trains
on the cores other processes leave free. One thread has no barriers to wait at: beside
one busy process on 2 cores it keeps ~60% of the quiet speed. It steps down on evidence
measured on this process's own CPUs (its threads' time queued for a CPU, from the
kernel's schedstat), so a busy host outside its cpuset does not count; it steps back up
when the kernel's count of runnable tasks (/proc/loadavg) leaves cores free. Where there
is no /proc (macOS, Windows), auto is torch's own default.

Why not OMP_WAIT_POLICY=PASSIVE: sleeping waits survive the load better at a fixed
thread count, but cost about 12% of the quiet speed here (2-26% over seven runs: every
region wakes its threads with a futex), and libgomp reads the policy only when `import
torch` loads it, so from Python it is often too late. It stays the user's choice: export it.

Bits: some of PyTorch's CPU kernels split a sum across threads, so another thread count
may round differently (here the LSTM backward does at H=64, not at H=256). A run whose
count changed with the load matches a quiet one to rounding, not bit for bit; where bits
matter (comparing runs, an exact resume under changing load), --threads N fixes the count.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path


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


def waiting_here(proc: Path = Path("/proc")) -> float | None:
    """Seconds this process's threads have spent runnable but queued for a CPU, summed: the
    second field of /proc/self/task/*/schedstat. None where the kernel does not keep it."""
    if not (proc / "self" / "schedstat").exists():
        return None
    total = 0
    for task in (proc / "self" / "task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except OSError:  # the thread ended between the listing and the read
            continue
        except (IndexError, ValueError):  # a format this code does not know: no wait times
            return None
    return total / 1e9


class AdaptiveThreads:
    """Sets torch's thread count (through `set_threads`) to the cores of `cap` that other
    processes leave free: call tick() between steps; it looks at most every `every` seconds.

    Down, at once: when this process's threads spent more than QUEUED of the time since the
    last look queued for a CPU (waiting_here), other processes hold some of its cores. This
    is measured over the whole interval, on the CPUs it may use, so a passing blip hardly
    counts and busy CPUs elsewhere on a large host do not count at all.
    Up: when the mean of the last `window` counts of other runnable tasks (others_running)
    leaves more cores free, and not within `hold` seconds of a step down. A step up that the
    next look undoes (the counts were wrong: cores busy with tasks they do not see) doubles
    the hold, up to MAX_HOLD. Where the kernel keeps no wait times, the counts decide both ways.
    """

    QUEUED = 0.25  # threads' worth of waiting: quiet, ours measure ~0.0; beside one busy loop, 0.6-0.75
    MAX_HOLD = 300.0

    def __init__(
        self,
        cap: int,
        set_threads: Callable[[int], None],
        others: Callable[[], float | None] = others_running,
        waiting: Callable[[], float | None] = waiting_here,
        clock: Callable[[], float] = time.monotonic,
        every: float = 0.1,
        window: int = 5,
        hold: float = 5.0,
    ):
        self.cap, self.set_threads, self.others, self.waiting = cap, set_threads, others, waiting
        self.clock, self.every, self.hold, self.base_hold = clock, every, hold, hold
        self.samples: deque[float] = deque(maxlen=window)
        self.threads, self.due, self.down_at, self.went_up = cap, -math.inf, -math.inf, False
        self.last: tuple[float, float] | None = None  # (clock, waiting) at the previous look

    def queued(self, now: float) -> float | None:
        """Mean number of this process's threads queued for a CPU since the previous look."""
        waited, last = self.waiting(), self.last
        self.last = None if waited is None else (now, waited)
        if waited is None or last is None or now <= last[0]:
            return None
        return max(0.0, waited - last[1]) / (now - last[0])  # a thread that ended takes its time along: >= 0

    def tick(self) -> int:
        """Look again if due; returns the thread count now in force."""
        now = self.clock()
        if now < self.due:
            return self.threads
        self.due = now + self.every
        queued, n = self.queued(now), self.others()
        if n is not None:
            self.samples.append(n)
        free = pick_threads(self.cap, sum(self.samples) / len(self.samples)) if self.samples else self.threads
        want = self.threads
        if self.last is None:  # the kernel keeps no wait times: the counts decide both ways
            want = free
        elif queued is not None and queued > self.QUEUED:
            want = max(1, self.threads - math.ceil(queued - self.QUEUED))
            self.down_at = now
            self.hold = min(self.MAX_HOLD, self.hold * 2) if self.went_up else self.hold
        elif free > self.threads and now - self.down_at >= self.hold:
            want = free
        elif now - self.down_at >= self.hold:
            self.hold = self.base_hold  # a step up that held, or a quiet spell: back to the short hold
        self.went_up = want > self.threads
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
