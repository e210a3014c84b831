"""Quality per minute: validation loss on Tiny Shakespeare for a wall-clock budget.

Trains charrnn (a preset, default `small`) and a plain PyTorch loop for the same
budget, one after the other in one run, and scores both the same way: mean
cross-entropy over the whole standard validation split (the last 10%), read as
B streams with the hidden state carried (charrnn.evaluation). The plain loop is what
a user would write: 2x256 nn.LSTM, Adam 2e-3 with cosine decay over the budget,
random batches of 32 x 128, no dropout.

Prints validation loss (nats) and bpc over time for both, a summary table, and
saves the curves as a PNG.

    python benchmarks/quality.py --budget 600                  # the 10-minute comparison
    python benchmarks/quality.py --budget 120 --preset tiny --no-baseline
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

from charrnn import knobs
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.engines.torch_engine import TorchEngine
from charrnn.evaluation import evaluate
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

LN2 = math.log(2)


class PlainLSTM(nn.Module):
    def __init__(self, V: int, hidden: int = 256, layers: int = 2, emb: int = 64):
        super().__init__()
        self.emb, self.lstm, self.out = (
            nn.Embedding(V, emb),
            nn.LSTM(emb, hidden, layers, batch_first=True),
            nn.Linear(hidden, V),
        )

    def forward(self, x, state=None):
        h, state = self.lstm(self.emb(x), state)
        return self.out(h), state

    def as_charrnn(self) -> CharRNN:
        """A CharRNN holding these very weights, so charrnn's one scorer scores both contenders alike."""
        V, E = self.emb.weight.shape
        config = ModelConfig(
            vocab_size=V, embedding_size=E, hidden_size=self.lstm.hidden_size, layers=self.lstm.num_layers
        )
        model = CharRNN(config)
        names = {"emb.": "embedding.", "lstm.": "rnn.", "out.": "head."}
        model.load_state_dict(
            {names[k[: k.index(".") + 1]] + k[k.index(".") + 1 :]: v for k, v in self.state_dict().items()}
        )
        return model.eval()


def plain_loop(budget: float, eval_every: float, threads: int) -> list[tuple[float, int, float]]:
    """The baseline, as a user would write it. Returns (seconds, step, val loss) points."""
    corpus = load_corpus(DataConfig())
    train_ids, val_ids, _ = corpus.split(0.1)
    data = torch.from_numpy(train_ids.astype("int64"))
    V, B, T = corpus.vocab.size, 32, 128
    torch.manual_seed(0)
    model = PlainLSTM(V)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    points, step, spent, next_eval = [], 0, 0.0, eval_every
    while spent < budget:
        t = time.perf_counter()
        for g in opt.param_groups:  # cosine decay over the time budget
            g["lr"] = 2e-3 * 0.5 * (1 + math.cos(math.pi * min(1.0, spent / budget)))
        i = torch.randint(len(data) - T - 1, (B,))
        x = torch.stack([data[j : j + T] for j in i])
        y = torch.stack([data[j + 1 : j + T + 1] for j in i])
        loss = nn.functional.cross_entropy(model(x)[0].reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        spent += time.perf_counter() - t
        if spent >= next_eval or spent >= budget:
            model.eval()
            points.append((spent, step, evaluate(TorchEngine(model.as_charrnn()), val_ids, 32, 256)[0]))
            model.train()
            print(f"  plain    {spent:6.0f} s  step {step:5d}  val {points[-1][2]:.4f} nats", flush=True)
            next_eval += eval_every
    return points


def charrnn_run(preset: str, budget: float, out: str, threads: int) -> tuple[list[tuple[float, int, float]], dict]:
    config = TrainConfig(out=out, quiet=True, threads=threads, settings="fixed")  # the preset as it is
    knobs.apply(config, knobs.load_preset(preset))
    config.max_time, config.max_epochs, config.max_steps = budget, 0, 0
    config.eval_chars = 0  # score the whole validation split, as the baseline is scored
    train(config)
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    points = [(r["time"], r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    for t, s, v in points:
        print(f"  charrnn  {t:6.0f} s  step {s:5d}  val {v:.4f} nats", flush=True)
    speed = [r["chars_per_sec"] for r in rows if "chars_per_sec" in r]
    return points, {"chars_per_sec": sorted(speed)[len(speed) // 2] if speed else 0}


def plot(curves: dict[str, list], path: Path, budget: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in curves.items():
        ax.plot([p[0] / 60 for p in points], [p[2] / LN2 for p in points], marker="o", ms=3, label=name)
    ax.axhline(1.45 / LN2, color="grey", ls=":", lw=1, label="target 1.45 nats")
    ax.set(
        xlabel="wall-clock minutes",
        ylabel="validation bits per character",
        title=f"Tiny Shakespeare, {budget / 60:.0f} min budget, {torch.get_num_threads()} CPU threads",
    )
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=600, help="training seconds for each contender")
    p.add_argument("--preset", default="small", help=f"charrnn preset: {', '.join(knobs.preset_names())}")
    p.add_argument("--no-baseline", action="store_true", help="train only charrnn")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default (all cores)")
    p.add_argument("--plot", default="docs/img/quality.png", help="where to save the curves")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    curves, rows = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        points, extra = charrnn_run(args.preset, args.budget, tmp + "/run", args.threads)
    curves[f"charrnn --preset {args.preset}"] = points
    rows.append((f"charrnn --preset {args.preset}", points, extra["chars_per_sec"]))
    if not args.no_baseline:
        points = plain_loop(args.budget, max(30.0, args.budget / 10), args.threads)
        curves["plain loop (2x256 LSTM)"] = points
        rows.append(("plain loop (2x256 LSTM, Adam, cosine)", points, 0))

    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    plot(curves, Path(args.plot), args.budget)
    print(f"\nValidation loss on Tiny Shakespeare after {args.budget:.0f} s, {torch.get_num_threads()} threads")
    print("| run | steps | best val loss (nats) | best val bpc | final val loss (nats) |")
    print("|---|---:|---:|---:|---:|")
    for name, pts, _ in rows:
        best = min(v for _, _, v in pts)
        print(f"| {name} | {pts[-1][1]} | {best:.4f} | {best / LN2:.4f} | {pts[-1][2]:.4f} |")
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
