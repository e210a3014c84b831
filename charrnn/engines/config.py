"""The model's config: one dataclass for both engines, and no torch, so that configs,
checkpoints and the NumPy engine can use it without PyTorch.

Shapes used throughout charrnn:
    B  batch size (number of streams)        T  sequence length (time steps)
    V  vocabulary size                       E  embedding size (V when one-hot)
    H  hidden size                           L  number of layers
    C  labels (classify, generate)           K  tags (tag, truecase)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from charrnn.errors import CharRNNError
from charrnn.knobs import Checked, knob

CELL_NAMES = ("rnn", "lstm", "gru")
# Knobs that act only while training: fine-tuning may change them (given ones come from the new run,
# the others stay the old run's), and dynamic evaluation (which trains while it scores) turns them off.
TRAINING_ONLY = ("dropout", "weight_drop")


@dataclass
class ModelConfig(Checked):
    vocab_size: int = knob(65, "V, set from the corpus", flag=False, ge=1)
    cell: str = knob("lstm", "recurrent cell: rnn (vanilla tanh), lstm or gru", choices=CELL_NAMES)
    layers: int = knob(2, "L: number of stacked recurrent layers", ge=1)
    hidden_size: int = knob(256, "H: hidden units per layer", ge=1)
    embedding_size: int = knob(
        64, "E: size of the learned character embedding", ge=1, off=(0, "1-of-k one-hot input, as in the article")
    )
    dropout: float = knob(0.0, "dropout probability between layers and before the output layer", ge=0, lt=1)
    weight_drop: float = knob(
        0.0,
        "while training, drop this share of the recurrent (hidden-to-hidden) weights, a new mask each batch "
        "(AWD-LSTM's weight drop): regularises the recurrence itself, which --dropout does not reach",
        ge=0,
        lt=1,
    )
    tie_weights: bool = knob(
        False,
        "share the input embedding with the output layer (needs --embedding-size equal to --hidden-size, "
        "which training sets when --embedding-size is left out, on the CLI or in the Python API)",
    )
    bidirectional: bool = knob(
        False, "read each item both ways (--task classify, tag and truecase: they may look ahead, generation may not)"
    )
    head_size: int = knob(0, "outputs of the head, set from the task's labels", flag=False, ge=1, off=(0, "V"))
    cutoffs: list[int] = knob(
        [],
        "adaptive softmax (PyTorch's nn.AdaptiveLogSoftmaxWithLoss) over the characters ranked by training-split "
        "frequency: the commonest cutoffs[0] get the full-width head, rarer clusters narrower projections "
        "(cheap for thousands of characters); each below V; empty (the flag alone) = a full V-way softmax",
        ge=1,
        increasing=True,
    )

    def rules(self) -> None:
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise CharRNNError("--tie-weights needs --embedding-size equal to --hidden-size")
        if self.tie_weights and self.head_size:
            raise CharRNNError("--tie-weights shares the embedding with a head of characters: drop it for this task")
        if self.cutoffs and self.tie_weights:
            raise CharRNNError("--cutoffs replaces the output layer that --tie-weights would share: drop one of them")
        if self.cutoffs and self.head_size:
            raise CharRNNError("--cutoffs is a head over characters; this task predicts labels or tags: drop it")

    def check_cutoffs(self) -> None:
        """Where V is known (the model is built): every cutoff must leave a cluster below V."""
        if self.cutoffs and self.cutoffs[-1] >= self.vocab_size:
            raise CharRNNError(
                f"--cutoffs {' '.join(map(str, self.cutoffs))}: each must be below the vocabulary's "
                f"{self.vocab_size} characters; drop the larger ones, or --cutoffs alone for a full softmax"
            )

    @property
    def outputs(self) -> int:
        """The head's size: V characters, or the task's C labels or K tags."""
        return self.head_size or self.vocab_size

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
