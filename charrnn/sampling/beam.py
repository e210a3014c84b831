"""Beam search: the most likely continuation found while keeping N candidates.

Sampling draws one character at a time; beam search instead keeps the `width` most
likely continuations ("beams") found so far and extends each by every character,
keeping again the `width` best of the width x V candidates; a candidate that ends (at
--stop, or at an end-of-item id) is set aside and the beam narrows by one, so the
search stops when every beam has ended or at the length cap. The beams are the rows
of one batch through a stepper (see charrnn.sampling.generate): after each selection
the stepper's state rows are gathered with `stepper.reorder(rows)`, so a step is one
batched call whatever the width.

Scoring. A hypothesis's total log-probability is the sum of log p(next | before) over
its generated characters (nats, the prime excluded). Hypotheses of different lengths
(some end early at --stop or at an end-of-item id) are ranked by

    score = total log-probability / length ** alpha          (alpha = --length-alpha)

alpha = 0 ranks by the total, which favours ending early (every character costs
probability); alpha = 1 ranks by the mean log-probability per character; GNMT's
0.6-0.7 lies between. Without --stop and an end id every hypothesis has the same
length and alpha changes nothing.

Never below greedy. Plain beam search can end below greedy decoding: the greedy
prefix can be pruned by beams that later turn out worse. So the greedy continuation
is carried along as one more row (sharing a beam's row while it equals that beam)
and competes at the end: the best hypothesis returned never scores below greedy's,
and at a fixed length its total log-probability is never below greedy's. Width 1 is
greedy decoding exactly (ties go to the lower id, as argmax's do).

Shapes: R rows in the batch (live beams, plus the greedy row when it is apart), V
vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Hypothesis:
    ids: list[int]  # generated ids; the end id or the stop string's ids, when they ended it, included
    logprob: float  # total log-probability of ids after the prime, in nats
    finished: bool = False  # ended by the end id or the stop ids (else it ran to the length cap)

    def score(self, alpha: float) -> float:
        return self.logprob / max(len(self.ids), 1) ** alpha


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(R, V) -> (R, V) log-probabilities, in float64."""
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class _Ending:
    """Whether a hypothesis has just ended: its last id is `end_id`, or its ids end with `stop_ids`.
    Checked at every step, so the first occurrence of the stop ids is the one that ends it."""

    def __init__(self, end_id: int | None, stop_ids: list[int] | None):
        self.end_id, self.stop = end_id, list(stop_ids) if stop_ids else None

    def __call__(self, ids: list[int]) -> bool:
        if self.end_id is not None and ids[-1] == self.end_id:
            return True
        return self.stop is not None and ids[-len(self.stop) :] == self.stop


def beam_search(
    stepper,
    prime: np.ndarray,
    width: int,
    length: int,
    alpha: float = 1.0,
    end_id: int | None = None,
    stop_ids: list[int] | None = None,
    keep: int = 1,
) -> list[Hypothesis]:
    """The `keep` best hypotheses (best first) continuing `prime` ((P,) ids, P >= 1) by up
    to `length` ids, found with `width` beams. A hypothesis ends when it emits `end_id`
    or writes `stop_ids`; those ids are kept in its ids (callers drop them from the text)."""
    if width < 1 or not 1 <= keep <= width:
        raise ValueError(f"need width >= 1 and 1 <= keep <= width, got width={width}, keep={keep}")
    ends = _Ending(end_id, stop_ids)
    logits = stepper.prime(np.asarray(prime, dtype=np.int64)[None])  # (1, V): beams and greedy share row 0
    beams, beam_rows = [Hypothesis([], 0.0)], [0]
    greedy, greedy_row = Hypothesis([], 0.0), 0  # greedy_row: None once greedy has ended
    done: list[Hypothesis] = []  # hypotheses that ended while among the `width` best candidates
    for t in range(length):
        logp = log_softmax(logits)  # (R, V)
        new, parents = _select(beams, logp[beam_rows], width, ends, done)  # parents: index into beams
        rows = [beam_rows[p] for p in parents]
        if greedy_row is not None:
            c = int(np.argmax(logits[greedy_row]))
            greedy = Hypothesis(greedy.ids + [c], greedy.logprob + float(logp[greedy_row, c]))
            greedy.finished = ends(greedy.ids)
            shared = next((j for j, h in enumerate(new) if h.ids == greedy.ids), None)
            if greedy.finished:
                greedy_row = None
            elif shared is not None:
                greedy_row = shared  # the greedy prefix is a beam: no row of its own
            else:
                rows.append(greedy_row)
                greedy_row = len(rows) - 1
        beams, beam_rows = new, list(range(len(new)))
        if not rows or t == length - 1:
            break
        if _cannot_improve(beams, greedy, greedy_row, done, keep, alpha, length):
            beams, greedy = [], None  # unfinished and shorter than the cap: not candidates
            break
        apart = [greedy.ids[-1]] if greedy_row is not None and greedy_row >= len(beams) else []
        stepper.reorder(rows)
        logits = stepper.step(np.asarray([h.ids[-1] for h in beams] + apart, dtype=np.int64))
    return _best(done + beams + ([greedy] if greedy is not None else []), alpha, keep)


def _select(beams: list[Hypothesis], logp: np.ndarray, width: int, ends: _Ending, done: list[Hypothesis]):
    """The next live beams and the index of each one's parent in `beams`.

    The `width` best candidates by total log-probability are kept (ties: the lower
    parent, then the lower id, as argmax breaks them); those that have just ended move
    to `done` and the beam narrows by as many, so width 1 is greedy decoding even when
    a stop string or end id ends it."""
    if not beams:  # every beam has ended; greedy may go on alone
        return [], []
    flat = (np.array([h.logprob for h in beams])[:, None] + logp).ravel()  # (n * V,) candidate totals
    V = logp.shape[1]
    k = min(width, flat.size)
    top = np.argpartition(-flat, k - 1)[:k]
    top = top[np.lexsort((top, -flat[top]))]  # best first; equal totals: the lower flat index first
    new, parents = [], []
    for f in top.tolist():
        p, c = divmod(f, V)
        h = Hypothesis(beams[p].ids + [c], float(flat[f]))
        h.finished = ends(h.ids)
        if h.finished:
            done.append(h)
        else:
            new.append(h)
            parents.append(p)
    return new, parents


def _cannot_improve(beams, greedy, greedy_row, done, keep, alpha, length) -> bool:
    """True when `keep` ended hypotheses already score at least what any live one could reach.

    A live hypothesis's total only falls as it grows, so its score at any final length
    m <= length is total_m / m**alpha <= total_now / length**alpha (totals are <= 0)."""
    if len(done) < keep:
        return False
    kth = sorted((h.score(alpha) for h in done), reverse=True)[keep - 1]
    live = beams + ([greedy] if greedy_row is not None else [])
    return all(h.logprob / length**alpha <= kth for h in live)


def _best(pool: list[Hypothesis], alpha: float, keep: int) -> list[Hypothesis]:
    """The `keep` best distinct hypotheses by score (ties: the earlier in `pool`)."""
    order = sorted(range(len(pool)), key=lambda i: (-pool[i].score(alpha), i))
    out, seen = [], set()
    for i in order:
        key = tuple(pool[i].ids)
        if key not in seen:
            seen.add(key)
            out.append(pool[i])
    return out[:keep]


def beam_texts(stepper, vocab, prime: np.ndarray, config, end_id: int | None = None) -> list[str]:
    """The generated texts (prime excluded) of the config.num_samples best hypotheses,
    config.beam wide, with config.length, config.length_alpha and config.stop; a stop
    string or end id that ended a hypothesis is not part of its text."""
    stop_ids = None
    if config.stop:
        stop_ids = vocab.encode_lenient(config.stop).tolist()
        if min(stop_ids) < 0:
            stop_ids = None  # the stop string holds characters the model cannot write: it never ends a beam
    found = beam_search(
        stepper, prime, config.beam, config.length, config.length_alpha, end_id, stop_ids, keep=config.num_samples
    )
    texts = []
    for h in found:
        ids = h.ids
        if h.finished:
            ids = ids[:-1] if end_id is not None and ids[-1] == end_id else ids[: len(ids) - len(stop_ids)]
        texts.append(vocab.decode(ids))
    return texts
