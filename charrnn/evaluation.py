"""Scoring: loss in nats, bits per character and perplexity of a text under a model.

One scorer for every engine and every caller (training's validation and `charrnn
eval`): it reads the text in the stream layout (data/layout.py) and carries the
hidden state across chunks, so each character is predicted from all the text
before it in its stream, not from T characters only. It imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.data.layout import Streams, shard_rows


def score(engine, ids: np.ndarray, batch_size: int, seq_len: int, max_chars: int = 0,
          shard: tuple[int, int] = (0, 1)) -> tuple[float, int]:  # fmt: skip
    """Summed cross-entropy (nats) over (the first max_chars + 1 of) `ids`, and how many
    characters were scored: all but the first, which has nothing to be predicted from.

    shard (k, K): score only the k-th of K near-equal parts of the streams, so that K
    ranks can share the work and add up their sums (some parts may be empty).
    """
    streams = Streams.for_scoring(ids[: max_chars + 1] if max_chars else ids, batch_size, seq_len)
    rows = shard_rows(streams.B, shard)
    if rows[0] == rows[1]:
        return 0.0, 0
    total, state = 0.0, None
    for i in range(streams.scoring_chunks()):
        loss, state = engine.loss_sum(*streams.chunk(i, rows), state)
        total += loss
    count = (rows[1] - rows[0]) * streams.stream_len
    if streams.rest and rows[1] == streams.B:  # the tail continues the last stream: score it from its state
        loss, _ = engine.loss_sum(*streams.tail(), tuple(s[:, -1:] for s in state))
        total, count = total + loss, count + streams.rest
    return total, count


def evaluate(engine, ids: np.ndarray, batch_size: int, seq_len: int, max_chars: int = 0) -> tuple[float, int]:
    """Mean cross-entropy (nats) per character scored, and how many were scored (see score)."""
    total, n = score(engine, ids, batch_size, seq_len, max_chars)
    return total / n, n


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


def eval_run(run: str, data: str, which: str = "best", batch_size: int = 32, seq_len: int = 256,
             device: str = "cpu", cache_dir: str | None = None) -> EvalResult:  # fmt: skip
    """Score the text at `data` (file, folder or glob) with the model in `run` (PyTorch engine)."""
    from charrnn.checkpoint import load_model
    from charrnn.engines.torch_engine import TorchEngine

    model, vocab, _ = load_model(run, which, device)
    corpus = load_corpus(DataConfig(data=data, encoding=vocab.encoding, cache_dir=cache_dir), vocab, unknown="skip")
    loss, n = evaluate(TorchEngine(model, device), corpus.ids, batch_size, seq_len)
    return EvalResult(loss, loss / math.log(2), math.exp(loss), n, corpus.dropped)
