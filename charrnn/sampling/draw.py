"""The sampling rules: temperature, top-k, top-p, and one draw per row from what is left.

`sample_next` says them plainly; `Sampler` does the same operations in the same order with
preallocated buffers, so the same generator gives the same ids bit for bit (the fast path of
generate.py; tests/test_numpy_stepper.py checks them against each other). Shapes: logits (B, V).
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k_mask(logits: np.ndarray, k: int) -> np.ndarray:
    """Set all but the k largest logits of each row to -inf (ties at the k-th are kept)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = np.partition(logits, -k, axis=-1)[..., -k, None]  # (B, 1): the k-th largest
    return np.where(logits < kth, -np.inf, logits)


def top_p_mask(logits: np.ndarray, p: float) -> np.ndarray:
    """Keep the smallest set of most likely characters whose probability reaches p."""
    if p >= 1.0:
        return logits
    order = np.argsort(-logits, axis=-1, kind="stable")
    probs = np.take_along_axis(softmax(logits), order, axis=-1)
    before = np.cumsum(probs, axis=-1) - probs  # probability of the more likely ones
    drop_sorted = before >= p  # the first is never dropped: before == 0
    drop = np.zeros_like(drop_sorted)
    np.put_along_axis(drop, order, drop_sorted, axis=-1)
    return np.where(drop, -np.inf, logits)


def sample_next(
    logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator
) -> np.ndarray:
    """(B, V) logits -> (B,) ids: greedy at temperature 0, else a draw from the masked softmax."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = top_p_mask(top_k_mask(logits / temperature, top_k), top_p)
    cdf = np.cumsum(softmax(logits), axis=-1)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=-1), logits.shape[-1] - 1)


class Sampler:
    """`sample_next` for a fixed (B, V) and config, with preallocated buffers: the same
    operations in the same order, so the same rng gives the same ids, bit for bit
    (tests/test_fastsample.py checks it). Only the top-k / top-p masks allocate.
    The returned (B,) int64 ids are overwritten by the next call."""

    def __init__(self, B: int, V: int, config, rng: np.random.Generator):  # config: a generate.SampleConfig
        self.temperature, self.top_k, self.top_p, self.rng = config.temperature, config.top_k, config.top_p, rng
        self.masked = 0 < self.top_k < V or self.top_p < 1.0
        self.z = np.empty((B, V))  # scaled logits, then probabilities
        self.cdf = np.empty((B, V))
        self.total = self.cdf[:, -1:]  # (B, 1) view: each row's last cdf value (1 up to rounding)
        self.m = np.empty((B, 1))  # row max, then row sum
        self.u = np.empty((B, 1))
        self.below = np.empty((B, V), dtype=bool)
        self.ids = np.empty(B, dtype=np.int64)
        self.last = np.int64(V - 1)

    def __call__(self, logits: np.ndarray) -> np.ndarray:
        if self.temperature == 0:
            return np.argmax(logits, axis=-1, out=self.ids)
        z, m = self.z, self.m
        x = logits  # logits / 1 == logits exactly: no division needed at temperature 1
        if self.temperature != 1 or self.masked:
            x = np.divide(logits, self.temperature, out=z)
        if self.masked:
            z[:] = top_p_mask(top_k_mask(z, self.top_k), self.top_p)
        # The ufunc methods are what np.max / np.sum / np.cumsum call, minus their
        # dispatch layers (a few microseconds each, per step).
        np.maximum.reduce(x, axis=-1, keepdims=True, out=m)  # softmax, as in softmax()
        np.subtract(x, m, out=z)
        np.exp(z, out=z)
        np.add.reduce(z, axis=-1, keepdims=True, out=m)
        np.divide(z, m, out=z)
        np.add.accumulate(z, axis=-1, out=self.cdf)
        self.rng.random(out=self.u)  # the same draws as rng.random((B, 1))
        np.multiply(self.u, self.total, out=self.u)
        np.less(self.cdf, self.u, out=self.below)
        np.add.reduce(self.below, axis=-1, out=self.ids)  # how many cdf values lie below u
        return np.minimum(self.ids, self.last, out=self.ids)
