"""The NumPy reference engine against its references: the article's formulas, centred
finite differences, PyTorch's own nn.RNN/nn.LSTM/nn.GRU and charrnn's PyTorch engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.engines.model import CharRNN as TorchCharRNN
from charrnn.engines.model import ModelConfig as TorchModelConfig
from charrnn.engines.model import loss_fn
from charrnn.reference import GRU, LSTM, RNN, CharRNN, ModelConfig, from_state_dict, grad_check, to_state_dict
from charrnn.reference.cells import CELLS, sigmoid

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-6  # relative, in float64, as issue 3 asks


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


TORCH_FREE = [
    "charrnn.reference",
    "charrnn.reference.engine",
    "charrnn.engines.protocol",
    "charrnn.engines.config",
    "charrnn.data.layout",
    "charrnn.data.items",
    "charrnn.evaluation",
    "charrnn.tasks",
    "charrnn.training.trainer",
    "charrnn.training.build",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_import_does_not_import_torch(module):
    code = f"import {module}, sys; assert 'torch' not in sys.modules, 'torch was imported'"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_the_reference_engine_trains_without_torch(tmp_path):
    """With `import torch` made to fail, the NumPy engine still trains, validates and checkpoints."""
    (tmp_path / "t.txt").write_text("hello world, hello reference engine\n" * 40)
    code = f"""import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
from charrnn.data.corpus import DataConfig
from charrnn.engines.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train
r = train(TrainConfig(out={str(tmp_path / "run")!r}, data=DataConfig(data={str(tmp_path / "t.txt")!r}),
                      engine="reference", batch_size=4, seq_len=8, max_epochs=0, max_steps=6, eval_every=3,
                      model=ModelConfig(cell="gru", layers=1, hidden_size=8, embedding_size=4), quiet=True))
assert r.step == 6 and r.val_loss > 0, r
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CHARRNN_CACHE": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert (tmp_path / "run" / "best" / "model.safetensors").exists()


# -- the article's API ----------------------------------------------------------------


def test_rnn_step_is_the_articles_formula():
    rnn = RNN(3, 5, 2, rng=0)
    assert set(rnn.params()) == {"W_xh", "W_hh", "W_hy", "b_h", "b_y"}
    assert np.array_equal(rnn.h, np.zeros(5))
    h = np.zeros(5)
    for x in np.random.default_rng(1).standard_normal((4, 3)):
        y = rnn.step(x)
        h = np.tanh(rnn.W_hh @ h + rnn.W_xh @ x + rnn.b_h)
        np.testing.assert_allclose(rnn.h, h, rtol=1e-14)
        np.testing.assert_allclose(y, rnn.W_hy @ h + rnn.b_y, rtol=1e-14)


def test_stacking_feeds_one_rnns_output_to_the_next():
    rnn1, rnn2 = RNN(3, 4, 6, rng=0), RNN(6, 5, 2, rng=1)
    x = np.array([1.0, 0.0, 0.0])
    y = rnn2.step(rnn1.step(x))
    y1 = rnn1.W_hy @ np.tanh(rnn1.W_xh @ x + rnn1.b_h) + rnn1.b_y
    np.testing.assert_allclose(y, rnn2.W_hy @ np.tanh(rnn2.W_xh @ y1 + rnn2.b_h) + rnn2.b_y, rtol=1e-14)


@pytest.mark.parametrize("name", list(CELLS))
def test_step_matches_the_batched_forward(name):
    """The article's one-vector step and the batched forward compute the same states."""
    B, T, E, H, O = 3, 5, 4, 6, 2
    cell = CELLS[name](E, H, O, rng=0)
    X = np.random.default_rng(1).standard_normal((B, T, E))
    Hs, final, _ = cell.forward(X)
    for b in range(B):
        cell.reset()
        ys = [cell.step(X[b, t]) for t in range(T)]
        np.testing.assert_allclose(np.stack(ys), Hs[b] @ cell.W_hy.T + cell.b_y, rtol=1e-12)
        np.testing.assert_allclose(cell.h, final[0][b], rtol=1e-12)
    if name == "lstm":
        np.testing.assert_allclose(cell.c, final[1][-1], rtol=1e-12)


@pytest.mark.parametrize("name, torch_cell", [("rnn", nn.RNNCell), ("lstm", nn.LSTMCell), ("gru", nn.GRUCell)])
def test_step_matches_pytorch_cell(name, torch_cell):
    """The docstring equations, gate order and biases are PyTorch's."""
    E, H = 3, 4
    tc = torch_cell(E, H).double()
    cell = CELLS[name](E, H, 0)
    cell.W_xh, cell.W_hh = tc.weight_ih.detach().numpy(), tc.weight_hh.detach().numpy()
    b_ih, b_hh = tc.bias_ih.detach().numpy(), tc.bias_hh.detach().numpy()
    if name == "gru":
        cell.b_h, cell.b_hn = b_ih + np.r_[b_hh[: 2 * H], np.zeros(H)], b_hh[2 * H :]
    else:
        cell.b_h = b_ih + b_hh
    xs = torch.randn(4, E, dtype=torch.float64)
    state = None
    for x in xs:
        h = cell.step(x.numpy())
        state = tc(x[None], state)
        th = state[0] if name == "lstm" else state
        assert rel(h, th[0].detach().numpy()) < TOL


def test_sigmoid_is_stable_for_large_inputs():
    with np.errstate(all="raise"):
        np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


# -- gradients: centred finite differences --------------------------------------------


def small_batch(V: int, B: int = 2, T: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, V, (B, T)), rng.integers(0, V, (B, T))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradient_check(cell, layers):
    """Every parameter of every cell, 1 and 2 layers, with a non-zero initial state;
    the first layer's input is an embedding for 1 layer and 1-of-k for 2."""
    V = 5
    model = CharRNN(ModelConfig(V, cell, layers, hidden_size=4, embedding_size=3 if layers == 1 else 0), rng=1)
    x, y = small_batch(V)
    state = tuple(0.5 * np.random.default_rng(2).standard_normal(s.shape) for s in model.init_state(2))
    errors = grad_check(model, x, y, state)
    assert set(errors) == set(model.params())
    assert max(errors.values()) < TOL, errors


def test_gradient_check_catches_a_wrong_backward(monkeypatch):
    """The check must be able to fail: a GRU backward that forgets b_hn's path through r."""
    original = GRU.backward

    def broken(self, dHs, cache):
        dX, grads = original(self, dHs, cache)
        grads["b_hn"] = grads["b_hn"] * 1.01
        return dX, grads

    monkeypatch.setattr(GRU, "backward", broken)
    model = CharRNN(ModelConfig(5, "gru", 1, hidden_size=4, embedding_size=0), rng=1)
    errors = grad_check(model, *small_batch(5))
    assert errors["layers.0.b_hn"] > 1e-3
    assert errors["layers.0.W_hh"] < TOL


# -- agreement with PyTorch -----------------------------------------------------------


class TorchLM(nn.Module):
    """PyTorch's own modules, put together by hand: one-hot or nn.Embedding -> nn.RNN/LSTM/GRU -> nn.Linear."""

    def __init__(self, cell: str, V: int, E: int, H: int, L: int):
        super().__init__()
        self.V = V
        self.embedding = nn.Embedding(V, E) if E else None
        self.rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](E or V, H, L, batch_first=True)
        self.head = nn.Linear(H, V)

    def forward(self, x):
        inp = self.embedding(x) if self.embedding is not None else F.one_hot(x, self.V).double()
        return self.head(self.rnn(inp)[0])


def torch_grads_by_reference_name(named: dict[str, torch.Tensor], cell: str, L: int, H: int) -> dict[str, np.ndarray]:
    """PyTorch's parameter gradients under the reference engine's names. With b_h = bias_ih + bias_hh,
    both biases have b_h's gradient; the GRU's n block of bias_hh is b_hn's."""
    g = {k: v.grad.numpy() for k, v in named.items()}
    out = {f"layers.{L - 1}.W_hy": g["head.weight"], f"layers.{L - 1}.b_y": g["head.bias"]}
    if "embedding.weight" in g:
        out["embedding"] = g["embedding.weight"]
    for k in range(L):
        out[f"layers.{k}.W_xh"], out[f"layers.{k}.W_hh"] = g[f"rnn.weight_ih_l{k}"], g[f"rnn.weight_hh_l{k}"]
        out[f"layers.{k}.b_h"] = g[f"rnn.bias_ih_l{k}"]
        if cell == "gru":
            out[f"layers.{k}.b_hn"] = g[f"rnn.bias_hh_l{k}"][2 * H :]
            np.testing.assert_allclose(g[f"rnn.bias_hh_l{k}"][: 2 * H], g[f"rnn.bias_ih_l{k}"][: 2 * H], rtol=1e-12)
        else:
            np.testing.assert_allclose(g[f"rnn.bias_hh_l{k}"], g[f"rnn.bias_ih_l{k}"], rtol=1e-12)
    return out


def compare_with_torch(torch_model: nn.Module, config: ModelConfig, seed: int = 0) -> None:
    """Same weights in both: logits, loss and every gradient agree to TOL relative."""
    torch.manual_seed(seed)
    torch_model = torch_model.double()
    with torch.no_grad():  # wider than the default init, and distinct biases, so that every path matters
        for p in torch_model.parameters():
            p.uniform_(-0.6, 0.6)
    ref = from_state_dict(config, {k: v.detach().numpy() for k, v in torch_model.state_dict().items()})
    x, y = small_batch(config.vocab_size, B=3, T=7, seed=seed)
    logits = torch_model(torch.from_numpy(x))
    logits = logits[0] if isinstance(logits, tuple) else logits
    loss = loss_fn(logits, torch.from_numpy(y))
    loss.backward()
    ref_logits, _, _ = ref.forward(x)
    ref_loss, ref_grads, _ = ref.loss(x, y)
    assert rel(ref_logits, logits.detach().numpy()) < TOL
    assert abs(ref_loss - loss.item()) / loss.item() < TOL
    named = dict(torch_model.named_parameters())
    expected = torch_grads_by_reference_name(named, config.cell, config.layers, config.hidden_size)
    assert set(expected) == set(ref_grads)
    for name, g in expected.items():
        assert rel(ref_grads[name], g) < TOL, name


@pytest.mark.parametrize("embedding_size", [0, 3])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_agrees_with_pytorch_modules(cell, layers, embedding_size):
    V, H = 6, 5
    compare_with_torch(TorchLM(cell, V, embedding_size, H, layers), ModelConfig(V, cell, layers, H, embedding_size))


@pytest.mark.parametrize("embedding_size", [0, 3])
@pytest.mark.parametrize("cell", list(CELLS))
def test_agrees_with_charrnn_pytorch_engine(cell, embedding_size):
    V, H, L = 6, 5, 2
    tconfig = TorchModelConfig(vocab_size=V, cell=cell, layers=L, hidden_size=H, embedding_size=embedding_size)
    compare_with_torch(TorchCharRNN(tconfig), ModelConfig.from_json(tconfig.to_json()), seed=1)


@pytest.mark.parametrize("cell", list(CELLS))
def test_state_carries_across_batches_like_pytorch(cell):
    """Truncated BPTT: the final state of one batch starts the next one, in both engines."""
    tconfig = TorchModelConfig(vocab_size=6, cell=cell, layers=2, hidden_size=5, embedding_size=0)
    tm = TorchCharRNN(tconfig).double()
    ref = from_state_dict(ModelConfig.from_json(tconfig.to_json()), {k: v.numpy() for k, v in tm.state_dict().items()})
    x, _ = small_batch(6, B=2, T=10)
    t_state = r_state = None
    for chunk in (x[:, :4], x[:, 4:]):
        t_logits, t_state = tm(torch.from_numpy(chunk), t_state)
        r_logits, r_state, _ = ref.forward(chunk, r_state)
        assert rel(r_logits, t_logits.detach().numpy()) < TOL
    for a, b in zip(r_state, t_state):
        assert rel(a, b.detach().numpy()) < TOL


def test_state_dict_round_trip_keeps_the_torch_layout():
    model = CharRNN(ModelConfig(7, "gru", 2, 4, 0), rng=3)
    sd = to_state_dict(model)
    tm = TorchCharRNN(TorchModelConfig(**model.config.to_json()))
    assert set(sd) == set(tm.state_dict())
    assert all(sd[k].shape == tuple(v.shape) for k, v in tm.state_dict().items())
    back = from_state_dict(model.config, sd)
    for name, p in model.params().items():
        np.testing.assert_array_equal(back.params()[name], p)


def test_rejects_weights_that_do_not_fit():
    from charrnn.errors import CharRNNError

    sd = to_state_dict(CharRNN(ModelConfig(7, "lstm", 1, 4, 0), rng=0))
    with pytest.raises(CharRNNError, match="missing"):
        from_state_dict(ModelConfig(7, "lstm", 2, 4, 0), sd)
    with pytest.raises(CharRNNError, match="shape"):
        from_state_dict(ModelConfig(7, "lstm", 1, 5, 0), sd)
    for cls in (RNN, LSTM, GRU):
        with pytest.raises(CharRNNError, match="positive"):
            cls(0, 4)
