"""Which generated items are, whole, training items: `--novelty` and `--novel-only` for a
model of items (--items) or of --task generate.

`ItemSet.items_seen(items)` answers by a sorted array of 64-bit BLAKE2b digests of the
training items (8 bytes an item): a false "seen" needs a digest collision, about
n / 2**64 per query. A --task generate model read labelled items, not a text: its
training items are the split as at training, every label's (generate_items), which
novelty.py's index also reads.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path

import numpy as np

from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError, os_error


class ItemSet:
    """Whole training items, for `items_seen`: a sorted array of their 64-bit digests."""

    def __init__(self, digests: np.ndarray):
        self.digests = digests  # (n,) uint64, sorted, unique

    @staticmethod
    def digest(items: Iterable[str]) -> np.ndarray:
        return np.fromiter(
            (int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little") for s in items),
            dtype=np.uint64,
        )

    @classmethod
    def build(cls, items: Iterable[str], batch: int = 1 << 20) -> ItemSet:
        """From any iterable of items, `batch` at a time (8 bytes an item, then one sort)."""
        parts, it = [], iter(items)
        while len(part := cls.digest(s for _, s in zip(range(batch), it))):
            parts.append(np.unique(part))
        return cls(np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.uint64))

    @classmethod
    def cached(cls, path: Path, items: Callable[[], Iterable[str]]) -> ItemSet:
        """Load the set saved at `path` (.npy), or build it from items() and save it there."""
        path = Path(path)
        if path.exists():
            return cls(np.load(path, mmap_mode="r"))
        built = cls.build(items())
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
        np.save(tmp, built.digests)
        os.replace(tmp, path)
        return built

    def items_seen(self, items: list[str]) -> list[bool]:
        """For each item: is it, whole, one of the training items?"""
        q = self.digest(items)
        at = np.minimum(np.searchsorted(self.digests, q), max(len(self.digests) - 1, 0))
        return [bool(len(self.digests) and d == self.digests[a]) for d, a in zip(q.tolist(), at.tolist())]


def items_for_run(meta: dict, data: str | None = None) -> ItemSet:
    """The training items of a run trained with --items or --task generate (`data` in place of
    its own training data, as --novelty-data), as an ItemSet cached beside its corpus."""
    from charrnn.data.corpus import DataConfig, load_corpus
    from charrnn.data.items import cut_items, newline_id

    if meta.get("task") == "generate":
        folder, _, _, texts = generate_items(meta, data)
        return ItemSet.cached(folder / "items.npy", texts)
    vocab = Vocab.from_json(meta["vocab"]).with_end(False)
    saved = (meta.get("train") or {}).get("data") or {}
    config = DataConfig(**{k: v for k, v in saved.items() if k in {f.name for f in fields(DataConfig)}})
    if data is not None:
        config.data = data
    if not config.items:
        raise CharRNNError(
            "--novel-only is for a model trained on items (--items, or --task generate); this one read one long text"
        )
    corpus = load_corpus(config, vocab, unknown="skip")
    train = cut_items(corpus.ids, newline_id(vocab), config.items, corpus.file_ids).split(
        config.val_fraction, config.test_fraction
    )[0]
    name = f"items-{config.items}-{config.val_fraction}-{config.test_fraction}.npy"
    return ItemSet.cached(corpus.cache / name, lambda: (vocab.decode(train.item(k)) for k in range(len(train))))


def generate_items(meta: dict, data: str | None):
    """(cache folder, vocab, n, texts) for a --task generate run: its training items, split as
    at training, written to folder/ids.bin as n ids with the end-of-item id after each; texts()
    gives them as strings. The folder is named by those ids, so other data or another split
    gets its own, and the indexes built beside them never outlive them.

    Every label's items, not only those of the label sampled: the split keeps each distinct
    item on one side whatever its label (data/labelled.py), and a name the model read under
    any label and writes back is copied all the same."""
    from charrnn.data.corpus import _cache_root
    from charrnn.labelled_eval import labelled_items, texts_of

    saved = (meta.get("train") or {}).get("data") or {}
    if data is None and saved.get("data") is None:
        raise CharRNNError("this checkpoint does not record its training data; give it with --novelty-data PATH")
    try:
        train, _, vocab, _ = labelled_items(meta, data or saved["data"], "train")
    except CharRNNError as e:
        why = f"--novelty cannot read the training items ({e})"
        raise CharRNNError(f"{why}; give them with --novelty-data PATH") from None
    ids = np.empty(int((train.ends - train.starts).sum()) + len(train), vocab.dtype)
    at = 0
    for k in range(len(train)):
        item = train.item(k)
        ids[at : at + len(item)], ids[at + len(item)] = item, vocab.end_id
        at += len(item) + 1
    key = hashlib.blake2b(ids.tobytes() + ids.dtype.name.encode(), digest_size=12).hexdigest()
    folder = _cache_root(saved.get("cache_dir")) / f"generate-{key}"
    if not (folder / "ids.bin").exists():
        tmp = folder / f"ids.bin.tmp{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            ids.tofile(tmp)
            os.replace(tmp, folder / "ids.bin")
        except OSError as e:
            raise os_error(e, f"write the training items to the cache {folder.parent}") from None
    return folder, vocab, len(ids), lambda: texts_of(train, vocab)


def sample_novel(model, vocab: Vocab, config, seen: ItemSet, rounds: int = 50) -> list[str]:
    """config.num_samples items that are not training items: sample batches (seeds seed,
    seed + 1, ...) and keep the new ones, at most `rounds` batches."""
    from dataclasses import replace

    from charrnn.sampling.generate import sample

    base = config.seed if config.seed is not None else int(np.random.SeedSequence().generate_state(1)[0])
    found: list[str] = []
    for r in range(rounds):
        texts = sample(model, vocab, replace(config, seed=base + r, novel_only=False))
        found += [t for t, old in zip(texts, seen.items_seen(texts)) if not old and t]
        if len(found) >= config.num_samples:
            return found[: config.num_samples]
    raise CharRNNError(
        f"--novel-only found {len(found)} new items of {config.num_samples} in {rounds} batches: the "
        "model writes back its training items; raise --temperature or train it less"
    )
