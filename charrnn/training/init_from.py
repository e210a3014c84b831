"""Fine-tuning (--init-from RUN): start a new run from a trained model's weights.

The new text may hold characters the model never saw. The vocabulary becomes the
run's, grown by them: old characters keep their ids, new ones come after, and the
end-of-item symbol (items mode) moves to the end. The weights grow with it:

    embedding.weight (V, E)       new rows ~ N(0, 1), as nn.Embedding starts them
    rnn.weight_ih_l0 (G*H, V)     one-hot input (E = 0): new columns ~ U(-1/sqrt(H), 1/sqrt(H)), as nn.RNN*
    head.weight (V, H)            new rows zero, and head.bias new entries the smallest
    head.bias (V,)                old bias: a new character starts as about as likely as the rarest one

An adaptive head (--cutoffs, engines/model.py AdaptiveHead) keeps its clusters: new
characters take the next ranks, so they join the last, rarest cluster, and its output
projection head.asm.tail.{last}.1.weight (n, h) gets zero rows for them (a logit of 0
within that cluster, whatever the model read); head.rank (V,) grows with those ranks.
The ranks stay the source's (the clusters' weights were learnt for them), not the new text's.

A new character's logit is then that constant whatever the model read, so at step 0
the model predicts the old characters as before relative to one another, exactly
(the softmax over the old characters alone is unchanged), and gives each new one a
small share. (A far lower bias would keep the old probabilities unchanged in absolute
terms too, but a new character that is common in the new text would then cost tens
of nats each time until it is learnt.) Tied weights share one (V, E) matrix; its new
rows start at zero, which the output side needs. A --task generate run's label symbols
are dropped: a next-char run has none. Nothing here imports torch.

The model is the run's: its shape, and its --dropout and --weight-drop unless they are
given, and so are its --items (fine_tuning_config).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from charrnn import checkpoint as ckpt
from charrnn.data.vocab import Vocab
from charrnn.engines.config import TRAINING_ONLY, ModelConfig
from charrnn.errors import CharRNNError
from charrnn.tasks import GENERATING, get_task
from charrnn.training.config import TrainConfig


@dataclass
class Source:
    """The run --init-from names: its best checkpoint's weights, vocabulary, model, task and --items."""

    weights: dict
    vocab: Vocab
    model: ModelConfig
    step: int
    task: str = "next-char"
    items: str | None = None


def load_source(run: str) -> Source:
    folder = ckpt.resolve(run, "best")
    meta = ckpt.read_meta(folder)
    weights = ckpt.load_weights(folder, numpy=True)  # checked against the hash checkpoint.json records
    items = meta.get("train", {}).get("data", {}).get("items")
    return Source(
        weights,
        Vocab.from_json(meta["vocab"]),
        ModelConfig.from_json(meta["model"]),
        meta.get("step", 0),
        get_task(meta.get("task")).name,
        items,
    )


def fine_tuning_config(config: TrainConfig, source: Source) -> TrainConfig:
    """The config of a run fine-tuned from `source`: the source's model (its shape, which
    TrainConfig.rules keeps the user from setting, and its dropout and weight drop unless given)
    and its --items unless given. keep becomes the knobs given, so that a --resume of the new
    run (whose model fields then differ from their defaults) still sees only those."""
    run, task = config.init_from, get_task(source.task)
    if task.name not in GENERATING:  # a head of labels or tags: no character to predict from
        raise CharRNNError(
            f"{run} was trained with --task {task.name}; --init-from fine-tunes runs that write characters "
            f"({', '.join(GENERATING)}): train this one from scratch, without --init-from"
        )
    if source.vocab.labels and source.model.cutoffs:  # the label symbols hold ranks inside the clusters
        raise CharRNNError(
            f"{run} is a --task generate run with --cutoffs, whose label symbols cannot leave its adaptive "
            "head: fine-tune a run without --cutoffs, or train this one from scratch"
        )
    given = config.given()
    # A fine-tuned model keeps its regularisation unless a new one is typed.
    model = replace(source.model, **{k: getattr(config.model, k) for k in TRAINING_ONLY if k in given})
    # Items decide the end symbol: without the source's, the model would lose its learnt item ends.
    typed_items = "items" in config.keep if config.keep is not None else config.data.items is not None
    data = config.data if typed_items else replace(config.data, items=source.items)
    return replace(config, data=data, model=model, keep=sorted(given))


def grow_vocab(old: Vocab, corpus: Vocab, end: bool) -> Vocab:
    """The run's vocabulary `old` grown by the characters of `corpus` it lacks."""
    if old.encoding != corpus.encoding:
        raise CharRNNError(
            f"--init-from: the run reads {old.encoding}, the new text {corpus.encoding}; pass --encoding {old.encoding}"
        )
    if old.encoding == "bytes":
        return old.with_end(end)
    new = sorted(set(corpus.chars) - set(old.chars))
    return Vocab(old.encoding, old.chars + tuple(new), end)


def id_map(old: Vocab, new: Vocab) -> np.ndarray:
    """(old V,) the new id of every old id (characters keep theirs; the end symbol moves);
    -1 for a symbol `new` lacks: the end symbol of items, the label symbols of --task generate."""
    index = np.arange(old.size)
    if old.end:
        index[old.end_id] = new.end_id if new.end else -1
    if old.labels:  # after the end symbol (vocab.py); they would collide with the new characters' ids
        index[old.end_id + 1 :] = -1
    return index


def grow_weights(
    weights: dict[str, np.ndarray], old: Vocab, new: Vocab, tied: bool, seed: int
) -> dict[str, np.ndarray]:
    """The weights of a model over `old`, for a model over `new` (see the module doc);
    tied: the model shares its embedding with its head (--tie-weights)."""
    rng = np.random.default_rng(seed)
    moved = id_map(old, new)
    kept = moved >= 0  # an end symbol the new run does not use, and label symbols, are dropped
    fresh = np.setdiff1d(np.arange(new.size), moved[kept])  # new ids: no old row to copy
    out = dict(weights)

    def rows(name: str, fill) -> None:
        w = weights[name]
        grown = np.empty((new.size, *w.shape[1:]), dtype=w.dtype)
        grown[moved[kept]] = w[kept]
        grown[fresh] = fill(len(fresh), *w.shape[1:])
        out[name] = grown

    if "embedding.weight" in weights:
        rows(
            "embedding.weight", (lambda n, e: np.zeros((n, e))) if tied else (lambda n, e: rng.standard_normal((n, e)))
        )
    else:  # one-hot input: layer 0's input matrix has a column per character
        w = weights["rnn.weight_ih_l0"]
        bound = 1 / np.sqrt(weights["rnn.weight_hh_l0"].shape[1])
        grown = np.empty((w.shape[0], new.size), dtype=w.dtype)
        grown[:, moved[kept]] = w[:, kept]
        grown[:, fresh] = rng.uniform(-bound, bound, (w.shape[0], len(fresh)))
        out["rnn.weight_ih_l0"] = grown
    if "head.rank" in weights:  # adaptive softmax
        _grow_adaptive(weights, out, moved, kept, fresh)
        return out
    rows("head.weight", lambda n, h: np.zeros((n, h)))
    rows("head.bias", lambda n: np.full(n, weights["head.bias"][kept].min()))
    if tied:
        out["head.weight"] = out["embedding.weight"]
    return out


def _grow_adaptive(weights: dict, out: dict, moved: np.ndarray, kept: np.ndarray, fresh: np.ndarray) -> None:
    """head.rank and the last cluster's output rows of an adaptive head, grown (module doc)."""
    rank = weights["head.rank"].astype(np.int64)
    if not kept.all():  # a dropped rank would leave a hole in the clusters
        raise CharRNNError("--init-from: this --cutoffs model was trained on --items; fine-tune it with --items too")
    grown = np.empty(len(moved) + len(fresh), np.int64)
    grown[moved] = rank
    grown[fresh] = len(rank) + np.arange(len(fresh))  # after every old rank: the last cluster
    out["head.rank"] = grown.astype(weights["head.rank"].dtype)
    tails = [k for k in weights if k.startswith("head.asm.tail.") and k.endswith(".1.weight")]
    last = max(tails, key=lambda k: int(k.split(".")[3]))  # head.asm.tail.{i}.1.weight
    w = weights[last]  # (n, h): the last cluster's characters, in rank order
    out[last] = np.concatenate([w, np.zeros((len(fresh), w.shape[1]), w.dtype)])


def added(old: Vocab, new: Vocab) -> str:
    """The characters `new` adds to `old`, for the start-up line."""
    return "".join(new.chars[len(old.chars) :]) if new.encoding == "utf-8" else ""
