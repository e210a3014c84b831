"""Layouts: how a task cuts an id array into the (rows, T) chunks an engine reads.

A task is a head plus a layout (docs/architecture.md). Next-character prediction
on one long text uses the stream layout below, for training batches and for
scoring alike, so both engines and every caller cut the text the same way. Items
(--items: names, titles, lines) use data/items.py's layout, and so will the
labelled tasks (one label per item, one per character, generation for a label).
Every layout answers chunk(i, rows, epoch) -> (x, y) and starts_fresh(i, epoch).

Shapes: B streams (rows), T characters per chunk. NumPy only: the engines turn the
(rows, T) int64 arrays into whatever they compute with.

-- The stream layout (truncated backprop through time) ----------------------------

The ids (N of them) are cut into B contiguous streams of `stream_len` characters
each. Chunk i reads positions [iT, (i+1)T) of every stream; targets are the same
positions shifted one character to the right:

  ids      |------ stream 0 ------|------ stream 1 ------| ... |---- stream B-1 ----|

             chunk 0    chunk 1    chunk 2          chunk n-1     (n = num_chunks)
  row 0    [ 0 .. T )[ T .. 2T )[ 2T .. 3T ) ...   <- stream 0
  row 1    [ 0 .. T )[ T .. 2T )[ 2T .. 3T ) ...   <- stream 1
  ...
  row B-1  [ 0 .. T )[ T .. 2T )[ 2T .. 3T ) ...   <- stream B-1

Row b of chunk i+1 continues row b of chunk i, so the hidden state left by chunk i
is the right initial state for chunk i+1: training carries it over, detached so
that backprop stops at the chunk boundary (truncated BPTT), and resets it to zero
at each epoch boundary, when the streams start again from their beginnings.

Training reads whole chunks only: stream_len = (N - 1) // B, and the tail of each
stream shorter than T is left out of the epoch. Scoring reads every character: the
last chunk may be shorter than T, and the `rest` < B characters past the last
stream continue it, so they are scored from the last stream's final state.
"""

from __future__ import annotations

import numpy as np

from charrnn.errors import CharRNNError


class Streams:
    """B contiguous streams over `ids`, read T characters at a time (see above).

    for_training: num_chunks whole chunks per epoch (an error if there is not one).
    for_scoring: every character with a predecessor, B lowered so each stream has T.
    """

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, stream_len: int, rest: int = 0):
        self.ids, self.B, self.T = ids, batch_size, seq_len
        self.stream_len = stream_len  # characters per stream (inputs; targets run one further)
        self.rest = rest  # characters after the last stream, that continue it (scoring only)
        self._offsets = np.arange(seq_len + 1)

    @classmethod
    def for_training(cls, ids: np.ndarray, batch_size: int, seq_len: int, what: str = "training") -> Streams:
        self = cls(ids, batch_size, seq_len, (len(ids) - 1) // batch_size)
        if self.num_chunks < 1:
            need = batch_size * seq_len + 1
            raise CharRNNError(
                f"the {what} split has {len(ids):,} characters, too few for one batch of "
                f"--batch-size {batch_size} x --seq-len {seq_len} (needs {need:,}); "
                "use more text or lower --batch-size/--seq-len"
            )
        return self

    @classmethod
    def for_scoring(cls, ids: np.ndarray, batch_size: int, seq_len: int) -> Streams:
        n = len(ids) - 1  # characters that have a predecessor
        if n < 1:
            raise CharRNNError("the text is too short to score: it needs at least 2 characters")
        B = max(1, min(batch_size, n // seq_len))
        return cls(ids, B, seq_len, n // B, rest=n - B * (n // B))

    @property
    def num_chunks(self) -> int:
        """Whole chunks of T per stream: the batches of one training epoch."""
        return self.stream_len // self.T

    def starts_fresh(self, i: int, epoch: int = 0) -> bool:
        """Whether the state is zeros before chunk i: at the start of the streams only."""
        return i == 0

    def chunk(self, i: int, rows: tuple[int, int] | None = None, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Chunk i of streams [start, end): inputs x and targets y, both (rows, t) int64,
        t = T except for the last, shorter chunk when scoring. Every epoch reads the same."""
        start, end = rows or (0, self.B)
        t = min(self.T, self.stream_len - i * self.T)
        index = np.arange(start, end)[:, None] * self.stream_len + i * self.T + self._offsets[: t + 1]
        chunk = np.asarray(self.ids[index], dtype=np.int64)  # (rows, t + 1)
        return chunk[:, :-1], chunk[:, 1:]

    def scoring_chunks(self) -> int:
        """How many chunks scoring reads: the last may be shorter than T."""
        return -(-self.stream_len // self.T)

    def tail(self) -> tuple[np.ndarray, np.ndarray]:
        """The `rest` characters after the last stream, as one (1, rest) row: x and y."""
        chunk = np.asarray(self.ids[self.B * self.stream_len : self.B * self.stream_len + self.rest + 1], np.int64)
        return chunk[None, :-1], chunk[None, 1:]


def shard_rows(num_rows: int, shard: tuple[int, int]) -> tuple[int, int]:
    """Rows [start, end) of shard k of K: near-equal contiguous parts (some may be empty)."""
    k, K = shard
    part = np.array_split(np.arange(num_rows), K)[k]
    return (int(part[0]), int(part[-1]) + 1) if len(part) else (0, 0)
