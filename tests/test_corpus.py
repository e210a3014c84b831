import numpy as np
import pytest

from charrnn.data import corpus as data_mod
from charrnn.data.corpus import DataConfig, load_corpus, resolve_files
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError


def test_bundled_corpus_is_tiny_shakespeare():
    c = load_corpus(DataConfig())
    assert len(c.ids) == 1_115_394 and c.vocab.size == 65 and c.ids.dtype == np.uint8
    assert isinstance(c.ids, np.memmap)
    train, val, test = c.split(0.1)
    assert len(val) == 111_539 and len(train) + len(val) == len(c.ids) and len(test) == 0


def test_folder_is_read_recursively_in_sorted_order_and_glob_works(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("two ")
    (tmp_path / "a.txt").write_text("one ")
    (tmp_path / "c.md").write_text("three")
    (tmp_path / ".hidden").write_text("never")
    (tmp_path / "image.bin").write_bytes(b"\x00\x01binary")
    c = load_corpus(DataConfig(data=str(tmp_path)))
    assert c.vocab.decode(c.ids) == "one two three"
    assert [p.name for p in resolve_files(str(tmp_path / "**" / "*.txt"))] == ["a.txt", "2.txt"]


def test_encoding_in_chunks_matches_a_plain_encode(tmp_path, monkeypatch):
    # Tiny chunks split multi-byte characters across chunk boundaries.
    monkeypatch.setattr(data_mod, "CHUNK_BYTES", 7)
    text = "ascii only part. " * 3 + "ünïcödé 世界 🙂 mixed\n" * 5
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    c = load_corpus(DataConfig(data=str(tmp_path / "t.txt")))
    v = Vocab.from_chars(text)
    assert c.vocab == v
    assert np.array_equal(np.asarray(c.ids), v.encode(text))


def test_cache_is_reused(tmp_path):
    (tmp_path / "t.txt").write_text("hello world\n" * 10)
    a = load_corpus(DataConfig(data=str(tmp_path / "t.txt")))
    b = load_corpus(DataConfig(data=str(tmp_path / "t.txt")))
    assert a.ids.filename == b.ids.filename


def test_non_utf8_names_file_and_offset(tmp_path, monkeypatch):
    monkeypatch.setattr(data_mod, "CHUNK_BYTES", 4)
    p = tmp_path / "bad.txt"
    p.write_bytes("héllo wor".encode() + b"\xff rest")
    with pytest.raises(CharRNNError, match=r"bad.txt is not valid UTF-8 \(byte offset 10\).*--encoding bytes"):
        load_corpus(DataConfig(data=str(p)))
    c = load_corpus(DataConfig(data=str(p), encoding="bytes"))
    assert c.vocab.size == 256 and bytes(np.asarray(c.ids)) == p.read_bytes()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "nope.txt", "no such file or folder"),
        (lambda d: (d / "empty.txt").write_text("") * 0 or d / "empty.txt", "is empty"),
        (lambda d: (d / "sub").mkdir() or d / "sub", "no text files found"),
    ],
)
def test_bad_paths(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CharRNNError, match=message):
        load_corpus(DataConfig(data=str(path)))
