"""Characters <-> ids.

Two kinds of vocabulary:

- ``utf-8`` (the default): the Unicode code points seen in the training corpus,
  sorted, so the id of a character is its rank. Any language works; the size V is
  the number of distinct characters.
- ``bytes``: the 256 byte values. It accepts any file (binary, Latin-1, broken
  UTF-8) at the price of spending several steps on each non-ASCII character.

Trained on items (--items), a vocabulary has one more symbol after the characters:
the end of an item, `end_id`, which the model learns to write and which sampling
stops at. It decodes to nothing. A model that generates for a label (--task
generate) has one more symbol per label after it, `label_id(name)`: the first input
of each item, which the item is written for. They decode to nothing too.

The vocabulary is stored inside every checkpoint as JSON, so sampling never needs
the training data.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field

import numpy as np

from charrnn.errors import CharRNNError

ENCODINGS = ("utf-8", "bytes")
SHOWN_CHARS = 20  # an error lists at most this many unknown characters, then counts the rest


def describe_chars(chars) -> str:
    """'abc' for a few characters; the first SHOWN_CHARS and a count for many, so an error stays one short line."""
    chars = list(chars)
    shown = repr("".join(chars[:SHOWN_CHARS]))
    if len(chars) <= SHOWN_CHARS:
        return shown
    return f"{shown} and {len(chars) - SHOWN_CHARS:,} more ({len(chars):,} in all)"


def id_dtype(size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids of a vocabulary of `size`."""
    if size <= 1 << 8:
        return np.dtype(np.uint8)
    if size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


@dataclass(frozen=True)
class Vocab:
    encoding: str = "utf-8"
    chars: tuple[str, ...] = ()  # utf-8 only: the characters, id = position
    end: bool = False  # items: one more id, end_id, marks the end of an item
    labels: tuple[str, ...] = ()  # generate: one more id per label, after end_id
    _lut: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise CharRNNError(f"unknown encoding {self.encoding!r}: choose one of {', '.join(ENCODINGS)}")
        # Look-up table code point -> id, so whole arrays of code points encode in one
        # vectorised gather. Its last entry is -1 ("outside the vocabulary"), and the
        # gather clips larger code points onto it.
        cps = np.array([ord(c) for c in self.chars], dtype=np.int64)
        lut = np.full(int(cps.max()) + 2 if len(cps) else 1, -1, dtype=np.int32)
        lut[cps] = np.arange(len(cps), dtype=np.int32)
        object.__setattr__(self, "_lut", lut)

    @classmethod
    def from_chars(cls, chars) -> Vocab:
        return cls("utf-8", tuple(sorted(set(chars))))

    @classmethod
    def bytes_vocab(cls) -> Vocab:
        return cls("bytes")

    @property
    def size(self) -> int:
        """V: the characters (or bytes), the end-of-item symbol and the labels' symbols if there are."""
        return self.end_id + (1 if self.end else 0) + len(self.labels)

    def label_id(self, name: str) -> int:
        """The id of a label's symbol (generate), or a one-line error listing the labels."""
        if not self.labels:
            raise CharRNNError(f"--label {name!r}: this model has no labels (it was not trained with --task generate)")
        if name not in self.labels:
            raise CharRNNError(f"unknown label {name!r}; the labels this model knows: {', '.join(self.labels)}")
        return self.end_id + 1 + self.labels.index(name)

    @property
    def end_id(self) -> int:
        """The id of the end-of-item symbol (with end=True): the first id after the characters."""
        return 256 if self.encoding == "bytes" else len(self.chars)

    def with_end(self, end: bool = True) -> Vocab:
        """The same characters, with (or without) the end-of-item symbol (and no labels)."""
        return Vocab(self.encoding, self.chars, end)

    def with_labels(self, labels: tuple[str, ...]) -> Vocab:
        """The same characters and end symbol, then one symbol per label (generate)."""
        return Vocab(self.encoding, self.chars, True, tuple(labels))

    @property
    def dtype(self) -> np.dtype:
        return id_dtype(self.size)

    # -- encoding ---------------------------------------------------------------

    def codepoints_to_ids(self, cps: np.ndarray) -> np.ndarray:
        """Map an array of code points to int32 ids; -1 marks characters outside the vocabulary."""
        if len(cps) and cps.max() >= len(self._lut):  # rare: unknown code points past the table
            return np.take(self._lut, cps, mode="clip")
        return self._lut[cps]  # a plain gather: several times faster than mode="clip"

    def encode_lenient(self, text: str) -> np.ndarray:
        """Ids of `text`, with -1 for each character outside the vocabulary."""
        if self.encoding == "bytes":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        cps = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        return self.codepoints_to_ids(cps).astype(np.int64)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` that are not in the vocabulary, in order of appearance."""
        if self.encoding == "bytes":
            return []
        return list(dict.fromkeys(c for c in text if self._lut[min(ord(c), len(self._lut) - 1)] < 0))

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """Ids of `text` (int64). `unknown` is "error" (raise, listing them) or "skip" (drop them)."""
        ids = self.encode_lenient(text)
        if (ids < 0).any():
            if unknown == "skip":
                return ids[ids >= 0]
            raise CharRNNError(
                f"these characters are not in the model's vocabulary: {describe_chars(self.unknown(text))}; "
                "remove them or pass --unknown skip to drop them"
            )
        return ids

    # -- decoding ---------------------------------------------------------------

    def decode(self, ids) -> str:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if self.end:
            ids = ids[ids < self.end_id]  # the end symbol and label symbols write nothing
        if self.encoding == "bytes":
            return bytes(ids.astype(np.uint8)).decode("utf-8", errors="replace")
        return "".join(self.chars[i] for i in ids)

    def decoder(self) -> StreamDecoder:
        """An incremental decoder for text that arrives one id at a time (streaming)."""
        return StreamDecoder(self)

    # -- JSON -------------------------------------------------------------------

    def to_json(self) -> dict:
        d = (
            {"encoding": "bytes", "size": self.size}
            if self.encoding == "bytes"
            else {"encoding": "utf-8", "size": self.size, "chars": "".join(self.chars)}
        )
        d = {**d, "end": True} if self.end else d
        return {**d, "labels": list(self.labels)} if self.labels else d

    @classmethod
    def from_json(cls, d: dict) -> Vocab:
        chars = () if d["encoding"] == "bytes" else tuple(d["chars"])
        return cls(d["encoding"], chars, d.get("end", False), tuple(d.get("labels", ())))


class StreamDecoder:
    """Decodes ids as they come; in bytes mode it holds back incomplete UTF-8 sequences."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self._bytes = codecs.getincrementaldecoder("utf-8")("replace") if vocab.encoding == "bytes" else None

    def decode(self, ids) -> str:
        if self._bytes is None:
            return self.vocab.decode(ids)
        ids = np.asarray(ids, dtype=np.int64).ravel()
        return self._bytes.decode(bytes(ids[ids < 256].astype(np.uint8)))  # the end symbol writes nothing

    def flush(self) -> str:
        return self._bytes.decode(b"", final=True) if self._bytes is not None else ""
