"""The PyTorch model, CharRNN, nothing else (its config, ModelConfig, is in config.py,
where the shapes B, T, V, E, H, L are defined).

CharRNN = input (1-of-k one-hot, or a learned embedding) -> L stacked layers of
PyTorch's nn.RNN (tanh) / nn.LSTM / nn.GRU -> a linear head to V logits, or, with
--cutoffs, an adaptive softmax (AdaptiveHead). The recurrent layers are PyTorch's
own, so they run on cuDNN on GPUs and oneDNN on CPUs.

The contract every caller relies on, whatever the cell and the head:
    forward(x, state=None) -> (logits, state)   x: (B, T) ids, logits: (B, T, V)
    step(x, state)         -> (logits, state)   x: (B,) ids,   logits: (B, V)
    forward(x, state, targets=y, reduction="mean" | "sum") -> (loss, state)   the training loss
    state is a tuple of (L, B, H) tensors: (h,) for rnn and gru, (h, c) for lstm.
The loss is computed in one place, `CharRNN.loss`: cross-entropy (`loss_fn`) of the
linear head's logits, or the adaptive softmax's own loss, which never forms all V.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

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
        if config.cutoffs:
            config.check_cutoffs()
            self.head = AdaptiveHead(H, V, config.cutoffs)
        else:
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
            return F.one_hot(x, self.config.vocab_size).to(self.rnn.weight_ih_l0.dtype)
        return self.embedding(x)

    def forward(
        self,
        x: torch.Tensor,
        state: State | None = None,
        lengths: torch.Tensor | None = None,
        targets: torch.Tensor | None = None,
        reduction: str = "mean",
    ) -> tuple[torch.Tensor, State]:
        """x: (B, T) ids; state: None (zeros) or a tuple of (L, B, H). Returns (B, T, V) logits
        (V: the head's outputs), or with targets (B, T) the loss (see `loss`), so that a DDP
        wrapper sees the whole training step in one call. lengths (B,): each row's real length,
        for a bidirectional model, whose backward direction must start at each item's end,
        not in its padding."""
        if state is None:
            rnn_state = None
        elif self.config.cell == "lstm":
            rnn_state = (state[0], state[1])
        else:
            rnn_state = state[0]
        inputs = self.embed(x)
        if lengths is not None and self.config.bidirectional:
            packed = nn.utils.rnn.pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, rnn_state = self.recur(packed, rnn_state)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        else:
            out, rnn_state = self.recur(inputs, rnn_state)  # out: (B, T, H), or (B, T, 2H) bidirectional
        new_state = tuple(rnn_state) if self.config.cell == "lstm" else (rnn_state,)
        if targets is not None:
            return self.loss(self.drop(out), targets, reduction), new_state
        return self.head(self.drop(out)), new_state  # (B, T, V)

    def recur(self, inputs, rnn_state):
        """self.rnn(inputs, rnn_state), with --weight-drop's DropConnect while training (Merity et al.
        2017, "Regularizing and Optimizing LSTM Language Models"): each call drops a fresh random share
        of every layer's hidden-to-hidden weights, one mask for all B streams and all T steps, so the
        recurrence itself is regularised. functional_call runs PyTorch's own (fused) layer on the
        dropped copies, and the gradient reaches the weights through the mask."""
        p = self.config.weight_drop
        if not (self.training and p > 0):
            return self.rnn(inputs, rnn_state)
        device = self.rnn.weight_hh_l0.device.type
        # Under autocast a dropped copy is no leaf, so autocast would cast it again at every one of a
        # GRU's T steps (+45% time, bf16 on CPU): cast it once here.
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None
        weights = {
            name: F.dropout(w, p).to(dtype or w.dtype) if name.startswith("weight_hh") else w
            for name, w in self.rnn.named_parameters()
        }
        return functional_call(self.rnn, weights, (inputs, rnn_state))

    def loss(self, out: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy in nats of targets (B, T) (IGNORE skipped) given the top layer's outputs
        (B, T, H); float32 (float64 for a float64 model), also under bf16 autocast."""
        if isinstance(self.head, AdaptiveHead):
            return self.head.loss(out, targets, reduction)
        logits = self.head(out)
        return loss_fn(logits if logits.dtype == torch.float64 else logits.float(), targets, reduction)

    def set_rank(self, rank: np.ndarray) -> None:
        """The adaptive head's (V,) id -> frequency rank (see frequency_rank); a no-op without one."""
        if isinstance(self.head, AdaptiveHead):
            self.head.rank.copy_(torch.as_tensor(np.asarray(rank, np.int64)))

    def step(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One time step: x (B,) ids -> (B, V) logits and the next state."""
        logits, state = self.forward(x[:, None], state)
        return logits[:, 0], state


class AdaptiveHead(nn.Module):
    """The output layer of --cutoffs: PyTorch's nn.AdaptiveLogSoftmaxWithLoss over the V
    characters in frequency-rank order (Grave et al. 2017, "Efficient softmax approximation
    for GPUs"). Its head is an H -> cutoffs[0] + n_clusters linear layer (the commonest
    characters plus one entry per cluster); cluster i has an H -> H / 4^(i+1) -> its size
    projection, so the rare characters, most of a large V, cost a narrow product, and the
    training loss reads only the clusters its targets fall in.

    rank (V,) int64: character id -> its rank (0 = most frequent in the training split), a
    buffer saved with the weights, so a checkpoint is self-contained.

    The asm runs with autocast off: under CPU bf16 autocast its forward mixes dtypes
    (index_copy_ of a bf16 log_softmax into a float32 buffer fails), and the head is cheap."""

    def __init__(self, H: int, V: int, cutoffs: list[int], div_value: float = 4.0):
        super().__init__()
        self.asm = nn.AdaptiveLogSoftmaxWithLoss(H, V, list(cutoffs), div_value=div_value)
        self.register_buffer("rank", torch.arange(V))  # identity until set_rank

    def _inputs(self, out: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B*T, H) in the weights' dtype (autocast may have made it bf16)."""
        return out.reshape(-1, out.size(-1)).to(self.asm.head.weight.dtype)

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        """(B, T, H) -> (B, T, V) log-probabilities in id order: valid logits (softmax(log p) = p)."""
        with torch.autocast(out.device.type, enabled=False):
            logp = self.asm.log_prob(self._inputs(out))  # (B*T, V) in rank order
        return logp.index_select(1, self.rank).reshape(*out.shape[:-1], -1)

    def loss(self, out: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Summed or mean nats of the targets (B, T) that are not IGNORE, as F.cross_entropy."""
        t = targets.reshape(-1)
        keep = t != IGNORE  # the asm has no ignore_index
        with torch.autocast(out.device.type, enabled=False):
            logp = self.asm(self._inputs(out)[keep], self.rank[t[keep]]).output  # (kept,) log p(target)
        nll = -(logp.sum() if reduction == "sum" else logp.mean())
        if torch.is_grad_enabled():
            # A cluster no target of this batch falls in is never run, so its weights would get
            # no gradient: DDP (which waits for every one) would hang or fail. A zero-weighted
            # term gives them a zero gradient, the same on one rank or many.
            nll = nll + 0.0 * sum(p.sum() for p in self.asm.tail.parameters())
        return nll


def frequency_rank(counts: np.ndarray) -> np.ndarray:
    """(V,) rank[c] = position of character c when sorted by count, most frequent first (ties: lower id)."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    rank = np.empty(len(order), np.int64)
    rank[order] = np.arange(len(order))
    return rank


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
