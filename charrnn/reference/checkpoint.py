"""One checkpoint format for both engines: the reference model in PyTorch's layout.

A reference checkpoint is an ordinary charrnn checkpoint (see charrnn/checkpoint.py):
model.safetensors holds the weights under charrnn.engines.model.CharRNN's state_dict names,
so `charrnn sample` and `charrnn eval` load it unchanged, and a PyTorch-trained
checkpoint loads here. Only the names and the biases need translating:

    reference                      PyTorch (CharRNN state_dict)
    embedding          (V, E)      embedding.weight           (absent for one-hot)
    layers.k.W_xh      (G, E|H)    rnn.weight_ih_l{k}         gate blocks in the same order:
    layers.k.W_hh      (G, H)      rnn.weight_hh_l{k}         LSTM i,f,g,o; GRU r,z,n
    layers.k.b_h       (G,)        rnn.bias_ih_l{k} + rnn.bias_hh_l{k}
    layers.k.b_hn      (H,)        rnn.bias_hh_l{k}[2H:]      GRU only (see cells.GRU)
    layers.L-1.W_hy    (V, H)      head.weight
    layers.L-1.b_y     (V,)        head.bias

PyTorch keeps two bias vectors where the equations need one (they are always added
together), except in the GRU's candidate n, where r multiplies the hidden side's bias.
Writing b_h as bias_ih with a zero bias_hh (GRU: b_hn in its n block) gives the same model.

Nothing here imports torch: the files are read and written with safetensors.numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charrnn import checkpoint as ckpt
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.reference.model import CharRNN, ModelConfig


def to_state_dict(model: CharRNN) -> dict[str, np.ndarray]:
    """The reference model's weights under charrnn.engines.model.CharRNN's state_dict names."""
    out = {} if model.embedding is None else {"embedding.weight": model.embedding}
    for k, layer in enumerate(model.layers):
        bias_hh = np.zeros_like(layer.b_h)
        if model.config.cell == "gru":
            bias_hh[2 * layer.hidden_size :] = layer.b_hn
        out.update(
            {
                f"rnn.weight_ih_l{k}": layer.W_xh,
                f"rnn.weight_hh_l{k}": layer.W_hh,
                f"rnn.bias_ih_l{k}": layer.b_h,
                f"rnn.bias_hh_l{k}": bias_hh,
            }
        )
    out["head.weight"], out["head.bias"] = model.top.W_hy, model.top.b_y
    return out


def from_state_dict(config: ModelConfig, weights: dict, dtype=np.float64) -> CharRNN:
    """A reference model holding `weights` (CharRNN state_dict names; NumPy arrays or
    anything np.asarray takes)."""
    if config.cutoffs:
        raise CharRNNError("the reference engine has the article's full softmax, not this model's --cutoffs head")
    model = CharRNN(config, dtype=dtype)
    w = {k: np.asarray(v, dtype=dtype) for k, v in weights.items()}
    expected = set(to_state_dict(model))
    if set(w) != expected:
        missing, extra = sorted(expected - set(w)), sorted(set(w) - expected)
        what = f"a {config.layers}-layer {config.cell} model"
        raise CharRNNError(f"the weights do not fit {what}: missing {missing}, unexpected {extra}")
    if model.embedding is not None:
        model.embedding = _fit(w["embedding.weight"], model.embedding, "embedding.weight")
    for k, layer in enumerate(model.layers):
        layer.W_xh = _fit(w[f"rnn.weight_ih_l{k}"], layer.W_xh, f"rnn.weight_ih_l{k}")
        layer.W_hh = _fit(w[f"rnn.weight_hh_l{k}"], layer.W_hh, f"rnn.weight_hh_l{k}")
        b_ih, b_hh = w[f"rnn.bias_ih_l{k}"], w[f"rnn.bias_hh_l{k}"].copy()
        if config.cell == "gru":  # the n block of bias_hh stays on the hidden side, inside r * (...)
            layer.b_hn = b_hh[2 * layer.hidden_size :].copy()
            b_hh[2 * layer.hidden_size :] = 0.0
        layer.b_h = _fit(b_ih + b_hh, layer.b_h, f"rnn.bias_ih_l{k}")
        layer.reset()
    model.top.W_hy = _fit(w["head.weight"], model.top.W_hy, "head.weight")
    model.top.b_y = _fit(w["head.bias"], model.top.b_y, "head.bias")
    return model


def _fit(value: np.ndarray, like: np.ndarray, name: str) -> np.ndarray:
    if value.shape != like.shape:
        raise CharRNNError(f"{name} has shape {value.shape}, but the model config needs {like.shape}")
    return value.copy()


def save(folder: str | Path, model: CharRNN, vocab: Vocab, meta: dict | None = None) -> None:
    """Atomically write the checkpoint `folder` ("engine": "reference"), weights in float32
    as the PyTorch engine keeps them. `meta` adds step, metrics and the training config."""
    weights = {k: v.astype(np.float32) for k, v in to_state_dict(model).items()}
    info = {"engine": "reference", "model": model.config.to_json(), "vocab": vocab.to_json(), "step": 0, **(meta or {})}
    ckpt.save_checkpoint(Path(folder), weights, info)


def load(path: str | Path, which: str = "best", dtype=np.float64) -> tuple[CharRNN, Vocab, dict]:
    """(model, vocab, meta) from a run folder or checkpoint of either engine."""
    folder = ckpt.resolve(path, which)
    meta = ckpt.read_meta(folder)
    weights = ckpt.load_weights(folder, numpy=True)  # checked against its SHA-256
    return from_state_dict(ModelConfig.from_json(meta["model"]), weights, dtype), Vocab.from_json(meta["vocab"]), meta
