"""Fine-tuning (--init-from): the grown vocabulary and weights, and a run that starts from another."""

import json

import numpy as np
import pytest
import torch

from charrnn.cli import main
from charrnn.data.corpus import DataConfig
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig
from charrnn.training.init_from import grow_vocab, grow_weights
from conftest import small_text


@pytest.mark.parametrize("cell, embedding_size, tie", [("lstm", 8, False), ("gru", 0, False), ("rnn", 16, True)])
@pytest.mark.parametrize("end", [False, True])
def test_old_characters_are_predicted_as_before_at_step_0(cell, embedding_size, tie, end):
    old = Vocab.from_chars("abc \n").with_end(end)
    new = grow_vocab(old, Vocab.from_chars("ab zy\n"), end=end)
    assert new.chars == old.chars + ("y", "z") and new.end == end
    cfg = ModelConfig(vocab_size=old.size, cell=cell, hidden_size=16, embedding_size=embedding_size, tie_weights=tie)
    torch.manual_seed(0)
    before = CharRNN(cfg).eval()
    weights = {k: v.numpy() for k, v in before.state_dict().items()}
    after = CharRNN(ModelConfig(**{**cfg.to_json(), "vocab_size": new.size})).eval()
    after.load_state_dict({k: torch.from_numpy(v) for k, v in grow_weights(weights, old, new, tie, seed=1).items()})
    prime = torch.tensor([[0, 1, 2, 3, 4, 0, 2]])  # old characters only
    p_old = torch.softmax(before(prime)[0].double(), -1)
    logits = after(prime)[0].double()
    moved = [i if i < len(old.chars) else new.end_id for i in range(old.size)]  # the end symbol moves
    assert torch.allclose(torch.softmax(logits[..., moved], -1), p_old, atol=1e-6)  # old ones, relative to each other
    p_new = torch.softmax(logits, -1)
    fresh = p_new[..., len(old.chars) : len(new.chars)]
    assert (fresh <= p_old.max(-1, keepdim=True).values).all() and fresh.max() < 0.5  # a small share for new ones


def test_a_new_run_starts_from_the_old_weights_and_learns_the_new_characters(tmp_path, capsys):
    (tmp_path / "old.txt").write_text(small_text(300))
    (tmp_path / "new.txt").write_text(small_text(300).replace("o", "ö").replace("w", "W"))
    common = [
        "--batch-size",
        "8",
        "--seq-len",
        "32",
        "--hidden-size",
        "32",
        "--embedding-size",
        "16",
        "--max-epochs",
        "0",
        "--eval-every",
        "50",
        "--quiet",
        "--lr",
        "0.01",
    ]
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "old.txt"),
                "--out",
                str(tmp_path / "old"),
                "--max-steps",
                "150",
                *common,
            ]
        )
        == 0
    )
    capsys.readouterr()

    def new_run(name, *extra, weight_drop=0.0):
        config = TrainConfig(
            out=str(tmp_path / name),
            data=DataConfig(data=str(tmp_path / "new.txt")),
            batch_size=8,
            seq_len=32,
            max_epochs=0,
            max_steps=60,
            eval_every=30,
            quiet=True,
            lr=0.01,
            model=ModelConfig(hidden_size=32, embedding_size=16, weight_drop=weight_drop),
            **dict(extra),
        )
        return build_trainer(config)[0]

    tuned = new_run("tuned", ("init_from", str(tmp_path / "old")), weight_drop=0.1)
    scratch = new_run("scratch")
    assert "2 new character(s) 'Wö' added to the vocabulary" in capsys.readouterr().err
    start = tuned.validation_loss()
    result, baseline = tuned.run(), scratch.run()
    assert result.val_loss < baseline.val_loss - 0.15, (result.val_loss, baseline.val_loss)  # same steps, a head start
    assert result.val_loss < start - 0.3  # and it learns the new characters
    meta = json.loads((tmp_path / "tuned" / "best" / "checkpoint.json").read_text())
    old_chars = json.loads((tmp_path / "old" / "best" / "checkpoint.json").read_text())["vocab"]["chars"]
    assert meta["vocab"]["chars"] == old_chars + "Wö" and meta["train"]["init_from"] == str(tmp_path / "old")
    assert meta["model"]["weight_drop"] == 0.1  # the old run's shape, the new run's regularisation
    # --resume continues the fine-tuned run itself: same vocabulary, its own weights
    assert main(["train", "--out", str(tmp_path / "tuned"), "--resume", "--max-steps", "70"]) == 0
    resumed = json.loads((tmp_path / "tuned" / "last" / "checkpoint.json").read_text())
    assert resumed["step"] == 70 and resumed["vocab"] == meta["vocab"]


def test_init_from_a_missing_run_is_one_line(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(small_text(50))
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "t.txt"),
                "--init-from",
                str(tmp_path / "nothing"),
                "--out",
                str(tmp_path / "x"),
                "--max-steps",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run folder" in err[0]


def test_the_end_symbol_keeps_its_learned_row():
    old = Vocab.from_chars("ab\n").with_end()
    new = grow_vocab(old, Vocab.from_chars("abc\n"), end=True)
    w = {
        "embedding.weight": np.arange(4 * 2, dtype=np.float32).reshape(4, 2),
        "head.weight": np.ones((4, 3), np.float32),
        "head.bias": np.arange(4, dtype=np.float32),
    }
    g = grow_weights(w, old, new, tied=False, seed=0)
    assert g["head.bias"][new.end_id] == w["head.bias"][old.end_id] == 3
    assert np.array_equal(g["embedding.weight"][new.end_id], w["embedding.weight"][old.end_id])
