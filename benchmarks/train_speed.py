"""Training speed: charrnn's trainer against a plain PyTorch loop, side by side.

The plain loop is what a user would write: nn.Embedding -> nn.LSTM -> nn.Linear,
Adam, random batches, no clipping, no logging. charrnn runs its real loop
(Trainer.run: TBPTT streams, carried state, gradient clipping, LR schedule,
metrics, NaN checks). Both train the same model on Tiny Shakespeare; rounds
alternate between the two so that load on the machine hits both alike. The table
gives chars/s (median over rounds) and charrnn's overhead.

    python benchmarks/train_speed.py                  # LSTM 2x256 and 2x512, B=64, T=128
    python benchmarks/train_speed.py --hidden 256 --steps 10 --rounds 2
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

from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.engines.model import ModelConfig
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import Trainer


class PlainLSTM(nn.Module):
    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, layers: int):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, embedding_size)
        self.lstm = nn.LSTM(embedding_size, hidden_size, layers, batch_first=True)
        self.out = nn.Linear(hidden_size, vocab_size)

    def forward(self, x):
        h, _ = self.lstm(self.emb(x))
        return self.out(h)


def plain_seconds_per_step(data: torch.Tensor, V: int, args, hidden: int) -> callable:
    torch.manual_seed(0)
    model = PlainLSTM(V, 64, hidden, args.layers).to(args.device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = nn.CrossEntropyLoss()
    B, T = args.batch_size, args.seq_len

    def step():
        i = torch.randint(len(data) - T - 1, (B,))
        x = torch.stack([data[j : j + T] for j in i])
        y = torch.stack([data[j + 1 : j + T + 1] for j in i])
        x, y = x.to(args.device, non_blocking=True), y.to(args.device, non_blocking=True)  # as Trainer does
        loss = loss_fn(model(x).view(-1, V), y.view(-1))
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


def charrnn_seconds_per_step(out: str, args, hidden: int) -> callable:
    config = TrainConfig(
        out=out,
        model=ModelConfig(cell="lstm", layers=args.layers, hidden_size=hidden, embedding_size=64),
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        max_epochs=0,
        max_steps=args.warmup,
        eval_every=10**9,
        eval_chars=args.batch_size * args.seq_len,
        quiet=True,
        device=args.device,
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
    p.add_argument("--layers", type=int, default=2, help="LSTM layers")
    p.add_argument("--batch-size", type=int, default=64, help="B")
    p.add_argument("--seq-len", type=int, default=128, help="T")
    p.add_argument("--steps", type=int, default=15, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is reported")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    p.add_argument("--device", default="cpu", help="where both train: cpu, cuda or cuda:N")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    corpus = load_corpus(DataConfig())
    data = torch.from_numpy(corpus.ids[: int(len(corpus.ids) * 0.9)].astype("int64"))
    chars = args.batch_size * args.seq_len
    rows = []
    for hidden in args.hidden:
        with tempfile.TemporaryDirectory() as tmp:
            ours = charrnn_seconds_per_step(tmp + "/run", args, hidden)
            plain = plain_seconds_per_step(data, corpus.vocab.size, args, hidden)
            t_ours, t_plain = [], []
            for _ in range(args.rounds):
                t_plain.append(plain(args.steps))
                t_ours.append(ours(args.steps))
        c_ours, c_plain = chars / statistics.median(t_ours), chars / statistics.median(t_plain)
        rows.append((f"LSTM {args.layers}x{hidden}", c_plain, c_ours))
        print(f"  {rows[-1][0]}: plain {c_plain:,.0f} chars/s, charrnn {c_ours:,.0f} chars/s", flush=True)

    print(
        f"\nTraining speed on {args.device}, B={args.batch_size}, T={args.seq_len}, "
        f"{torch.get_num_threads()} threads, "
        f"median of {args.rounds} rounds x {args.steps} steps"
    )
    print("| model | plain loop chars/s | charrnn chars/s | charrnn / plain | overhead |")
    print("|---|---:|---:|---:|---:|")
    for name, c_plain, c_ours in rows:
        print(
            f"| {name} | {c_plain:,.0f} | {c_ours:,.0f} | {c_ours / c_plain:.3f} "
            f"| {100 * (c_plain / c_ours - 1):+.1f}% |"
        )


if __name__ == "__main__":
    main()
