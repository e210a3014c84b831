"""Sampling: one generate loop over a stepper; the rules on logits are in draw.py.

The loop primes the model with the prime text, then steps the hidden state one
character at a time, feeding each sampled character back in. What computes the
next logits is a "stepper" (see `TorchStepper`): anything with
    prime(ids: (B, P) int64) -> (B, V) logits of the last position
    step(ids: (B,) int64)    -> (B, V) logits
so a faster engine can replace it without touching the sampling rules. The rules
themselves work on NumPy arrays, so every engine samples the same way, and the
same seed gives the same text. `sample()` uses `numpy_stepper.NumpyStepper` on the CPU.

A step must not allocate or do avoidable Python work, since at batch 1 it takes
tens of microseconds: `draw.Sampler` applies the rules with preallocated buffers, and
`generate` keeps each text as pieces and searches only its newest characters for
the stop string (docs/sampling-speed.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.knobs import MAX_SEED, Checked, knob
from charrnn.sampling.draw import Sampler
from charrnn.sampling.numpy_stepper import NumpyStepper


@dataclass
class SampleConfig(Checked):
    prime: str = knob("", "text to start from (printed first); default: start after a newline")
    length: int = knob(
        500,
        "characters to generate per sample; for a model of items (--items), the most a "
        "sample may have before it is cut",
        ge=0,
    )
    temperature: float = knob(
        1.0, "softmax temperature: below 1 is safer, above 1 wilder", gt=0, off=(0, "always the most likely character")
    )
    top_k: int = knob(0, "sample only from the k most likely characters", ge=1, off=(0, "off"))
    top_p: float = knob(
        1.0,
        "nucleus sampling: sample from the smallest set of characters whose probability reaches p; 1 = off",
        gt=0,
        le=1,
    )
    seed: int | None = knob(
        None, "random seed: the same seed gives the same text; default: a fresh one each run", ge=0, le=MAX_SEED
    )
    num_samples: int = knob(1, "number of samples, generated together as one batch", ge=1)
    stop: str | None = knob(None, "end a sample when it writes this string (the string is not printed)", nonempty=True)
    unknown: str = knob(
        "error",
        "what to do with prime characters outside the vocabulary: error, or skip them",
        choices=("error", "skip"),
    )
    prime_file: str | None = knob(
        None,
        "read the prime from this UTF-8 file, for primes too long for a command line "
        "(used as it is, a final newline included); not with --prime",
        nonempty=True,
    )
    beam: int = knob(
        0,
        "beam search with N beams: the most likely continuation found keeping N candidates, instead "
        "of sampling (temperature, top-k, top-p and seed do not apply); 1 = greedy",
        ge=1,
        off=(0, "off"),
    )
    length_alpha: float = knob(
        1.0,
        "beam search ranks continuations of different lengths (ended by --stop) by total "
        "log-probability / length**alpha: 0 = the total (favours ending early), 1 = per "
        "character",
        ge=0,
    )
    novelty: bool = knob(
        False,
        "report for every sample the longest stretch copied verbatim from the training text "
        "and the share of its 20-character windows found there (indexes the training text on "
        "first use)",
    )
    novelty_data: str | None = knob(
        None,
        "the training text that --novelty compares with (a file, folder or glob); "
        "default: the run's own, from its checkpoint.json",
        nonempty=True,
    )
    novel_only: bool = knob(
        False,
        "a model of items (--items, or --task generate): keep sampling until --num-samples items that are "
        "not in the training set are found",
    )
    label: str | None = knob(
        None,
        "a model trained with --task generate: write items for this label (one of the labels it was trained on)",
        nonempty=True,
    )
    interactive: bool = knob(
        False,
        "a prompt loop: type a prime, get a continuation; :help lists the commands that "
        "change temperature, length, seed, ...; Ctrl-D ends it",
    )

    def rules(self) -> None:
        if self.beam and self.num_samples > self.beam:
            raise CharRNNError(
                f"--num-samples {self.num_samples} asks for more continuations than --beam {self.beam} keeps"
            )
        if self.prime and self.prime_file:
            raise CharRNNError("give the prime with --prime or with --prime-file, not both")
        if self.interactive and (self.prime or self.prime_file or self.num_samples != 1):
            raise CharRNNError(
                "--interactive reads its primes at the prompt and writes one continuation at a time; "
                "drop --prime, --prime-file and --num-samples"
            )


def read_prime_file(path: str) -> str:
    """The text of a --prime-file, exactly (a final newline included), or a one-line error."""
    try:
        raw = Path(path).expanduser().read_bytes()
    except FileNotFoundError:
        raise CharRNNError(f"--prime-file {path}: no such file") from None
    except OSError as e:
        raise CharRNNError(f"--prime-file {path}: cannot read it ({e.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CharRNNError(f"--prime-file {path} is not UTF-8 (byte offset {e.start}); save it as UTF-8") from None


def prime_text(config: SampleConfig) -> str:
    """The prime: --prime, or the contents of --prime-file."""
    return read_prime_file(config.prime_file) if config.prime_file else config.prime


# -- the rules: pure functions on (B, V) float64 arrays --------------------------


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

    def reorder(self, rows) -> None:
        """Row b of the new state is row rows[b] of the old one (beam search); len(rows) may differ from B."""
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        self.state = tuple(s.index_select(1, index) for s in self.state)  # each (L, len(rows), H)


def prime_ids(vocab: Vocab, prime: str, unknown: str, label: str | None = None) -> tuple[np.ndarray, bool]:
    """The ids to prime with, and whether they come from the user's text (to be shown).
    A model of items starts each item after its end symbol, as it was trained; a model
    that generates for a label (--task generate), after the label's symbol."""
    ids = vocab.encode(prime, unknown) if prime else np.zeros(0, dtype=np.int64)
    if vocab.labels and label is None:
        raise CharRNNError(f"this model writes for a label: pass --label, one of {', '.join(vocab.labels)}")
    if label is not None:
        return np.concatenate([[vocab.label_id(label)], ids]).astype(np.int64), len(ids) > 0
    if vocab.end:
        return np.concatenate([[vocab.end_id], ids]).astype(np.int64), len(ids) > 0
    if len(ids):
        return ids, True
    start = "\n" if vocab.encoding == "bytes" or "\n" in vocab.chars else vocab.chars[0]
    return vocab.encode(start), False


class _Text:
    """One sample's text as it grows, in pieces joined once at the end.

    The stop string is looked for only in the new piece and the len(stop) - 1
    generated characters before it (`tail`): earlier text was searched already, so
    the first occurrence, if any, lies there. Those characters are also what is
    held back from streaming, since they could be the start of the stop string.
    """

    def __init__(self, head: str, stop: str | None):
        self.parts = [head]  # final text: the shown prime, then generated pieces
        self.tail = ""  # generated text not yet final
        self.stop = stop or None
        self.keep = len(stop) - 1 if stop else 0
        self.done = False

    def add(self, piece: str) -> str:
        """Append a generated piece; return the text that became final (to stream)."""
        window = self.tail + piece
        if self.stop is not None and self.stop in window:
            final, self.tail, self.done = window[: window.index(self.stop)], "", True
        else:
            cut = max(0, len(window) - self.keep)
            final, self.tail = window[:cut], window[cut:]
        self.parts.append(final)
        return final

    def finish(self, rest: str) -> str:
        """End without a stop: `rest` (the decoder's flush) and the tail become final."""
        final, self.tail = self.tail + rest, ""
        self.parts.append(final)
        return final

    def text(self) -> str:
        return "".join(self.parts)


def generate(stepper, vocab: Vocab, config: SampleConfig, on_text: Callable[[str], None] | None = None) -> list[str]:
    """Generate config.num_samples texts, each the prime followed by up to config.length characters
    (a model of items ends each sample where it writes the end of an item).

    on_text, if given, receives sample 0's text as it is written (streaming); text that
    could be the start of the stop string is held back until it is known not to be.
    With config.beam, the texts are the num_samples best beams (charrnn.sampling.beam),
    and on_text receives the best one whole at the end.
    """
    config.check()
    rng = np.random.default_rng(config.seed)
    B = config.num_samples
    if vocab.labels:  # a label's symbol is an input (--task generate), never an id to write
        stepper = WritableOnly(stepper, vocab.size - len(vocab.labels))
    ids, shown = prime_ids(vocab, prime_text(config), config.unknown, config.label)
    head = vocab.decode(ids) if shown else ""
    if config.beam:  # no streaming: the best beam is known only at the end
        from charrnn.sampling.beam import beam_texts

        texts = [head + text for text in beam_texts(stepper, vocab, ids, config, vocab.end_id if vocab.end else None)]
        if on_text is not None:
            on_text(texts[0])
        return texts
    if on_text is not None and head:
        on_text(head)
    logits = stepper.prime(np.tile(ids, (B, 1)))
    sampler = Sampler(B, logits.shape[-1], config, rng)
    if vocab.encoding == "utf-8" and not config.stop and not vocab.end:
        return _generate_plain(stepper, logits, sampler, vocab.chars, head, config.length, on_text)
    texts = [_Text(head, config.stop) for _ in range(B)]
    decoders = [vocab.decoder() for _ in range(B)]
    chars = vocab.chars if vocab.encoding == "utf-8" else None  # one id is one character: no decoder needed
    active = list(range(B))  # rows that have not written the stop string (or ended their item)
    end = vocab.end_id if vocab.end else None
    for t in range(config.length):
        nxt = sampler(logits)  # (B,) int64
        row = nxt.tolist()
        for b in active:
            if end is not None and row[b] == end:  # the model ended the item
                final, texts[b].done = texts[b].finish(decoders[b].flush()), True
            else:
                final = texts[b].add(chars[row[b]] if chars is not None else decoders[b].decode(nxt[b : b + 1]))
            if b == 0 and final and on_text is not None:
                on_text(final)
        active = [b for b in active if not texts[b].done]
        if not active or t == config.length - 1:
            break
        logits = stepper.step(nxt)
    for b in active:
        final = texts[b].finish(decoders[b].flush())
        if b == 0 and final and on_text is not None:
            on_text(final)
    return [t.text() for t in texts]


class WritableOnly:
    """A stepper whose (B, n) logits cover only the ids a sample may write: the characters and the
    end of an item, not the label symbols that --task generate puts after them (vocab.Vocab)."""

    def __init__(self, stepper, n: int):
        self.stepper, self.n = stepper, n

    def prime(self, ids: np.ndarray) -> np.ndarray:
        return self.stepper.prime(ids)[:, : self.n]

    def step(self, ids: np.ndarray) -> np.ndarray:
        return self.stepper.step(ids)[:, : self.n]

    def reorder(self, rows) -> None:
        self.stepper.reorder(rows)


def _generate_plain(stepper, logits, sampler, chars, head, length, on_text) -> list[str]:
    """generate() without a stop string, for a vocabulary of characters (the usual case).

    No row can end early and one id is one character, so the ids go into one
    (length, B) array and are decoded at the end: a step does no per-row Python work
    (the loop of generate() makes B calls per step).
    """
    out = np.empty((length, sampler.ids.shape[0]), dtype=np.int64)
    for t in range(length):
        nxt = sampler(logits)  # (B,) int64
        out[t] = nxt
        if on_text is not None:
            on_text(chars[nxt[0]])
        if t < length - 1:
            logits = stepper.step(nxt)
    return [head + "".join([chars[i] for i in row]) for row in out.T.tolist()]


def pick_stepper(model: torch.nn.Module):
    """The fastest stepper for `model`: NumpyStepper for a float32 model on the CPU
    (no per-character torch call), CudaGraphStepper for a float32 model on CUDA (one
    graph replay per character: 3.8-6.1x TorchStepper at batch 1 on an H200, the same
    text for the same seed; docs/gpu.md), else TorchStepper (MPS, other dtypes)."""
    p = next(model.parameters())
    if p.dtype == torch.float32 and p.device.type == "cpu":
        return NumpyStepper(model)
    if p.dtype == torch.float32 and p.device.type == "cuda":
        from charrnn.sampling.cudagraph import CudaGraphStepper

        return CudaGraphStepper(model)
    return TorchStepper(model)


def sample(model: torch.nn.Module, vocab: Vocab, config: SampleConfig, on_text=None, stepper=None) -> list[str]:
    """Generate with a loaded CharRNN (see checkpoint.load_model). stepper: None picks
    one (see pick_stepper); pass TorchStepper(model) to force the reference engine."""
    return generate(stepper or pick_stepper(model), vocab, config, on_text)
