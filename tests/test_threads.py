"""Threads under load (engines/threads.py): the thread choice, the count of other busy
processes, the wait policy reaching the OpenMP runtime, and training that gives the same
bits whatever the thread count does mid-run. Timings are benchmarks/under_load.py's job."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from charrnn.data.corpus import DataConfig
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.engines.threads import AdaptiveThreads, auto_threads, others_running, passive_waits, pick_threads
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


def test_adaptive_threads_follow_a_busy_process_and_ignore_a_blip():
    clock, said, calls = [0.0], iter([0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]), []
    a = AdaptiveThreads(2, calls.append, others=lambda: next(said), clock=lambda: clock[0], every=0.1, window=3)
    seen = []
    for _ in range(13):
        seen.append(a.tick())
        assert a.tick() == seen[-1]  # within `every` seconds: no new sample
        clock[0] += 0.1
    # means of the last 3 samples: 0 0 0 .33 .67 1 1 1 .67 .33 0 0 0
    assert seen == [2, 2, 2, 2, 1, 1, 1, 1, 1, 2, 2, 2, 2]
    assert calls == [1, 2]
    b = AdaptiveThreads(2, calls.append, others=lambda: None)  # the kernel does not say: keep the cap
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
    varied, varied_losses = run(AdaptiveThreads(2, set_threads, others=lambda: next(flip), every=0, window=1))
    assert switches[:4] == [1, 2, 1, 2]
    assert np.allclose(fixed_losses, varied_losses, rtol=1e-5) and fixed_losses[-1] < fixed_losses[0]
    assert all(np.allclose(fixed[k], varied[k], rtol=1e-4, atol=1e-6) for k in fixed)


def spincount(code: str, **env) -> str:
    """The spin count libgomp took from the environment when `code` loaded torch (OMP_DISPLAY_ENV)."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**base, "OMP_DISPLAY_ENV": "VERBOSE", **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "GOMP_SPINCOUNT" in line]
    if not lines:
        pytest.skip("torch's OpenMP runtime here is not GNU libgomp")
    return lines[0].split("=")[1].strip(" '")


def test_the_cli_and_the_api_make_waits_passive_before_torch_loads_openmp(tmp_path):
    """Seen by the runtime itself: libgomp prints the spin count it took (300,000 is its
    spinning default, 0 is PASSIVE). After `import torch` the policy can no longer change."""
    (tmp_path / "c.txt").write_text(small_text(40))
    data, tiny = str(tmp_path / "c.txt"), "max_steps=1, batch_size=2, seq_len=8, quiet=True"
    cli = (
        f"from charrnn.cli import main; main(['train', '--data', {data!r}, '--out', {str(tmp_path / 'cli')!r}, "
        "'--max-steps', '1', '--hidden-size', '8', '--embedding-size', '4', '--batch-size', '2', '--seq-len', '8', "
        "'--quiet'])"
    )
    api = (
        "from charrnn import DataConfig, ModelConfig, TrainConfig, train; "
        "train(TrainConfig(out={out!r}, data=DataConfig(data=" + repr(data) + "), "
        "model=ModelConfig(hidden_size=8, embedding_size=4), " + tiny + "))"
    )
    assert spincount(cli) == "0"
    assert spincount(api.format(out=str(tmp_path / "api"))) == "0"
    assert spincount("import torch; " + api.format(out=str(tmp_path / "late"))) == "300000"


def test_passive_waits_leaves_a_users_policy_and_a_loaded_torch_alone():
    environ = {}
    assert passive_waits(environ=environ, modules={}) is True and environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {"OMP_WAIT_POLICY": "active"}
    assert passive_waits(environ=environ, modules={}) is False and environ == {"OMP_WAIT_POLICY": "active"}
    environ = {}
    assert passive_waits(environ=environ, modules={"torch": torch}) is False and environ == {}
