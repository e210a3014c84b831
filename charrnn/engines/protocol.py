"""The engine protocol: what the trainer, the scorer and checkpoints need from an engine.

Two engines implement it: the PyTorch engine (torch_engine.TorchEngine: any device,
DDP under torchrun) and the NumPy reference engine (charrnn.reference.engine:
the article's math, written out). Everything above it, the layouts, the scorer
(evaluation.score), the training loop and its bookkeeping (training/trainer.py), is
written once against this protocol and imports no torch.

Data in is NumPy: x and y are (rows, T) int64 chunks from a layout (data/layout.py).
The recurrent state is the engine's own: a tuple of (L, rows, H) arrays or tensors,
(h,) or (h, c) for LSTM; None means zeros. Callers only carry it between chunks and
slice rows off it (s[:, a:b] works on both kinds).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

State = Any  # the engine's tuple of (L, rows, H) arrays or tensors; None = zeros


class Engine(Protocol):
    name: str  # "torch" or "reference", written into checkpoint.json
    resumable: bool  # whether state_dict() can go to disk (trainer.pt) for --resume

    def train_step(self, x: np.ndarray, y: np.ndarray, state: State, lr: float) -> tuple[Any, State]:
        """Forward, mean cross-entropy, backward, clip, update at learning rate lr.
        Returns the loss (a float, or a device scalar that float() reads) and the final
        state, cut from the graph (truncated BPTT)."""
        ...

    def loss_sum(self, x: np.ndarray, y: np.ndarray, state: State) -> tuple[float, State]:
        """Summed cross-entropy (nats) of y given x, from `state`, without dropout; and the final state."""
        ...

    def weights(self) -> dict[str, np.ndarray]:
        """The weights as named float arrays, under the PyTorch CharRNN's state_dict names (copies)."""
        ...

    def load_weights(self, weights: dict[str, Any]) -> None: ...

    def state_dict(self, hidden: State) -> dict:
        """Everything else that continuing needs exactly: optimizer, random generators, and
        the streams' hidden state `hidden`, as plain data."""
        ...

    def load_state_dict(self, d: dict, batch_size: int, seed: int, step: int) -> State:
        """Restore state_dict(); returns the hidden state to carry on with."""
        ...
