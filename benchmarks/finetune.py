"""Fine-tuning against training from scratch, on a new text, for the same minutes.

The base model is the `small` preset trained on Tiny Shakespeare (trained here for
--base-budget seconds, or an existing run given with --base). For each budget it
then trains, on the new text (default: Pride and Prejudice), one after the other:

    fine-tuned    charrnn train --preset small --init-from BASE --data NEW --max-time B
    from scratch  charrnn train --preset small --data NEW --max-time B

and scores both best checkpoints on the same validation split of the new text (its
last 10%, read as streams with the state carried: charrnn eval's way). Prints a table.

    python benchmarks/finetune.py                              # base 600 s, budgets 60 and 180 s
    python benchmarks/finetune.py --base runs/small --budgets 60 180
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch
from machine import cpu_name  # benchmarks/machine.py

from charrnn import knobs
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.engines.torch_engine import TorchEngine
from charrnn.evaluation import evaluate
from charrnn.load import load_model
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

NEW_TEXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pride_prejudice_en_pg1342.txt"


def small(out: str, budget: float, data: str | None = None, init_from: str | None = None) -> TrainConfig:
    config = TrainConfig(out=out, data=DataConfig(data=data), quiet=True, init_from=init_from, settings="fixed")
    knobs.apply(config, knobs.load_preset("small"))
    knobs.apply(config, {"max_time": budget})
    config.keep = ["max_time"]  # as on the CLI: a preset's values are not flags given (--init-from refuses a shape)
    return config


def val_loss(run: str, text: str) -> float:
    """The best checkpoint's mean loss (nats) on the last 10% of `text`, with the run's vocabulary."""
    model, vocab, _ = load_model(run)
    val = load_corpus(DataConfig(data=text), vocab.with_end(False), unknown="skip").split(0.1)[1]
    return evaluate(TorchEngine(model), val, 32, 256)[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default=None, help="an existing run to fine-tune from; default: train `small` here")
    p.add_argument("--base-budget", type=float, default=600, help="seconds of training for the base model")
    p.add_argument("--data", default=str(NEW_TEXT), help="the new text")
    p.add_argument("--budgets", type=float, nargs="+", default=[60, 180], help="seconds of each fine-tuning run")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0 = default")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base
        if base is None:
            base = f"{tmp}/base"
            print(f"training the base model (small, Tiny Shakespeare, {args.base_budget:.0f} s)...", flush=True)
            train(small(base, args.base_budget))
        rows = []
        for budget in args.budgets:
            tuned, scratch = f"{tmp}/tuned{budget:g}", f"{tmp}/scratch{budget:g}"
            train(small(tuned, budget, args.data, init_from=base))
            train(small(scratch, budget, args.data))
            rows.append((budget, val_loss(tuned, args.data), val_loss(scratch, args.data)))
            print(f"  {budget:g} s: fine-tuned {rows[-1][1]:.4f}, from scratch {rows[-1][2]:.4f} nats", flush=True)
    print(
        f"\nFine-tuning `small` from Tiny Shakespeare onto {Path(args.data).name}; {cpu_name()}, "
        f"{torch.get_num_threads()} threads; python {sys.version.split()[0]}, torch {torch.__version__}"
    )
    print("| budget | fine-tuned val loss (nats) | bpc | from scratch val loss (nats) | bpc | gain (nats) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for budget, a, b in rows:
        print(f"| {budget:g} s | {a:.4f} | {a / math.log(2):.4f} | {b:.4f} | {b / math.log(2):.4f} | {b - a:+.4f} |")


if __name__ == "__main__":
    main()
