"""The NumPy model behind the engine protocol (charrnn/engines/protocol.py), so that
`charrnn train --engine reference` runs the same trainer as the PyTorch engine.

Each training step is the article's recipe:

    loss, grads = forward and backward through T steps of B streams (model.py)
    clip the gradients' joint norm (--grad-clip), then update (--optimizer, --lr)
    carry the final hidden state into the next batch, cutting the gradient there

The model computes in float64 and checkpoints store float32, as the PyTorch engine
keeps its weights; the in-memory state (for the NaN roll-back) keeps float64.
"""

from __future__ import annotations

import copy

import numpy as np

from charrnn.reference.checkpoint import from_state_dict, to_state_dict
from charrnn.reference.model import CharRNN, State
from charrnn.reference.optim import Optimizer, clip_grad_norm
from charrnn.tasks import IGNORE


class ReferenceEngine:
    name = "reference"
    resumable = False  # its state is NumPy, not written to trainer.pt: no --resume

    def __init__(self, model: CharRNN, optimizer: Optimizer | None = None, grad_clip: float = 0.0):
        self.model, self.optimizer, self.grad_clip = model, optimizer, grad_clip

    def train_step(self, x: np.ndarray, y: np.ndarray, state: State | None, lr: float) -> tuple[float, State]:
        loss, grads, state = self.model.loss(x, y, state)
        if self.grad_clip:
            clip_grad_norm(grads, self.grad_clip)
        self.optimizer.lr = lr
        self.optimizer.step(self.model.params(), grads)
        return loss, state  # the state is plain arrays: nothing to cut

    def loss_sum(self, x: np.ndarray, y: np.ndarray, state: State | None) -> tuple[float, State]:
        logits, state, _ = self.model.forward(x, state)
        z = logits - logits.max(axis=-1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        scored = y != IGNORE
        picked = np.take_along_axis(log_p, np.where(scored, y, 0)[..., None], axis=-1)[..., 0]
        return float(-picked[scored].sum()), state

    def weights(self) -> dict[str, np.ndarray]:
        return {k: v.astype(np.float32) for k, v in to_state_dict(self.model).items()}

    def load_weights(self, weights: dict) -> None:
        dtype = self.model.top.W_hh.dtype
        loaded = from_state_dict(self.model.config, weights, dtype)
        self.model.embedding, self.model.layers = loaded.embedding, loaded.layers

    def state_dict(self, hidden: State | None) -> dict:
        return {
            "params": {k: v.copy() for k, v in self.model.params().items()},
            "optimizer": copy.deepcopy({"state": self.optimizer.state, "t": self.optimizer.t}),
            "hidden": [s.copy() for s in hidden] if hidden is not None else [],
        }

    def load_state_dict(self, d: dict, batch_size: int, seed: int, step: int) -> State | None:
        for name, p in self.model.params().items():
            p[...] = d["params"][name]  # in place: the optimizer's state is keyed by these names
        self.optimizer.state, self.optimizer.t = copy.deepcopy(d["optimizer"]["state"]), d["optimizer"]["t"]
        return tuple(s.copy() for s in d["hidden"]) or None
