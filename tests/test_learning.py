"""Learning regressions on real text: a crash-free run is not enough, the loss must fall.

CI runs the short version; CHARRNN_SLOW=1 (make test-slow) runs the long one.
"""

import pytest

from charrnn.engines.model import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train
from conftest import SLOW


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_learns_tiny_shakespeare(tmp_path, cell):
    steps, target = (800, 1.75) if SLOW else (80, 2.6)
    r = train(
        TrainConfig(
            out=str(tmp_path / cell),
            model=ModelConfig(cell=cell, layers=2, hidden_size=128),
            batch_size=32,
            seq_len=64,
            lr=3e-3,
            max_steps=steps,
            max_epochs=0,
            eval_every=steps,
            eval_chars=30_000,
            quiet=True,
        )
    )
    assert r.val_loss < target, f"{cell}: validation loss {r.val_loss:.3f} after {steps} steps"
