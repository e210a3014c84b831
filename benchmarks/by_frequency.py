"""Where a model's validation loss goes: per character of the validation split, grouped by how
common the target character is in the training split (its frequency rank, 0 = the commonest).

The run's own data config and vocabulary split the text (corpora.run_split); the split is read
as one stream, the state carried, so the mean is corpora.py's charrnn score. A large vocabulary's
head shows here: an adaptive softmax (--cutoffs) and a tied full one cost the common characters
about the same and differ on the rare ones.

    python benchmarks/by_frequency.py runs/xiyouji-600s/runs/xiyouji-600s/best
    python benchmarks/by_frequency.py RUN_A RUN_B --ranks 100 500 1400
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from corpora import run_split

from charrnn.engines.model import frequency_rank
from charrnn.load import LoadConfig


def per_character_nll(run: str, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """(nats (N,), the targets' frequency ranks (N,)) for every validation character but the first."""
    model = LoadConfig(run).load()[0].eval()
    _, train_ids, val_ids = run_split(run)
    rank = frequency_rank(np.bincount(train_ids, minlength=model.config.vocab_size))
    ids = torch.tensor(np.asarray(val_ids, dtype=np.int64))  # a copy: the split may be a read-only view
    x, y = ids[None, :-1], ids[1:]  # (1, N): one stream, and its (N,) targets
    nll, state = [], None
    with torch.no_grad():
        for i in range(0, x.shape[1], chunk):
            out, state = model(x[:, i : i + chunk], state)  # (1, T, V) logits (or log-probabilities)
            logp = torch.log_softmax(out[0].float(), -1)
            nll.append(-logp.gather(-1, y[i : i + chunk, None])[:, 0])
    return torch.cat(nll).numpy(), rank[val_ids[1:]]


def table(runs: list[str], ranks: list[int]) -> str:
    edges = [0, *ranks, np.iinfo(np.int64).max]
    lines = ["| run | ranks | share of the text | mean nats | share of the loss |", "|---|---|---:|---:|---:|"]
    for run in runs:
        nll, rank = per_character_nll(run)
        for lo, hi in zip(edges, edges[1:]):
            m = (rank >= lo) & (rank < hi)
            name = f"{lo}-{hi - 1}" if hi != edges[-1] else f"{lo}+"
            lines.append(f"| {run} | {name} | {m.mean():.3f} | {nll[m].mean():.3f} | {nll[m].sum() / nll.sum():.3f} |")
        lines.append(f"| {run} | all | 1.000 | {nll.mean():.4f} | 1.000 |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (best/ or last/) of next-character models")
    parser.add_argument("--ranks", type=int, nargs="+", default=[100, 500, 1400], help="group edges, ranks")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(table(args.runs, sorted(args.ranks)))


if __name__ == "__main__":
    main()
