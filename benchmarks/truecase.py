"""Restoring capitalisation (--task truecase) on Pride and Prejudice, held out by
position: train on the first 80% of its paragraphs, pick the checkpoint on the next
10%, score the last 10%. Beside it, in the same run and on the same split, the
baseline the issue names: write each word as it was most often written in training
(unseen words, and everything outside words, lower case).

    python benchmarks/truecase.py --budget 240        # a unidirectional and a bidirectional tagger
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py

from charrnn.data.corpus import DataConfig
from charrnn.engines.config import ModelConfig
from charrnn.evaluation import EvalConfig
from charrnn.labelled_eval import eval_labelled
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

PRIDE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pride_prejudice_en_pg1342.txt"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=PRIDE)
    p.add_argument("--out", type=Path, default=Path("runs/bench-truecase"))
    p.add_argument("--budget", type=float, default=240, help="seconds of training for each tagger")
    p.add_argument("--items", default="lines", choices=("lines", "paragraphs"), help="paragraphs: sentences")
    p.add_argument("--hidden-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    rows = []
    for bidirectional in (False, True):
        out = args.out / ("bidirectional" if bidirectional else "left-to-right")
        model = ModelConfig(layers=1, hidden_size=args.hidden_size, embedding_size=64, bidirectional=bidirectional)
        data = DataConfig(data=str(args.data), items=args.items, val_fraction=0.1, test_fraction=0.1)
        config = TrainConfig(
            out=str(out),
            task="truecase",
            data=data,
            model=model,
            batch_size=32,
            lr=3e-3,
            max_time=args.budget,
            max_epochs=0,
            eval_every=100,
            lr_schedule="cosine",
            quiet=True,
            threads=args.threads,
        )
        result = train(config)
        rows.append((out.name, result.step, eval_labelled(out, EvalConfig(data=str(args.data), split="test"))))
    print(
        f"# {args.data.name}, --items {args.items}, test = the last 10%; CPU: {cpu_name()}; "
        f"{args.budget:.0f} s each, 1x{args.hidden_size} LSTM\n"
    )
    print("| tagger | steps | per-character accuracy | F1 of upper case |")
    print("|---|---:|---:|---:|")
    f = rows[0][2].figures
    print(
        f"| most frequent casing of each word (baseline) | | {f['baseline_accuracy']:.4f} | "
        f"{f['baseline_upper_f1']:.4f} |"
    )
    for name, steps, report in rows:
        print(
            f"| charrnn truecase, {name} | {steps:,} | {report.figures['accuracy']:.4f} | "
            f"{report.figures['upper_f1']:.4f} |"
        )


if __name__ == "__main__":
    main()
