"""Training speed: charrnn's trainer against a plain PyTorch loop, side by side.

The plain loop is what a user would write: nn.Embedding -> nn.LSTM (or nn.GRU, nn.RNN)
-> nn.Linear, Adam, random batches, no clipping, no logging; in bf16 it autocasts its
forward pass and loss as charrnn does. charrnn runs its real loop
(Trainer.run: TBPTT streams, carried state, gradient clipping, LR schedule,
metrics, NaN checks). Both train the same model on Tiny Shakespeare; rounds
alternate between the two so that load on the machine hits both alike. The table
gives chars/s (median over rounds) and charrnn's overhead.

    python benchmarks/train_speed.py                  # LSTM 2x256 and 2x512, B=64, T=128, fp32
    python benchmarks/train_speed.py --hidden 256 --steps 10 --rounds 2
    python benchmarks/train_speed.py --cell gru --hidden 256 --batch-size 16 32 64 --seq-len 64 \
        --precision bf16 --threads 1                 # a GRU's speed by batch size (README: settings)
    python benchmarks/train_speed.py --device cuda     # on a GPU (scripts/gpu_check.sh)
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time

import torch
import torch.nn as nn
from machine import cpu_name  # benchmarks/machine.py

from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.engines.model import ModelConfig
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import Trainer


class Plain(nn.Module):
    def __init__(self, cell: str, vocab_size: int, embedding_size: int, hidden_size: int, layers: int):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, embedding_size)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](
            embedding_size, hidden_size, layers, batch_first=True
        )
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, x):
        h, _ = self.rnn(self.emb(x))
        return self.out(h)


def plain_seconds_per_step(data: torch.Tensor, V: int, args, hidden: int, B: int) -> callable:
    torch.manual_seed(0)
    model = Plain(args.cell, V, 64, hidden, args.layers).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    T, device_type = args.seq_len, torch.device(args.device).type
    bf16 = args.precision == "bf16"

    def step():
        i = torch.randint(len(data) - T - 1, (B,))
        x = torch.stack([data[j : j + T] for j in i])
        y = torch.stack([data[j + 1 : j + T + 1] for j in i])
        x, y = x.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)  # as Trainer does
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(model(x).view(-1, V).float(), y.view(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    def timed(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            step()
        return (time.perf_counter() - t) / n

    timed(args.warmup)
    return timed


def charrnn_seconds_per_step(out: str, args, hidden: int, B: int) -> callable:
    config = TrainConfig(
        out=out,
        model=ModelConfig(cell=args.cell, layers=args.layers, hidden_size=hidden, embedding_size=64),
        batch_size=B,
        seq_len=args.seq_len,
        max_epochs=0,
        max_steps=args.warmup,
        eval_every=10**9,
        eval_chars=B * args.seq_len,
        quiet=True,
        device=args.device,
        precision=args.precision,
        threads=args.threads,
    )
    trainer, _ = build_trainer(config)
    trainer.run()  # warm-up, and the first checkpoint

    def timed(n: int) -> float:
        nonlocal trainer  # the same parts and run state, with a step limit n steps further
        later = Trainer(
            dataclasses.replace(trainer.config, max_steps=trainer.step + n), trainer.parts, trainer.run_state
        )
        later.hidden, trainer = trainer.hidden, later
        t = time.perf_counter()
        trainer.run()  # ends with one evaluation (B*T chars) and a checkpoint save: time them apart
        total = time.perf_counter() - t
        t = time.perf_counter()
        trainer.evaluate_and_save(scheduled=False)
        return (total - (time.perf_counter() - t)) / n

    return timed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 512], help="hidden sizes to measure")
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"], help="recurrent cell of both models")
    p.add_argument("--layers", type=int, default=2, help="recurrent layers")
    p.add_argument("--batch-size", type=int, nargs="+", default=[64], help="B: batch sizes to measure")
    p.add_argument("--seq-len", type=int, default=128, help="T")
    p.add_argument("--steps", type=int, default=15, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    p.add_argument("--device", default="cpu", help="where both train: cpu, cuda or cuda:N")
    p.add_argument(
        "--precision", default="fp32", choices=["fp32", "bf16"], help="both loops: float32, or bf16 autocast"
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    corpus = load_corpus(DataConfig())
    data = torch.from_numpy(corpus.ids[: int(len(corpus.ids) * 0.9)].astype("int64"))
    rows = []
    for hidden in args.hidden:
        for B in args.batch_size:
            with tempfile.TemporaryDirectory() as tmp:
                ours = charrnn_seconds_per_step(tmp + "/run", args, hidden, B)
                plain = plain_seconds_per_step(data, corpus.vocab.size, args, hidden, B)
                t_ours, t_plain = [], []
                for _ in range(args.rounds):
                    t_plain.append(plain(args.steps))
                    t_ours.append(ours(args.steps))
            chars = B * args.seq_len
            c_ours, c_plain = chars / statistics.median(t_ours), chars / statistics.median(t_plain)
            rows.append((f"{args.cell.upper()} {args.layers}x{hidden}", B, c_plain, c_ours))
            print(f"  {rows[-1][0]} B={B}: plain {c_plain:,.0f} chars/s, charrnn {c_ours:,.0f} chars/s", flush=True)

    print(
        f"\nTraining speed on {args.device} ({cpu_name()}), {args.precision}, T={args.seq_len}, "
        f"{torch.get_num_threads()} threads, median of {args.rounds} rounds x {args.steps} steps"
    )
    print("| model | B | plain loop chars/s | charrnn chars/s | charrnn / plain | overhead |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, B, c_plain, c_ours in rows:
        print(
            f"| {name} | {B} | {c_plain:,.0f} | {c_ours:,.0f} | {c_ours / c_plain:.3f} "
            f"| {100 * (c_plain / c_ours - 1):+.1f}% |"
        )


if __name__ == "__main__":
    main()
