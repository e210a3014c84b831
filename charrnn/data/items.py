"""Items: a corpus read as many short, separate texts (--items), and their layout.

A list of names, titles or tweets is not one long text: each item should start from
a fresh state, end where it ends, and not leak into the next. With --items the
corpus is cut into items:

    lines       one item per line (empty lines are skipped)
    paragraphs  items separated by one or more blank lines
    files       one item per file (trailing newlines dropped)

and the vocabulary gets one more symbol, the end of an item (Vocab.end_id), which
the model learns to write after each item, and which sampling stops at.

The layout (`ItemBatches`): each row of a batch is one item, never cut and never
continued from another. Inputs start with the end symbol (the model's cue that an
item begins, so it learns the first character too); targets end with it:

    item "Ivanov"   x = [END, I, v, a, n, o, v]      y = [I, v, a, n, o, v, END]

Rows are padded to the batch's longest item, with IGNORE targets (not scored). Items
are grouped by length into fixed batches, so there is little padding and an epoch
always has the same number of chunks; each epoch visits the batches in a new order
drawn from (seed, epoch). A batch longer than T is read in chunks of T with the
state carried between them, and the state starts from zeros at each new batch
(seq_len None: each batch is one chunk, as a classifier or a bidirectional tagger
must read its items whole).

The labelled tasks (tasks.py) fill their rows their own way (the Rows classes):

    classify   x = [I, v, a, n, o, v]          y = [-, -, -, -, -, Russian]
    tag        x = [n, e, w,  , y, o, r, k]    y = [B, I, I, O, B, I, I, I]
    generate   x = [<Russian>, I, v, a, n, o, v]   y = [I, v, a, n, o, v, END]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.data.corpus import ITEM_KINDS
from charrnn.errors import CharRNNError
from charrnn.tasks import IGNORE


@dataclass
class Items:
    """Items as spans of one id array: item k is ids[starts[k]:ends[k]] (no copy of the text)."""

    ids: np.ndarray  # (N,) the corpus's ids, memory-mapped
    starts: np.ndarray  # (n,) int64
    ends: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def item(self, k: int) -> np.ndarray:
        return np.asarray(self.ids[self.starts[k] : self.ends[k]], dtype=np.int64)

    def subset(self, index: np.ndarray) -> Items:
        return Items(self.ids, self.starts[index], self.ends[index])

    def split(self, val_fraction: float, test_fraction: float = 0.0) -> tuple[Items, Items, Items]:
        """(train, val, test) items, drawn at random but always the same way (seed 0), so that
        a list sorted by kind (as names by language) is split evenly and --resume finds it again."""
        n = len(self)
        order = np.random.default_rng(0).permutation(n)
        n_val, n_test = int(n * val_fraction), int(n * test_fraction)
        n_train = n - n_val - n_test
        return (
            self.subset(order[:n_train]),
            self.subset(order[n_train : n_train + n_val]),
            self.subset(order[n_train + n_val :]),
        )


def newline_id(vocab) -> int | None:
    """The id of "\n" in `vocab` (a data.vocab.Vocab), or None when it has none."""
    i = int(vocab.encode_lenient("\n")[0])
    return i if i >= 0 else None


def cut_items(ids: np.ndarray, newline: int | None, kind: str, file_ids: list[int]) -> Items:
    """The items of a corpus of ids (see the module doc). newline: the id of "\\n", if any."""
    if kind not in ITEM_KINDS:
        raise CharRNNError(f"unknown --items {kind!r}: choose one of {', '.join(ITEM_KINDS)}")
    if kind == "files":
        bounds = np.concatenate([[0], np.cumsum(file_ids)]).astype(np.int64)
        starts, ends = bounds[:-1].copy(), bounds[1:].copy()
        for k in range(len(ends)):  # files are few: drop trailing newlines one file at a time
            while newline is not None and ends[k] > starts[k] and ids[ends[k] - 1] == newline:
                ends[k] -= 1
    else:
        nl = np.flatnonzero(np.asarray(ids) == newline) if newline is not None else np.zeros(0, np.int64)
        if kind == "paragraphs":  # a separator is a run of 2+ newlines; a lone newline stays inside
            run_start = np.flatnonzero(np.diff(nl, prepend=-2) != 1)
            run_end = np.append(run_start[1:], len(nl))
            long = run_end - run_start >= 2
            nl_start, nl_end = nl[run_start[long]], nl[run_end[long] - 1] + 1
        else:
            nl_start, nl_end = nl, nl + 1
        starts = np.concatenate([[0], nl_end]).astype(np.int64)
        ends = np.concatenate([nl_start, [len(ids)]]).astype(np.int64)
        if kind == "paragraphs" and newline is not None:  # a newline at the very start or end of the text
            starts += (starts < ends) & (np.asarray(ids[np.minimum(starts, len(ids) - 1)]) == newline)
            ends -= (ends > starts) & (np.asarray(ids[np.maximum(ends - 1, 0)]) == newline)
    keep = ends > starts
    if not keep.any():
        raise CharRNNError(f"--items {kind} found no items in the corpus; give a text with some {kind}")
    return Items(ids, starts[keep], ends[keep])


class NextCharRows:
    """x = [start, item], y = [item, END]: start is the end symbol (next-char --items) or,
    for generate, the symbol of the item's label (first_label: the id of label 0)."""

    extra = 1  # positions beyond the item's own characters

    def __init__(self, end_id: int, first_label: int | None = None):
        self.end_id, self.first_label, self.pad = end_id, first_label, end_id

    def fill(self, items, k: int, x: np.ndarray, y: np.ndarray) -> None:
        item = items.item(k)
        x[0] = self.end_id if self.first_label is None else self.first_label + items.target(k)
        x[1 : len(item) + 1] = item
        y[: len(item)] = item
        y[len(item)] = self.end_id


class LabelRows:
    """Many to one: the item's label is the target at its last character. both_ends (a
    bidirectional classifier): at its first character too, where the backward direction
    has read the whole item, as the forward one has at the last."""

    extra, pad = 0, 0

    def __init__(self, both_ends: bool = False):
        self.both_ends = both_ends

    def fill(self, items, k: int, x: np.ndarray, y: np.ndarray) -> None:
        item = items.item(k)
        x[: len(item)] = item
        y[len(item) - 1] = items.target(k)
        if self.both_ends:
            y[0] = items.target(k)


class TagRows:
    """Synced many to many: a tag at every character."""

    extra, pad = 0, 0

    def fill(self, items, k: int, x: np.ndarray, y: np.ndarray) -> None:
        item = items.item(k)
        x[: len(item)] = item
        y[: len(item)] = items.target(k)


class ItemBatches:
    """The layout of items: B items a batch, read in chunks of T (see the module doc).

    for_scoring keeps every item (the last batch may have fewer rows); training drops
    the items that do not fill a last batch of B, so every batch has B rows to share
    among ranks."""

    def __init__(
        self,
        items: Items,
        batch_size: int,
        seq_len: int | None,
        end_id: int,
        seed: int = 0,
        scoring: bool = False,
        what: str = "training",
        rows=None,
    ):
        self.items, self.B, self.end_id, self.seed = items, batch_size, end_id, seed
        self.rows = rows or NextCharRows(end_id)  # how an item becomes its row of x and y
        order = np.argsort(items.lengths, kind="stable")  # by length: rows of a batch are alike
        if scoring:
            self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        else:
            if len(items) < batch_size:
                raise CharRNNError(
                    f"the {what} split has {len(items):,} items, too few for one batch of "
                    f"--batch-size {batch_size}; use more items or a lower --batch-size"
                )
            n = len(items) // batch_size
            self.batches = list(order[: n * batch_size].reshape(n, batch_size))
        # chunks per batch: its longest row (item plus end symbol), in pieces of T
        self.T = seq_len or max((self.width(b) for b in range(len(self.batches))), default=1)
        self.parts = [1 if seq_len is None else -(-self.width(b) // seq_len) for b in range(len(self.batches))]
        self.num_chunks = sum(self.parts)  # per epoch
        self._plan_epoch, self._plan = None, None

    def plan(self, epoch: int) -> list[tuple[int, int]]:
        """(batch, part) of every chunk of an epoch, in order: batches shuffled by (seed, epoch)."""
        if self._plan_epoch != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(self.batches))
            self._plan = [(int(b), p) for b in order for p in range(self.parts[b])]
            self._plan_epoch = epoch
        return self._plan

    def starts_fresh(self, i: int, epoch: int = 0) -> bool:
        """Whether chunk i begins a batch: its items start, so the state is zeros."""
        return self.plan(epoch)[i][1] == 0

    def chunk(self, i: int, rows: tuple[int, int] | None = None, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Chunk i of an epoch: x and y (rows, t) int64, padded targets IGNORE."""
        b, part = self.plan(epoch)[i]
        x, y = self.batch(b, rows)
        if self.parts[b] == 1:
            return x, y
        return x[:, part * self.T : (part + 1) * self.T], y[:, part * self.T : (part + 1) * self.T]

    def width(self, b: int) -> int:
        """The length of batch b's rows: its longest item, and the end symbol if the task has one."""
        return int(self.items.lengths[self.batches[b]].max()) + self.rows.extra

    def batch(self, b: int, rows: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Batch b whole: x and y (rows, width(b)) int64, padded targets IGNORE."""
        index = self.batches[b]
        start, end = rows or (0, len(index))
        index, length = index[start:end], self.width(b)  # the same width for every rank's rows
        x = np.full((len(index), length), self.rows.pad, dtype=np.int64)
        y = np.full((len(index), length), IGNORE, dtype=np.int64)
        for r, k in enumerate(index):
            self.rows.fill(self.items, k, x[r], y[r])
        return x, y
