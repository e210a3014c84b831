"""Models for the export tests: small, untrained, with weights scaled up so that the
next-character distributions are far from uniform and the states saturate (a wrong gate
or a wrong bias then moves the probabilities by far more than the tests' tolerances)."""

from __future__ import annotations

import torch

from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig

TEXT = 'He said "to be (or not) to be".\nShe [said] {nothing}, and left.\n'

# One variant per cell, covering one-hot input, an embedding, tied weights and 1 to 3 layers.
VARIANTS = {
    "rnn": dict(layers=1, hidden_size=10, embedding_size=0),
    "lstm": dict(layers=2, hidden_size=12, embedding_size=8),
    "gru": dict(layers=3, hidden_size=8, embedding_size=8, tie_weights=True),
}


def export_model(cell: str, encoding: str = "utf-8", seed: int = 0, scale: float = 3.0, head: float = 4.0, **overrides):
    """(model, vocab) of `cell`'s variant: random weights times `scale`, the head's times `head` * `scale`."""
    vocab = Vocab.bytes_vocab() if encoding == "bytes" else Vocab.from_chars(TEXT)
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(vocab_size=vocab.size, cell=cell, **{**VARIANTS[cell], **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
        model.head.weight.mul_(head)
    return model.eval(), vocab


@torch.no_grad()
def torch_probs(model, ids) -> torch.Tensor:
    """(P, V) float64 next-character probabilities after each of `ids`, from the zero state."""
    logits, _ = model(torch.as_tensor(ids, dtype=torch.long)[None])
    return torch.softmax(logits[0].double(), -1)
