"""Look inside a model as it reads a text: activations, predictions, neuron ranking.

`trace(model, ids)` steps the model one character at a time with its public step
API (the only way to see every layer's state at every position: nn.LSTM hands back
the top layer's hidden sequence only) and keeps, after reading character t,

    acts[k, l, t, :]   state k (0 = hidden h, 1 = LSTM cell c) of layer l   (K, L, T, H)
    probs[t, :]        the model's distribution over the *next* character  (T, V)

`rank_neurons` scores every neuron by its variance and by its correlation with
simple text features (inside quotes, position in line, bracket depth, start of
word), so the "quote neuron" of the article is a few clicks away.

`trace_payload` turns a trace into the JSON that both the HTML report (viz.py) and
the web playground (serve.py) hand to the same renderer, static/trace.js.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.data.vocab import Vocab

TOP_K = 5  # guesses shown per position


@dataclass
class Trace:
    ids: np.ndarray  # (T,) int64, the characters read
    kinds: tuple[str, ...]  # names of the K states: ("hidden",) or ("hidden", "cell")
    acts: np.ndarray  # (K, L, T, H) float32, state after reading character t
    probs: np.ndarray  # (T, V) float64, next-character distribution after reading character t
    first: np.ndarray | None  # (V,) distribution for ids[0] given the context; None without one

    @property
    def surprisal(self) -> np.ndarray:
        """(T,) bits: -log2 p(ids[t] | ids[:t]); NaN for ids[0] when there was no context."""
        T = len(self.ids)
        before = np.empty((T, self.probs.shape[1]))
        before[1:] = self.probs[:-1]
        before[0] = self.first if self.first is not None else np.nan
        p = before[np.arange(T), self.ids]
        with np.errstate(divide="ignore"):
            return -np.log2(p)


def _softmax(logits: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits.double(), dim=-1).cpu().numpy()


@torch.inference_mode()
def trace(model: torch.nn.Module, ids: np.ndarray, context: np.ndarray | None = None) -> Trace:
    """Read `ids` (after the unshown `context`, if any) one step at a time; see the module doc."""
    model.eval()
    device = next(model.parameters()).device
    ids = np.asarray(ids, dtype=np.int64)
    T, L, H = len(ids), model.config.layers, model.config.hidden_size
    kinds = ("hidden", "cell") if model.config.cell == "lstm" else ("hidden",)
    acts = np.empty((len(kinds), L, T, H), dtype=np.float32)
    probs = np.empty((T, model.config.vocab_size), dtype=np.float64)
    state, first = None, None
    if context is not None and len(context):
        logits, state = model(torch.as_tensor(np.asarray(context, dtype=np.int64), device=device)[None])
        first = _softmax(logits[0, -1])
    x = torch.as_tensor(ids, device=device)
    for t in range(T):
        logits, state = model.step(x[t : t + 1], state)  # logits (1, V); state: K tensors (L, 1, H)
        probs[t] = _softmax(logits[0])
        for k, s in enumerate(state):
            acts[k, :, t] = s[:, 0].float().cpu().numpy()
    return Trace(ids, kinds, acts, probs, first)


# -- text features and neuron ranking ---------------------------------------------

OPEN, CLOSE = "([{", ")]}"


def text_features(labels: list[str]) -> dict[str, np.ndarray]:
    """Per-position features of the text read so far (position t includes character t)."""
    T = len(labels)
    quote, column, depth, word_start = (np.zeros(T) for _ in range(4))
    inside, col, d, prev_letter = False, 0, 0, False
    for t, ch in enumerate(labels):
        if '"' in ch:
            inside = not inside
        col = 0 if "\n" in ch else col + 1
        d = max(0, d + sum(ch.count(c) for c in OPEN) - sum(ch.count(c) for c in CLOSE))
        letter = ch[:1].isalpha()
        quote[t], column[t], depth[t], word_start[t] = inside, col, d, letter and not prev_letter
        prev_letter = letter if ch else prev_letter  # an empty label (inside a UTF-8 byte run) changes nothing
    return {"in quotes": quote, "position in line": column, "bracket depth": depth, "start of word": word_start}


def _abs_corr(a: np.ndarray, f: np.ndarray) -> np.ndarray:
    """|Pearson correlation| of each row of a (N, T) with f (T,); 0 where either is constant."""
    a = a - a.mean(axis=1, keepdims=True)
    f = f - f.mean()
    denom = np.sqrt((a * a).sum(axis=1) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 1e-12, (a @ f) / np.where(denom > 0, denom, 1), 0.0)
    return np.abs(r)


def rank_neurons(tr: Trace, labels: list[str]) -> dict[str, np.ndarray]:
    """Scores (K, L, H) per criterion: "variance", and |correlation| with each text feature."""
    K, L, T, H = tr.acts.shape
    flat = tr.acts.transpose(0, 1, 3, 2).reshape(K * L * H, T).astype(np.float64)  # one row per neuron
    scores = {"variance": flat.var(axis=1) if T else np.zeros(len(flat))}
    for name, f in text_features(labels).items():
        scores[name] = _abs_corr(flat, f) if T else np.zeros(len(flat))
    return {k: v.reshape(K, L, H) for k, v in scores.items()}


# -- the JSON the renderer reads ---------------------------------------------------


def position_labels(vocab: Vocab, ids: np.ndarray) -> list[str]:
    """What to print at each position: the character; for a bytes vocabulary the text each byte completes."""
    dec = vocab.decoder()
    labels = [dec.decode(ids[t : t + 1]) for t in range(len(ids))]
    if labels:
        labels[-1] += dec.flush()
    return labels


def _b64(a: np.ndarray) -> str:
    """Little-endian float32 bytes, base64: 4 bytes a number, and exact."""
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def trace_payload(tr: Trace, vocab: Vocab) -> dict:
    """Everything the renderer needs, as JSON-ready data.

    groups[g].data is base64 float32 of shape (H, T), neuron-major, so the browser
    views one neuron's T values without copying. top_ids/top_probs are (T + 1, TOP_K):
    row t holds the guesses for character t (row 0 only when has_first, i.e. a
    context predicted it), row t + 1 the guesses made after reading it.
    """
    K, L, T, H = tr.acts.shape
    labels = position_labels(vocab, tr.ids)
    scores = rank_neurons(tr, labels)
    k = min(TOP_K, tr.probs.shape[1])
    first = tr.first if tr.first is not None else np.zeros(tr.probs.shape[1])
    pred = np.concatenate([first[None], tr.probs])  # (T + 1, V)
    top = np.argsort(-pred, axis=1, kind="stable")[:, :k]
    groups = []
    for ki in range(K):
        for li in range(L):
            a = tr.acts[ki, li]  # (T, H)
            groups.append(
                {
                    "kind": tr.kinds[ki],
                    "layer": li + 1,
                    "size": H,
                    "min": float(a.min()) if T else 0.0,
                    "max": float(a.max()) if T else 0.0,
                    "data": _b64(a.T),
                    "scores": {name: [round(float(v), 6) for v in s[ki, li]] for name, s in scores.items()},
                }
            )
    return {
        "labels": labels,
        "vocab": [vocab.decode([i]) if vocab.encoding == "utf-8" else _byte_name(i) for i in range(vocab.size)],
        "top_ids": top.tolist(),
        "top_probs": _b64(np.take_along_axis(pred, top, axis=1)),
        "has_first": tr.first is not None,
        "surprisal": [_finite(s) for s in tr.surprisal],
        "groups": groups,
        "criteria": list(scores),
    }


def _byte_name(i: int) -> str:
    return chr(i) if 32 <= i < 127 or i in (9, 10) else f"\\x{i:02x}"
