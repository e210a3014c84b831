import pytest
import torch
import torch.nn as nn

from charrnn.engines.model import CharRNN, ModelConfig, loss_fn
from charrnn.errors import CharRNNError

CELLS = ["rnn", "lstm", "gru"]


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("embedding_size", [0, 8])
def test_step_equals_full_forward(cell, embedding_size):
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(vocab_size=11, cell=cell, layers=2, hidden_size=16, embedding_size=embedding_size)).eval()
    x = torch.randint(0, 11, (3, 9))
    full, full_state = m(x)
    state, steps = None, []
    for t in range(9):
        logits, state = m.step(x[:, t], state)
        steps.append(logits)
    assert torch.allclose(torch.stack(steps, 1), full, atol=1e-6)
    for a, b in zip(state, full_state):
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_matches_pytorch_modules_wired_by_hand(cell):
    """CharRNN is embedding -> nn.RNN/LSTM/GRU -> linear; check it against those pieces."""
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(vocab_size=7, cell=cell, layers=2, hidden_size=12, embedding_size=0)).eval()
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell](7, 12, num_layers=2, batch_first=True)
    rnn.load_state_dict(m.rnn.state_dict())
    x = torch.randint(0, 7, (2, 5))
    out, _ = rnn(torch.nn.functional.one_hot(x, 7).float())
    assert torch.allclose(m(x)[0], m.head(out), atol=1e-6)
    assert m.init_state(2)[0].shape == (2, 2, 12) and len(m.init_state(2)) == (2 if cell == "lstm" else 1)


def _wired_by_hand(m: CharRNN, x: torch.Tensor, drop: float, seed: int) -> torch.Tensor:
    """m's training forward rebuilt from a plain nn.GRU/LSTM whose hidden-to-hidden weights are
    dropped by hand with the same random stream (one mask per weight, in parameter order)."""
    rnn = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[m.config.cell](7, 12, num_layers=2, batch_first=True)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, w in m.rnn.named_parameters():
            dropped = torch.nn.functional.dropout(w, drop) if name.startswith("weight_hh") else w
            getattr(rnn, name).copy_(dropped)
    out, _ = rnn(torch.nn.functional.one_hot(x, 7).float())
    return m.head(out)


@pytest.mark.parametrize("cell", CELLS)
def test_weight_drop_masks_the_recurrent_weights_once_per_batch(cell):
    """--weight-drop: in training, the layer runs on hidden-to-hidden weights dropped with one mask
    for every stream and step (a plain layer given the same dropped weights agrees); the input
    weights are untouched; a dropped weight gets no gradient; in eval mode nothing is dropped."""
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=7, cell=cell, layers=2, hidden_size=12, embedding_size=0, weight_drop=0.5)
    m = CharRNN(config).train()
    x = torch.randint(0, 7, (3, 6))
    torch.manual_seed(5)
    logits, _ = m(x)
    assert torch.allclose(logits, _wired_by_hand(m, x, 0.5, seed=5), atol=1e-6)
    assert not torch.allclose(logits, _wired_by_hand(m, x, 0.0, seed=5), atol=1e-3)
    logits.square().sum().backward()
    hh, ih = m.rnn.weight_hh_l1.grad, m.rnn.weight_ih_l1.grad
    assert 0.3 < (hh == 0).float().mean() < 0.7 and (ih == 0).float().mean() < 0.05
    m.eval()
    assert torch.allclose(m(x)[0], _wired_by_hand(m, x, 0.0, seed=5), atol=1e-6)


def test_weight_drop_under_bf16_autocast_matches_float32():
    """The dropped copies are cast once for autocast; the result is float32's within bf16 rounding."""
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(vocab_size=7, cell="gru", layers=2, hidden_size=12, embedding_size=0, weight_drop=0.3))
    x = torch.randint(0, 7, (3, 6))
    torch.manual_seed(1)
    full, _ = m(x)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low, _ = m(x)
    assert torch.allclose(low.float(), full, atol=0.05) and not torch.allclose(full, m.eval()(x)[0], atol=1e-3)


def test_tied_weights_share_the_embedding():
    m = CharRNN(ModelConfig(vocab_size=9, hidden_size=16, embedding_size=16, tie_weights=True))
    assert m.head.weight is m.embedding.weight
    with pytest.raises(CharRNNError, match="--tie-weights needs"):
        CharRNN(ModelConfig(vocab_size=9, hidden_size=16, embedding_size=8, tie_weights=True))


def test_unknown_cell_lists_choices():
    with pytest.raises(CharRNNError, match="--cell must be one of rnn, lstm, gru, got .transformer."):
        CharRNN(ModelConfig(cell="transformer"))


def fit(
    text: str, cell: str, steps: int, layers: int = 1, hidden: int = 32, lr: float = 0.02
) -> tuple[CharRNN, list, float]:
    chars = sorted(set(text))
    ids = torch.tensor([[chars.index(c) for c in text]])
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(vocab_size=len(chars), cell=cell, layers=layers, hidden_size=hidden, embedding_size=0))
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(steps):
        loss = loss_fn(m(ids[:, :-1])[0], ids[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m, chars, loss.item()


@pytest.mark.parametrize("cell", CELLS)
def test_hello(cell):
    """The article's example: after h, e, l, l the model predicts e, l, l, o; the second
    'l' gives 'o' where the first gave 'l', which only the recurrent state can do."""
    m, chars, _ = fit("hello", cell, steps=150, hidden=16, lr=0.05)
    x = torch.tensor([[chars.index(c) for c in "hell"]])
    predicted = "".join(chars[i] for i in m(x)[0].argmax(-1)[0])
    assert predicted == "ello"


@pytest.mark.parametrize("cell", CELLS)
def test_learns_a_short_repeated_text(cell):
    text = "the cat sat on the mat. " * 8
    _, _, loss = fit(text, cell, steps=250, layers=2)
    assert loss < 0.1
