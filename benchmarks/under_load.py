"""Training throughput while another process keeps a core busy: the old defaults and the new.

Each mode trains charrnn's real Trainer (an LSTM, Tiny Shakespeare) in a fresh process
(OpenMP reads its wait policy when torch loads): first for --quiet-seconds alone,
then for --loaded-seconds beside a single-threaded busy loop (`while True: pass`), then
for --after-seconds alone again. The table gives chars/s in the three phases, loaded/quiet,
the slowest step and the threads in force at the end of the loaded and the last phase
(engines/threads.py explains the cause and the fix).

    old      PyTorch's defaults: one thread per core, spinning waits      (charrnn before)
    passive  one thread per core, OMP_WAIT_POLICY=PASSIVE                 (the alternative not taken)
    auto     --threads 0: the cores other processes leave free           (charrnn now, the default)

    python benchmarks/under_load.py                                  # 20 s + 20 s + 10 s per mode
    python benchmarks/under_load.py --quiet-seconds 10 --loaded-seconds 10 --modes old auto
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

MODES = ("old", "passive", "auto")


def child(args) -> dict:
    """Runs in the mode's own process: quiet phase, then loaded phase; returns the figures."""
    import torch  # passive: the parent put OMP_WAIT_POLICY in this process's environment

    threads = 0 if args.child == "auto" else torch.get_num_threads()  # fixed: PyTorch's default, all cores

    from charrnn.engines.model import ModelConfig
    from charrnn.training.build import build_trainer
    from charrnn.training.config import TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            out=tmp + "/run",
            model=ModelConfig(cell="lstm", layers=args.layers, hidden_size=args.hidden, embedding_size=64),
            batch_size=args.batch_size,
            seq_len=args.seq_len,
            max_epochs=0,
            max_steps=10**9,
            device="cpu",
            threads=threads,
            quiet=True,
        )
        trainer, _ = build_trainer(config)
        for _ in range(2):  # warm-up: allocations, oneDNN primitives
            trainer.train_step()
        chars = args.batch_size * args.seq_len
        quiet, _ = phase(trainer, args.quiet_seconds, chars)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            loaded, slowest = phase(trainer, args.loaded_seconds, chars)
            threads_loaded = torch.get_num_threads()
        finally:
            busy.kill()
            busy.wait()
        after, _ = phase(trainer, args.after_seconds, chars)
    return {
        "mode": args.child,
        "quiet": quiet,
        "loaded": loaded,
        "slowest": slowest,
        "after": after,
        "threads": f"{threads_loaded}, {torch.get_num_threads()}",
    }


def phase(trainer, seconds: float, chars: int) -> tuple[float, float]:
    """(chars/s, slowest step in s) over steps for `seconds` (the last step may run past it)."""
    start, steps, slowest = time.perf_counter(), 0, 0.0
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        float(trainer.train_step())  # the loss read forces the step to finish
        slowest, steps = max(slowest, time.perf_counter() - t), steps + 1
    return steps * chars / (time.perf_counter() - start), slowest


def background(seconds: float = 2.0) -> float:
    """Mean number of other processes' runnable tasks over `seconds`: "quiet" is quiet only at 0."""
    from charrnn.engines.threads import others_running

    counts = []
    for _ in range(20):
        counts.append(others_running() or 0.0)
        time.sleep(seconds / 20)
    return sum(counts) / len(counts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--quiet-seconds", type=float, default=20.0)
    p.add_argument("--loaded-seconds", type=float, default=20.0)
    p.add_argument("--after-seconds", type=float, default=10.0, help="alone again, once the busy process ends")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    print(
        f"LSTM {args.layers}x{args.hidden}, B={args.batch_size}, T={args.seq_len}; {os.cpu_count()} CPUs; "
        f"{args.quiet_seconds:g} s quiet, {args.loaded_seconds:g} s beside one busy process; "
        f"before it, load average {os.getloadavg()[0]:.2f}, other runnable tasks {background():.1f}"
    )
    head = ("quiet", 7), ("loaded", 7), ("loaded/quiet", 13), ("slowest step", 13), ("after", 7), ("threads", 16)
    print("chars/s alone (quiet), beside the busy process (loaded), and alone again (after); threads: loaded, after")
    print(f"{'mode':8} " + " ".join(f"{name:>{width}}" for name, width in head))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    argv = sys.argv[1:]
    for mode in args.modes:
        policy = {"OMP_WAIT_POLICY": "PASSIVE"} if mode == "passive" else {}  # read when torch loads: set before
        out = subprocess.run(
            [sys.executable, __file__, *argv, "--child", mode],
            env={**env, **policy},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{mode:8} {r['quiet']:7,.0f} {r['loaded']:7,.0f} {r['loaded'] / r['quiet']:13.2f} "
            f"{r['slowest']:12.2f}s {r['after']:7,.0f} {r['threads']:>16}",
            flush=True,
        )


if __name__ == "__main__":
    main()
