"""Labelled items: texts with one label each (classify, generate) or one tag per
character (tag, truecase), read from the formats people already have:

    a folder of LABEL.txt files   one item per line, the file name is the label (the
                                  PyTorch tutorials' layout, as ../shared/data/names/)
    a .tsv or .csv file           a text column, then a label column; a header row
                                  "text, label" (or "text, tags") is skipped
    tag: a .tsv file              text<TAB>tags, one tag character per text character,
                                  e.g. "New York is big<TAB>BII BIII OO OOO"
    truecase: any text            each line is an item, or with --items paragraphs each
                                  sentence (paragraphs, split at blank lines, cut after
                                  . ! or ?); the input is the item lower-cased and the tag of
                                  each character is "U" where it was upper case, "l"
                                  where not: capitalisation, restored

Splits keep every item whole and on one side. Labels are split stratified, and an
item that occurs twice (the names repeat 2,543 of their 14,166 lines) stays on one
side, so the test set holds no name seen in training. Tags are held out by position:
the last items of the text, as the next-character streams are.
"""

from __future__ import annotations

import csv
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.data.items import Items
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError

UPPER, LOWER = "U", "l"  # truecase's two tags


@dataclass
class Labelled:
    """Items as text, before encoding: labels[k] is item k's label, or its tag string."""

    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # "FILE:LINE" of each item, for errors

    def add(self, text: str, label: str, where: str) -> None:
        self.texts.append(text)
        self.labels.append(label)
        self.where.append(where)


def lower_and_case(text: str) -> tuple[str, str]:
    """(text lower-cased, one U/l tag per character). A character whose lower case is not
    one character (as "İ") is kept as it is, so the two strings stay aligned."""
    low = [c.lower() if len(c.lower()) == 1 else c for c in text]
    return "".join(low), "".join(UPPER if c.isupper() else LOWER for c in text)


def read_labelled(path: str | None, task: str, items: str | None = None) -> Labelled:
    """The labelled items at `path` for `task` (classify, generate, tag or truecase)."""
    if path is None:
        raise CharRNNError(f"--task {task} needs --data: a folder of LABEL.txt files, or a .tsv/.csv file")
    p = Path(path).expanduser()
    if task == "truecase":
        return _truecase(p, items or "lines")
    if p.is_dir():
        if task == "tag":
            raise CharRNNError(f"--task tag reads a .tsv file of text<TAB>tags lines, not a folder: {path}")
        return _folder(p)
    if p.is_file():
        return _table(p, task)
    raise CharRNNError(f"no such file or folder: {path}")


def _folder(folder: Path) -> Labelled:
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix == ".txt" and not f.name.startswith("."))
    if not files:
        raise CharRNNError(f"{folder} holds no LABEL.txt files; put one file per label, one item per line")
    data = Labelled()
    for f in files:
        lines = [(n, line.strip()) for n, line in enumerate(_read(f).splitlines(), 1)]
        lines = [(n, line) for n, line in lines if line]
        if not lines:
            raise CharRNNError(f"the class {f.stem!r} is empty: {f} has no items; add some or remove the file")
        for n, line in lines:
            data.add(line, f.stem, f"{f}:{n}")
    return data


def _table(path: Path, task: str) -> Labelled:
    tsv = path.suffix.lower() in (".tsv", ".tab", ".txt")
    reader = csv.reader(
        _read(path).splitlines(), delimiter="\t" if tsv else ",", quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL
    )
    data = Labelled()
    for n, row in enumerate(reader, 1):
        if not row or not any(row):
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] in (["text", "label"], ["text", "tags"]):
            continue  # the header
        if len(row) < 2:
            sep = "a tab" if tsv else "a comma"
            raise CharRNNError(f"{path}:{n} has no label column; write each line as text, {sep}, then its label")
        text, label = row[0], row[1].strip() if task != "tag" else row[1]
        if task == "tag" and len(label) != len(text):
            raise CharRNNError(
                f"{path}:{n}: the tags ({len(label)} characters) must be as long as the text ({len(text)}): "
                "one tag character per text character"
            )
        if not text or not label:
            raise CharRNNError(f"{path}:{n} has an empty text or label; fill it in or remove the line")
        data.add(text, label, f"{path}:{n}")
    if not data.texts:
        raise CharRNNError(f"{path} holds no labelled items; write one item per line: text, then its label")
    return data


def _truecase(path: Path, items: str) -> Labelled:
    from charrnn.data.corpus import resolve_files

    if items not in ("lines", "paragraphs"):
        raise CharRNNError("--task truecase reads --items lines or paragraphs")
    data = Labelled()
    for f in resolve_files(str(path)):
        text = _read(f).replace("\r\n", "\n")
        parts = [s for p in text.split("\n\n") for s in sentences(p)] if items == "paragraphs" else text.split("\n")
        for n, part in enumerate(parts, 1):
            part = part.strip()
            if part:
                data.add(*lower_and_case(part), f"{f}:{n}")
    if not data.texts:
        raise CharRNNError(f"{path} holds no text to learn capitalisation from")
    return data


SENTENCE_END = re.compile(r"[.!?][\"'’”)\]]*(?=\s)")  # the end mark, closing quotes, then a space


def sentences(paragraph: str) -> list[str]:
    """The sentences of a paragraph, its lines joined by spaces: cut after . ! or ? (and
    any closing quotes) before a space. "Mr. Darcy" is cut too: a rare false start."""
    text = " ".join(paragraph.split())
    cuts = [m.end() for m in SENTENCE_END.finditer(text)]
    return [t.strip() for t in (text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])) if t.strip()]


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")  # a BOM is not part of the first item
    except UnicodeDecodeError:
        raise CharRNNError(f"{path} is not valid UTF-8; save it as UTF-8") from None


# -- encoded ---------------------------------------------------------------------------


@dataclass
class LabelledItems(Items):
    """Items (spans of one id array) with their targets: a label id per item, or (per_char)
    a tag id per character, aligned with `ids`."""

    targets: np.ndarray | None = None  # (n,) label ids, or (N,) tag ids
    per_char: bool = False

    def target(self, k: int) -> np.ndarray:
        return self.targets[self.starts[k] : self.ends[k]] if self.per_char else self.targets[k]

    def subset(self, index: np.ndarray) -> LabelledItems:
        targets = self.targets if self.per_char else self.targets[index]
        return LabelledItems(self.ids, self.starts[index], self.ends[index], targets, self.per_char)

    def split(self, val_fraction: float, test_fraction: float = 0.0):
        """(train, val, test): by position for tags, stratified by label otherwise (see the module doc)."""
        if self.per_char:
            n = len(self)
            n_val, n_test = int(n * val_fraction), int(n * test_fraction)
            a, b = n - n_val - n_test, n - n_test
            return self.subset(np.arange(a)), self.subset(np.arange(a, b)), self.subset(np.arange(b, n))
        keys = [self.item(k).tobytes() for k in range(len(self))]
        return tuple(self.subset(i) for i in stratified_split(keys, self.targets, val_fraction, test_fraction))


def balanced(items: LabelledItems, balance: float) -> LabelledItems:
    """The items with those of rarer labels repeated: a label with n items gets about
    n**(1-balance) * most**balance (the commonest label's count: unchanged)."""
    if not balance or items.per_char or not len(items):
        return items
    counts = np.bincount(items.targets)
    most = counts.max()
    repeats = np.rint(np.where(counts > 0, most**balance * counts ** (1 - balance) / np.maximum(counts, 1), 1))
    return items.subset(np.repeat(np.arange(len(items)), repeats.astype(np.int64)[items.targets]))


def stratified_split(keys: list, labels, val_fraction: float, test_fraction: float, seed: int = 0):
    """Index arrays (train, val, test): for each label, its distinct items shuffled by `seed`
    and cut by the fractions; equal keys (duplicates) all go where the first one goes,
    under their most frequent label."""
    groups: dict = defaultdict(list)
    for k, key in enumerate(keys):
        groups[key].append(k)
    by_label: dict = defaultdict(list)
    for members in groups.values():
        label = Counter(labels[k] for k in members).most_common(1)[0][0]
        by_label[label].append(members)
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for label in sorted(by_label):
        members = by_label[label]
        order = rng.permutation(len(members))
        n_val, n_test = round(len(members) * val_fraction), round(len(members) * test_fraction)
        for rank, g in enumerate(order):
            side = 1 if rank < n_val else 2 if rank < n_val + n_test else 0
            parts[side].extend(members[g])
    return tuple(np.array(sorted(p), dtype=np.int64) for p in parts)


def label_names(data: Labelled, per_char: bool) -> tuple[str, ...]:
    """The label set: sorted labels, or sorted tag characters; id = position."""
    return tuple(sorted(set("".join(data.labels)) if per_char else set(data.labels)))


def encode_labelled(data: Labelled, vocab: Vocab, labels: tuple[str, ...], per_char: bool) -> LabelledItems:
    """Encode texts with `vocab` and labels (or tags) with the label set `labels`."""
    index = {name: i for i, name in enumerate(labels)}
    if not per_char and (unknown := sorted(set(data.labels) - set(index))):
        raise CharRNNError(
            f"label {unknown[0]!r} ({data.where[data.labels.index(unknown[0])]}) is not one this model knows: "
            f"{', '.join(labels)}"
        )
    ids = vocab.encode("".join(data.texts))
    lengths = np.array([len(t) for t in data.texts], dtype=np.int64)
    if vocab.encoding == "bytes":
        raise CharRNNError("labelled tasks read utf-8 text: drop --encoding bytes")
    ends = np.cumsum(lengths)
    if per_char:
        lut = {c: i for i, c in enumerate(labels)}
        try:
            targets = np.array([lut[c] for c in "".join(data.labels)], dtype=np.int64)
        except KeyError as e:
            raise CharRNNError(f"tag {e.args[0]!r} is not one this model knows: {''.join(labels)!r}") from None
    else:
        targets = np.array([index[lab] for lab in data.labels], dtype=np.int64)
    return LabelledItems(ids, ends - lengths, ends, targets, per_char)
