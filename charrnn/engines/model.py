"""The PyTorch model, CharRNN, nothing else (its config, ModelConfig, is in config.py,
where the shapes B, T, V, E, H, L are defined).

CharRNN = input (1-of-k one-hot, or a learned embedding) -> L stacked layers of
PyTorch's nn.RNN (tanh) / nn.LSTM / nn.GRU -> a linear head to V logits. The
recurrent layers are PyTorch's own, so they run on cuDNN on GPUs and oneDNN on CPUs.

The contract every caller relies on, whatever the cell:
    forward(x, state=None) -> (logits, state)   x: (B, T) ids, logits: (B, T, V)
    step(x, state)         -> (logits, state)   x: (B,) ids,   logits: (B, V)
    state is a tuple of (L, B, H) tensors: (h,) for rnn and gru, (h, c) for lstm.
and the loss lives in one place, `loss_fn`.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from charrnn.engines.config import CELL_NAMES, ModelConfig  # noqa: F401  (ModelConfig: imported from here too)
from charrnn.tasks import IGNORE

CELLS = dict(zip(CELL_NAMES, (nn.RNN, nn.LSTM, nn.GRU)))

State = tuple[torch.Tensor, ...]


class CharRNN(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        config.check()
        self.config = config
        V, E, H, L = config.vocab_size, config.embedding_size, config.hidden_size, config.layers
        # One-hot input has no parameters: it is an identity look-up, done by F.one_hot.
        self.embedding = nn.Embedding(V, E) if E > 0 else None
        self.rnn = CELLS[config.cell](
            input_size=E or V,
            hidden_size=H,
            num_layers=L,
            dropout=config.dropout if L > 1 else 0.0,  # nn.RNN* apply it between layers only
            batch_first=True,
            bidirectional=config.bidirectional,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(H * config.directions, config.outputs)  # V characters, C labels or K tags
        if config.tie_weights:
            self.head.weight = self.embedding.weight  # (V, H) == (V, E)

    def init_state(self, batch_size: int, device=None, dtype=torch.float32) -> State:
        """The zero state, as a tuple of (L, B, H) tensors ((2L, B, H) when bidirectional)."""
        c = self.config
        shape = (c.layers * c.directions, batch_size, c.hidden_size)
        n = 2 if c.cell == "lstm" else 1
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(n))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (B, T, E) inputs."""
        if self.embedding is None:
            return F.one_hot(x, self.config.vocab_size).to(self.head.weight.dtype)
        return self.embedding(x)

    def forward(
        self, x: torch.Tensor, state: State | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        """x: (B, T) ids; state: None (zeros) or a tuple of (L, B, H). Returns (B, T, V) logits
        (V: the head's outputs). lengths (B,): each row's real length, for a bidirectional
        model, whose backward direction must start at each item's end, not in its padding."""
        if state is None:
            rnn_state = None
        elif self.config.cell == "lstm":
            rnn_state = (state[0], state[1])
        else:
            rnn_state = state[0]
        inputs = self.embed(x)
        if lengths is not None and self.config.bidirectional:
            packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, rnn_state = self.rnn(packed, rnn_state)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, rnn_state = self.rnn(inputs, rnn_state)  # out: (B, T, H), or (B, T, 2H) bidirectional
        logits = self.head(self.drop(out))  # (B, T, V)
        new_state = tuple(rnn_state) if self.config.cell == "lstm" else (rnn_state,)
        return logits, new_state

    def step(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One time step: x (B,) ids -> (B, V) logits and the next state."""
        logits, state = self.forward(x[:, None], state)
        return logits[:, 0], state


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy in nats at every time step: logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction=reduction)


def row_lengths(targets: torch.Tensor) -> torch.Tensor:
    """(B,) each row's length: up to its last scored target (items pad theirs with IGNORE)."""
    scored = (targets != IGNORE).int()
    T = targets.shape[1]
    return (T - scored.flip(1).argmax(1)).clamp(min=1)


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a batch boundary (truncated BPTT) but keep the values."""
    return None if state is None else tuple(s.detach() for s in state)
