"""Gradient check: the hand-written backward pass against centred finite differences.

For each parameter element p, (loss(p + eps) - loss(p - eps)) / (2 eps) estimates
dLoss/dp with an error of order eps^2. In float64 with eps = 1e-5 that is far below
the 1e-6 we ask of the relative error, so a mistake in any backward line shows.
"""

from __future__ import annotations

import numpy as np

from charrnn.reference.model import CharRNN


def numerical_grads(model: CharRNN, x: np.ndarray, y: np.ndarray, state=None, eps: float = 1e-5) -> dict:
    """dLoss/dparam for every parameter, element by element (2 forwards per element)."""
    out = {}
    for name, p in model.params().items():
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + eps
            plus = model.loss(x, y, state)[0]
            p[i] = keep - eps
            minus = model.loss(x, y, state)[0]
            p[i] = keep
            g[i] = (plus - minus) / (2 * eps)
        out[name] = g
    return out


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """|a - b| / (|a| + |b|) in the L2 norm: 0 for equal arrays, 1 for opposite ones."""
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    return float(np.linalg.norm(a - b) / denom) if denom > 0 else 0.0


def grad_check(model: CharRNN, x: np.ndarray, y: np.ndarray, state=None, eps: float = 1e-5) -> dict[str, float]:
    """The relative error of the analytic gradient of each parameter (name -> error)."""
    _, analytic, _ = model.loss(x, y, state)
    numeric = numerical_grads(model, x, y, state, eps)
    return {name: relative_error(analytic[name], numeric[name]) for name in numeric}
