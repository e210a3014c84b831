"""Dynamic evaluation against static scoring, on every corpus of ../shared/data.

For each corpus it trains a small model briefly (`--preset tiny --max-time BUDGET`; or takes an
existing run folder per corpus with --runs), then scores the validation split (the last 10%, which
training held out) twice, both as one stream with the state carried:

    static    the trained weights, unchanged
    dynamic   `charrnn eval --dynamic`: one SGD step on each --seq-len segment right after scoring it

and prints a table of both losses, the gain, and the dynamic pass's speed.

    python benchmarks/dynamic_eval.py                               # 60 s per corpus, 20,000 chars scored
    python benchmarks/dynamic_eval.py --corpora tinyshakespeare --budget 120 --chars 0
    python benchmarks/dynamic_eval.py --runs tinyshakespeare=runs/tiny --seq-len 32 --lr 0.1 --decay 0
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_name  # benchmarks/machine.py

from charrnn import knobs
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.dynamic_eval import static_and_dynamic
from charrnn.evaluation import DYNAMIC_DECAY, DYNAMIC_LR, DYNAMIC_SEQ_LEN
from charrnn.load import load_model
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CORPORA = {
    "tinyshakespeare": DATA / "tinyshakespeare.txt",
    "pride_prejudice": DATA / "pride_prejudice_en_pg1342.txt",
    "verwandlung": DATA / "verwandlung_de_pg22367.txt",
    "xiyouji": DATA / "xiyouji_zh_pg23962.txt",
    "names": DATA / "names",  # the folder's 18 files as one long text
}


def train_tiny(out: str, data: Path, budget: float, threads: int) -> None:
    config = TrainConfig(out=out, data=DataConfig(data=str(data)), quiet=True, threads=threads, settings="fixed")
    knobs.apply(config, knobs.load_preset("tiny"))
    knobs.apply(config, {"max_time": budget})
    train(config)


def validation_ids(run: str, data: Path, chars: int):
    """The run's best model, its training step, and the first `chars` (0 = all) characters of the last
    10% of `data`."""
    model, vocab, meta = load_model(run)
    val = load_corpus(DataConfig(data=str(data)), vocab.with_end(False), unknown="skip").split(0.1)[1]
    return model, meta.get("step", 0), val[: chars + 1] if chars else val


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpora", nargs="+", default=list(CORPORA), choices=list(CORPORA), help="which corpora")
    p.add_argument("--runs", nargs="+", default=[], metavar="CORPUS=RUN", help="use these runs instead of training")
    p.add_argument("--budget", type=float, default=60, help="seconds of training per corpus (tiny preset)")
    p.add_argument("--chars", type=int, default=20_000, help="score the first N chars of the split; 0 = all")
    p.add_argument("--seq-len", type=int, default=DYNAMIC_SEQ_LEN, help="segment length of the dynamic pass")
    p.add_argument("--lr", type=float, default=DYNAMIC_LR, help="--dynamic-lr")
    p.add_argument("--decay", type=float, default=DYNAMIC_DECAY, help="--dynamic-decay")
    p.add_argument("--out", default=None, help="keep the trained runs in this folder (default: a temporary one)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (training and scoring)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    given = dict(r.split("=", 1) for r in args.runs)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.corpora:
            run = given.get(name)
            if run is None:
                run = f"{args.out or tmp}/{name}"
                print(f"{name}: training tiny for {args.budget:g} s...", flush=True)
                train_tiny(run, CORPORA[name], args.budget, args.threads)
            model, step, ids = validation_ids(run, CORPORA[name], args.chars)
            start = time.perf_counter()
            r = static_and_dynamic(model, ids, args.seq_len, args.lr, args.decay)
            seconds = time.perf_counter() - start
            rows.append((name, step, r, seconds))
            print(f"  static {r.static:.4f}, dynamic {r.dynamic:.4f} nats ({seconds:.0f} s)", flush=True)
    print(
        f"\nDynamic evaluation, --seq-len {args.seq_len} --dynamic-lr {args.lr:g} --dynamic-decay {args.decay:g}; "
        f"models: {'given runs' if given else f'tiny, {args.budget:g} s'}; {cpu_name()}, {args.threads} thread(s); "
        f"python {sys.version.split()[0]}, torch {torch.__version__}"
    )
    print(
        "| corpus | model's steps | chars scored | static (nats) | dynamic (nats) | gain (nats) | gain (bpc) "
        "| static + dynamic, s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, step, r, seconds in rows:
        gain = r.static - r.dynamic
        print(
            f"| {name} | {step:,} | {r.chars:,} | {r.static:.4f} | {r.dynamic:.4f} | {gain:+.4f} "
            f"| {gain / math.log(2):+.4f} | {seconds:.0f} |"
        )


if __name__ == "__main__":
    main()
