"""The article's first example: learn "hello" with a vocabulary of four letters.

    "we'll feed a sequence of 4 characters into the RNN: h, e, l, l, and ask it to
     predict e, l, l, o. The vocabulary is h, e, l, o, each encoded as 1-of-k."

The third and fourth inputs are both "l", yet the targets differ ("l", then "o"). A
function of the current input alone cannot do that; the hidden state, which has seen
"hel" in one case and "hell" in the other, can. The scores are printed with the
article's own API, rnn.step(x), on the trained model's one cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.data.vocab import Vocab
from charrnn.knobs import MAX_SEED, Checked, knob
from charrnn.reference.model import CharRNN, ModelConfig
from charrnn.reference.optim import Adam

WORD = "hello"
VOCAB = Vocab("utf-8", tuple("helo"))  # the article's order, not sorted


@dataclass
class HelloConfig(Checked):
    hidden_size: int = knob(3, "hidden units of the RNN; 3 as in the article", ge=1)
    steps: int = knob(100, "training steps of Adam", ge=1)
    lr: float = knob(0.1, "learning rate", gt=0)
    seed: int = knob(0, "random seed for the initial weights", ge=0, le=MAX_SEED)


@dataclass
class HelloResult:
    before: np.ndarray  # (4, 4): output scores y at each of the 4 steps, columns h, e, l, o
    after: np.ndarray
    losses: list[float]  # the training loss at each step, nats per character

    def predicted(self, scores: np.ndarray) -> str:
        return VOCAB.decode(scores.argmax(axis=1))


def scores(rnn, text: str) -> np.ndarray:
    """The article's loop: reset h to zeros, then y = rnn.step(x) for each 1-of-k x."""
    rnn.reset()
    return np.stack([rnn.step(np.eye(VOCAB.size)[i]) for i in VOCAB.encode(text)])


def hello(hidden_size: int = 3, steps: int = 100, lr: float = 0.1, seed: int = 0) -> HelloResult:
    """Train a 1-layer vanilla RNN (4 -> hidden_size -> 4) on "hello", with full BPTT
    over its 4 steps, and return the output scores before and after."""
    HelloConfig(hidden_size, steps, lr, seed).check()
    config = ModelConfig(vocab_size=VOCAB.size, cell="rnn", layers=1, hidden_size=hidden_size, embedding_size=0)
    model = CharRNN(config, rng=seed)
    ids = VOCAB.encode(WORD)
    x, y = ids[None, :-1], ids[None, 1:]  # (1, 4): h e l l -> e l l o
    rnn = model.top  # an RNN(4, hidden_size, 4): W_xh, W_hh, b_h, W_hy, b_y
    before = scores(rnn, WORD[:-1])
    optimizer, losses = Adam(lr), []
    for _ in range(steps):
        loss, grads, _ = model.loss(x, y)
        optimizer.step(model.params(), grads)
        losses.append(loss)
    return HelloResult(before, scores(rnn, WORD[:-1]), losses)


def _table(scores_: np.ndarray) -> list[str]:
    head = "  step  input  target " + "".join(f"{c:>8}" for c in VOCAB.chars) + "   predicted"
    rows = [head]
    for t, row in enumerate(scores_):
        pred = VOCAB.chars[row.argmax()]
        mark = "ok" if pred == WORD[t + 1] else "wrong"
        nums = "".join(f"{v:8.2f}" for v in row)
        rows.append(f"  {t + 1:>4}  {WORD[t]!r:>5}  {WORD[t + 1]!r:>6} {nums}   {pred!r} {mark}")
    return rows


def report(result: HelloResult, hidden_size: int = 3, lr: float = 0.1) -> str:
    """The demo's printout: the scores before training, the training, the scores after."""
    lines = [
        'The article\'s "hello" example: vocabulary "helo" as 1-of-k vectors, a vanilla RNN',
        f"with {hidden_size} hidden units. Input h, e, l, l; the targets are e, l, l, o.",
        "",
        "Output scores y = W_hy @ h + b_y at each step, before training (random weights):",
        *_table(result.before),
        "",
        f"Training: {len(result.losses)} steps of Adam (lr {lr}) with backprop through the 4 steps;",
        f"loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f} nats per character.",
        "",
        "After training:",
        *_table(result.after),
        "",
    ]
    got = result.predicted(result.after)
    if got == WORD[1:]:
        lines.append(f'It predicts "{got}". Steps 3 and 4 get the same input "l" but predict "l", then "o":')
        lines.append("only the recurrent state h, which remembers the letters before, can tell them apart.")
    else:
        lines.append(f'It predicts "{got}", not "{WORD[1:]}": train longer (more steps) or with more hidden units.')
    return "\n".join(lines)
