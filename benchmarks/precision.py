"""fp32 against bf16 training: speed, and the validation loss after the same steps.

Both precisions train charrnn's real Trainer (an LSTM on Tiny Shakespeare, the same
seed) for --steps steps; the table gives training chars/s and the validation loss
(float32 scoring, --eval-chars characters) at the end, and which precision
`--precision auto` picks on this machine. bf16 pays only where the hardware has it
(AMX, AVX-512 BF16, a bf16 GPU); elsewhere it is emulated and slower: auto picks fp32.

    python benchmarks/precision.py                                   # 2x256, B=64, T=128, 100 steps
    python benchmarks/precision.py --steps 20 --eval-chars 50000     # a short look
    python benchmarks/precision.py --device cuda
    python benchmarks/precision.py --steps 600 --eval-every 100 --seeds 2   # the loss curve

With --eval-every, each run also scores the validation split every that many steps (not
timed), and with --seeds N each precision trains N times (seeds 1..N): a second table gives
the curve, so the bf16-fp32 gap can be read against fp32's own seed-to-seed spread.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
from machine import cpu_name  # benchmarks/machine.py

from charrnn.engines.model import ModelConfig
from charrnn.engines.precision import fast_bf16
from charrnn.training.build import build_trainer, pick_device
from charrnn.training.config import TrainConfig


def measure(args, precision: str, seed: int, out: str) -> tuple[float, dict[int, float]]:
    """(training chars/s, {step: validation loss} every args.eval_every steps and at the end)
    after args.steps steps in `precision`."""
    config = TrainConfig(
        out=out,
        model=ModelConfig(cell=args.cell, layers=args.layers, hidden_size=args.hidden, embedding_size=64),
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        max_epochs=0,
        max_steps=args.steps,
        eval_chars=args.eval_chars,
        device=args.device,
        threads=args.threads,
        precision=precision,
        seed=seed,
        quiet=True,
    )
    trainer, _ = build_trainer(config)
    float(trainer.train_step())  # warm-up (oneDNN/cuDNN primitives), counted among the steps
    seconds, curve = 0.0, {}
    for step in range(2, args.steps + 1):
        start = time.perf_counter()
        loss = trainer.train_step()
        scored = args.eval_every and step % args.eval_every == 0 or step == args.steps
        if scored:
            float(loss)  # a GPU finishes its queued steps here
        seconds += time.perf_counter() - start
        if scored:
            curve[step] = trainer.validation_loss()  # not timed
    return (args.steps - 1) * args.batch_size * args.seq_len / seconds, curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--cell", default="lstm", choices=("rnn", "lstm", "gru"))
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-chars", type=int, default=100_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="0: charrnn's default (auto)")
    p.add_argument("--eval-every", type=int, default=0, help="also score the validation split every N steps")
    p.add_argument("--seeds", type=int, default=1, help="train each precision with seeds 1..N")
    args = p.parse_args()
    device = pick_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    why = fast_bf16(device)
    print(
        f"{args.cell.upper()} {args.layers}x{args.hidden}, B={args.batch_size}, T={args.seq_len}, "
        f"{args.steps} steps on {where}; "
        f"auto picks {'bf16 (' + why + ')' if why else 'fp32 (no fast bf16 here)'}",
        flush=True,
    )
    print(f"{'precision':10} {'seed':>4} {'chars/s':>10} {'val loss':>9}")
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.seeds + 1):
            for precision in ("fp32", "bf16"):
                cps, curves[precision, seed] = measure(args, precision, seed, f"{tmp}/{precision}{seed}")
                print(f"{precision:10} {seed:4} {cps:10,.0f} {curves[precision, seed][args.steps]:9.4f}", flush=True)
    if args.eval_every:
        print("\nvalidation loss by step")
        print(f"{'step':>6} " + " ".join(f"{f'{p}/{s}':>10}" for p, s in curves) + "  bf16-fp32 (mean)  fp32 spread")
        for step in curves["fp32", 1]:
            row = {k: v[step] for k, v in curves.items()}
            fp32 = [v for (p, _), v in row.items() if p == "fp32"]
            bf16 = [v for (p, _), v in row.items() if p == "bf16"]
            gap = sum(bf16) / len(bf16) - sum(fp32) / len(fp32)
            spread = max(fp32) - min(fp32)
            print(f"{step:6} " + " ".join(f"{v:10.4f}" for v in row.values()) + f"  {gap:+16.4f}  {spread:11.4f}")


if __name__ == "__main__":
    main()
