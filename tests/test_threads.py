"""Threads under load (engines/threads.py): the thread choice, what the kernel says about
other busy processes and our own queueing, when auto steps down and up, and training that
goes on alike whatever the thread count does mid-run. Timings are benchmarks/under_load.py's job."""

import itertools
import os

import numpy as np
import pytest
import torch

from charrnn.data.corpus import DataConfig
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.engines.threads import (
    AdaptiveThreads,
    auto_threads,
    others_running,
    pick_threads,
    waiting_here,
)
from charrnn.engines.torch_engine import TorchEngine
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig
from conftest import small_text


@pytest.mark.parametrize(
    "cap, others, threads",
    [(2, 0, 2), (2, 0.4, 2), (2, 0.5, 1), (2, 1, 1), (2, 3, 1), (8, 2.6, 5), (8, 0.2, 8), (1, 0, 1), (4, 9, 1)],
)
def test_threads_are_the_cores_others_leave_free(cap, others, threads):
    assert pick_threads(cap, others) == threads


def fake_proc(root, running, states):
    """A /proc with loadavg saying `running` runnable tasks, and this process's threads in `states`."""
    (root / "self" / "task").mkdir(parents=True)
    (root / "loadavg").write_text(f"3.10 2.00 1.50 {running}/187 4242\n")
    for i, state in enumerate(states):
        (root / "self" / "task" / str(100 + i)).mkdir()
        comm = "pt_main (x) R" if i == 0 else "python"  # a name with spaces and parentheses must not fool it
        (root / "self" / "task" / str(100 + i) / "stat").write_text(f"{100 + i} ({comm}) {state} 1 100 100 0 -1\n")
    return root


def test_others_running_counts_runnable_tasks_less_our_own(tmp_path):
    proc = fake_proc(tmp_path / "proc", 4, ["S", "R", "R", "S"])  # 2 of the 4 runnable tasks are ours
    assert others_running(proc, cpus=2, online=2) == 2
    assert others_running(proc, cpus=2, online=8) == 0.5  # on 2 of 8 CPUs: a quarter of the others
    assert others_running(fake_proc(tmp_path / "idle", 1, ["R", "S"]), cpus=2, online=2) == 0
    assert others_running(tmp_path / "none", cpus=2, online=2) is None  # no /proc: nothing to adapt to
    if os.path.exists("/proc/loadavg"):
        assert others_running() >= 0


def test_waiting_here_sums_the_run_queue_time_of_our_threads(tmp_path):
    proc = fake_proc(tmp_path / "proc", 1, ["R", "S"])
    assert waiting_here(proc) is None  # a kernel without schedstat
    (proc / "self" / "schedstat").write_text("1 2 3\n")
    for task, queued in zip(sorted((proc / "self" / "task").iterdir()), (1_500_000_000, 250_000_000)):
        (task / "schedstat").write_text(f"9000000000 {queued} 77\n")  # ns on a CPU, ns queued, slices
    assert waiting_here(proc) == 1.75


def ticks(a, clock, n, step=0.1):
    """Tick `a` n times, `step` seconds apart; a second tick at the same moment must change nothing."""
    seen = []
    for _ in range(n):
        seen.append(a.tick())
        assert a.tick() == seen[-1]  # within `every` seconds: no new look
        clock[0] += step
    return seen


def test_adaptive_threads_step_down_on_queueing_and_up_on_free_cores():
    clock, calls = [0.0], []
    # per look: other runnable tasks, and our threads' queued seconds in the 0.1 s before it
    others = iter([0, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    queued = iter([0, 0, 0, 0.07, 0.01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    waited = [0.0]

    def waiting():
        waited[0] += next(queued)
        return waited[0]

    a = AdaptiveThreads(
        2, calls.append, others=lambda: next(others), waiting=waiting, clock=lambda: clock[0], window=3, hold=0.75
    )
    seen = ticks(a, clock, 17)
    # look 1's count of 1 alone changes nothing; 0.7 threads queued (look 3, t=0.3 s) step down at once;
    # the last 3 counts leave a core free from look 10 (t=1.0 s), but the hold keeps 1 thread until t=1.1 s
    assert seen == [2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2]
    assert calls == [1, 2]


def test_a_step_up_that_is_undone_at_once_doubles_the_hold():
    """Counts that never see the tasks holding our cores (say, both pinned to a subset of a
    large host) would step up into queueing every hold: each failed step up doubles it."""
    clock, calls, waited = [0.0], [], [0.0]

    def waiting():  # queued 0.7 threads' worth whenever 2 threads run, none at 1
        waited[0] += 0.07 if a.threads == 2 else 0.0
        return waited[0]

    a = AdaptiveThreads(
        2, calls.append, others=lambda: 0, waiting=waiting, clock=lambda: clock[0], every=0.125, hold=1.0
    )
    seen = ticks(a, clock, 64, step=0.125)  # a step exact in binary: the holds end on a look
    ups = [k for k in range(1, 64) if seen[k] > seen[k - 1]]
    # down at look 1; up 1 s later (look 9), undone at once: hold 2 s (up at 26), then 4 s (up at 59)
    assert ups == [9, 26, 59] and seen[60] == 1 and a.hold == 8.0


def test_adaptive_threads_go_by_the_counts_where_the_kernel_keeps_no_wait_times():
    clock, said, calls = [0.0], iter([0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]), []
    a = AdaptiveThreads(
        2, calls.append, others=lambda: next(said), waiting=lambda: None, clock=lambda: clock[0], window=3
    )
    # means of the last 3 counts: 0 0 0 .33 .67 1 1 1 .67 .33 0 0 0
    assert ticks(a, clock, 13) == [2, 2, 2, 2, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    assert calls == [1, 2]
    b = AdaptiveThreads(2, calls.append, others=lambda: None, waiting=lambda: None)  # no /proc: keep the cap
    assert b.tick() == 2 and calls == [1, 2]


def test_auto_threads_caps_at_torchs_count_and_leaves_fixed_gpu_and_omp_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert auto_threads(3, "cpu") is None and torch.get_num_threads() == 3  # --threads 3: fixed
    a = auto_threads(0, "cpu")
    assert isinstance(a, AdaptiveThreads) and a.cap == 3
    a.set_threads(1)  # a busy machine lowered it ...
    assert torch.get_num_threads() == 1
    again = auto_threads(0, "cpu")  # ... and the next run in this process starts from the cap again
    assert again.cap == 3 and torch.get_num_threads() == 3
    assert auto_threads(0, "cuda") is None
    torch.set_num_threads(1)
    assert auto_threads(0, "cpu") is None  # nothing to share out
    torch.set_num_threads(2)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's (or torchrun's) choice
    assert auto_threads(0, "cpu") is None and torch.get_num_threads() == 2


def test_build_trainer_gives_the_engine_adaptive_threads_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    (tmp_path / "c.txt").write_text(small_text(40))
    config = TrainConfig(
        out=str(tmp_path / "run"),
        data=DataConfig(data=str(tmp_path / "c.txt")),
        model=ModelConfig(hidden_size=8, embedding_size=4),
        batch_size=2,
        seq_len=8,
        max_steps=1,
        device="cpu",
    )
    torch.set_num_threads(2)
    assert build_trainer(config)[0].engine.threads.cap == 2
    assert build_trainer(TrainConfig(**{**config.__dict__, "threads": 2}))[0].engine.threads is None


def test_training_follows_the_same_path_whatever_the_thread_count_does():
    """AdaptiveThreads may switch between 1 and 2 threads at any step: training goes on as at
    a fixed count, to rounding (some kernels split sums across threads: not bit for bit)."""
    rng = np.random.default_rng(0)
    batches = [(rng.integers(0, 40, (16, 32)), rng.integers(0, 40, (16, 32))) for _ in range(8)]

    def run(threads):
        torch.manual_seed(0)
        model = CharRNN(ModelConfig(vocab_size=40, hidden_size=64, embedding_size=16, dropout=0.1))
        engine = TorchEngine(model, "cpu", torch.optim.Adam(model.parameters(), 2e-3), grad_clip=1.0, threads=threads)
        state, losses = None, []
        for x, y in batches:
            loss, state = engine.train_step(x, y, state, 2e-3)
            losses.append(float(loss))
        return engine.weights(), losses

    torch.set_num_threads(1)
    fixed, fixed_losses = run(None)
    switches = []
    flip = itertools.cycle([1, 0])  # busy, idle, busy, ...: 1, 2, 1, 2 threads

    def set_threads(n):
        switches.append(n)
        torch.set_num_threads(n)

    torch.set_num_threads(2)
    flipping = AdaptiveThreads(2, set_threads, others=lambda: next(flip), waiting=lambda: None, every=0, window=1)
    varied, varied_losses = run(flipping)
    assert switches[:4] == [1, 2, 1, 2]
    assert np.allclose(fixed_losses, varied_losses, rtol=1e-5) and fixed_losses[-1] < fixed_losses[0]
    assert all(np.allclose(fixed[k], varied[k], rtol=1e-4, atol=1e-6) for k in fixed)
