"""Training speed of the NumPy reference engine against a min-char-rnn-style loop.

Both train a 1-layer vanilla RNN with H=100 on 1-of-k characters of Tiny Shakespeare,
T=25 steps of backprop through time, gradient clipping and Adagrad (lr 0.1), in float64:
the setting of Karpathy's min-char-rnn.py. The loop below is written the way
min-char-rnn writes it: one character at a time, column vectors, dicts of steps. The
reference engine does the same work batched: B streams at once, the input and output
layers of all T steps as one matrix product each. Only the recurrence stays a loop.

    OMP_NUM_THREADS=1 python benchmarks/reference_speed.py [--seconds 2] [--rounds 3] [--batches 1 32 128]

prints a table of training characters per second (forward, backward and update).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from charrnn.data.corpus import bundled_corpus
from charrnn.data.vocab import Vocab
from charrnn.reference import CharRNN, ModelConfig, clip_grad_norm, make_optimizer

H, T, LR = 100, 25, 0.1


def min_char_rnn(ids: np.ndarray, V: int, seconds: float) -> float:
    """min-char-rnn's training loop, as it is written there; returns chars/s."""
    rng = np.random.default_rng(0)
    Wxh, Whh = rng.standard_normal((H, V)) * 0.01, rng.standard_normal((H, H)) * 0.01  # min-char-rnn's init
    Why = rng.standard_normal((V, H)) * 0.01
    bh, by = np.zeros((H, 1)), np.zeros((V, 1))
    mem = [np.zeros_like(p) for p in (Wxh, Whh, Why, bh, by)]

    def loss_fun(inputs, targets, hprev):
        xs, hs, ps, loss = {}, {-1: np.copy(hprev)}, {}, 0.0
        for t in range(len(inputs)):
            xs[t] = np.zeros((V, 1))
            xs[t][inputs[t]] = 1
            hs[t] = np.tanh(np.dot(Wxh, xs[t]) + np.dot(Whh, hs[t - 1]) + bh)
            y = np.dot(Why, hs[t]) + by
            ps[t] = np.exp(y - y.max()) / np.sum(np.exp(y - y.max()))
            loss += -np.log(ps[t][targets[t], 0])
        dWxh, dWhh, dWhy = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(Why)
        dbh, dby, dhnext = np.zeros_like(bh), np.zeros_like(by), np.zeros_like(hs[0])
        for t in reversed(range(len(inputs))):
            dy = np.copy(ps[t])
            dy[targets[t]] -= 1
            dWhy += np.dot(dy, hs[t].T)
            dby += dy
            dh = np.dot(Why.T, dy) + dhnext
            dhraw = (1 - hs[t] * hs[t]) * dh
            dbh += dhraw
            dWxh += np.dot(dhraw, xs[t].T)
            dWhh += np.dot(dhraw, hs[t - 1].T)
            dhnext = np.dot(Whh.T, dhraw)
        for d in (dWxh, dWhh, dWhy, dbh, dby):
            np.clip(d, -5, 5, out=d)
        return loss, (dWxh, dWhh, dWhy, dbh, dby), hs[len(inputs) - 1]

    p, hprev, chars, start = 0, np.zeros((H, 1)), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if p + T + 1 >= len(ids):
            p, hprev = 0, np.zeros((H, 1))
        _, grads, hprev = loss_fun(ids[p : p + T], ids[p + 1 : p + T + 1], hprev)
        for param, dparam, m in zip((Wxh, Whh, Why, bh, by), grads, mem):
            m += dparam * dparam
            param += -LR * dparam / np.sqrt(m + 1e-8)
        p, chars = p + T, chars + T
    return chars / (time.perf_counter() - start)


def reference(ids: np.ndarray, V: int, B: int, seconds: float) -> float:
    """The reference engine on B streams of the text (as charrnn.data.corpus lays them out); chars/s."""
    model = CharRNN(ModelConfig(V, "rnn", 1, H, 0), rng=0)
    optimizer = make_optimizer("adagrad", LR)
    L = (len(ids) - 1) // B
    rows, offsets = np.arange(B)[:, None] * L, np.arange(T + 1)
    i, state, chars, start = 0, None, 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if (i + 1) * T >= L:
            i, state = 0, None
        chunk = ids[rows + i * T + offsets]  # (B, T+1)
        _, grads, state = model.loss(chunk[:, :-1], chunk[:, 1:], state)
        clip_grad_norm(grads, 5.0)
        optimizer.step(model.params(), grads)
        i, chars = i + 1, chars + B * T
    return chars / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time each row for this long per round (default: 2)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds over all rows; each row reports its best (default: 3)"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[1, 32, 128], help="batch sizes B of the reference engine"
    )
    args = parser.parse_args()
    text = bundled_corpus().read_text()
    vocab = Vocab.from_chars(text)
    ids = vocab.encode(text)
    rows = {"min-char-rnn loop (per char)": (1, lambda: min_char_rnn(ids, vocab.size, args.seconds))}
    for B in args.batches:
        rows[f"charrnn.reference, B={B}"] = (B, lambda B=B: reference(ids, vocab.size, B, args.seconds))
    # Rows take turns, round after round, and keep their best: on a shared machine the
    # load changes over time, and the best round is the one least disturbed by it.
    best = {name: 0.0 for name in rows}
    for _ in range(args.rounds):
        for name, (_, run) in rows.items():
            best[name] = max(best[name], run())
    print(
        f"1-layer vanilla RNN, H={H}, V={vocab.size}, T={T}, float64, clipping + Adagrad; "
        f"best of {args.rounds} rounds of {args.seconds:g} s\n"
    )
    print("| engine                         | B   | chars/s  | vs min-char-rnn |")
    print("|--------------------------------|-----|----------|-----------------|")
    base = best["min-char-rnn loop (per char)"]
    for name, (B, _) in rows.items():
        print(f"| {name:<30} | {B:<3} | {best[name]:8,.0f} | {f'{best[name] / base:.1f}x':<15} |")


if __name__ == "__main__":
    main()
