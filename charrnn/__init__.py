"""charrnn: character-level RNN, LSTM and GRU language models.

The Python API, in the order a user meets it:

    from charrnn import TrainConfig, ModelConfig, DataConfig, train, load_model, sample, SampleConfig

    result = train(TrainConfig(out="runs/mine", data=DataConfig(data="my_texts/"),
                               model=ModelConfig(cell="lstm", hidden_size=256), max_time=120))
    model, vocab, meta = load_model("runs/mine")
    print(sample(model, vocab, SampleConfig(prime="ROMEO:", length=300, temperature=0.8))[0])

The names are imported on first use, so that `import charrnn.reference` (the NumPy
engine) does not import torch.
"""

import sys
import types
from importlib import import_module

from charrnn.errors import CharRNNError

__version__ = "0.1.0"

_API = {
    "load_model": "charrnn.checkpoint", "DataConfig": "charrnn.data", "load_corpus": "charrnn.data",
    "eval_run": "charrnn.evaluate", "evaluate": "charrnn.evaluate", "CharRNN": "charrnn.model",
    "ModelConfig": "charrnn.model", "SampleConfig": "charrnn.sampling", "generate": "charrnn.sampling",
    "sample": "charrnn.sampling", "TrainConfig": "charrnn.train_config", "Trainer": "charrnn.train",
    "train": "charrnn.train", "Vocab": "charrnn.vocab",
}  # fmt: skip

__all__ = ["CharRNNError", *_API]


class _Package(types.ModuleType):
    def __getattr__(self, name: str):
        if name not in _API:
            raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
        value = getattr(import_module(_API[name]), name)
        setattr(self, name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        # Importing the submodule charrnn.train (or charrnn.evaluate) sets the package's
        # attribute of that name to the module; keep the function of the same name there,
        # as the eager imports this replaces did.
        if isinstance(value, types.ModuleType) and _API.get(name) == value.__name__:
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(_API))


sys.modules[__name__].__class__ = _Package
