"""charrnn: character-level RNN, LSTM and GRU language models.

The Python API, in the order a user meets it:

    from charrnn import TrainConfig, ModelConfig, DataConfig, train, load_model, sample, SampleConfig

    result = train(TrainConfig(out="runs/mine", data=DataConfig(data="my_texts/"),
                               model=ModelConfig(cell="lstm", hidden_size=256), max_time=120))
    model, vocab, meta = load_model("runs/mine")
    print(sample(model, vocab, SampleConfig(prime="ROMEO:", length=300, temperature=0.8))[0])

The names are imported on first use (PEP 562), so that `import charrnn.reference`
(the NumPy engine) does not import torch. docs/architecture.md maps the subpackages.
"""

from importlib import import_module

from charrnn.errors import CharRNNError

__version__ = "0.1.0"

_API = {
    "load_model": "charrnn.load",
    "DataConfig": "charrnn.data.corpus",
    "load_corpus": "charrnn.data.corpus",
    "EvalConfig": "charrnn.evaluation",
    "eval_run": "charrnn.evaluation",
    "evaluate": "charrnn.evaluation",
    "CharRNN": "charrnn.engines.model",
    "ModelConfig": "charrnn.engines.model",
    "SampleConfig": "charrnn.sampling.generate",
    "generate": "charrnn.sampling.generate",
    "sample": "charrnn.sampling.generate",
    "TrainConfig": "charrnn.training.config",
    "Trainer": "charrnn.training.trainer",
    "train": "charrnn.training.trainer",
    "Vocab": "charrnn.data.vocab",
    "beam_search": "charrnn.sampling.beam",
    "index_for_run": "charrnn.sampling.novelty",
    "NoveltyIndex": "charrnn.sampling.novelty",
    "ItemSet": "charrnn.sampling.seen_items",
    "interactive": "charrnn.sampling.interactive",
    "classify": "charrnn.predict",
    "tag": "charrnn.predict",
    "eval_labelled": "charrnn.labelled_eval",
}

__all__ = ["CharRNNError", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'charrnn' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
