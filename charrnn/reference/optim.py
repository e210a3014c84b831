"""Gradient clipping and the four classic update rules, in NumPy.

Each optimizer updates a dict of named parameter arrays in place from a dict of
gradients with the same names, keeping its per-parameter state (moments, sums of
squares) under those names. The rules are PyTorch's, constants included, so the two
engines train alike: with p a parameter, g its gradient (plus weight_decay * p),

    SGD       b = momentum * b + g  (b = g at the first step)      p -= lr * b
    Adagrad   s += g^2                                             p -= lr * g / (sqrt(s) + eps)
    RMSProp   s = alpha * s + (1 - alpha) * g^2                    p -= lr * g / (sqrt(s) + eps)
    Adam      m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2      p -= lr * m^ / (sqrt(v^) + eps)
              with m^ = m / (1 - b1^t), v^ = v / (1 - b2^t) undoing the zero start
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from charrnn.errors import CharRNNError


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale all gradients together so that their joint L2 norm is at most max_norm
    (PyTorch's clip_grad_norm_, its 1e-6 included). Returns the norm before clipping."""
    norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
    scale = max_norm / (norm + 1e-6)
    if scale < 1.0:
        for g in grads.values():
            g *= scale
    return norm


class Optimizer(ABC):
    def __init__(self, lr: float, weight_decay: float = 0.0):
        if not lr > 0:
            raise CharRNNError("--lr must be positive")
        self.lr, self.weight_decay, self.state, self.t = lr, weight_decay, {}, 0

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> None:
        """Update every parameter in place from its gradient."""
        self.t += 1
        for name, p in params.items():
            g = grads[name] + self.weight_decay * p if self.weight_decay else grads[name]
            p -= self.update(name, g)

    @abstractmethod
    def update(self, name: str, g: np.ndarray) -> np.ndarray:
        """How far to move parameter `name` against its gradient `g`: each rule below says."""


class SGD(Optimizer):
    def __init__(self, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.momentum = momentum

    def update(self, name, g):
        if not self.momentum:
            return self.lr * g
        b = self.state.get(name)
        b = g.copy() if b is None else self.momentum * b + g
        self.state[name] = b
        return self.lr * b


class Adagrad(Optimizer):
    eps = 1e-10

    def update(self, name, g):
        s = self.state.setdefault(name, np.zeros_like(g))
        s += g * g
        return self.lr * g / (np.sqrt(s) + self.eps)


class RMSProp(Optimizer):
    eps = 1e-8

    def __init__(self, lr: float, alpha: float = 0.95, weight_decay: float = 0.0):
        super().__init__(lr, weight_decay)
        self.alpha = alpha  # 0.95: char-rnn's decay rate, also what charrnn's PyTorch engine uses

    def update(self, name, g):
        s = self.state.setdefault(name, np.zeros_like(g))
        s *= self.alpha
        s += (1.0 - self.alpha) * g * g
        return self.lr * g / (np.sqrt(s) + self.eps)


class Adam(Optimizer):
    betas, eps = (0.9, 0.999), 1e-8

    def update(self, name, g):
        b1, b2 = self.betas
        m, v = self.state.setdefault(name, (np.zeros_like(g), np.zeros_like(g)))
        m *= b1
        m += (1.0 - b1) * g
        v *= b2
        v += (1.0 - b2) * g * g
        m_hat, v_hat = m / (1.0 - b1**self.t), v / (1.0 - b2**self.t)
        return self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


OPTIMIZERS = {"sgd": SGD, "adagrad": Adagrad, "rmsprop": RMSProp, "adam": Adam}


def make_optimizer(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> Optimizer:
    """The optimizer `name` with charrnn's settings (momentum applies to sgd only)."""
    if name not in OPTIMIZERS:
        raise CharRNNError(f"the reference engine has no --optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    if name == "sgd":
        return SGD(lr, momentum, weight_decay)
    return OPTIMIZERS[name](lr, weight_decay=weight_decay)
