"""Helpers shared by the tests of activations, viz, plot and serve: tiny saved models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from charrnn.checkpoint import save_checkpoint
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig

# The machine running the tests is shared: one thread is plenty for these tiny models.
torch.set_num_threads(1)

TEXT = 'He said "to be (or not) to be".\nShe [said] {nothing}, and left.\n'


def tiny_model(cell: str = "lstm", layers: int = 2, hidden_size: int = 12, seed: int = 0, text: str = TEXT):
    """A random-init CharRNN whose vocabulary covers `text`; random weights are enough to check plumbing."""
    vocab = Vocab.from_chars(text)
    torch.manual_seed(seed)
    model = CharRNN(
        ModelConfig(vocab_size=vocab.size, cell=cell, layers=layers, hidden_size=hidden_size, embedding_size=8)
    )
    return model.eval(), vocab


def save_run(folder: Path, model: CharRNN, vocab: Vocab) -> Path:
    save_checkpoint(
        Path(folder) / "best", model.state_dict(), {"model": model.config.to_json(), "vocab": vocab.to_json()}
    )
    return Path(folder)


@torch.inference_mode()
def naive_steps(model: CharRNN, ids: np.ndarray):
    """The reference: model.step one id at a time from the zero state.

    Returns states (K, L, T, H) and next-character probabilities (T, V), both float64.
    """
    state, states, probs = None, [], []
    for i in ids:
        logits, state = model.step(torch.tensor([int(i)]), state)
        probs.append(torch.softmax(logits[0].double(), -1).numpy())
        states.append(np.stack([s[:, 0].double().numpy() for s in state]))  # (K, L, H)
    return np.stack(states, axis=2), np.stack(probs)


# A tiny classifier's data: one surname stem per line, and the label is the ending.
STEMS = "Ivan Petr Smirn Kuzn Pop Vasil Sokol Mikhail Fedor Lebed Kozl Novik Moroz Volk Zaits Pavl Semen Golub".split()
ENDINGS = {"English": "son", "Russian": "ov", "Spanish": "ez"}


def tiny_surnames(folder: Path, task: str = "classify") -> Path:
    """Train a classify (or generate) run, a few seconds on one thread, on surnames told apart
    by their endings, -son, -ov and -ez: a name becomes Russian at its last two letters."""
    from charrnn.data.corpus import DataConfig
    from charrnn.training.config import TrainConfig
    from charrnn.training.trainer import train

    data = Path(folder) / "names"
    data.mkdir(parents=True)
    for label, ending in ENDINGS.items():
        (data / f"{label}.txt").write_text("".join(f"{stem}{ending}\n" for stem in STEMS), encoding="utf-8")
    run = Path(folder) / "run"
    train(
        TrainConfig(
            out=str(run),
            task=task,
            data=DataConfig(data=str(data)),
            model=ModelConfig(hidden_size=32, layers=1, embedding_size=16),
            batch_size=8,
            max_steps=60,
            eval_every=30,
            quiet=True,
            threads=1,
        )
    )
    return run
