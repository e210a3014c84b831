"""Sampling: small pure functions on logits, and one generate loop.

The loop primes the model with the prime text, then steps the hidden state one
character at a time, feeding each sampled character back in. What computes the
next logits is a "stepper" (see `TorchStepper`): anything with
    prime(ids: (B, P) int64) -> (B, V) logits of the last position
    step(ids: (B,) int64)    -> (B, V) logits
so a faster engine can replace it without touching the sampling rules. The rules
themselves work on NumPy arrays, so every engine samples the same way, and the
same seed gives the same text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from charrnn.config import knob
from charrnn.errors import CharRNNError
from charrnn.vocab import Vocab


@dataclass
class SampleConfig:
    prime: str = knob("", 'text to start from (printed first); default: start after a newline')
    length: int = knob(500, 'characters to generate per sample')
    temperature: float = knob(1.0, 'softmax temperature: below 1 is safer, above 1 wilder, 0 = always the most likely character')
    top_k: int = knob(0, 'sample only from the k most likely characters; 0 = off')
    top_p: float = knob(1.0, 'nucleus sampling: sample from the smallest set of characters whose probability reaches p; 1 = off')
    seed: int | None = knob(None, 'random seed: the same seed gives the same text; default: a fresh one each run')
    num_samples: int = knob(1, 'number of samples, generated together as one batch')
    stop: str | None = knob(None, 'end a sample when it writes this string (the string is not printed)')
    unknown: str = knob("error", 'what to do with prime characters outside the vocabulary: error, or skip them', choices=("error", "skip"))

    def validate(self) -> None:
        if self.length < 0:
            raise CharRNNError("--length must be 0 or more")
        if self.temperature < 0:
            raise CharRNNError("--temperature must be 0 (greedy) or positive")
        if self.top_k < 0:
            raise CharRNNError("--top-k must be 0 (off) or positive")
        if not 0 < self.top_p <= 1:
            raise CharRNNError("--top-p must be in (0, 1]")
        if self.num_samples < 1:
            raise CharRNNError("--num-samples must be at least 1")
        if self.unknown not in ("error", "skip"):
            raise CharRNNError("--unknown must be error or skip")


# -- the rules: pure functions on (B, V) float64 arrays --------------------------


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


def sample_next(logits: np.ndarray, temperature: float, top_k: int, top_p: float, rng: np.random.Generator) -> np.ndarray:
    """(B, V) logits -> (B,) ids: greedy at temperature 0, else a draw from the masked softmax."""
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = top_p_mask(top_k_mask(logits / temperature, top_k), top_p)
    cdf = np.cumsum(softmax(logits), axis=-1)
    u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=-1), logits.shape[-1] - 1)


# -- the loop -----------------------------------------------------------------------


class TorchStepper:
    """Steps a CharRNN with PyTorch; the reference stepper for any faster engine."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.state = None

    @torch.inference_mode()
    def prime(self, ids: np.ndarray) -> np.ndarray:
        logits, self.state = self.model(torch.from_numpy(ids).to(self.device))
        return logits[:, -1].double().cpu().numpy()

    @torch.inference_mode()
    def step(self, ids: np.ndarray) -> np.ndarray:
        logits, self.state = self.model.step(torch.from_numpy(ids).to(self.device), self.state)
        return logits.double().cpu().numpy()


def prime_ids(vocab: Vocab, prime: str, unknown: str) -> tuple[np.ndarray, bool]:
    """The ids to prime with, and whether they come from the user's text (to be shown)."""
    ids = vocab.encode(prime, unknown) if prime else np.zeros(0, dtype=np.int64)
    if len(ids):
        return ids, True
    start = "\n" if vocab.encoding == "bytes" or "\n" in vocab.chars else vocab.chars[0]
    return vocab.encode(start), False


def generate(stepper, vocab: Vocab, config: SampleConfig, on_text: Callable[[str], None] | None = None) -> list[str]:
    """Generate config.num_samples texts, each the prime followed by up to config.length characters.

    on_text, if given, receives sample 0's text as it is written (streaming); text that
    could be the start of the stop string is held back until it is known not to be.
    """
    config.validate()
    rng = np.random.default_rng(config.seed)
    B = config.num_samples
    ids, shown = prime_ids(vocab, config.prime, config.unknown)
    decoders = [vocab.decoder() for _ in range(B)]
    texts = [vocab.decode(ids) if shown else "" for _ in range(B)]
    start = len(texts[0])  # where generated text begins; stop strings are searched after it
    done = np.zeros(B, dtype=bool)
    streamed = 0
    if on_text is not None and texts[0]:
        on_text(texts[0])
        streamed = len(texts[0])
    logits = stepper.prime(np.tile(ids, (B, 1)))
    for t in range(config.length):
        nxt = sample_next(logits, config.temperature, config.top_k, config.top_p, rng)
        for b in np.flatnonzero(~done):
            texts[b] += decoders[b].decode(nxt[b : b + 1])
            if config.stop and config.stop in texts[b][start:]:
                texts[b] = texts[b][: texts[b].index(config.stop, start)]
                done[b] = True
        if on_text is not None:
            hold = 0 if done[0] or not config.stop else len(config.stop) - 1
            upto = max(streamed, len(texts[0]) - hold)
            if upto > streamed:
                on_text(texts[0][streamed:upto])
                streamed = upto
        if done.all() or t == config.length - 1:
            break
        logits = stepper.step(nxt.astype(np.int64))
    for b in np.flatnonzero(~done):
        texts[b] += decoders[b].flush()
    if on_text is not None and len(texts[0]) > streamed:
        on_text(texts[0][streamed:])
    return texts


def sample(model: torch.nn.Module, vocab: Vocab, config: SampleConfig, on_text=None) -> list[str]:
    """Generate with a loaded CharRNN (see checkpoint.load_model)."""
    return generate(TorchStepper(model), vocab, config, on_text)
