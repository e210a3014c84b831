"""CudaGraphStepper against TorchStepper. Runs only where CUDA is available
(scripts/gpu_check.sh runs it on a GPU machine; it passed on an H200, docs/gpu.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.sampling.cudagraph import CudaGraphStepper
from charrnn.sampling.generate import SampleConfig, TorchStepper, pick_stepper, sample

VOCAB = Vocab.from_chars("abcde fgh\nij.,ABC!?")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_model(cell, embedding):
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB.size, cell=cell, layers=2, hidden_size=32, embedding_size=embedding)
    return CharRNN(config).cuda().eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("embedding", [0, 8])
def test_logits_match_torch_stepper(cell, embedding):
    model = make_model(cell, embedding)
    graph, ref = CudaGraphStepper(model), TorchStepper(model)
    rng = np.random.default_rng(0)
    for B, P in [(1, 4), (3, 1), (3, 6)]:  # a new B captures again; a new prime resets the state
        ids = rng.integers(0, VOCAB.size, (B, P))
        np.testing.assert_allclose(graph.prime(ids), ref.prime(ids), rtol=1e-5, atol=1e-5)
        for _ in range(10):
            x = rng.integers(0, VOCAB.size, B)
            np.testing.assert_allclose(graph.step(x), ref.step(x), rtol=1e-5, atol=1e-5)


def test_same_seed_same_text():
    model = make_model("lstm", 8)
    config = SampleConfig(length=100, seed=3, num_samples=2, prime="ab", temperature=0.8)
    assert isinstance(pick_stepper(model), CudaGraphStepper)  # what sample() uses on CUDA
    assert sample(model, VOCAB, config) == sample(model, VOCAB, config, stepper=TorchStepper(model))


def test_reorder_matches_torch_stepper():
    """Beam search's reorder(rows): same rows, and a new row count (a new capture)."""
    model = make_model("lstm", 8)
    graph, ref = CudaGraphStepper(model), TorchStepper(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB.size, (3, 4))
    graph.prime(ids), ref.prime(ids)
    for rows in ([2, 0, 1], [1, 1, 0, 2], [3, 0]):
        graph.reorder(rows), ref.reorder(rows)
        x = rng.integers(0, VOCAB.size, len(rows))
        np.testing.assert_allclose(graph.step(x), ref.step(x), rtol=1e-5, atol=1e-5)


def test_beam_search_on_graphs_equals_torch_stepper():
    model = make_model("gru", 8)
    config = SampleConfig(length=60, prime="ab", beam=4, num_samples=2, stop="!")
    assert sample(model, VOCAB, config, stepper=CudaGraphStepper(model)) == sample(
        model, VOCAB, config, stepper=TorchStepper(model)
    )
