"""Novelty (charrnn/sampling/novelty.py) against a naive reference: Python's `in` on the
training string, for every position of a sample; and items_seen against a Python set."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.checkpoint import save_checkpoint
from charrnn.cli import main
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.errors import CharRNNError
from charrnn.sampling.generate import SampleConfig, sample
from charrnn.sampling.novelty import WINDOW, Novelty, NoveltyIndex, index_for_run
from charrnn.sampling.seen_items import ItemSet
from viz_support import tiny_model


def naive_ms(sample: str, train: str) -> list[int]:
    """ms[i]: the longest prefix of sample[i:] that is a substring of train."""
    out = []
    for i in range(len(sample)):
        n = 0
        while i + n < len(sample) and sample[i : i + n + 1] in train:
            n += 1
        out.append(n)
    return out


def corpus_text(alphabet: str, n: int, seed: int) -> str:
    """Random text with repeats: phrases of a small vocabulary, so long copies exist."""
    rng = np.random.default_rng(seed)
    words = ["".join(rng.choice(list(alphabet), rng.integers(1, 6))) for _ in range(30)]
    return " ".join(rng.choice(words, n // 3))[:n]


def make_index(tmp_path: Path, text: str, val: float = 0.0, **build) -> tuple[NoveltyIndex, str]:
    path = tmp_path / "train.txt"
    if not path.exists():  # rewriting it would change its mtime: a new corpus cache
        path.write_text(text, encoding="utf-8")
    corpus = load_corpus(DataConfig(data=str(path), cache_dir=str(tmp_path / "cache")))
    n = len(corpus.split(val)[0])
    return NoveltyIndex(Path(corpus.ids.filename), corpus.ids.dtype, n, corpus.vocab, **build), text[:n]


def queries(train: str, seed: int) -> list[str]:
    """Copied stretches spliced with fresh text, a whole copy, and text with nothing in common."""
    rng = np.random.default_rng(seed)
    chars = sorted(set(train))
    out = []
    for _ in range(4):
        parts = []
        for _ in range(4):
            a = int(rng.integers(0, len(train) - 60))
            parts.append(train[a : a + int(rng.integers(1, 60))])
            parts.append("".join(rng.choice(chars, int(rng.integers(0, 4)))))
        out.append("".join(parts))
    out.append(train[-50:])  # ends at the very end of the training text
    out.append(chars[0] * 3)
    return out


@pytest.mark.parametrize("alphabet", ["abcde", "abc\u4e00\u4e01\u4e02" + "".join(chr(0x3400 + i) for i in range(300))])
@pytest.mark.parametrize("chunk, overlap", [(None, 1 << 16), (700, 130), (97, 64)])
def test_matching_statistics_equal_the_naive_search(tmp_path, alphabet, chunk, overlap):
    """Bytes and uint16 ids (V > 256); one suffix array, or many small overlapping chunks."""
    text = corpus_text(alphabet, 3000, seed=len(alphabet)) + " " + alphabet  # every character: V > 256 for the second
    index, train = make_index(tmp_path, text, chunk=chunk, overlap=overlap)
    assert index.dtype.itemsize == (1 if len(alphabet) < 256 else 2)
    assert len(index.chunks) == (1 if chunk is None else -(-(len(train) - overlap) // chunk))
    for q in queries(train, seed=1):
        q = q[:overlap]  # exact up to the overlap
        ms, where = index.matching_statistics(index.vocab.encode(q))
        assert ms.tolist() == naive_ms(q, train)
        for i, (m, w) in enumerate(zip(ms.tolist(), where.tolist())):
            assert (w >= 0) == (m > 0) and train[w : w + m] == q[i : i + m]


def test_a_stretch_cut_by_a_chunk_end_is_extended(tmp_path):
    rng = np.random.default_rng(0)
    text = "".join(rng.choice(list("abcdefghij"), 2000))  # random: long stretches occur once
    index, train = make_index(tmp_path, text, chunk=500, overlap=40)
    q = train[440:700]  # 260 ids, across the chunk boundary at 500 and past the overlap (540)
    ms, where = index.matching_statistics(index.vocab.encode(q))
    assert ms[0] == 260 and where[0] == 440


def test_measure_reports_the_longest_stretch_and_the_window_share(tmp_path):
    index, train = make_index(tmp_path, corpus_text("abcdefg", 4000, seed=3), val=0.2)
    for q in queries(train, seed=2):
        ms = naive_ms(q, train)
        r = index.measure(q)
        windows = max(0, len(q) - WINDOW + 1)
        assert (r.length, r.longest, r.windows) == (len(q), max(ms), windows)
        assert r.copied == sum(m >= WINDOW for m in ms[:windows])
        assert r.stretch == q[ms.index(max(ms)) :][: max(ms)] == q[r.at : r.at + r.longest]
        assert train[r.source : r.source + r.longest] == r.stretch
        assert r.share == (r.copied / windows if windows else None)


def test_the_index_is_cached_beside_the_corpus_and_covers_the_train_split(tmp_path):
    text = corpus_text("abcdefg", 4000, seed=4)
    index, train = make_index(tmp_path, text, val=0.25)
    assert index.built_now and index.sa_path.parent == index.ids_path.parent
    assert json.loads(index.meta_path.read_text())["n"] == len(train) == 3000
    again, _ = make_index(tmp_path, text, val=0.25)
    assert not again.built_now
    held_out = text[3000:3400]
    assert again.measure(held_out).longest == max(naive_ms(held_out, train)) < len(held_out)


def write_run(folder: Path, text_path: Path | None, text: str, val: float = 0.1) -> Path:
    model, vocab = tiny_model("gru", layers=1, hidden_size=16, text=text)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    meta = {"model": model.config.to_json(), "vocab": vocab.to_json()}
    if text_path is not None:
        meta["train"] = {"data": asdict(DataConfig(data=str(text_path), val_fraction=val))}
    save_checkpoint(folder / "best", model.state_dict(), meta)
    return folder


def test_index_for_run_reads_the_training_data_from_checkpoint_json(tmp_path):
    text = corpus_text("abcdefgh \n", 5000, seed=5)
    (tmp_path / "t.txt").write_text(text)
    run = write_run(tmp_path / "run", tmp_path / "t.txt", text, val=0.2)
    meta = json.loads((run / "best" / "checkpoint.json").read_text())
    index = index_for_run(meta)
    assert index.n == 4000
    with pytest.raises(CharRNNError, match="does not record its training data; give it with --novelty-data"):
        index_for_run({k: v for k, v in meta.items() if k != "train"})
    with pytest.raises(CharRNNError, match="cannot read the training text .*no such file"):
        index_for_run(meta, data=str(tmp_path / "gone.txt"))


def test_cli_novelty(tmp_path, capsys):
    text = corpus_text("abcdefgh \n", 5000, seed=6)
    (tmp_path / "t.txt").write_text(text)
    run = write_run(tmp_path / "run", tmp_path / "t.txt", text)
    args = ["sample", str(run), "--prime", "ab", "--length", "300", "--seed", "4", "--temperature", "0.5"]
    assert main([*args, "--num-samples", "2", "--novelty"]) == 0
    err = capsys.readouterr().err.splitlines()
    config = SampleConfig(prime="ab", length=300, seed=4, temperature=0.5, num_samples=2)
    model_texts = sample(*tiny_model_from(run), config)
    train = text[:4500]
    for i, t in enumerate(model_texts):
        gen = t[2:]  # the prime is not measured
        ms = naive_ms(gen, train)
        at, windows = ms.index(max(ms)), len(gen) - WINDOW + 1
        copied = sum(m >= WINDOW for m in ms[:windows])
        want = Novelty(len(gen), max(ms), at, -1, gen[at : at + max(ms)], windows, copied)
        assert f"novelty of sample {i + 1}: {want.line()}" in err
    assert any("indexing 4,500 training characters" in line for line in err)
    assert main([*args, "--novelty", "--novelty-data", str(tmp_path / "gone.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--novelty-data" in err


def tiny_model_from(run: Path):
    from charrnn.load import load_model

    model, vocab, _ = load_model(run)
    return model, vocab


def test_items_seen_is_set_membership(tmp_path):
    items = ["Smith", "Jones", "Ünal", "", "O'Brien", "Smith"]
    built = ItemSet.build(iter(items), batch=2)
    queries = ["Smith", "smith", "Ünal", "Unal", "", "Jones ", "O'Brien", "Zed"]
    assert built.items_seen(queries) == [q in set(items) for q in queries]
    calls = []
    path = tmp_path / "items.npy"
    first = ItemSet.cached(path, lambda: calls.append(1) or items)
    second = ItemSet.cached(path, lambda: calls.append(1) or items)
    assert calls == [1] and second.items_seen(queries) == first.items_seen(queries)
    assert ItemSet.build([]).items_seen(["a"]) == [False]
