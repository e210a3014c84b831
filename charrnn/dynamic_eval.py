"""Dynamic evaluation: the model keeps learning from the text it scores (`charrnn eval --dynamic`).

Krause, Kahembwe, Murray and Renals, "Dynamic Evaluation of Neural Sequence Models" (ICML 2018,
arXiv 1709.07432). The text is read as one stream, in segments s_1, s_2, ... of T characters
(--seq-len), with the hidden state carried. For each segment, in this order:

    1. score s_i with the current weights theta_{i-1}       engine.loss_sum: its nats count
    2. then learn from it, from the same start state        engine.train_step, on the same chunk:
           theta_i = theta_{i-1} - lr * grad L(s_i; theta_{i-1}) + decay * (theta_0 - theta_{i-1})

L is the mean cross-entropy over the segment, lr is --dynamic-lr and decay (--dynamic-decay, 0 = off)
pulls the weights back toward the trained ones theta_0, so that what was learned long ago fades and
the model stays near what training found. So every character is predicted by weights that have
learned only from the segments before its own: a segment is never scored after the model saw it.
The update is the paper's "SGD with a global decay prior" (their RMS variant, which also scales each
weight's step by gradient statistics gathered on the training text, is not done here).

Why one stream. The static scorer (evaluation.score) cuts the text into B streams read side by side:

    text     |---- stream 0 ----|---- stream 1 ----| ...
    chunk i  row 0 reads [iT, (i+1)T) of stream 0; row 1 the same positions of stream 1; ...

With B > 1, the weights that score chunk i of stream 0 would have learned from chunks < i of
stream 1, which lie later in the file. That is the text after the characters being scored: the
model would no longer give the text a probability in reading order. With B = 1, as Krause et
al. do, every update comes from earlier text only; the price is speed (one row per step).

Dropout is off while adapting (as in the paper's code): the copy that adapts is built with
--dropout 0. Nothing is written: the checkpoint on disk is only read.

The defaults (evaluation.py: --seq-len 32, --dynamic-lr 0.03, --dynamic-decay 0) were measured with
benchmarks/dynamic_eval.py and a grid over tiny-preset models trained 60 s (AMD EPYC, 1 thread, a busy
machine), on the first 20,000 characters of each validation split:
  - lr: 0.1 gained most on an undertrained Tiny Shakespeare model (+0.12 nats at T 32 against +0.09
    at 0.03) but lost 0.01-0.015 nats on better-fitted Pride and Prejudice and Die Verwandlung
    models, where 0.03 gained +0.007 and +0.013, and 0.01 a little less (+0.006, +0.010). 0.03
    gained on every corpus of the suite;
  - T: 32 and 64 gained alike on Pride and Prejudice (+0.007), 16 and 256 less (+0.001, +0.003); on
    Tiny Shakespeare shorter was better (16: +0.115, 32: +0.089, 64: +0.061 at lr 0.03). Speed, 1
    thread: T 16 / 32 / 64 / 256 ran at 850 / 1,300 / 2,200 / 3,200 chars/s, static scoring (B 32) at
    29,000;
  - decay: every value > 0 lost some of the gain (0.001: -0.001 to -0.026 nats; 0.01: -0.005 to
    -0.05), so it is off by default; it is there for long texts whose early adaptation should fade.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from charrnn.data.layout import Streams
from charrnn.engines.config import TRAINING_ONLY
from charrnn.evaluation import score

STATIC_SEQ_LEN = 256  # the static pass carries the state, so its chunk length changes its speed, not its sum


@dataclass
class DynamicScore:
    total: float  # nats, summed over every character scored
    count: int  # characters scored: all but the first
    segments: list[float]  # nats summed over each segment, in reading order (each scored before learning it)


def dynamic_score(engine, ids: np.ndarray, seq_len: int, lr: float) -> DynamicScore:
    """Score `ids` as one stream in segments of seq_len, taking one training step at learning rate
    `lr` on each segment right after scoring it (see above). Any engine: its optimizer's rule is the
    update (the PyTorch engine's from adapting_engine, with the decay). Changes the engine's weights."""
    streams = Streams.for_scoring(ids, 1, seq_len)  # B = 1: one stream, no tail
    n, state, segments = streams.scoring_chunks(), None, []
    for i in range(n):
        x, y = streams.chunk(i)  # (1, t) each
        loss, after = engine.loss_sum(x, y, state)  # first: scored by weights that have not seen it
        segments.append(loss)
        if i + 1 < n:  # then learned from, from the same start state (the last has no text after it)
            engine.train_step(x, y, state, lr)
        state = after  # the state the scoring pass left, as in static scoring
    return DynamicScore(sum(segments), streams.stream_len, segments)


def adapting_engine(model, decay: float):
    """A TorchEngine over a copy of `model` (without dropout) whose train_step is dynamic evaluation's
    update: plain SGD (no momentum, no clipping), and before each step the weights move the fraction
    `decay` of the way back to the trained ones. `model` itself is left as it was."""
    import torch

    from charrnn.engines.model import CharRNN
    from charrnn.engines.torch_engine import TorchEngine

    first = next(model.parameters())
    copy = CharRNN(replace(model.config, **dict.fromkeys(TRAINING_ONLY, 0.0))).to(
        device=first.device, dtype=first.dtype
    )
    copy.load_state_dict(model.state_dict())
    params = list(copy.parameters())  # tied weights appear once
    optimizer = torch.optim.SGD(params, lr=0.0)  # train_step sets the learning rate at every step
    if decay:
        trained = [p.detach().clone() for p in params]

        @torch.no_grad()
        def pull_back(optimizer, args, kwargs):
            # before the step, which uses the gradient taken at theta_{i-1}: together they make the rule above
            for p, p0 in zip(params, trained):
                p.lerp_(p0, decay)  # p + decay * (p0 - p)

        optimizer.register_step_pre_hook(pull_back)
    return TorchEngine(copy, first.device, optimizer)


@dataclass
class DynamicResult:
    static: float  # nats per character: the trained weights, unchanged, over the same single stream
    dynamic: float  # nats per character, adapting as it reads
    chars: int  # characters scored


def static_and_dynamic(model, ids: np.ndarray, seq_len: int, lr: float, decay: float) -> DynamicResult:
    """Both scores of `ids` as one stream: the model as trained, then adapting (see dynamic_score).
    `model` (a CharRNN) is not changed."""
    from charrnn.engines.torch_engine import TorchEngine

    static, n = score(TorchEngine(model, next(model.parameters()).device), ids, 1, max(seq_len, STATIC_SEQ_LEN))
    dynamic = dynamic_score(adapting_engine(model, decay), ids, seq_len, lr)
    return DynamicResult(static / n, dynamic.total / dynamic.count, n)
