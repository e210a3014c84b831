"""How should the label enter a conditional generator (--task generate)? Two ways,
trained side by side on the same split, budget and trainer:

    first symbol   (what charrnn ships) the label is the item's first input, a symbol
                   of its own: the state after it is a learned function of the label,
                   an initial state, and nothing else changes (sampling, beam search,
                   export and the NumPy stepper need no new code)
    every step     the PyTorch tutorial's way: a label embedding joined to the input
                   of every step (here: read from the first symbol and repeated, which
                   is exact for items that fit one chunk, as names do)

Printed: the best validation loss of each (nats per character, ends included).

    python benchmarks/conditioning.py --budget 120
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn as nn
from machine import cpu_name  # benchmarks/machine.py

from charrnn.data.corpus import DataConfig
from charrnn.engines.config import ModelConfig
from charrnn.engines.model import CharRNN
from charrnn.engines.torch_engine import TorchEngine
from charrnn.training.build import build_trainer, make_optimizer
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import Trainer

NAMES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "names"


class EveryStep(CharRNN):
    """CharRNN with a label embedding (size S) joined to every step's input: (B, T, E + S)."""

    def __init__(self, config: ModelConfig, first_label: int, n_labels: int, size: int = 16):
        super().__init__(config)
        self.first_label, self.n_labels = first_label, n_labels
        self.labels = nn.Embedding(n_labels, size)
        E = config.embedding_size or config.vocab_size
        self.rnn = type(self.rnn)(
            E + size,
            config.hidden_size,
            config.layers,
            batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        label = (x[:, :1] - self.first_label).clamp(0, self.n_labels - 1)  # (B, 1): the item's label
        joined = self.labels(label).expand(-1, x.shape[1], -1)  # (B, T, S)
        return torch.cat([super().embed(x), joined], -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=NAMES)
    p.add_argument("--out", type=Path, default=Path("runs/bench-conditioning"))
    p.add_argument("--budget", type=float, default=120, help="seconds of training for each")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    results = {}
    for way in ("first symbol", "every step"):
        model = ModelConfig(cell="lstm", layers=1, hidden_size=256, embedding_size=64, dropout=0.2)
        config = TrainConfig(
            out=str(args.out / way.replace(" ", "-")),
            task="generate",
            model=model,
            data=DataConfig(data=str(args.data), val_fraction=0.1, test_fraction=0.1),
            lr=3e-3,
            max_time=args.budget,
            max_epochs=0,
            eval_every=200,
            lr_schedule="cosine",
            quiet=True,
            threads=args.threads,
        )
        trainer, _ = build_trainer(config)
        if way == "every step":
            vocab = trainer.parts.vocab
            torch.manual_seed(config.seed)
            net = EveryStep(trainer.config.model, vocab.label_id(vocab.labels[0]), len(vocab.labels))
            engine = TorchEngine(net, "cpu", None, config.grad_clip)
            engine.optimizer = make_optimizer(config, net.parameters())
            trainer = Trainer(trainer.config, replace(trainer.parts, engine=engine))
        result = trainer.run()
        results[way] = (result.best_val_loss, result.step)
    print(f"# CPU: {cpu_name()}; {args.budget:.0f} s each, names, 1x256 LSTM\n")
    print("| the label enters as | steps | best validation loss (nats/char) |")
    print("|---|---:|---:|")
    for way, (loss, steps) in results.items():
        print(f"| {way} | {steps:,} | {loss:.4f} |")


if __name__ == "__main__":
    main()
