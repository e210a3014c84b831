"""The character model in NumPy: input -> a stack of cells -> scores -> softmax loss,
and the backward pass through all of it.

The article stacks RNNs by feeding one's output to the next, y = rnn2.step(rnn1.step(x)).
Here the layers below the top one have no output layer of their own (output_size=0),
so each passes its h up, as PyTorch's nn.RNN/LSTM/GRU do; the top cell's W_hy and b_y
turn its h into the V scores of the next character:

    x (B, T) ids -> X (B, T, E): 1-of-k (E = V) or rows of a learned embedding
                 -> layers[0] ... layers[L-1]          each (B, T, H) hidden states
                 -> logits = Hs @ W_hy.T + b_y        (B, T, V)
                 -> loss = mean over B x T of -log softmax(logits)[target]

A classifier (many to one, --task classify) is the same network with C outputs in
place of V, and targets that are IGNORE everywhere but at each item's last
character, where the label is: the loss is the mean over items of -log p(label),
and its gradient enters the top layer at that one step and flows back through time
from there (cross_entropy and backward below need nothing else).

State, as in charrnn.engines.model: a tuple of (L, B, H) arrays, (h,) or (h, c) for LSTM.
"""

from __future__ import annotations

import numpy as np

from charrnn.engines.config import ModelConfig  # noqa: F401  (one config for both engines; re-exported)
from charrnn.errors import CharRNNError
from charrnn.reference.cells import CELLS
from charrnn.tasks import IGNORE

State = tuple[np.ndarray, ...]


def cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean softmax cross-entropy in nats over the B x T positions whose target is not
    IGNORE, and dLoss/dlogits.

    With p = softmax(logits), the gradient of -log p[target] is p - onehot(target):
    the scores are pushed down by how likely they were, the right one up by 1."""
    V = logits.shape[-1]
    z = logits.reshape(-1, V)
    z = z - z.max(axis=1, keepdims=True)  # same softmax, no overflow
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    y = targets.reshape(-1)
    scored = np.flatnonzero(y != IGNORE)  # positions with a target (items pad theirs with IGNORE)
    loss = -log_p[scored, y[scored]].mean()
    dz = np.exp(log_p)
    dz[scored, y[scored]] -= 1.0
    if len(scored) < len(y):
        dz[y == IGNORE] = 0.0  # an unscored position sends no gradient
    return float(loss), (dz / len(scored)).reshape(logits.shape)


def refuse_extras(config: ModelConfig) -> None:
    """A one-line error for what is not part of the article's model."""
    if config.dropout or config.weight_drop or config.tie_weights or config.bidirectional:
        raise CharRNNError(
            "the reference engine has no dropout, weight drop, tied weights or --bidirectional: "
            "use --dropout 0 --weight-drop 0, drop the others"
        )


class CharRNN:
    """The reference character model. Parameters are NumPy arrays, named in `params()`
    as "embedding" and "layers.K.NAME" (NAME a cell's W_xh, W_hh, b_h, ..., W_hy, b_y)."""

    def __init__(self, config: ModelConfig, rng=None, dtype=np.float64):
        config.check()
        refuse_extras(config)
        self.config = config
        V, E, H, L = config.vocab_size, config.embedding_size, config.hidden_size, config.layers
        rng = np.random.default_rng(rng)
        self.embedding = rng.standard_normal((V, E)).astype(dtype) if E else None  # N(0, 1), as nn.Embedding
        Cell = CELLS[config.cell]
        out = config.outputs  # the head: V characters, or C labels (classify), K tags (tag)
        self.layers = [Cell((E or V) if k == 0 else H, H, out if k == L - 1 else 0, rng, dtype) for k in range(L)]

    @property
    def top(self):
        return self.layers[-1]

    def params(self) -> dict[str, np.ndarray]:
        out = {"embedding": self.embedding} if self.embedding is not None else {}
        for k, layer in enumerate(self.layers):
            out.update({f"layers.{k}.{name}": p for name, p in layer.params().items()})
        return out

    def init_state(self, batch_size: int) -> State:
        c = self.config
        n = 2 if c.cell == "lstm" else 1
        return tuple(np.zeros((c.layers, batch_size, c.hidden_size), dtype=self.top.W_hh.dtype) for _ in range(n))

    def embed(self, x: np.ndarray) -> np.ndarray:
        """(B, T) ids -> (B, T, E) inputs: rows of the embedding, or of the identity (1-of-k)."""
        if self.embedding is None:
            return np.eye(self.config.vocab_size, dtype=self.top.W_hh.dtype)[x]
        return self.embedding[x]

    def forward(self, x: np.ndarray, state: State | None = None):
        """x: (B, T) ids; state: None (zeros) or a tuple of (L, B, H). Returns (B, T, V) logits,
        the final state, and the cache that `backward` needs."""
        X = self.embed(x)
        if state is None:
            state = self.init_state(x.shape[0])
        caches, finals = [], []
        for k, layer in enumerate(self.layers):
            X, final, cache = layer.forward(X, tuple(s[k] for s in state))
            caches.append(cache)
            finals.append(final)
        logits = X @ self.top.W_hy.T + self.top.b_y
        new_state = tuple(np.stack([f[i] for f in finals]) for i in range(len(state)))
        return logits, new_state, (x, X, caches)

    def backward(self, dlogits: np.ndarray, cache) -> dict[str, np.ndarray]:
        """Gradients of every parameter (named as in `params()`) given dLoss/dlogits (B, T, V).
        The final state's gradient is zero: training cuts the graph at each batch's end."""
        x, Hs, caches = cache
        V, L = dlogits.shape[-1], len(self.layers)
        grads = {
            f"layers.{L - 1}.W_hy": dlogits.reshape(-1, V).T @ Hs.reshape(-1, Hs.shape[-1]),
            f"layers.{L - 1}.b_y": dlogits.sum(axis=(0, 1)),
        }
        dX = dlogits @ self.top.W_hy  # (B, T, H): into the top layer's hidden states
        for k in reversed(range(L)):
            dX, g = self.layers[k].backward(dX, caches[k])
            grads.update({f"layers.{k}.{name}": v for name, v in g.items()})
        if self.embedding is not None:
            dE = np.zeros_like(self.embedding)
            np.add.at(dE, x.reshape(-1), dX.reshape(-1, dX.shape[-1]))  # a character seen twice gets both
            grads["embedding"] = dE
        return grads

    def loss(self, x: np.ndarray, y: np.ndarray, state: State | None = None):
        """(loss, grads, final state) for inputs x and targets y, both (B, T) ids."""
        logits, state, cache = self.forward(x, state)
        loss, dlogits = cross_entropy(logits, y)
        return loss, self.backward(dlogits, cache), state

    def step(self, x: np.ndarray, state: State | None = None):
        """One time step for a batch: x (B,) ids -> (B, V) logits and the next state."""
        logits, state, _ = self.forward(x[:, None], state)
        return logits[:, 0], state


class Stepper:
    """The reference engine as a sampling.generate() stepper (see charrnn.sampling.generate)."""

    def __init__(self, model: CharRNN):
        self.model, self.state = model, None

    def prime(self, ids: np.ndarray) -> np.ndarray:
        logits, self.state, _ = self.model.forward(ids)
        return logits[:, -1].astype(np.float64)

    def step(self, ids: np.ndarray) -> np.ndarray:
        logits, self.state = self.model.step(ids, self.state)
        return logits.astype(np.float64)

    def reorder(self, rows) -> None:
        """Row b of the new state is row rows[b] of the old one (beam search); len(rows) may differ from B."""
        self.state = tuple(s[:, np.asarray(rows, dtype=np.int64)] for s in self.state)  # each (L, len(rows), H)
