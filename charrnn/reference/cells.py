"""The three recurrent cells in NumPy: the article's `step`, then the same equations
over a whole batch of sequences, forward and backward, side by side.

The article's vanilla RNN is a class with one method:

    class RNN:
      def step(self, x):
        self.h = np.tanh(np.dot(self.W_hh, self.h) + np.dot(self.W_xh, x))
        y = np.dot(self.W_hy, self.h)
        return y

Each cell below keeps that `step` (with the biases b_h and b_y added) for reading and
for playing with one character at a time. Training needs more: many sequences at
once and the gradients. So each cell also has

    forward(X, state)  -> (Hs, state, cache)   X: (B, T, E) inputs, Hs: (B, T, H) hidden states
    backward(dHs, cache) -> (dX, grads)        dHs: dLoss/dHs, dX: dLoss/dX, grads: dLoss/dparams

with the backward pass written right under the forward pass whose steps it retraces.
state is a tuple of (B, H) arrays: (h,) for RNN and GRU, (h, c) for LSTM.

Shapes: B batch, T time steps, E input size, H hidden size, O output size, and
G = gates * H, the rows of W_xh and W_hh (the gate blocks stacked, in PyTorch's order).
Weights are (out, in), as in the article's W @ x; on a batch of row vectors that is x @ W.T.

The output layer y = W_hy @ h + b_y belongs to a cell built with output_size > 0 (the
article's RNN(input_size, hidden_size, output_size)); with output_size=0, `step` returns
h itself, which is what a layer inside a stack passes up. The batched forward and
backward cover the recurrence only: the model (model.py) applies the output layer of
its top cell to all time steps at once and differentiates it there.
"""

from __future__ import annotations

import numpy as np

from charrnn.errors import CharRNNError

State = tuple[np.ndarray, ...]


def sigmoid(x: np.ndarray) -> np.ndarray:
    # The tanh form never overflows, unlike 1 / (1 + exp(-x)) for large negative x.
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class Cell:
    """What the three cells share: sizes, initial weights, the zero state, the output layer."""

    gates = 1  # blocks of H rows in W_xh and W_hh
    state_names: tuple[str, ...] = ("h",)
    recurrent_names: tuple[str, ...] = ("W_xh", "W_hh", "b_h")

    def __init__(self, input_size: int, hidden_size: int, output_size: int = 0, rng=None, dtype=np.float64):
        if min(input_size, hidden_size) < 1 or output_size < 0:
            sizes = f"input {input_size}, hidden {hidden_size}, output {output_size}"
            raise CharRNNError(f"cell sizes must be positive (output may be 0): got {sizes}")
        self.input_size, self.hidden_size, self.output_size = input_size, hidden_size, output_size
        rng = np.random.default_rng(rng)
        # PyTorch's initialisation, U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias
        # (nn.Linear's is the same with H inputs), so both engines start alike.
        k = 1.0 / np.sqrt(hidden_size)
        for name, shape in self.shapes().items():
            setattr(self, name, rng.uniform(-k, k, shape).astype(dtype))
        self.reset()

    def shapes(self) -> dict[str, tuple[int, ...]]:
        G, E, H, O = self.gates * self.hidden_size, self.input_size, self.hidden_size, self.output_size
        shapes = {"W_xh": (G, E), "W_hh": (G, H), "b_h": (G,)}
        if "b_hn" in self.recurrent_names:
            shapes["b_hn"] = (H,)
        if O:
            shapes.update(W_hy=(O, H), b_y=(O,))
        return shapes

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.recurrent_names + (("W_hy", "b_y") if self.output_size else ())

    def params(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.param_names}

    def reset(self) -> None:
        """Back to the zero state, as at the start of a text."""
        for name in self.state_names:
            setattr(self, name, np.zeros(self.hidden_size, dtype=self.W_hh.dtype))

    def output(self, h: np.ndarray) -> np.ndarray:
        """y = W_hy @ h + b_y, or h itself for a cell without an output layer."""
        return self.W_hy @ h + self.b_y if self.output_size else h

    def zero_state(self, batch_size: int) -> State:
        return tuple(np.zeros((batch_size, self.hidden_size), dtype=self.W_hh.dtype) for _ in self.state_names)


class RNN(Cell):
    """The vanilla RNN of the article.

    h_t = tanh(W_hh @ h_{t-1} + W_xh @ x_t + b_h)
    y_t = W_hy @ h_t + b_y
    """

    def step(self, x: np.ndarray) -> np.ndarray:
        """One character: x (E,) -> y (O,), updating self.h (H,)."""
        self.h = np.tanh(self.W_hh @ self.h + self.W_xh @ x + self.b_h)
        return self.output(self.h)

    def forward(self, X: np.ndarray, state: State | None = None):
        """The same equation for B sequences at once: X (B, T, E), state None (zeros) or
        (h_0,) with h_0 (B, H). Returns all hidden states Hs (B, T, H), (h_T,) and the cache."""
        B, T, _ = X.shape
        h = self.zero_state(B)[0] if state is None else state[0]
        A = X @ self.W_xh.T + self.b_h  # (B, T, H): the input's part of every step, in one product
        Hs = np.empty(A.shape, dtype=A.dtype)
        h0 = h
        for t in range(T):  # only the recurrence itself has to go one step at a time
            h = np.tanh(A[:, t] + h @ self.W_hh.T)
            Hs[:, t] = h
        return Hs, (h,), (X, h0, Hs)

    def backward(self, dHs: np.ndarray, cache):
        """Backprop through time. dHs (B, T, H) is the loss's gradient reaching each h_t from
        above; h_t also feeds h_{t+1}, so that path's gradient (dh_next) is added in."""
        X, h0, Hs = cache
        dA = np.empty_like(Hs)  # dLoss/d(pre-activation) at each step
        dh_next = np.zeros_like(h0)
        for t in reversed(range(Hs.shape[1])):
            dh = dHs[:, t] + dh_next
            dA[:, t] = dh * (1.0 - Hs[:, t] ** 2)  # tanh' = 1 - tanh^2
            dh_next = dA[:, t] @ self.W_hh
        H_prev = np.concatenate([h0[:, None], Hs[:, :-1]], axis=1)  # (B, T, H): h_{t-1}
        return dA @ self.W_xh, _weight_grads(dA, X, dA, H_prev)


class LSTM(Cell):
    """Long short-term memory: a cell state c that is only scaled and added to, so that
    gradients survive many steps. The four gate blocks of W_xh, W_hh and b_h come in
    PyTorch's order i, f, g, o:

        a   = W_xh @ x_t + W_hh @ h_{t-1} + b_h           (4H,)
        i   = sigmoid(a[0:H])      input gate: how much of g to write
        f   = sigmoid(a[H:2H])     forget gate: how much of c to keep
        g   = tanh(a[2H:3H])       candidate values
        o   = sigmoid(a[3H:4H])    output gate: how much of c to show
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t)
        y_t = W_hy @ h_t + b_y
    """

    gates = 4
    state_names = ("h", "c")

    def step(self, x: np.ndarray) -> np.ndarray:
        H = self.hidden_size
        a = self.W_xh @ x + self.W_hh @ self.h + self.b_h
        i, f, g, o = sigmoid(a[:H]), sigmoid(a[H : 2 * H]), np.tanh(a[2 * H : 3 * H]), sigmoid(a[3 * H :])
        self.c = f * self.c + i * g
        self.h = o * np.tanh(self.c)
        return self.output(self.h)

    def forward(self, X: np.ndarray, state: State | None = None):
        B, T, _ = X.shape
        H = self.hidden_size
        h, c = self.zero_state(B) if state is None else state
        h0, c0 = h, c
        A = X @ self.W_xh.T + self.b_h  # (B, T, 4H)
        gates = np.empty(A.shape, dtype=A.dtype)  # i, f, g, o after their nonlinearities
        Hs, Cs = np.empty((B, T, H), dtype=A.dtype), np.empty((B, T, H), dtype=A.dtype)
        for t in range(T):
            a = A[:, t] + h @ self.W_hh.T
            gates[:, t, : 2 * H] = sigmoid(a[:, : 2 * H])
            gates[:, t, 2 * H : 3 * H] = np.tanh(a[:, 2 * H : 3 * H])
            gates[:, t, 3 * H :] = sigmoid(a[:, 3 * H :])
            i, f, g, o = np.split(gates[:, t], 4, axis=1)
            c = f * c + i * g
            h = o * np.tanh(c)
            Hs[:, t], Cs[:, t] = h, c
        return Hs, (h, c), (X, h0, c0, gates, Hs, Cs)

    def backward(self, dHs: np.ndarray, cache):
        X, h0, c0, gates, Hs, Cs = cache
        B, T, H = Hs.shape
        dA = np.empty_like(gates)
        dh_next, dc_next = np.zeros_like(h0), np.zeros_like(c0)
        for t in reversed(range(T)):
            i, f, g, o = np.split(gates[:, t], 4, axis=1)
            c_prev = Cs[:, t - 1] if t else c0
            tc = np.tanh(Cs[:, t])
            dh = dHs[:, t] + dh_next
            dc = dc_next + dh * o * (1.0 - tc**2)  # c_t reaches the loss through h_t and c_{t+1}
            # Through each gate's product, then its nonlinearity (sigmoid' = s(1-s), tanh' = 1-t^2).
            dA[:, t, :H] = dc * g * i * (1.0 - i)
            dA[:, t, H : 2 * H] = dc * c_prev * f * (1.0 - f)
            dA[:, t, 2 * H : 3 * H] = dc * i * (1.0 - g**2)
            dA[:, t, 3 * H :] = dh * tc * o * (1.0 - o)
            dc_next = dc * f
            dh_next = dA[:, t] @ self.W_hh
        H_prev = np.concatenate([h0[:, None], Hs[:, :-1]], axis=1)
        return dA @ self.W_xh, _weight_grads(dA, X, dA, H_prev)


class GRU(Cell):
    """Gated recurrent unit: no separate cell state; gates mix the old h with a candidate.
    Gate blocks in PyTorch's order r, z, n. The candidate n applies the reset gate to the
    hidden side *with its bias*, so that bias cannot be merged into b_h: it is b_hn.

        r   = sigmoid(W_xh[r] @ x_t + W_hh[r] @ h_{t-1} + b_h[r])     reset gate
        z   = sigmoid(W_xh[z] @ x_t + W_hh[z] @ h_{t-1} + b_h[z])     update gate
        n   = tanh(W_xh[n] @ x_t + b_h[n] + r * (W_hh[n] @ h_{t-1} + b_hn))
        h_t = (1 - z) * n + z * h_{t-1}
        y_t = W_hy @ h_t + b_y
    """

    gates = 3
    recurrent_names = ("W_xh", "W_hh", "b_h", "b_hn")

    def step(self, x: np.ndarray) -> np.ndarray:
        H = self.hidden_size
        ax, ah = self.W_xh @ x + self.b_h, self.W_hh @ self.h
        r, z = sigmoid(ax[:H] + ah[:H]), sigmoid(ax[H : 2 * H] + ah[H : 2 * H])
        n = np.tanh(ax[2 * H :] + r * (ah[2 * H :] + self.b_hn))
        self.h = (1.0 - z) * n + z * self.h
        return self.output(self.h)

    def forward(self, X: np.ndarray, state: State | None = None):
        B, T, _ = X.shape
        H = self.hidden_size
        h = self.zero_state(B)[0] if state is None else state[0]
        h0 = h
        Ax = X @ self.W_xh.T + self.b_h  # (B, T, 3H): the input side of all three blocks
        rzn = np.empty(Ax.shape, dtype=Ax.dtype)  # r, z, n after their nonlinearities
        Hn = np.empty((B, T, H), dtype=Ax.dtype)  # W_hh[n] @ h_{t-1} + b_hn, which r scales
        Hs = np.empty((B, T, H), dtype=Ax.dtype)
        for t in range(T):
            ah = h @ self.W_hh.T
            rzn[:, t, : 2 * H] = sigmoid(Ax[:, t, : 2 * H] + ah[:, : 2 * H])
            Hn[:, t] = ah[:, 2 * H :] + self.b_hn
            rzn[:, t, 2 * H :] = np.tanh(Ax[:, t, 2 * H :] + rzn[:, t, :H] * Hn[:, t])
            z, n = rzn[:, t, H : 2 * H], rzn[:, t, 2 * H :]
            h = (1.0 - z) * n + z * h
            Hs[:, t] = h
        return Hs, (h,), (X, h0, rzn, Hn, Hs)

    def backward(self, dHs: np.ndarray, cache):
        X, h0, rzn, Hn, Hs = cache
        B, T, H = Hs.shape
        dAx = np.empty_like(rzn)  # dLoss/d(input-side pre-activations)
        dAh = np.empty_like(rzn)  # dLoss/d(hidden-side pre-activations): differs in the n block
        dh_next = np.zeros_like(h0)
        for t in reversed(range(T)):
            r, z, n = np.split(rzn[:, t], 3, axis=1)
            h_prev = Hs[:, t - 1] if t else h0
            dh = dHs[:, t] + dh_next
            dn = dh * (1.0 - z) * (1.0 - n**2)  # through h = (1-z) n + z h_prev, then tanh
            dAx[:, t, :H] = dn * Hn[:, t] * r * (1.0 - r)
            dAx[:, t, H : 2 * H] = dh * (h_prev - n) * z * (1.0 - z)
            dAx[:, t, 2 * H :] = dn
            dAh[:, t, : 2 * H] = dAx[:, t, : 2 * H]  # r and z add both sides before the sigmoid
            dAh[:, t, 2 * H :] = dn * r  # the hidden side of n is scaled by r
            dh_next = dh * z + dAh[:, t] @ self.W_hh
        H_prev = np.concatenate([h0[:, None], Hs[:, :-1]], axis=1)
        grads = _weight_grads(dAx, X, dAh, H_prev)
        grads["b_hn"] = dAh[:, :, 2 * H :].sum(axis=(0, 1))
        return dAx @ self.W_xh, grads


def _weight_grads(dAx: np.ndarray, X: np.ndarray, dAh: np.ndarray, H_prev: np.ndarray) -> dict[str, np.ndarray]:
    """The weight gradients summed over all B x T steps, each as one matrix product:
    dW_xh = sum_t dAx_t^T x_t, dW_hh = sum_t dAh_t^T h_{t-1}, db_h = sum_t dAx_t."""
    G = dAx.shape[-1]
    return {
        "W_xh": dAx.reshape(-1, G).T @ X.reshape(-1, X.shape[-1]),
        "W_hh": dAh.reshape(-1, G).T @ H_prev.reshape(-1, H_prev.shape[-1]),
        "b_h": dAx.sum(axis=(0, 1)),
    }


CELLS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}
