"""fp32 against bf16 training: speed, and the validation loss after the same steps.

Both precisions train charrnn's real Trainer (an LSTM on Tiny Shakespeare, the same
seed) for --steps steps; the table gives training chars/s and the validation loss
(float32 scoring, --eval-chars characters) at the end, and which precision
`--precision auto` picks on this machine. bf16 pays only where the hardware has it
(AMX, AVX-512 BF16, a bf16 GPU); elsewhere it is emulated and slower: auto picks fp32.

    python benchmarks/precision.py                                   # 2x256, B=64, T=128, 100 steps
    python benchmarks/precision.py --steps 20 --eval-chars 50000     # a short look
    python benchmarks/precision.py --device cuda
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


def measure(args, precision: str, out: str) -> tuple[float, float]:
    """(training chars/s, validation loss) after args.steps steps in `precision`."""
    config = TrainConfig(
        out=out,
        model=ModelConfig(cell="lstm", layers=args.layers, hidden_size=args.hidden, embedding_size=64),
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        max_epochs=0,
        max_steps=args.steps,
        eval_chars=args.eval_chars,
        device=args.device,
        threads=args.threads,
        precision=precision,
        quiet=True,
    )
    trainer, _ = build_trainer(config)
    float(trainer.train_step())  # warm-up (oneDNN/cuDNN primitives), counted among the steps
    start = time.perf_counter()
    for _ in range(args.steps - 1):
        loss = trainer.train_step()
    float(loss)  # a GPU finishes its queued steps here
    seconds = time.perf_counter() - start
    return (args.steps - 1) * args.batch_size * args.seq_len / seconds, trainer.validation_loss()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-chars", type=int, default=100_000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="0: charrnn's default (auto)")
    args = p.parse_args()
    device = pick_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    why = fast_bf16(device)
    print(
        f"LSTM {args.layers}x{args.hidden}, B={args.batch_size}, T={args.seq_len}, {args.steps} steps on {where}; "
        f"auto picks {'bf16 (' + why + ')' if why else 'fp32 (no fast bf16 here)'}",
        flush=True,
    )
    print(f"{'precision':10} {'chars/s':>10} {'val loss':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for precision in ("fp32", "bf16"):
            cps, val = measure(args, precision, f"{tmp}/{precision}")
            print(f"{precision:10} {cps:10,.0f} {val:9.4f}", flush=True)


if __name__ == "__main__":
    main()
