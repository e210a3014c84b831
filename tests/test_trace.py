import math

import numpy as np
import pytest
import torch

from charrnn.data.vocab import Vocab
from charrnn.inspection.trace import Trace, position_labels, rank_neurons, text_features, trace
from viz_support import TEXT, naive_steps, tiny_model


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_trace_equals_step_by_step_and_whole_sequence(cell):
    model, vocab = tiny_model(cell)
    ids = vocab.encode(TEXT)
    tr = trace(model, ids)
    states, probs = naive_steps(model, ids)
    K = 2 if cell == "lstm" else 1
    assert tr.acts.shape == (K, 2, len(ids), 12)
    assert tr.kinds == (("hidden", "cell") if cell == "lstm" else ("hidden",))
    np.testing.assert_allclose(tr.acts, states, rtol=0, atol=1e-6)
    np.testing.assert_allclose(tr.probs, probs, rtol=0, atol=1e-9)
    # A second, independent reference: PyTorch's own whole-sequence pass.
    with torch.inference_mode():
        x = torch.from_numpy(ids)[None]
        top, _ = model.rnn(model.embed(x))  # (1, T, H): the last layer's hidden state
        logits, _ = model(x)
    np.testing.assert_allclose(tr.acts[0, -1], top[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(tr.probs, torch.softmax(logits[0].double(), -1).numpy(), atol=1e-5)


def test_surprisal_is_bits_of_the_character_that_came():
    model, vocab = tiny_model("gru")
    ids = vocab.encode("to be or")
    tr = trace(model, ids)
    assert math.isnan(tr.surprisal[0])  # nothing predicted the first character
    for t in range(1, len(ids)):
        assert tr.surprisal[t] == pytest.approx(-math.log2(tr.probs[t - 1, ids[t]]))
    # With a context, the first character is predicted too, and the rest is unchanged
    # in meaning: the context is read before the text.
    ctx = vocab.encode("\n")
    tr2 = trace(model, ids, context=ctx)
    _, probs = naive_steps(model, np.concatenate([ctx, ids]))
    assert tr2.surprisal[0] == pytest.approx(-math.log2(probs[0, ids[0]]))
    np.testing.assert_allclose(tr2.probs, probs[1:], atol=1e-9)


def test_text_features_by_hand():
    labels = list('a "b (c\n[d]) e"')  # 15 characters
    f = text_features(labels)
    assert f["in quotes"].tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert f["position in line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7]
    assert f["bracket depth"].tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 1, 0, 0, 0, 0]
    assert f["start of word"].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0]


def test_ranking_finds_a_planted_quote_neuron():
    labels = list(TEXT)
    T, H = len(labels), 6
    rng = np.random.default_rng(0)
    acts = rng.normal(0, 0.1, size=(2, 1, T, H)).astype(np.float32)
    acts[1, 0, :, 4] = text_features(labels)["in quotes"] * 0.8 - 0.4  # the cell state's neuron 4 tracks quotes
    tr = Trace(np.zeros(T, dtype=np.int64), ("hidden", "cell"), acts, np.zeros((T, 3)), None)
    scores = rank_neurons(tr, labels)
    assert np.unravel_index(scores["in quotes"].argmax(), scores["in quotes"].shape) == (1, 0, 4)
    assert scores["in quotes"][1, 0, 4] == pytest.approx(1.0)
    assert np.unravel_index(scores["variance"].argmax(), (2, 1, H)) == (1, 0, 4)
    assert scores["variance"][1, 0, 4] == pytest.approx(acts[1, 0, :, 4].astype(np.float64).var(), rel=1e-6)


def test_constant_feature_scores_zero():
    tr = Trace(np.zeros(4, dtype=np.int64), ("hidden",), np.ones((1, 1, 4, 2), np.float32), np.zeros((4, 3)), None)
    scores = rank_neurons(tr, list("abcd"))  # no quotes, no brackets, constant activations
    assert all(np.all(s == 0) for s in scores.values())


def test_position_labels_bytes_vocab_keeps_characters_whole():
    vocab = Vocab.bytes_vocab()
    ids = vocab.encode("é!")
    assert position_labels(vocab, ids) == ["", "é", "!"]
    assert position_labels(Vocab.from_chars("ab"), np.array([1, 0])) == ["b", "a"]
