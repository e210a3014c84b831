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

from charrnn.data.corpus import DataConfig, NotUTF8, load_corpus
from charrnn.data.items import ItemBatches, Items, cut_items, newline_id
from charrnn.data.layout import Streams, shard_rows
from charrnn.errors import CharRNNError
from charrnn.knobs import REQUIRED, Checked, knob, like
from charrnn.load import LoadConfig
from charrnn.tasks import IGNORE
from charrnn.training.config import TrainConfig


def score(
    engine, ids: np.ndarray, batch_size: int, seq_len: int, max_chars: int = 0, shard: tuple[int, int] = (0, 1)
) -> tuple[float, int]:
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


def score_items(
    engine, items: Items, batch_size: int, seq_len: int, end_id: int, shard: tuple[int, int] = (0, 1)
) -> tuple[float, int, int]:
    """Summed cross-entropy (nats) over whole items, each read from a zero state, its end
    symbol included (data/items.py); the characters scored (end symbols counted) and the
    items. shard (k, K): the k-th of K near-equal parts of the batches."""
    return score_batches(engine, ItemBatches(items, batch_size, seq_len, end_id, scoring=True), shard)


def score_batches(engine, layout: ItemBatches, shard: tuple[int, int] = (0, 1)) -> tuple[float, int, int]:
    """Summed cross-entropy (nats) of the targets of an item layout built for scoring
    (every item, each from a zero state), how many targets (characters, labels or tags)
    and how many items. shard (k, K): the k-th of K near-equal parts of the batches."""
    total, scored, n = 0.0, 0, 0
    for b in range(*shard_rows(len(layout.batches), shard)):
        x, y, state = *layout.batch(b), None
        T = x.shape[1] if layout.parts[b] == 1 else layout.T
        for t0 in range(0, x.shape[1], T):  # long items: in chunks of T, the state carried
            loss, state = engine.loss_sum(x[:, t0 : t0 + T], y[:, t0 : t0 + T], state)
            total += loss
        scored, n = scored + int((y != IGNORE).sum()), n + len(x)
    return total, scored, n


def evaluate(engine, ids: np.ndarray, batch_size: int, seq_len: int, max_chars: int = 0) -> tuple[float, int]:
    """Mean cross-entropy (nats) per character scored, and how many were scored (see score)."""
    total, n = score(engine, ids, batch_size, seq_len, max_chars)
    return total / n, n


@dataclass
class EvalResult:
    loss: float  # nats per character
    bpc: float  # bits per character
    perplexity: float
    chars: int  # characters scored (with --items, the end of each item counts as one)
    unknown: dict[str, int]  # characters outside the vocabulary, and how often each was dropped
    items: int = 0  # items scored (--items), else 0
    loss_per_item: float | None = None  # nats per item (--items)
    static_loss: float | None = None  # --dynamic: nats per character of the same single stream, weights unchanged

    @property
    def unknown_count(self) -> int:
        return sum(self.unknown.values())


EVAL_BATCH_SIZE, EVAL_SEQ_LEN = 32, 256
# --dynamic's defaults, measured with benchmarks/dynamic_eval.py (the figures are in dynamic_eval.py's docstring)
DYNAMIC_SEQ_LEN, DYNAMIC_LR, DYNAMIC_DECAY = 32, 0.03, 0.0


@dataclass
class EvalConfig(Checked):
    """What `charrnn eval` reads and how: --batch-size and --seq-len are train's knobs (the same streams and chunks)."""

    data: str = knob(REQUIRED, "the text to read: a file, a folder or a glob", nonempty=True)
    batch_size: int = like(
        TrainConfig,
        "batch_size",
        EVAL_BATCH_SIZE,
        why="fewer than train's: each stream starts from a zero "
        "state, so fewer streams score more characters in context",
    )
    seq_len: int | None = like(
        TrainConfig,
        "seq_len",
        None,
        why=f"default {EVAL_SEQ_LEN}, longer than train's: the state carries across chunks, so this changes only "
        f"speed and memory; with --dynamic, default {DYNAMIC_SEQ_LEN}: the segment learned from after it is scored "
        "(shorter adapts sooner but runs slower)",
    )
    cache_dir: str | None = like(DataConfig, "cache_dir")
    split: str = knob(
        "all",
        "which part of --data to score: all of it, or the train, val or test part of the run's own split "
        "(give the data the run was trained on)",
        choices=("all", "train", "val", "test"),
    )
    confusion: str | None = knob(
        None, "a classifier: also write its confusion matrix as a PNG to this path", nonempty=True
    )
    dynamic: bool = knob(
        False,
        "dynamic evaluation (Krause et al. 2018): after scoring each --seq-len segment, take one SGD step on it, "
        "so that the model adapts to the text as it reads it; reads the text as one stream (--batch-size 1) "
        "and prints the static loss of that stream too; about 20 times slower than scoring without it",
    )
    dynamic_lr: float = knob(
        DYNAMIC_LR,
        "--dynamic: learning rate of the step taken on each segment's mean loss (nats per character)",
        gt=0,
        off=(0, "no adaptation: the static loss"),
    )
    dynamic_decay: float = knob(
        DYNAMIC_DECAY,
        "--dynamic: at every step, move the weights this fraction of the way back to the trained ones, so that "
        "what was learned long ago fades",
        gt=0,
        le=1,
        off=(0, "off"),
    )

    @property
    def effective_seq_len(self) -> int:
        """T: --seq-len, or its default, which depends on --dynamic."""
        if self.seq_len is not None:
            return self.seq_len
        return DYNAMIC_SEQ_LEN if self.dynamic else EVAL_SEQ_LEN

    def rules(self) -> None:
        if not self.dynamic and (self.dynamic_lr, self.dynamic_decay) != (DYNAMIC_LR, DYNAMIC_DECAY):
            raise CharRNNError("--dynamic-lr and --dynamic-decay set up dynamic evaluation: add --dynamic")
        if self.dynamic and self.batch_size not in (1, EVAL_BATCH_SIZE):
            raise CharRNNError(
                "--dynamic reads the text as one stream, so that the model learns only from text before what it "
                "scores: drop --batch-size"
            )


def eval_run(run: str, config: EvalConfig, which: str = "best", device: str = "cpu") -> EvalResult:
    """Score the text at config.data (file, folder or glob) with the model in `run` (PyTorch engine).
    A model trained on items reads the text as items of the same kind. config.split: the
    run's own train, val or test part of it. config.dynamic: dynamic evaluation
    (dynamic_eval.py), with the static score of the same stream beside it. (Labelled
    tasks: labelled_eval.eval_labelled.)"""
    from charrnn.engines.torch_engine import TorchEngine

    config.check()
    model, vocab, meta = LoadConfig(str(run), which, str(device)).load()
    kind = meta.get("train", {}).get("data", {}).get("items") if vocab.end else None
    if config.dynamic and kind:
        raise CharRNNError(
            f"--dynamic needs a model trained on one stream of text; this one was trained on --items {kind}: "
            "drop --dynamic"
        )
    data = DataConfig(data=config.data, encoding=vocab.encoding, cache_dir=config.cache_dir)
    try:
        corpus = load_corpus(data, vocab.with_end(False), unknown="skip")
    except NotUTF8 as e:  # eval has no --encoding: the model's is the only one it can read
        raise e.for_model() from None
    saved = meta.get("train", {}).get("data", {})
    fractions = saved.get("val_fraction", 0.1), saved.get("test_fraction", 0.0)
    part = ("train", "val", "test").index(config.split) if config.split != "all" else None
    ids = corpus.ids if part is None or kind else corpus.split(*fractions)[part]
    if not kind and len(ids) < 2:
        raise CharRNNError(f"the {config.split} split of {config.data} is empty; choose another --split")
    if config.dynamic:
        from charrnn.dynamic_eval import static_and_dynamic

        r = static_and_dynamic(model, ids, config.effective_seq_len, config.dynamic_lr, config.dynamic_decay)
        return EvalResult(
            r.dynamic, r.dynamic / math.log(2), math.exp(r.dynamic), r.chars, corpus.dropped, static_loss=r.static
        )
    engine = TorchEngine(model, device)
    if not kind:
        loss, n = evaluate(engine, ids, config.batch_size, config.effective_seq_len)
        return EvalResult(loss, loss / math.log(2), math.exp(loss), n, corpus.dropped)
    items = cut_items(corpus.ids, newline_id(corpus.vocab), kind, corpus.file_ids)
    items = items if part is None else items.split(*fractions)[part]
    total, n, k = score_items(engine, items, config.batch_size, config.effective_seq_len, vocab.end_id)
    loss = total / n
    return EvalResult(loss, loss / math.log(2), math.exp(loss), n, corpus.dropped, k, total / k)
