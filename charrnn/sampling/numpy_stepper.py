"""A fast CPU stepper: the CharRNN cells stepped in NumPy with preallocated buffers.

Why: sampling feeds one character at a time, and a (B, 1) call into nn.LSTM pays
oneDNN's per-call set-up, which on a small CPU costs far more than the arithmetic
(60-280 chars/s for a 2x512 LSTM on 2 cores). Here the weights are copied once into
contiguous float32 arrays and a step is a few BLAS matrix products plus in-place
ufuncs writing into buffers allocated in `prime()`: no per-step allocation, no
torch dispatch. The equations are exactly PyTorch's (see the cell methods), so
logits agree with `TorchStepper` to float32 rounding (~1e-6).

Shapes (as in engines/config.py): B rows, H hidden, V vocabulary, L layers (j: one of them), G gates per
cell (rnn 1, lstm 4, gru 3). Activations are stored feature-major, (features, B),
so that every per-layer and per-gate slice is a contiguous block for any B (NumPy
buffers, i.e. allocates, when a ufunc works on strided views). Weights keep
PyTorch's (G*H, in) layout, and a layer is W @ x. The work of one step:

    ids (B,) --gather--> table (G*H, V)          layer 0's input projection, folded
                                                 once: W_ih0 @ embedding^T (or W_ih0
                                                 itself for one-hot) + biases; a step
                                                 copies B columns
    S (L*H, B) = [h_0; h_1; ...; h_{L-1}]        every layer's h stacked, so layer j's
                                                 input [h_{j-1} new; h_l old] is the row
                                                 block S[(j-1)H:(j+1)H] and one product
                                                 with [W_ih_l | W_hh_l] (G*H, 2H) gives
                                                 all its gates (rnn, lstm)
    logits (B, V) = h_{L-1}^T @ W_head^T + b_head, returned as float64
                                                 (--cutoffs: AdaptiveHead's log-probabilities,
                                                 see _AdaptiveHead)

Two exact rewrites keep the ufunc count low:
  - sigmoid(a) = 0.5 + 0.5 * tanh(a / 2), with the 1/2 folded into the weights and
    biases of the sigmoid gates (a power of two: the scaling is exact). Unlike
    1 / (1 + exp(-a)) it cannot overflow, so no np.errstate per step.
  - LSTM gate rows are reordered from PyTorch's (i, f, g, o) to (i, f, o, g) so
    the three sigmoid gates are one contiguous block.
GRU's n gate needs its two products apart, n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
so for layers >= 1 its stacked matrix has four row blocks, (4H, 2H):
    [W_ir W_hr; W_iz W_hz; W_in 0; 0 W_hn] @ [x; h] = [r, z pre-activations; n_x; n_h]
One product instead of two (a BLAS call costs more than the zeros at H <= 256, and
the GRU still reads fewer bytes than an LSTM at any H).

Threads: at batch 1 a step is memory-bound matrix-vector work, and OpenBLAS's
threads spin-wait; see docs/sampling-speed.md for 1 vs 2 threads on 2 cores
(OPENBLAS_NUM_THREADS chooses, before NumPy is imported).
"""

from __future__ import annotations

import numpy as np
import torch

GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class NumpyStepper:
    """Steps a CPU CharRNN in NumPy. The weights are copied at construction: build a
    new stepper after the model changes. The (B, V) logits returned by `prime` and
    `step` live in a buffer that the next call overwrites; copy them to keep them."""

    def __init__(self, model: torch.nn.Module):
        c = model.config
        self.cell, self.L, self.H, self.V = c.cell, c.layers, c.hidden_size, c.outputs
        H, L, G = self.H, self.L, GATES[c.cell]
        self.n_sig = {"rnn": 0, "lstm": 3, "gru": 2}[c.cell]  # leading sigmoid gates, after reordering
        # Matrices are only reordered and halved (exact in float32); sums (the table,
        # the biases) are formed in float64 and rounded once.
        w = {k: v.detach().to("cpu", torch.float32).numpy() for k, v in model.state_dict().items()}
        order = np.arange(G * H)
        if c.cell == "lstm":  # PyTorch's (i, f, g, o) -> (i, f, o, g)
            order = np.concatenate([order[: 2 * H], order[3 * H :], order[2 * H : 3 * H]])
        scale = np.where(np.arange(G * H) < self.n_sig * H, 0.5, 1.0)[:, None]  # (G*H, 1) sigmoid gates: a/2
        b_hh = [w[f"rnn.bias_hh_l{j}"].astype(np.float64) for j in range(L)]
        if c.cell == "gru":  # b_hn stays on the hidden side, inside r * (W_hn h + b_hn)
            b_hn = [b[2 * H :].copy() for b in b_hh]
            self.b_hn0 = _f32(b_hn[0][:, None])  # (H, 1); layers >= 1 have it in their bias
            for b in b_hh:
                b[2 * H :] = 0

        def rows(m: np.ndarray) -> np.ndarray:  # (G*H, ...) in PyTorch's gate order -> ours, scaled
            out = m[order]  # a copy
            out *= scale.astype(m.dtype)
            return _f32(out)

        # Layer 0's input projection for every input character, (G*H, V).
        w_ih0 = w["rnn.weight_ih_l0"]  # (G*H, E), or (G*H, V) for one-hot
        x0 = w_ih0 @ w["embedding.weight"].T.astype(np.float64) if "embedding.weight" in w else w_ih0
        self.table = rows(x0 + (w["rnn.bias_ih_l0"] + b_hh[0])[:, None])  # float64 sum
        self.table_rows = np.ascontiguousarray(self.table.T)  # (V, G*H): a faster gather at B = 1
        self.w_hh = [rows(w[f"rnn.weight_hh_l{j}"]) for j in range(L)]  # (G*H, H)
        self.w_ih = [None] + [rows(w[f"rnn.weight_ih_l{j}"]) for j in range(1, L)]  # (G*H, H)
        self.bias = [None] + [rows((w[f"rnn.bias_ih_l{j}"] + b_hh[j])[:, None]) for j in range(1, L)]  # (G*H, 1)
        if c.cell == "gru":  # the (4H, 2H) block matrix of the docstring, and its bias [b_r; b_z; b_in; b_hn]
            self.w_xh, self.bias = [None], [None]
            for j in range(1, L):
                w_i, w_h = self.w_ih[j], self.w_hh[j]
                block = np.zeros((4 * H, 2 * H), np.float32)
                block[: 2 * H, :H], block[: 2 * H, H:] = w_i[: 2 * H], w_h[: 2 * H]
                block[2 * H : 3 * H, :H], block[3 * H :, H:] = w_i[2 * H :], w_h[2 * H :]
                self.w_xh.append(block)
                b = rows((w[f"rnn.bias_ih_l{j}"] + b_hh[j])[:, None])  # b_hn was zeroed in b_hh above
                self.bias.append(np.concatenate([b, _f32(b_hn[j][:, None])]))  # (4H, 1)
            self.w_ih, self.w_hh = None, self.w_hh[:1]
        else:  # one product for [W_ih | W_hh] @ [x; h]: (G*H, 2H) replaces both, for j >= 1
            self.w_xh = [None] + [np.concatenate([self.w_ih[j], self.w_hh[j]], axis=1) for j in range(1, L)]
            self.w_ih, self.w_hh = None, self.w_hh[:1]
        self.adaptive = _AdaptiveHead(w, c.cutoffs, self.V) if c.cutoffs else None
        self.w_head_t = None if c.cutoffs else _f32(w["head.weight"].T)  # (H, V)
        self.b_head = np.zeros(self.V, np.float32) if c.cutoffs else _f32(w["head.bias"])  # (V,)
        self._update = {"rnn": self._rnn, "lstm": self._lstm, "gru": self._gru}[c.cell]  # (j) -> None
        self.B = 0

    # -- buffers ---------------------------------------------------------------------

    def _allocate(self, B: int) -> None:
        """Buffers for B rows, and the views into them that a step uses (made here, once)."""
        H, L, G = self.H, self.L, GATES[self.cell]
        n_rows = 4 * H if self.cell == "gru" and L > 1 else G * H  # GRU layers >= 1: [r, z, n_x, n_h]
        self.B = B
        self.S = np.zeros((L * H, B), np.float32)  # [h_0; ...; h_{L-1}]
        self.C = np.zeros((L * H, B), np.float32)  # LSTM cell states, same layout
        self.gates = np.empty((n_rows, B), np.float32)  # pre-activations of the layer at hand
        self.other = np.empty((G * H, B), np.float32)  # layer 0's table columns (rnn, lstm) or hidden side (gru)
        self.logits32 = np.empty((B, self.V), np.float32)
        self.logits = np.empty((B, self.V), np.float64)
        self.h = [self.S[j * H : (j + 1) * H] for j in range(L)]  # (H, B) each
        self.c = [self.C[j * H : (j + 1) * H] for j in range(L)]
        self.xh = [None] + [self.S[(j - 1) * H : (j + 1) * H] for j in range(1, L)]  # (2H, B)
        self.h_last_t = self.h[-1].T  # (B, H), Fortran-ordered: BLAS reads it transposed, no copy
        self.g = [self.gates[k * H : (k + 1) * H] for k in range(n_rows // H)]  # (H, B) per gate
        self.o = [self.other[k * H : (k + 1) * H] for k in range(G)]
        self.sig = self.gates[: self.n_sig * H]  # the sigmoid gates, one block
        self.other_rz = self.other[: 2 * H]
        # Where step() gathers the table: into self.gates for GRU (the input side),
        # else self.other. At B = 1 a (G*H, 1) column is a (1, G*H) row, and taking a
        # row of table_rows is faster than G*H strided reads.
        dest = self.gates[: G * H] if self.cell == "gru" else self.other
        self.gather = (self.table_rows, 0, dest.reshape(1, G * H)) if B == 1 else (self.table, 1, dest)
        # Biases repeated to B columns: adding a (N, 1) column to (N, B) broadcasts, and
        # a broadcasting ufunc allocates an iterator on every call.
        self.bias_B = [None] + [np.tile(b, (1, B)) for b in self.bias[1:]]
        self.b_head_B = np.tile(self.b_head, (B, 1))  # (B, V)
        if self.cell == "gru":
            self.b_hn0_B = np.tile(self.b_hn0, (1, B))

    # -- the stepper interface (see sampling.py) -------------------------------------

    def prime(self, ids: np.ndarray) -> np.ndarray:
        """(B, P) ids -> (B, V) logits of the last position, from the zero state.

        The prime is stepped here too: a full-sequence nn.LSTM call pays the same
        oneDNN set-up (tens of ms on 2 cores) and runs no faster per position at B = 1."""
        B, P = ids.shape
        if P == 0:
            raise ValueError("prime() needs at least one id per row")
        if B != self.B:
            self._allocate(B)
        self.S.fill(0.0)
        self.C.fill(0.0)
        ids = np.ascontiguousarray(ids.T, dtype=np.int64)  # (P, B): each step reads a contiguous row
        for t in range(P):
            self.step(ids[t])
        return self.logits

    def step(self, ids: np.ndarray) -> np.ndarray:
        """(B,) int64 ids -> (B, V) logits, advancing the state by one character."""
        # take() as the method (np.take's wrapper allocates) and in mode "clip" (the
        # default "raise" buffers); ids come from the sampler, always in [0, V).
        src, axis, out = self.gather
        src.take(ids, axis, out, "clip")
        for j in range(self.L):
            self._update(j)
        if self.adaptive is not None:
            self.adaptive(self.h_last_t, self.logits)
            return self.logits
        np.dot(self.h_last_t, self.w_head_t, out=self.logits32)
        np.add(self.logits32, self.b_head_B, out=self.logits32)
        np.copyto(self.logits, self.logits32)  # float32 -> float64; a casting ufunc would buffer
        return self.logits

    def reorder(self, rows) -> None:
        """Make row b of the state a copy of row rows[b] (beam search reselects its beams
        this way); len(rows) may differ from B. The logits buffer is not reordered."""
        rows = np.asarray(rows, dtype=np.int64)
        S, C = self.S[:, rows], self.C[:, rows]  # (L*H, len(rows)) copies, taken before any reallocation
        if len(rows) != self.B:
            self._allocate(len(rows))
        np.copyto(self.S, S)  # in place: the per-layer views made by _allocate point into S and C
        np.copyto(self.C, C)

    # -- the cells: each updates layer j's h (and c) in place ---------------------------

    def _preact(self, j: int) -> None:
        """gates = W_ih x + W_hh h + b_ih + b_hh, for rnn and lstm (one product for j >= 1)."""
        if j == 0:
            np.dot(self.w_hh[0], self.h[0], out=self.gates)
            np.add(self.gates, self.other, out=self.gates)  # + the table columns
        else:
            np.dot(self.w_xh[j], self.xh[j], out=self.gates)
            np.add(self.gates, self.bias_B[j], out=self.gates)

    def _sigmoid(self, a: np.ndarray) -> None:
        """In place: a holds a/2 (weights pre-scaled), becomes sigmoid(a) = 0.5 + 0.5 tanh(a/2)."""
        np.tanh(a, out=a)
        np.multiply(a, 0.5, out=a)
        np.add(a, 0.5, out=a)

    def _rnn(self, j: int) -> None:
        self._preact(j)
        np.tanh(self.gates, out=self.h[j])  # h' = tanh(W_ih x + b_ih + W_hh h + b_hh)

    def _lstm(self, j: int) -> None:
        self._preact(j)
        i, f, o, g = self.g
        h, c = self.h[j], self.c[j]
        self._sigmoid(self.sig)  # i, f, o
        np.tanh(g, out=g)
        np.multiply(f, c, out=c)  # c' = f * c + i * g
        np.multiply(i, g, out=i)
        np.add(c, i, out=c)
        np.tanh(c, out=g)  # h' = o * tanh(c')
        np.multiply(o, g, out=h)

    def _gru(self, j: int) -> None:
        r, z, n = self.g[:3]  # self.gates: r, z pre-activations (summed for j >= 1), then n_x
        h = self.h[j]
        if j == 0:  # step() gathered the table (W_i x + b_i + b_hr, b_hz) into self.gates[:3H]
            nh = self.o[2]  # self.other = W_hh h, the hidden side
            np.dot(self.w_hh[0], h, out=self.other)
            np.add(self.sig, self.other_rz, out=self.sig)  # r, z pre-activations
            np.add(nh, self.b_hn0_B, out=nh)
        else:
            nh = self.g[3]  # W_hn h + b_hn, from the block product
            np.dot(self.w_xh[j], self.xh[j], out=self.gates)
            np.add(self.gates, self.bias_B[j], out=self.gates)
        self._sigmoid(self.sig)
        np.multiply(nh, r, out=nh)
        np.add(n, nh, out=n)  # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        np.tanh(n, out=n)
        np.subtract(h, n, out=nh)  # h' = (1 - z) * n + z * h = n + z * (h - n)
        np.multiply(nh, z, out=nh)
        np.add(n, nh, out=h)


class _AdaptiveHead:
    """nn.AdaptiveLogSoftmaxWithLoss.log_prob (engines/model.py AdaptiveHead) in NumPy: the
    head's log-softmax over the commonest cutoffs[0] characters and one entry per cluster, and
    each cluster's log-softmax plus its entry; then permuted from rank to id order. The products
    are float32 like PyTorch's; the log-softmaxes float64 (agreement to float32 rounding)."""

    def __init__(self, w: dict[str, np.ndarray], cutoffs: list[int], V: int):
        self.head_t = _f32(w["head.asm.head.weight"].T)  # (H, cutoffs[0] + clusters)
        self.tails = [
            (_f32(w[f"head.asm.tail.{i}.0.weight"].T), _f32(w[f"head.asm.tail.{i}.1.weight"].T))  # (H, h_i), (h_i, n_i)
            for i in range(len(cutoffs))
        ]
        self.bounds = list(zip(cutoffs, [*cutoffs[1:], V]))  # each cluster's [lo, hi) in rank order
        self.rank = w["head.rank"].astype(np.int64)  # (V,) id -> rank (stored as float32 here: exact below 2**24)

    def __call__(self, h: np.ndarray, out: np.ndarray) -> None:
        """h (B, H) float32 -> out (B, V) float64 log-probabilities in id order."""
        head = _log_softmax(h @ self.head_t)  # (B, cutoffs[0] + clusters)
        first = self.bounds[0][0]
        logp = np.empty((h.shape[0], self.bounds[-1][1]))  # (B, V) in rank order
        logp[:, :first] = head[:, :first]
        for i, ((proj, out_w), (lo, hi)) in enumerate(zip(self.tails, self.bounds)):
            logp[:, lo:hi] = _log_softmax((h @ proj) @ out_w) + head[:, first + i, None]
        np.take(logp, self.rank, axis=1, out=out)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
