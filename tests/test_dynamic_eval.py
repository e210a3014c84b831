"""Dynamic evaluation (charrnn/dynamic_eval.py): each segment is scored before the model learns
from it; lr 0 is the static score exactly; the update is SGD plus the pull back to the trained
weights, checked against a hand computation and against the NumPy engine; it helps on text that
repeats; the checkpoint on disk is never written; bad flags get one line."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from charrnn.checkpoint import save_checkpoint
from charrnn.cli import main
from charrnn.data.layout import Streams
from charrnn.data.vocab import Vocab
from charrnn.dynamic_eval import adapting_engine, dynamic_score, static_and_dynamic
from charrnn.engines.model import CharRNN, ModelConfig, loss_fn
from charrnn.engines.torch_engine import TorchEngine
from charrnn.errors import CharRNNError
from charrnn.evaluation import EvalConfig, eval_run, score
from charrnn.reference import ModelConfig as ReferenceConfig
from charrnn.reference import from_state_dict, make_optimizer
from charrnn.reference.engine import ReferenceEngine

ENGLISH = "the cat sat on the mat. a dog ran to the cat, and the cat ran off.\n" * 40
VOCAB = Vocab.from_chars(ENGLISH)


def tiny(cell: str = "lstm", seed: int = 0, hidden_size: int = 16, vocab: Vocab = VOCAB) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(vocab_size=vocab.size, cell=cell, hidden_size=hidden_size, embedding_size=8)).eval()


def random_text(n: int, seed: int = 0) -> str:
    """Letters drawn at random from the vocabulary: nothing a model trained on ENGLISH can predict."""
    return "".join(np.random.default_rng(seed).choice(list("acdefghmnorst"), n))


class Spy:
    """An engine that records each call (name, x, incoming state) before passing it on."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    def loss_sum(self, x, y, state):
        self.calls.append(("loss_sum", x.copy(), state))
        return self.engine.loss_sum(x, y, state)

    def train_step(self, x, y, state, lr):
        self.calls.append(("train_step", x.copy(), state))
        return self.engine.train_step(x, y, state, lr)


def test_each_segment_is_scored_before_the_model_learns_it():
    model, ids = tiny(), VOCAB.encode(ENGLISH[:101])  # 100 scored characters: segments of 16 and a last of 4
    spy = Spy(adapting_engine(model, decay=0.01))
    result = dynamic_score(spy, ids, seq_len=16, lr=0.5)
    names = [name for name, _, _ in spy.calls]
    assert names == ["loss_sum", "train_step"] * 6 + ["loss_sum"]  # the last segment teaches nothing
    for (_, x_scored, s_scored), (_, x_learned, s_learned) in zip(spy.calls[::2], spy.calls[1::2]):
        assert np.array_equal(x_scored, x_learned) and s_scored is s_learned  # the same chunk, the same start
    assert result.count == 100 and len(result.segments) == 7
    # The first segment's loss is the untouched model's, exactly; the second is not (the model learned).
    streams, static = Streams.for_scoring(ids, 1, 16), TorchEngine(model)
    first, state = static.loss_sum(*streams.chunk(0), None)
    second, _ = static.loss_sum(*streams.chunk(1), state)
    assert result.segments[0] == first and result.segments[1] != second
    assert result.total == pytest.approx(sum(result.segments), rel=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_lr_zero_is_the_static_score_exactly(cell):
    model, ids = tiny(cell), VOCAB.encode(ENGLISH[:333])
    static, n = score(TorchEngine(model), ids, 1, 16)
    dynamic = dynamic_score(adapting_engine(model, decay=0.3), ids, 16, lr=0.0)
    assert (dynamic.total, dynamic.count) == (static, n)


def test_the_update_is_sgd_plus_the_pull_back_to_the_trained_weights():
    """theta_i = theta_{i-1} - lr * grad(theta_{i-1}) + decay * (theta_0 - theta_{i-1}), by hand in float64."""
    model, lr, decay = tiny("gru").double(), 0.7, 0.25
    engine = adapting_engine(model, decay)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    chunks = [VOCAB.encode(ENGLISH[i : i + 13]) for i in (0, 20)]
    expected = {k: v.clone() for k, v in theta0.items()}
    for c in chunks:
        x, y = c[None, :-1], c[None, 1:]
        engine.train_step(x, y, None, lr)
        by_hand = tiny("gru").double()  # the same architecture, at the expected weights
        by_hand.load_state_dict(expected)
        loss_fn(by_hand(torch.from_numpy(x))[0], torch.from_numpy(y)).backward()
        grads = dict(by_hand.named_parameters())
        expected = {k: v - lr * grads[k].grad + decay * (theta0[k] - v) for k, v in expected.items()}
    for k, v in engine.model.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-12, atol=1e-12)
    for k, v in model.state_dict().items():
        assert torch.equal(v, theta0[k])  # the model handed in is left as it was


def test_the_numpy_engine_adapts_alike():
    """The loop is engine-agnostic: the NumPy reference engine with plain SGD gives the same segment
    losses as the PyTorch engine without decay (float64). PyTorch's RNN has two biases whose sum is
    the article's one: bias_hh is set to zero and frozen so that both train the same parameters."""
    model = tiny("rnn").double()
    ids = VOCAB.encode(ENGLISH[:200])
    reference = from_state_dict(
        ReferenceConfig(VOCAB.size, "rnn", 2, 16, 8), {k: v.numpy() for k, v in model.state_dict().items()}
    )
    torch_engine = adapting_engine(model, decay=0.0)
    for name, p in torch_engine.model.rnn.named_parameters():
        if name.startswith("bias_hh"):
            with torch.no_grad():
                torch_engine.model.rnn.get_parameter(name.replace("bias_hh", "bias_ih")).add_(p)
                p.zero_()
            p.requires_grad_(False)
    ours = dynamic_score(torch_engine, ids, 16, lr=0.5)
    theirs = dynamic_score(ReferenceEngine(reference, make_optimizer("sgd", 0.5, momentum=0.0)), ids, 16, lr=0.5)
    assert ours.segments[0] == pytest.approx(theirs.segments[0], rel=1e-10)
    np.testing.assert_allclose(ours.segments, theirs.segments, rtol=1e-9)
    assert ours.segments[-1] < theirs.segments[-1] + 1e-6 and ours.total != score(TorchEngine(model), ids, 1, 16)[0]


def trained_briefly(text: str, steps: int = 150) -> CharRNN:
    """A tiny LSTM after `steps` Adam steps on `text`: it knows the text's words, not much more."""
    model = tiny(hidden_size=32)
    engine = TorchEngine(model, optimizer=torch.optim.Adam(model.parameters(), lr=0.01), grad_clip=5.0)
    streams, state = Streams.for_training(VOCAB.encode(text), 8, 32), None
    for i in range(steps):
        state = None if i % streams.num_chunks == 0 else state
        _, state = engine.train_step(*streams.chunk(i % streams.num_chunks), state, 0.01)
    return model.eval()


def test_dynamic_beats_static_where_the_text_repeats():
    """Text B is a random string twice over: unpredictable the first time, learnable the second."""
    model = trained_briefly(ENGLISH)
    half = random_text(400)
    ids = VOCAB.encode(half + half)
    static = score(TorchEngine(model), ids, 1, 20)[0] / (len(ids) - 1)
    dynamic = dynamic_score(adapting_engine(model, decay=0.0), ids, 20, lr=1.0)
    first, second = np.sum(dynamic.segments[:20]) / 400, np.sum(dynamic.segments[20:]) / 399
    assert dynamic.total / dynamic.count < static - 0.1, (dynamic.total / dynamic.count, static)
    assert second < first - 0.2, (first, second)  # the gain is on the repeat: the model learned the first half
    both = static_and_dynamic(model, ids, 20, 1.0, 0.0)
    assert both.static == pytest.approx(static, rel=1e-6) and both.dynamic == dynamic.total / dynamic.count


# -- eval_run and the command line -------------------------------------------------------


def save_run(folder, model: CharRNN, vocab: Vocab, train: dict | None = None):
    meta = {"engine": "torch", "model": model.config.to_json(), "vocab": vocab.to_json()}
    save_checkpoint(folder / "best", model.state_dict(), {**meta, **({"train": train} if train else {})})
    return folder


def digests(folder) -> dict:
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_eval_dynamic_prints_both_losses_and_leaves_the_checkpoint_unchanged(tmp_path, capsys):
    run = save_run(tmp_path / "run", trained_briefly(ENGLISH, steps=60), VOCAB)
    text = tmp_path / "held_out.txt"
    half = random_text(150, seed=1)
    text.write_text(half + half)
    before = digests(run)
    r = eval_run(str(run), EvalConfig(str(text), seq_len=20, dynamic=True, dynamic_lr=1.0))
    assert r.chars == 299 and r.static_loss - r.loss > 0.05 and math.isclose(r.bpc, r.loss / math.log(2))
    assert main(["eval", str(run), "--data", str(text), "--dynamic", "--seq-len", "20", "--dynamic-lr", "1"]) == 0
    out = capsys.readouterr().out
    assert f"loss        {r.loss:.4f} nats/char" in out and f"static      {r.static_loss:.4f} nats/char" in out
    assert digests(run) == before  # nothing written, nothing touched
    static = eval_run(str(run), EvalConfig(str(text), seq_len=20, batch_size=1))
    assert static.static_loss is None and static.loss == pytest.approx(r.static_loss, rel=1e-6)


def test_bad_dynamic_settings_get_one_line(tmp_path, capsys):
    run = save_run(tmp_path / "names", tiny(vocab=VOCAB.with_end()), VOCAB.with_end(), {"data": {"items": "lines"}})
    text = tmp_path / "names.txt"
    text.write_text("the cat\na dog\n")
    with pytest.raises(CharRNNError, match="--dynamic needs a model trained on one stream of text"):
        eval_run(str(run), EvalConfig(str(text), dynamic=True))
    for argv, message in [
        (["--dynamic"], "--dynamic needs a model trained on one stream of text; this one was trained on --items"),
        (["--dynamic-lr", "0.5"], "--dynamic-lr and --dynamic-decay set up dynamic evaluation: add --dynamic"),
        (["--dynamic-decay", "0.5"], "add --dynamic"),
        (["--dynamic", "--batch-size", "8"], "--dynamic reads the text as one stream"),
        (["--dynamic", "--dynamic-decay", "1.5"], "--dynamic-decay must be in (0, 1] (or 0 = off), got 1.5"),
        (["--dynamic", "--dynamic-lr", "-1"], "--dynamic-lr must be > 0 (or 0 = no adaptation"),
    ]:
        assert main(["eval", str(run), "--data", str(text), *argv]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    EvalConfig("x", dynamic=True, batch_size=1).check()  # one stream, said outright: allowed


def test_seq_len_defaults_to_short_segments_under_dynamic():
    assert EvalConfig("x").effective_seq_len == 256  # static: only speed and memory depend on it
    assert EvalConfig("x", dynamic=True).effective_seq_len == 32  # dynamic: one step per segment
    assert EvalConfig("x", dynamic=True, seq_len=8).effective_seq_len == 8
