"""Novelty: how much of a sample was copied verbatim from the training text.

For a generated text of L ids, the matching statistics ms[i] are the length of the
longest prefix of text[i:] that occurs anywhere in the training ids. From them, exactly:

    longest copied stretch          = max_i ms[i]  (and where it starts, here and there)
    share of 20-id windows copied   = mean over i <= L - 20 of [ms[i] >= 20]

The index is a suffix array of the training ids (the train split: the first
1 - val - test of the corpus), built with pydivsufsort (libdivsufsort, the field's
suffix sorter). A suffix array answers "the longest prefix of this that occurs" by
binary search, for every length, with no false positives. A set of hashed 20-grams
would answer only for 20 characters, and could not tell a stretch copied whole from
overlapping windows copied from different places.

Memory. A suffix array of N ids takes 4N bytes and libdivsufsort builds it in memory
beside the text, 5N bytes: 5 GB for a 1 GB corpus. So the ids are cut into chunks of
CHUNK ids (bytes: 128 Mi ids, 670 MB to build) that overlap by OVERLAP ids, each with
its own suffix array, written one after the other into one file. Building holds one
chunk at a time; querying reads the files with pread (a few hundred small reads per
sample character, nothing mapped), so its memory does not grow with the corpus. A
stretch of up to OVERLAP ids lies whole inside some chunk, so the statistics are
exact for samples of up to OVERLAP characters (a longer stretch that runs into a
chunk's end is extended against the whole corpus). Disk: 4 bytes per training id.

Cache: beside the corpus cache's ids.bin (charrnn/data/corpus.py), as
novelty-N.sa + novelty-N.json (N = training ids), the JSON written last. A
corpus edited since is encoded anew by load_corpus into another folder, so an index
never outlives its text.

Whole items (--items, --task generate): seen_items.py. A --task generate model read
labelled items, not a text: its index reads its training items one after the other,
the end-of-item id between them, so no stretch runs across two items.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError

WINDOW = 20  # characters in a window of the copied share
CHUNK = 1 << 27  # ids per suffix array (bytes); wider ids use CHUNK // itemsize, to bound the build's memory alike
OVERLAP = 1 << 16  # ids each chunk reaches into the next
VERSION = 1


@dataclass
class Novelty:
    """What one generated text shares with the training text (lengths in ids: characters, or bytes)."""

    length: int  # ids measured: the generated part, the prime excluded
    longest: int  # the longest stretch that occurs verbatim in the training text
    at: int  # where that stretch starts in the generated part (-1: nothing in common)
    source: int  # where it occurs in the training ids (-1: nothing in common)
    stretch: str  # the stretch itself
    windows: int  # WINDOW-id windows in the generated part
    copied: int  # how many of them occur in the training text

    @property
    def share(self) -> float | None:
        return self.copied / self.windows if self.windows else None

    def line(self) -> str:
        shown = self.stretch if len(self.stretch) <= 60 else self.stretch[:57] + "..."
        share = (
            f"{100 * self.share:.1f}% of its {self.windows} {WINDOW}-character windows"
            if self.windows
            else (f"no {WINDOW}-character windows (only {self.length} characters)")
        )
        chars = "character" if self.longest == 1 else "characters"
        return f"longest stretch copied from the training text: {self.longest} {chars} {shown!r}; {share} occur there"


class _Chunk:
    """One chunk's suffix array, read with pread. Keys are the suffixes as bytes that compare
    as the ids do: the ids themselves, or big-endian for ids wider than a byte."""

    def __init__(self, ids_fd: int, sa_fd: int, start: int, length: int, sa_at: int, dtype: np.dtype):
        self.ids_fd, self.sa_fd, self.dtype = ids_fd, sa_fd, dtype
        self.start, self.length, self.sa_at = start, length, sa_at  # ids from `start` of the id file; SA from sa_at

    def position(self, k: int) -> int:
        """SA[k]: where the k-th smallest suffix starts, in the chunk."""
        return int.from_bytes(os.pread(self.sa_fd, 4, (self.sa_at + k) * 4), "little", signed=True)

    def text(self, at: int, m: int) -> bytes:
        """Up to m ids of the chunk from `at`, as comparable bytes."""
        m = max(0, min(m, self.length - at))
        raw = os.pread(self.ids_fd, m * self.dtype.itemsize, (self.start + at) * self.dtype.itemsize)
        return (
            raw
            if self.dtype.itemsize == 1
            else np.frombuffer(raw, self.dtype.newbyteorder("<")).astype(self.dtype.newbyteorder(">")).tobytes()
        )

    def longest(self, target: bytes) -> tuple[int, int]:
        """(length, chunk position) of the longest prefix of `target` occurring in the chunk.
        The best match is a neighbour of target's place in the sorted suffixes."""
        isz, m = self.dtype.itemsize, len(target) // self.dtype.itemsize

        class Keys:  # the sorted suffixes, cut to m ids: what bisect compares target with
            def __len__(_):
                return self.length

            def __getitem__(_, k):
                return self.text(self.position(k), m)

        k = bisect.bisect_left(Keys(), target)
        best, where = 0, -1
        for j in (k - 1, k):
            if 0 <= j < self.length:
                p = self.position(j)
                n = _common_prefix(self.text(p, m), target) // isz
                if n > best:
                    best, where = n, p
        return best, where


def _common_prefix(a: bytes, b: bytes) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    return int(np.argmax(np.frombuffer(a, np.uint8, n) != np.frombuffer(b, np.uint8, n)))


class NoveltyIndex:
    """Chunked suffix arrays of ids[:n] of an id file (see the module docstring)."""

    def __init__(
        self,
        ids_path: Path,
        dtype: np.dtype,
        n: int,
        vocab: Vocab,
        log: Callable[[str], None] | None = None,
        chunk: int | None = None,
        overlap: int = OVERLAP,
    ):
        """The index of ids_path's first n ids (dtype as stored), built if missing or stale.
        chunk and overlap (ids) apply to a build; tests make them small."""
        self.ids_path, self.dtype, self.n, self.vocab = Path(ids_path), np.dtype(dtype), n, vocab
        self.meta_path = self.ids_path.parent / f"novelty-{n}.json"
        self.sa_path = self.ids_path.parent / f"novelty-{n}.sa"
        self.built_now = False
        if not self._current():
            if log is not None:
                log(f"indexing {n:,} training characters for --novelty, once (cached in {self.ids_path.parent})")
            self.build(chunk, overlap)
        meta = json.loads(self.meta_path.read_text())
        self.overlap = meta["overlap"]
        self._ids_fd = os.open(self.ids_path, os.O_RDONLY)
        self._sa_fd = os.open(self.sa_path, os.O_RDONLY)
        self.chunks = [_Chunk(self._ids_fd, self._sa_fd, s, m, at, self.dtype) for s, m, at in meta["chunks"]]

    def _current(self) -> bool:
        if not (self.meta_path.exists() and self.sa_path.exists()):
            return False
        meta = json.loads(self.meta_path.read_text())
        return meta.get("version") == VERSION and meta.get("n") == self.n

    def build(self, chunk: int | None = None, overlap: int = OVERLAP) -> None:
        """Write the suffix arrays, chunk by chunk, then the JSON that says they are complete."""
        from pydivsufsort import divsufsort

        chunk = chunk or CHUNK // self.dtype.itemsize
        isz, chunks, at = self.dtype.itemsize, [], 0
        tmp = self.sa_path.with_name(self.sa_path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            for start in range(0, self.n, chunk):
                end = min(self.n, start + chunk + overlap)
                # A private, writable copy of the chunk (pydivsufsort refuses read-only arrays).
                text = np.fromfile(self.ids_path, dtype=self.dtype, count=end - start, offset=start * isz)
                divsufsort(text).astype("<i4", copy=False).tofile(f)
                chunks.append([start, end - start, at])
                at += end - start
                del text
                if end == self.n:
                    break
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.sa_path)
        meta = {"version": VERSION, "n": self.n, "dtype": self.dtype.name, "overlap": overlap, "chunks": chunks}
        tmp = self.meta_path.with_name(self.meta_path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self.meta_path)
        self.built_now = True

    def close(self) -> None:
        os.close(self._ids_fd)
        os.close(self._sa_fd)

    def __enter__(self) -> NoveltyIndex:  # noqa: PYI034 - typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def matching_statistics(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For (L,) ids: (L,) lengths ms[i] of the longest prefix of ids[i:] found in the
        training ids, and (L,) where each occurs there (-1 for length 0)."""
        ids = np.asarray(ids, dtype=np.int64)
        L, isz = len(ids), self.dtype.itemsize
        big = ids.astype(self.dtype.newbyteorder(">")).tobytes()
        ms, where = np.zeros(L, np.int64), np.full(L, -1, np.int64)
        for i in range(L):
            if i and ms[i - 1] - 1 == L - i > 0:  # the rest of ids was found whole, one step back: no search
                ms[i], where[i] = L - i, where[i - 1] + 1
                continue
            for c in self.chunks:
                n, p = c.longest(big[i * isz :])
                if n > ms[i]:
                    ms[i], where[i] = n, c.start + p
                    if p + n == c.length and c.start + c.length < self.n:  # cut by the chunk's end: go on
                        ms[i] += self._extend(big[(i + n) * isz :], c.start + c.length)
        return ms, where

    def _extend(self, rest: bytes, at: int) -> int:
        """How many ids of `rest` the training ids continue with from position `at`."""
        whole = _Chunk(self._ids_fd, self._sa_fd, 0, self.n, 0, self.dtype)
        return _common_prefix(whole.text(at, len(rest) // self.dtype.itemsize), rest) // self.dtype.itemsize

    def measure(self, text: str) -> Novelty:
        """The novelty of one generated text (pass the generated part, without the prime)."""
        ids = self.vocab.encode_lenient(text)
        ids = ids[ids >= 0]
        ms, where = self.matching_statistics(ids)
        i = int(np.argmax(ms)) if len(ms) else 0
        longest = int(ms[i]) if len(ms) else 0
        windows = max(0, len(ids) - WINDOW + 1)
        return Novelty(
            length=len(ids),
            longest=longest,
            at=i if longest else -1,
            source=int(where[i]) if longest else -1,
            stretch=self.vocab.decode(ids[i : i + longest]),
            windows=windows,
            copied=int((ms[:windows] >= WINDOW).sum()),
        )


def index_for_run(meta: dict, data: str | None = None, log: Callable[[str], None] | None = None) -> NoveltyIndex:
    """The novelty index of the training text of a checkpoint (its checkpoint.json as `meta`):
    the run's own data config, or `data` in its place; built on first use."""
    from charrnn.data.corpus import DataConfig, load_corpus

    if meta.get("task") == "generate":
        from charrnn.sampling.seen_items import generate_items

        folder, vocab, n, _ = generate_items(meta, data)
        return NoveltyIndex(folder / "ids.bin", vocab.dtype, n, vocab, log)
    vocab = Vocab.from_json(meta["vocab"])
    saved = (meta.get("train") or {}).get("data")
    if saved is None and data is None:
        raise CharRNNError("this checkpoint does not record its training data; give it with --novelty-data PATH")
    known = {f.name for f in fields(DataConfig)}
    config = DataConfig(**{k: v for k, v in (saved or {}).items() if k in known})
    if data is not None:
        config.data = data
    try:
        corpus = load_corpus(config, vocab.with_end(False), unknown="skip")
    except CharRNNError as e:
        raise CharRNNError(f"--novelty cannot read the training text ({e}); give it with --novelty-data PATH") from None
    n_train = len(corpus.split(config.val_fraction, config.test_fraction)[0])
    return NoveltyIndex(Path(corpus.ids.filename), corpus.ids.dtype, n_train, vocab, log)
