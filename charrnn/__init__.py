"""charrnn: character-level RNN, LSTM and GRU language models.

The Python API, in the order a user meets it:

    from charrnn import TrainConfig, ModelConfig, DataConfig, train, load_model, sample, SampleConfig

    result = train(TrainConfig(out="runs/mine", data=DataConfig(data="my_texts/"),
                               model=ModelConfig(cell="lstm", hidden_size=256), max_time=120))
    model, vocab, meta = load_model("runs/mine")
    print(sample(model, vocab, SampleConfig(prime="ROMEO:", length=300, temperature=0.8))[0])
"""

from charrnn.checkpoint import load_model
from charrnn.data import DataConfig, load_corpus
from charrnn.errors import CharRNNError
from charrnn.evaluate import eval_run, evaluate
from charrnn.model import CharRNN, ModelConfig
from charrnn.sampling import SampleConfig, generate, sample
from charrnn.train import TrainConfig, Trainer, train
from charrnn.vocab import Vocab

__version__ = "0.1.0"

__all__ = [
    "CharRNN", "CharRNNError", "DataConfig", "ModelConfig", "SampleConfig", "TrainConfig", "Trainer", "Vocab",
    "eval_run", "evaluate", "generate", "load_corpus", "load_model", "sample", "train",
]  # fmt: skip
