"""The reference engine's training side: optimizers against torch.optim, checkpoints in
both directions, the hello demo, training against the PyTorch engine, and the CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from charrnn import checkpoint as ckpt
from charrnn.cli import main
from charrnn.data.corpus import DataConfig, bundled_corpus, load_corpus
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN as TorchCharRNN
from charrnn.engines.model import ModelConfig as TorchModelConfig
from charrnn.engines.torch_engine import TorchEngine
from charrnn.evaluation import evaluate, score
from charrnn.load import load_model
from charrnn.reference import (
    CharRNN,
    ModelConfig,
    Stepper,
    clip_grad_norm,
    from_state_dict,
    load,
    make_optimizer,
    save,
    to_state_dict,
)
from charrnn.reference.engine import ReferenceEngine
from charrnn.reference.hello import hello
from charrnn.sampling.generate import SampleConfig, TorchStepper, generate
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import Trainer, train


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def text(tmp_path):
    path = tmp_path / "shakespeare.txt"
    path.write_text(bundled_corpus().read_text()[:30_000])
    return str(path)


# -- optimizers -----------------------------------------------------------------------


TORCH_OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "adagrad": lambda p: torch.optim.Adagrad(p, lr=0.1, weight_decay=0.01),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.95, weight_decay=0.01),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01),
}


@pytest.mark.parametrize("name", list(TORCH_OPTIMIZERS))
def test_optimizer_matches_torch_optim(name):
    rng = np.random.default_rng(0)
    params = {"W": rng.standard_normal((3, 4)), "b": rng.standard_normal(3)}
    tparams = [torch.tensor(v, requires_grad=True) for v in params.values()]
    topt = TORCH_OPTIMIZERS[name](tparams)
    group = topt.param_groups[0]
    opt = make_optimizer(name, group["lr"], momentum=group.get("momentum", 0.0), weight_decay=0.01)
    for _ in range(5):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        for t, g in zip(tparams, grads.values()):
            t.grad = torch.tensor(g)
        topt.step()
        opt.step(params, grads)
    for t, p in zip(tparams, params.values()):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(max_norm):
    rng = np.random.default_rng(1)
    grads = {"a": rng.standard_normal((4, 5)), "b": rng.standard_normal(7)}
    tensors = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads.values()]
    for t, g in zip(tensors, grads.values()):
        t.grad = torch.tensor(g)
    total = torch.nn.utils.clip_grad_norm_(tensors, max_norm)
    assert clip_grad_norm(grads, max_norm) == pytest.approx(total.item(), rel=1e-12)
    for t, g in zip(tensors, grads.values()):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-12)


# -- one checkpoint format ------------------------------------------------------------


VOCAB = Vocab.from_chars("abcdefg \n")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_reference_checkpoint_loads_into_pytorch(tmp_path, cell):
    model = CharRNN(ModelConfig(VOCAB.size, cell, 2, 8, 0), rng=0)
    save(tmp_path / "best", model, VOCAB, {"step": 3})
    tmodel, vocab, meta = load_model(tmp_path)
    assert vocab == VOCAB and meta["engine"] == "reference" and meta["step"] == 3
    x = np.random.default_rng(0).integers(0, VOCAB.size, (2, 9))
    logits, _, _ = model.forward(x)
    np.testing.assert_allclose(tmodel(torch.from_numpy(x))[0].detach().numpy(), logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_pytorch_checkpoint_gives_the_same_next_character_distribution(tmp_path, cell):
    torch.manual_seed(0)
    tconfig = TorchModelConfig(vocab_size=VOCAB.size, cell=cell, layers=2, hidden_size=8, embedding_size=4)
    tmodel = TorchCharRNN(tconfig)
    meta = {"engine": "torch", "model": tconfig.to_json(), "vocab": VOCAB.to_json()}
    ckpt.save_checkpoint(tmp_path / "best", tmodel.state_dict(), meta)
    model, vocab, _ = load(tmp_path)
    prime = vocab.encode("bad cafe\nface")[None]
    ours, theirs = Stepper(model), TorchStepper(tmodel)
    p, q = ours.prime(prime), theirs.prime(prime)
    for nxt in vocab.encode("dead"):  # and step by step after the prime
        np.testing.assert_allclose(softmax(p), softmax(q), rtol=1e-5, atol=1e-7)
        p, q = ours.step(np.array([nxt])), theirs.step(np.array([nxt]))
    config = SampleConfig(prime="cab", length=40, temperature=0, seed=0)
    assert generate(Stepper(model), vocab, config) == generate(TorchStepper(tmodel), vocab, config)


def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- the hello demo -------------------------------------------------------------------


def test_hello_learns_ello_and_needs_the_state():
    result = hello()
    assert result.predicted(result.before) != "ello"
    assert result.predicted(result.after) == "ello"
    assert result.losses[-1] < 0.1 < result.losses[0]
    # Steps 3 and 4 get the same input, "l", yet predict "l" then "o".
    l, o = "helo".index("l"), "helo".index("o")
    assert result.after[2].argmax() == l and result.after[3].argmax() == o


def test_hello_command_prints_scores_before_and_after(capsys):
    assert main(["hello"]) == 0
    out = capsys.readouterr().out
    assert "before training" in out and "After training" in out and 'It predicts "ello"' in out
    assert out.count("'l'     'o'") == 2  # step 4's row, once in each table


# -- training against the PyTorch engine ----------------------------------------------


def small_config(out, text, engine="torch", cell="rnn", optimizer="adam", **kw):
    model = TorchModelConfig(cell=cell, layers=1, hidden_size=16, embedding_size=0)
    kw = {"batch_size": 4, "seq_len": 8, "lr": 1e-2, "max_epochs": 0, "log_every": 5, **kw}
    return TrainConfig(
        out=str(out),
        data=DataConfig(data=text),
        model=model,
        optimizer=optimizer,
        device="cpu",
        quiet=True,
        engine=engine,
        precision="fp32",  # the engines agree to float32 rounding; auto would be bf16 on AMX
        **kw,
    )


def train_losses(out) -> list[float]:
    return [r["train_loss"] for r in map(json.loads, open(out / "metrics.jsonl")) if "train_loss" in r]


def one_bias_like_the_reference(trainer: Trainer) -> None:
    """Give the PyTorch model the reference engine's parametrisation. PyTorch trains two bias
    vectors whose sum is the bias, so its updates move that sum by two steps (and its
    gradient counts twice in the clipping norm); the article's cell has one b_h. With
    bias_hh at zero and frozen (the GRU's n block excepted: that is b_hn), the two
    engines train the same model."""
    H, model = trainer.config.model.hidden_size, trainer.engine.model
    for name, p in model.rnn.named_parameters():
        if name.startswith("bias_hh"):
            mask = torch.zeros_like(p)
            if trainer.config.model.cell == "gru":
                mask[2 * H :] = 1.0
            with torch.no_grad():
                model.rnn.get_parameter(name.replace("bias_hh", "bias_ih")).add_(p * (1 - mask))
                p.mul_(mask)
            p.register_hook(lambda g, mask=mask: g * mask)


@pytest.mark.parametrize(
    "cell, optimizer", [("rnn", "sgd"), ("rnn", "adagrad"), ("rnn", "rmsprop"), ("lstm", "adam"), ("gru", "adam")]
)
def test_same_weights_train_step_for_step_like_pytorch(tmp_path, text, cell, optimizer):
    """From the same initial weights, the whole loop (TBPTT state, clipping, schedule,
    update) gives the PyTorch engine's losses, up to float32 rounding."""
    kw = dict(
        cell=cell, optimizer=optimizer, max_steps=30, eval_every=30, lr_schedule="cosine", warmup_steps=5, grad_clip=0.5
    )
    torch_trainer, _ = build_trainer(small_config(tmp_path / "torch", text, **kw))
    one_bias_like_the_reference(torch_trainer)
    ref_trainer, _ = build_trainer(small_config(tmp_path / "ref", text, engine="reference", **kw))
    assert isinstance(ref_trainer.engine, ReferenceEngine) and isinstance(torch_trainer.engine, TorchEngine)
    ref_trainer.engine.load_weights(torch_trainer.engine.weights())
    torch_trainer.run()
    ref_trainer.run()
    np.testing.assert_allclose(train_losses(tmp_path / "ref"), train_losses(tmp_path / "torch"), rtol=1e-5)
    ref, _, _ = load(tmp_path / "ref", "last")
    torch_weights = torch_trainer.engine.weights()
    for name, value in to_state_dict(ref).items():
        np.testing.assert_allclose(value, torch_weights[name], rtol=1e-3, atol=1e-5)


def test_loss_curve_falls_as_the_pytorch_engines_does(tmp_path, text):
    """Same config and seed (different initial draws): both fall, and stay close."""
    curves = {}
    for engine in ("torch", "reference"):
        config = small_config(
            tmp_path / engine, text, engine, max_steps=80, eval_every=80, log_every=10, batch_size=16, seq_len=32
        )
        config.model.hidden_size = 64
        train(config)
        curves[engine] = np.array(train_losses(tmp_path / engine))
    for curve in curves.values():
        assert curve[0] > math.log(60) - 0.7 and curve[-1] < curve[0] - 0.8
    assert np.abs(curves["reference"] - curves["torch"]).max() < 0.3, curves


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("n", [393, 400, 401])
def test_both_engines_score_the_same_weights_alike(cell, n):
    """One scorer (evaluation.score) over both engines: in float64, the same weights give the
    same summed loss and count at lengths that leave characters over (393, 401) and not (400)."""
    torch.manual_seed(0)
    tmodel = TorchCharRNN(
        TorchModelConfig(vocab_size=VOCAB.size, cell=cell, layers=2, hidden_size=8, embedding_size=4)
    ).double()
    ref = from_state_dict(
        ModelConfig(VOCAB.size, cell, 2, 8, 4), {k: v.numpy() for k, v in tmodel.state_dict().items()}
    )
    ids = VOCAB.encode(("bad cafe\nfed a dace\n" * 30)[:n])
    t_total, t_n = score(TorchEngine(tmodel), ids, 8, 16)
    r_total, r_n = score(ReferenceEngine(ref), ids, 8, 16)
    assert t_n == r_n == n - 1
    assert r_total == pytest.approx(t_total, rel=1e-10)


# -- the command line -----------------------------------------------------------------


def test_cli_train_reference_then_sample_and_eval(tmp_path, text, capsys):
    run = tmp_path / "run"
    flags = [
        "--engine",
        "reference",
        "--data",
        text,
        "--out",
        str(run),
        "--cell",
        "rnn",
        "--layers",
        "1",
        "--hidden-size",
        "32",
        "--embedding-size",
        "0",
        "--batch-size",
        "8",
        "--seq-len",
        "16",
        "--max-steps",
        "30",
        "--eval-every",
        "15",
        "--optimizer",
        "rmsprop",
        "--quiet",
    ]
    assert main(["train", *flags]) == 0
    meta = ckpt.read_meta(ckpt.resolve(run, "last"))
    assert meta["engine"] == "reference" and meta["step"] == 30 and meta["train"]["engine"] == "reference"
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in records if "val_loss" in r] == [15, 30]
    capsys.readouterr()
    assert main(["sample", str(run), "--length", "60", "--seed", "1", "--prime", "ROMEO:"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ROMEO:") and len(out) > 60
    assert main(["eval", str(run), "--data", text]) == 0
    assert "bpc" in capsys.readouterr().out
    # The validation loss the reference engine recorded is what the PyTorch engine scores
    # on the same split with the saved weights (float32 on both sides here).
    model, vocab, best = load_model(run)
    val = load_corpus(DataConfig(data=text), vocab).split(0.1)[1]
    assert evaluate(TorchEngine(model), val, 8, 16)[0] == pytest.approx(best["metrics"]["val_loss"], rel=1e-5)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--optimizer", "adamw"], "no --optimizer adamw"),
        (["--dropout", "0.2"], "no dropout"),
        (["--weight-drop", "0.2"], "weight drop"),
        (["--device", "cuda"], "CPU"),
    ],
)
def test_cli_rejects_what_the_reference_engine_lacks(tmp_path, text, capsys, flags, message):
    base = ["train", "--engine", "reference", "--data", text, "--out", str(tmp_path / "run"), "--max-steps", "1"]
    assert main(base + flags) == 2
    assert message in capsys.readouterr().err
