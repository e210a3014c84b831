"""Large vocabularies per minute: which output layer and embedding learn best in a fixed
wall-clock budget on a corpus of thousands of distinct characters (default 西遊記, 4,594).

Every variant is `--preset tiny` (2x256 LSTM, B=16, T=64, lr 4e-3, cosine) trained by
charrnn's own Trainer for the same --budget seconds on the same threads, one after the
other, and scored by the trainer's own validation (the whole last 10%, B streams with the
state carried) at the end of its budget:

  tiny                     as is: embedding 64, a 256 -> V linear head
  tied-256                 --embedding-size 256 --tie-weights
  embed-256                --embedding-size 256 (untied: the larger embedding alone)
  adaptive                 --cutoffs (default 500 1500): the head is nn.AdaptiveLogSoftmaxWithLoss
                           over the characters ranked by frequency in the training split, a
                           256 -> cutoffs[0] + clusters head and smaller projections for the
                           rare characters (charrnn's own AdaptiveHead)
  adaptive-embed-256       both

The adaptive loss is an exact, normalised log-likelihood, so it compares with the others as is.

    python benchmarks/large_vocab.py --budget 60 --threads 1
    python benchmarks/large_vocab.py --variants tiny adaptive --data my_chinese.txt
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from charrnn import knobs
from charrnn.data.corpus import DataConfig
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig

LN2 = math.log(2)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "xiyouji_zh_pg23962.txt"
VARIANTS = {  # name: (model flags over --preset tiny, adaptive softmax?)
    "tiny": ({}, False),
    "tied-256": ({"embedding_size": 256, "tie_weights": True}, False),
    "embed-256": ({"embedding_size": 256}, False),
    "adaptive": ({}, True),
    "adaptive-embed-256": ({"embedding_size": 256}, True),
}


def run_variant(name: str, args, out: str) -> dict:
    flags, adaptive = VARIANTS[name]
    config = TrainConfig(out=out, quiet=True, threads=args.threads, data=DataConfig(data=str(args.data)))
    knobs.apply(config, knobs.load_preset("tiny"))
    knobs.apply(config, {**flags, "cutoffs": args.cutoffs if adaptive else []})
    config.max_time, config.max_epochs, config.max_steps, config.eval_chars = args.budget, 0, 0, 0
    trainer, _ = build_trainer(config)
    params = sum(p.numel() for p in trainer.engine.model.parameters())
    start = time.perf_counter()
    result = trainer.run()
    seconds = time.perf_counter() - start
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    speeds = [r["chars_per_sec"] for r in rows if "chars_per_sec" in r]
    return {
        "variant": name,
        "params": params,
        "steps": result.step,
        "chars_per_sec": statistics.median(speeds) if speeds else 0.0,
        "val_loss": result.val_loss,
        "best_val_loss": result.best_val_loss,
        "seconds": seconds,
        "train_seconds": max(r["time"] for r in rows if "time" in r),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=60, help="training seconds for each variant")
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS), help="which to run")
    p.add_argument("--data", type=Path, default=DATA, help="the corpus (default: 西遊記 in ../shared/data)")
    p.add_argument("--cutoffs", type=int, nargs="+", default=[500, 1500], help="adaptive softmax cluster cutoffs")
    p.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = PyTorch's default")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()

    results = []
    for name in args.variants:
        with tempfile.TemporaryDirectory() as tmp:
            results.append(run_variant(name, args, tmp + "/run"))
        r = results[-1]
        print(f"  {name}: {r['steps']} steps, {r['chars_per_sec']:,.0f} chars/s, val {r['val_loss']:.4f}", flush=True)

    print(f"\n{args.data.name}, {args.budget:g} s per variant, {args.threads} threads, --preset tiny, "
          f"adaptive cutoffs {args.cutoffs}")  # fmt: skip
    print("| variant | parameters | steps | chars/s | val loss (nats) | val bpc | best val loss |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['variant']} | {r['params']:,} | {r['steps']:,} | {r['chars_per_sec']:,.0f} | {r['val_loss']:.4f} "
            f"| {r['val_loss'] / LN2:.4f} | {r['best_val_loss']:.4f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
