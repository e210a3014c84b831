"""The labelled tasks on a CUDA GPU (scripts/gpu_check.sh runs this file there): packed
bidirectional batches on cuDNN give the CPU's logits, and a classifier trains and applies."""

import pytest
import torch

from charrnn.data.corpus import DataConfig
from charrnn.engines.config import ModelConfig
from charrnn.engines.model import CharRNN
from charrnn.predict import classify
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_packed_bidirectional_logits_match_the_cpu(cell):
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(9, cell, 2, 16, 8, bidirectional=True, head_size=4)).eval()
    x = torch.randint(0, 9, (5, 11))
    lengths = torch.tensor([11, 3, 7, 1, 9])
    with torch.no_grad():
        cpu, _ = model(x, None, lengths)
        gpu, _ = model.cuda()(x.cuda(), None, lengths.cuda())
    for k, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(gpu[k, :n].cpu(), cpu[k, :n], rtol=1e-4, atol=1e-5)


@cuda
def test_a_bidirectional_classifier_trains_on_cuda(tmp_path):
    folder = tmp_path / "names"
    folder.mkdir()
    stems = "iv petr sid kuzn mor vol lebed sokol pop fedor ivan orl bel nov smirn".split()
    (folder / "Russian.txt").write_text("\n".join(s.capitalize() + "ov" for s in stems))
    (folder / "Swedish.txt").write_text("\n".join(s.capitalize() + "son" for s in stems))
    model = ModelConfig(hidden_size=32, layers=1, embedding_size=16, bidirectional=True)
    config = TrainConfig(
        out=str(tmp_path / "run"),
        task="classify",
        data=DataConfig(data=str(folder), val_fraction=0.2),
        model=model,
        batch_size=4,
        lr=1e-2,
        max_steps=150,
        max_epochs=0,
        eval_every=75,
        quiet=True,
        device="cuda",
    )
    run = train(config).out
    assert [next(iter(p)) for p in classify(run, ["Kozlov", "Larsson"], device="cuda")] == ["Russian", "Swedish"]
