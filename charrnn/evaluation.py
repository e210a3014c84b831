"""Evaluation: loss in nats, bits per character and perplexity on a text.

Scoring reads the text as B contiguous streams, like training (see data.py), and
carries the hidden state across chunks of T characters, so each character is
predicted from all the text before it in its stream, not from T characters only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.checkpoint import LoadConfig
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.engines.model import loss_fn
from charrnn.errors import CharRNNError
from charrnn.knobs import REQUIRED, Checked, knob, like
from charrnn.training.config import TrainConfig


def evaluate(model, ids: np.ndarray, batch_size: int, seq_len: int, max_chars: int = 0, device="cpu") -> tuple[float, int]:
    """Mean cross-entropy (nats) over (the first max_chars + 1 of) `ids`, and how many
    characters were scored: all but the first, which has nothing to be predicted from."""
    total, n = score(model, ids, batch_size, seq_len, max_chars, device)
    return total / n, n


@torch.no_grad()
def score(model, ids: np.ndarray, batch_size: int, seq_len: int, max_chars: int = 0, device="cpu",
          shard: tuple[int, int] = (0, 1)) -> tuple[float, int]:  # fmt: skip
    """Summed cross-entropy (nats) and number of characters scored, as `evaluate`, over
    the streams of shard (k, K) only: the k-th of K near-equal parts of the B streams, so
    that K ranks can share the work and add up their sums (some parts may be empty)."""
    if max_chars:
        ids = ids[: max_chars + 1]
    n = len(ids) - 1  # characters that have a predecessor
    if n < 1:
        raise CharRNNError("the text is too short to score: it needs at least 2 characters")
    B = max(1, min(batch_size, n // seq_len))
    L = n // B  # stream length
    mine = np.array_split(np.arange(B), shard[1])[shard[0]]  # this shard's streams
    if len(mine) == 0:
        return 0.0, 0
    was_training = model.training
    model.eval()
    total, state, rows = torch.zeros((), dtype=torch.float64), None, mine[:, None] * L
    for start in range(0, L, seq_len):
        t = min(seq_len, L - start)
        chunk = torch.from_numpy(np.asarray(ids[rows + start + np.arange(t + 1)], dtype=np.int64)).to(device)
        logits, state = model(chunk[:, :-1], state)
        total += loss_fn(logits.float(), chunk[:, 1:], reduction="sum").double().cpu()
    count = len(mine) * L
    rest = n - B * L  # < B characters past the last stream: they continue it, so score them from its state
    if rest and mine[-1] == B - 1:
        last = tuple(s[:, -1:] for s in state)
        chunk = torch.from_numpy(np.asarray(ids[B * L : n + 1], dtype=np.int64))[None].to(device)
        logits, _ = model(chunk[:, :-1], last)
        total += loss_fn(logits.float(), chunk[:, 1:], reduction="sum").double().cpu()
        count += rest
    model.train(was_training)
    return total.item(), count


@dataclass
class EvalResult:
    loss: float  # nats per character
    bpc: float  # bits per character
    perplexity: float
    chars: int  # characters scored
    unknown: dict[str, int]  # characters outside the vocabulary, and how often each was dropped

    @property
    def unknown_count(self) -> int:
        return sum(self.unknown.values())


@dataclass
class EvalConfig(Checked):
    """What `charrnn eval` reads and how: --batch-size and --seq-len are train's knobs (the same streams and chunks)."""

    data: str = knob(REQUIRED, 'the text to read: a file, a folder or a glob', nonempty=True)
    batch_size: int = like(TrainConfig, "batch_size", 32, why="fewer than train's: each stream starts from a zero "
                           "state, so fewer streams score more characters in context")  # fmt: skip
    seq_len: int = like(TrainConfig, "seq_len", 256, why="longer than train's: the state carries across chunks, "
                        "so this changes only speed and memory")  # fmt: skip
    cache_dir: str | None = like(DataConfig, "cache_dir")


def eval_run(run: str, config: EvalConfig, which: str = "best", device: str = "cpu") -> EvalResult:
    """Score the text at config.data (file, folder or glob) with the model in `run`."""
    config.check()
    model, vocab, _ = LoadConfig(str(run), which, str(device)).load()
    data = DataConfig(data=config.data, encoding=vocab.encoding, cache_dir=config.cache_dir)
    corpus = load_corpus(data, vocab, unknown="skip")
    loss, n = evaluate(model, corpus.ids, config.batch_size, config.seq_len, 0, device)
    return EvalResult(loss, loss / math.log(2), math.exp(loss), n, corpus.dropped)
