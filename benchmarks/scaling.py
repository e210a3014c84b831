"""Throughput of data-parallel training: one plain process versus 1 and N DDP ranks.

    python benchmarks/scaling.py                      # CPU: plain (1 and N threads), DDP 1 rank, DDP N ranks
    python benchmarks/scaling.py --device cuda --ranks 1 2 4 8

Every run trains the same model on the same global batch (B streams x T characters)
through `charrnn train`, with --nproc for the DDP runs, so what is timed is exactly
what users run. Throughput is training characters per second between the first and
the last logged step of rank 0 (start-up, the first window and the final validation
are left out). On CPU each rank gets one thread (--threads 1), so N ranks use N
cores; the plain process is timed with 1 thread and with N threads, which is the
fair comparison for N ranks on N cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(out: Path, args: argparse.Namespace, nproc: int, threads: int) -> float:
    """Train once; rank 0's training chars/s over the logged steps after the first."""
    cmd = [
        sys.executable,
        "-m",
        "charrnn",
        "train",
        "--out",
        str(out),
        "--device",
        args.device,
        "--quiet",
        "--cell",
        args.cell,
        "--layers",
        "2",
        "--hidden-size",
        str(args.hidden_size),
        "--embedding-size",
        "64",
        "--batch-size",
        str(args.batch_size),
        "--seq-len",
        str(args.seq_len),
        "--max-steps",
        str(args.steps),
        "--max-epochs",
        "0",
        "--log-every",
        str(args.log_every),
        "--eval-every",
        str(args.steps + 1),
        "--eval-chars",
        "1000",
        "--threads",
        str(threads),
        "--nproc",
        str(nproc),
    ]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": str(threads),
    }
    subprocess.run(cmd, env=env, check=True, timeout=args.timeout, stderr=subprocess.DEVNULL)
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [m for m in logs if "train_loss" in m]
    first, last = logs[0], logs[-1]
    return (last["step"] - first["step"]) * args.batch_size * args.seq_len / (last["time"] - first["time"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (nccl, one GPU per rank)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="numbers of DDP ranks to time")
    p.add_argument("--cell", default="lstm")
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32, help="the global batch B; a multiple of every --ranks")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--timeout", type=int, default=600, help="seconds one run may take")
    args = p.parse_args()
    n_max = max(args.ranks)
    cpu = args.device == "cpu"
    rows = [("plain process", 0, 1)] + ([("plain process", 0, n_max)] if cpu and n_max > 1 else [])
    rows += [("DDP under torchrun", n, 1) for n in args.ranks]
    with tempfile.TemporaryDirectory() as tmp:
        results = [(what, n, t, run(Path(tmp) / f"run{i}", args, n, t)) for i, (what, n, t) in enumerate(rows)]
    base = results[0][3]
    print(
        f"\n{args.cell} L=2 H={args.hidden_size}, global batch B={args.batch_size} x T={args.seq_len}, "
        f"{args.steps} steps on {args.device}; {os.cpu_count()} CPU cores visible\n"
    )
    print(f"| {'setup':<20} | {'ranks':>5} | {'threads/rank':>12} | {'chars/s':>10} | {'vs plain, 1 thread':>18} |")
    print(f"|{'-' * 22}|{'-' * 7}|{'-' * 14}|{'-' * 12}|{'-' * 20}|")
    for what, n, t, cps in results:
        print(f"| {what:<20} | {max(n, 1):>5} | {t:>12} | {cps:>10,.0f} | {cps / base:>17.2f}x |")
    if cpu:
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"\nOn CPU, N ranks need N free cores: this machine shows {os.cpu_count()}, with a load average of "
            f"{load} (1, 5, 15 min) at the end, and other work on it slows every row. Compare N ranks with the "
            "plain process on N threads: same cores, same batch."
        )


if __name__ == "__main__":
    main()
