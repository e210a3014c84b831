"""NumpyStepper against PyTorch, and the allocation-free sampling loop against the plain one.

References: CharRNN.forward over the whole sequence and TorchStepper (logits),
`sample_next` (the sampling rules, draw for draw), and `reference_generate` below,
the generate loop as it was before it was made incremental (texts, streamed chunks).
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.sampling.draw import Sampler, sample_next
from charrnn.sampling.generate import SampleConfig, TorchStepper, generate, pick_stepper, prime_ids, sample
from charrnn.sampling.numpy_stepper import NumpyStepper

VOCAB = Vocab.from_chars("abcde fgh\nij.,ABC!?")  # V = 19


def assert_close(got, want):
    """Float32 rounding: 1e-5 relative to the largest logit (they reach ~20 with these weights)."""
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, np.abs(want).max()))


def make_model(cell="lstm", layers=2, hidden=24, embedding=8, tie=False, V=VOCAB.size, seed=0) -> CharRNN:
    torch.manual_seed(seed)
    model = CharRNN(
        ModelConfig(
            vocab_size=V, cell=cell, layers=layers, hidden_size=hidden, embedding_size=embedding, tie_weights=tie
        )
    )
    with torch.no_grad():  # larger than the default init, so that gates saturate and a wrong equation shows
        for p in model.parameters():
            p.mul_(3.0)
    return model.eval()


# -- logits ---------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("embedding,tie", [(0, False), (8, False), (24, True)])
@pytest.mark.parametrize("B", [1, 4])
def test_logits_match_forward_and_torch_stepper(cell, layers, embedding, tie, B):
    model = make_model(cell, layers, embedding=embedding, tie=tie)
    rng = np.random.default_rng(1)
    P, T = 5, 12
    ids = rng.integers(0, VOCAB.size, (B, P + T))
    with torch.no_grad():
        full, _ = model(torch.from_numpy(ids))  # (B, P + T, V): the reference
    fast, ref = NumpyStepper(model), TorchStepper(model)
    got = [fast.prime(ids[:, :P]).copy()]
    want = [ref.prime(ids[:, :P])]
    for t in range(P, P + T):
        got.append(fast.step(ids[:, t]).copy())
        want.append(ref.step(ids[:, t]))
    got, want = np.stack(got, 1), np.stack(want, 1)
    assert_close(got, full[:, P - 1 :].numpy())
    assert_close(got, want)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_prime_again_resets_state_and_resizes(cell):
    """A second prime (new sample, other batch size) starts from the zero state."""
    model = make_model(cell)
    fast = NumpyStepper(model)
    for B, P in [(3, 7), (1, 1), (3, 2)]:
        ids = np.random.default_rng(B * P).integers(0, VOCAB.size, (B, P))
        with torch.no_grad():
            want = model(torch.from_numpy(ids))[0][:, -1].numpy()
        assert_close(fast.prime(ids), want)
        x = ids[:, 0].copy()
        with torch.no_grad():
            want = model(torch.from_numpy(np.concatenate([ids, x[:, None]], 1)))[0][:, -1].numpy()
        assert_close(fast.step(x), want)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("B", [1, 4])
def test_step_allocates_nothing(cell, B):
    model = make_model(cell, hidden=256)  # any (H, B) float32 temporary would be >= 1 KiB
    fast = NumpyStepper(model)
    fast.prime(np.zeros((B, 3), np.int64))
    x = np.arange(B, dtype=np.int64)
    fast.step(x)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(50):
            fast.step(x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 1024, f"step() allocated {peak} bytes at its peak"


def test_pick_stepper():
    model = make_model()
    assert isinstance(pick_stepper(model), NumpyStepper)
    assert isinstance(pick_stepper(make_model().double()), TorchStepper)


# -- sampling rules ---------------------------------------------------------------------

OPTIONS = [
    dict(temperature=0.0),
    dict(temperature=1.0),
    dict(temperature=0.6),
    dict(temperature=1.3, top_k=4),
    dict(temperature=1.0, top_p=0.7),
    dict(temperature=0.8, top_k=6, top_p=0.9),
]


@pytest.mark.parametrize("opts", OPTIONS)
@pytest.mark.parametrize("B", [1, 5])
def test_sampler_matches_sample_next_draw_for_draw(opts, B):
    config = SampleConfig(**opts)
    V = 30
    logits = np.random.default_rng(3).normal(0, 3, (200, B, V))
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    sampler = Sampler(B, V, config, ours)
    for x in logits:
        want = sample_next(x, config.temperature, config.top_k, config.top_p, theirs)
        np.testing.assert_array_equal(sampler(x), want)


# -- the generate loop ---------------------------------------------------------------------


def reference_generate(stepper, vocab, config, on_text=None):
    """generate() as it was: whole-text stop search, sample_next, per-row decoders."""
    rng = np.random.default_rng(config.seed)
    B = config.num_samples
    ids, shown = prime_ids(vocab, config.prime, config.unknown)
    decoders = [vocab.decoder() for _ in range(B)]
    texts = [vocab.decode(ids) if shown else "" for _ in range(B)]
    start = len(texts[0])
    done = np.zeros(B, dtype=bool)
    streamed = 0
    if on_text is not None and texts[0]:
        on_text(texts[0])
        streamed = len(texts[0])
    logits = stepper.prime(np.tile(ids, (B, 1)))
    for t in range(config.length):
        nxt = sample_next(logits, config.temperature, config.top_k, config.top_p, rng)
        for b in np.flatnonzero(~done):
            texts[b] += decoders[b].decode(nxt[b : b + 1])
            if config.stop and config.stop in texts[b][start:]:
                texts[b] = texts[b][: texts[b].index(config.stop, start)]
                done[b] = True
        if on_text is not None:
            hold = 0 if done[0] or not config.stop else len(config.stop) - 1
            upto = max(streamed, len(texts[0]) - hold)
            if upto > streamed:
                on_text(texts[0][streamed:upto])
                streamed = upto
        if done.all() or t == config.length - 1:
            break
        logits = stepper.step(nxt.astype(np.int64))
    for b in np.flatnonzero(~done):
        texts[b] += decoders[b].flush()
    if on_text is not None and len(texts[0]) > streamed:
        on_text(texts[0][streamed:])
    return texts


class BigramStepper:
    """Logits from a fixed (V, V) table of the last id: cheap, and any text can come out."""

    def __init__(self, V, seed=0):
        self.table = np.random.default_rng(seed).normal(0, 2, (V, V))

    def prime(self, ids):
        return self.table[ids[:, -1]]

    def step(self, ids):
        return self.table[ids]


CASES = [
    (VOCAB, dict(length=300, seed=1)),  # no stop string: generate's plain path, as the next two
    (VOCAB, dict(length=250, seed=10, num_samples=5, prime="AB", temperature=0.8, top_p=0.9)),
    (VOCAB, dict(length=1, seed=12, num_samples=2)),
    (VOCAB, dict(length=300, seed=2, stop="a")),
    (VOCAB, dict(length=400, seed=3, stop="e f", prime="hi", num_samples=4)),
    (VOCAB, dict(length=200, seed=4, stop="zz", temperature=0.7, top_k=5)),  # stop not in vocab: never stops
    (VOCAB, dict(length=200, seed=5, stop="ab", top_p=0.8, num_samples=3, prime="ABC")),
    (VOCAB, dict(length=50, seed=6, temperature=0.0, stop="\n\n")),
    (VOCAB, dict(length=0, seed=7, prime="ab")),
    (Vocab.bytes_vocab(), dict(length=300, seed=8, stop="\ufffd")),
    (Vocab.bytes_vocab(), dict(length=300, seed=9, stop="A", num_samples=2, prime="é")),
]


@pytest.mark.parametrize("vocab,opts", CASES)
def test_generate_matches_reference_loop(vocab, opts):
    config = SampleConfig(**opts)
    chunks, ref_chunks = [], []
    got = generate(BigramStepper(vocab.size), vocab, config, chunks.append)
    want = reference_generate(BigramStepper(vocab.size), vocab, config, ref_chunks.append)
    assert got == want
    assert chunks == ref_chunks  # the same pieces, streamed at the same moments


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("opts", OPTIONS + [dict(num_samples=3, stop=" ", prime="ab")])
def test_same_seed_same_text_for_both_steppers(cell, opts):
    model = make_model(cell)
    config = SampleConfig(length=120, seed=11, **opts)
    fast = sample(model, VOCAB, config)  # picks NumpyStepper
    ref = sample(model, VOCAB, config, stepper=TorchStepper(model))
    assert fast == ref


def test_options_behave():
    model = make_model("gru")
    greedy = sample(model, VOCAB, SampleConfig(length=40, temperature=0.0, prime="ab"))[0]
    assert greedy.startswith("ab")
    assert sample(model, VOCAB, SampleConfig(length=40, top_k=1, prime="ab", seed=3))[0] == greedy  # top-k 1 is greedy
    assert sample(model, VOCAB, SampleConfig(length=40, top_p=1e-9, prime="ab", seed=4))[0] == greedy
    a = sample(model, VOCAB, SampleConfig(length=60, seed=5))[0]
    assert a == sample(model, VOCAB, SampleConfig(length=60, seed=5))[0] and len(a) == 60
    stop = a[30:32]  # a string that this seed writes, so the sample must end before it
    cut = sample(model, VOCAB, SampleConfig(length=60, seed=5, stop=stop))[0]
    assert cut == a[: a.index(stop)]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 3])
def test_benchmark_flop_count_matches_the_stepper_matrices(cell, layers):
    """benchmarks/sample_speed.py's arithmetic ceiling counts 2 FLOPs per weight that a
    step multiplies: the same total as the matrices NumpyStepper actually multiplies."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "benchmarks" / "sample_speed.py"
    spec = importlib.util.spec_from_file_location("sample_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    s = NumpyStepper(make_model(cell, layers=layers, hidden=24, V=bench.V))
    weights = [s.w_hh[0], s.w_head_t, *s.w_xh[1:]]
    assert bench.flops_per_char(cell, 24, layers) == 2 * sum(w.size for w in weights)
