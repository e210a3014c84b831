"""charrnn.reference: the article's engine in plain NumPy, complete and checked.

Karpathy's "The Unreasonable Effectiveness of Recurrent Neural Networks" explains a
recurrent network with a few lines of NumPy:

    rnn = RNN(input_size, hidden_size, output_size)
    y = rnn.step(x)        # self.h = tanh(W_hh @ h + W_xh @ x + b_h); y = W_hy @ h + b_y
    y = rnn2.step(rnn1.step(x))                                # stacking

This package continues that explanation until it trains real models:

    cells.py       RNN, LSTM and GRU: the article's step, then a batched forward and its
                   hand-written backward pass through time, side by side
    model.py       input (1-of-k or embedding) -> stacked cells -> softmax loss, and back
    optim.py       gradient clipping; SGD, Adagrad, RMSProp and Adam
    checkpoint.py  the same checkpoint files as the PyTorch engine, both ways
    gradcheck.py   analytic gradients against centred finite differences
    hello.py       the article's "hello" example (`charrnn hello`)
    engine.py      the model behind charrnn's engine protocol, so that `charrnn train
                   --engine reference` runs the same trainer as the PyTorch engine

Nothing here imports torch.
"""

from charrnn.reference.cells import CELLS, GRU, LSTM, RNN
from charrnn.reference.checkpoint import from_state_dict, load, save, to_state_dict
from charrnn.reference.gradcheck import grad_check
from charrnn.reference.hello import hello
from charrnn.reference.model import CharRNN, ModelConfig, Stepper, cross_entropy
from charrnn.reference.optim import SGD, Adagrad, Adam, RMSProp, clip_grad_norm, make_optimizer

__all__ = [
    "CELLS",
    "GRU",
    "LSTM",
    "RNN",
    "CharRNN",
    "ModelConfig",
    "Stepper",
    "SGD",
    "Adagrad",
    "Adam",
    "RMSProp",
    "clip_grad_norm",
    "cross_entropy",
    "from_state_dict",
    "grad_check",
    "hello",
    "load",
    "make_optimizer",
    "save",
    "to_state_dict",
]
