"""Apply a labelled model to texts: `charrnn classify` and `charrnn tag`.

A classifier (many to one) reads a text one character at a time and has a label
distribution after every character: the last one is its answer, and the ones before
are what `serve` shows updating as the user types (`prefix_probabilities`). A
tagger (synced many to many) has a tag distribution at every character; truecase's
tags say which characters to write in upper case.

Shapes: a batch of n texts padded to the longest, T; C labels or K tags.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.data.labelled import UPPER, lower_and_case
from charrnn.errors import CharRNNError
from charrnn.knobs import Checked, knob
from charrnn.load import LoadConfig
from charrnn.tasks import require

BATCH = 256  # texts per forward pass


@dataclass
class ApplyConfig(Checked):
    """What `charrnn classify` and `charrnn tag` read: one text, or every line of a file."""

    text: str | None = knob(None, "the text to label (quote it); or give --data", positional=True)
    data: str | None = knob(
        None, "label every line of this UTF-8 file instead (a .tsv/.csv: its first column)", nonempty=True
    )
    # tag prints every character's tag, so cli.py leaves --top out of `charrnn tag`
    top: int = knob(3, "how many of the most likely labels to print for each text", ge=1)

    def rules(self) -> None:
        if self.text is None and self.data is None:
            raise CharRNNError("give a text to label (quote it), or --data FILE to label every line of a file")
        if self.text is not None and self.data is not None:
            raise CharRNNError("give a text to label or --data FILE, not both")


@dataclass
class Labeller:
    """A loaded classify, tag or truecase model."""

    model: torch.nn.Module
    vocab: object  # data.vocab.Vocab
    labels: tuple[str, ...]  # C labels, or K tag characters
    task: str
    skipped: dict[str, int] = field(default_factory=dict)  # characters outside the vocabulary, dropped

    @classmethod
    def load(cls, load: LoadConfig, command: str, tasks: tuple[str, ...]) -> Labeller:
        model, vocab, meta = load.load()
        task = require(meta, command, tasks)
        return cls(model, vocab, tuple(meta["labels"]), task.name)

    def _encode(self, text: str) -> np.ndarray:
        for c in self.vocab.unknown(text):
            self.skipped[c] = self.skipped.get(c, 0) + text.count(c)
        return self.vocab.encode(text, unknown="skip")

    @torch.no_grad()
    def _logits(self, texts: list[str]) -> list[np.ndarray]:
        """Per text, (its length, C or K) log-probabilities at every character it kept."""
        out: list[np.ndarray] = []
        device = next(self.model.parameters()).device
        for i in range(0, len(texts), BATCH):
            rows = [self._encode(t) for t in texts[i : i + BATCH]]
            lengths = np.array([max(len(r), 1) for r in rows])
            x = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)  # (n, T), padded after each text
            for k, r in enumerate(rows):
                x[k, : len(r)] = r
            lens = torch.from_numpy(lengths) if self.model.config.bidirectional else None
            logits, _ = self.model(torch.from_numpy(x).to(device), None, lens)
            logp = torch.log_softmax(logits.double(), -1).cpu().numpy()
            out += [logp[k, : len(r)] for k, r in enumerate(rows)]
        return out

    def classify(self, texts: list[str]) -> np.ndarray:
        """(n, C) label probabilities of each text; a text with no known character gets a
        uniform answer, never an error. A bidirectional classifier answers at both ends
        (data/items.LabelRows): their log-probabilities are averaged and renormalised."""
        return np.stack([self._answer(lp) for lp in self._logits(texts)])

    def _answer(self, logp: np.ndarray) -> np.ndarray:
        if not len(logp):
            return np.full(len(self.labels), 1.0 / len(self.labels))
        if not self.model.config.bidirectional:
            return np.exp(logp[-1])
        both = (logp[0] + logp[-1]) / 2
        return np.exp(both - np.logaddexp.reduce(both))

    def prefix_probabilities(self, text: str) -> np.ndarray:
        """(len, C): the label distribution after each character of `text`. A left-to-right
        classifier has it in one pass; a bidirectional one classifies each prefix whole."""
        if self.model.config.bidirectional:
            kept = "".join(c for c in text if not self.vocab.unknown(c))
            return self.classify([kept[: i + 1] for i in range(len(kept))]).reshape(len(kept), -1)
        return np.exp(self._logits([text])[0])

    def tag(self, texts: list[str]) -> list[str]:
        """Each text's tags, one character per kept character of the text."""
        return ["".join(self.labels[i] for i in lp.argmax(-1)) for lp in self._logits(texts)]

    def truecase(self, texts: list[str]) -> list[str]:
        """Each text with its capitals restored (truecase models): the model reads it lower-cased."""
        lowered = [lower_and_case(t)[0] for t in texts]
        out = []
        for text, tags in zip(lowered, self.tag(lowered)):
            kept = [c for c in text if not self.vocab.unknown(c)]
            if len(kept) != len(text):  # characters outside the vocabulary keep their case, untagged
                tags = iter(tags)
                out.append("".join(c if self.vocab.unknown(c) else _case(c, next(tags)) for c in text))
            else:
                out.append("".join(_case(c, t) for c, t in zip(text, tags)))
        return out


def _case(c: str, tag: str) -> str:
    return c.upper() if tag == UPPER and len(c.upper()) == 1 else c


def read_texts(config: ApplyConfig) -> list[str]:
    """The texts to label: config.text, or the lines of config.data (a table's first column)."""
    if config.text is not None:
        return [config.text]
    from pathlib import Path

    path = Path(config.data).expanduser()
    try:
        lines = [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except (FileNotFoundError, IsADirectoryError):
        raise CharRNNError(f"no such file: {config.data}") from None
    except UnicodeDecodeError:
        raise CharRNNError(f"{config.data} is not valid UTF-8; save it as UTF-8") from None
    if path.suffix.lower() in (".tsv", ".csv"):  # the text column of a labelled table
        sep = "\t" if path.suffix.lower() == ".tsv" else ","
        rows = list(csv.reader(lines, delimiter=sep))
        lines = [r[0] for r in rows[1 if rows and rows[0][:1] == ["text"] else 0 :] if r]
    return lines


def classify(run, texts: list[str], checkpoint: str = "best", device: str = "cpu") -> list[dict[str, float]]:
    """The Python API: for each text, {label: probability}, most likely first."""
    labeller = Labeller.load(LoadConfig(str(run), checkpoint, str(device)), "classify", ("classify",))
    probs = labeller.classify(list(texts))
    return [{labeller.labels[i]: float(p[i]) for i in np.argsort(-p)} for p in probs]


def tag(run, texts: list[str], checkpoint: str = "best", device: str = "cpu") -> list[str]:
    """The Python API: each text's tags (tag models), or the text with its capitals restored (truecase)."""
    labeller = Labeller.load(LoadConfig(str(run), checkpoint, str(device)), "tag", ("tag", "truecase"))
    return labeller.truecase(list(texts)) if labeller.task == "truecase" else labeller.tag(list(texts))
