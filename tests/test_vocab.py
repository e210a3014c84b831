import numpy as np
import pytest

from charrnn.data.vocab import Vocab, id_dtype
from charrnn.errors import CharRNNError


def test_round_trip_any_language():
    text = "Hello, 世界! Ünïcödé 🙂\n"
    v = Vocab.from_chars(text)
    assert v.size == len(set(text))
    assert list(v.chars) == sorted(set(text))
    assert v.decode(v.encode(text)) == text


def test_unknown_characters_error_lists_them_and_skip_drops_them():
    v = Vocab.from_chars("abc ")
    with pytest.raises(CharRNNError, match=r"'xz'.*--unknown skip"):
        v.encode("a x b z")
    assert v.decode(v.encode("a x b z", unknown="skip")) == "a  b "


def test_bytes_vocab_accepts_anything():
    v = Vocab.bytes_vocab()
    assert v.size == 256
    ids = v.encode("héllo")
    assert list(ids) == list("héllo".encode())
    assert v.decode(ids) == "héllo"


def test_stream_decoder_holds_back_partial_utf8_in_bytes_mode():
    v = Vocab.bytes_vocab()
    d = v.decoder()
    parts = [d.decode([b]) for b in "é!".encode()]
    assert parts == ["", "é", "!"]


def test_json_round_trip_and_dtypes():
    v = Vocab.from_chars("xyz")
    assert Vocab.from_json(v.to_json()) == v
    assert Vocab.from_json(Vocab.bytes_vocab().to_json()) == Vocab.bytes_vocab()
    assert id_dtype(256) == np.uint8 and id_dtype(257) == np.uint16 and id_dtype(70000) == np.uint32
