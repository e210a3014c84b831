import json
import os

import pytest
import torch

from charrnn import checkpoint as ckpt
from charrnn.errors import CharRNNError
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.data.vocab import Vocab


def save(folder, tie=False, cell="gru"):
    torch.manual_seed(1)
    cfg = ModelConfig(vocab_size=5, cell=cell, hidden_size=8, embedding_size=8, tie_weights=tie)
    m = CharRNN(cfg)
    ckpt.save_checkpoint(folder, m.state_dict(), {"engine": "torch", "model": cfg.to_json(), "vocab": Vocab.from_chars("abcde").to_json()})
    return m


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_gives_identical_logits(tmp_path, tie):
    m = save(tmp_path / "run" / "best", tie).eval()
    loaded, vocab, meta = ckpt.load_model(tmp_path / "run")
    x = torch.randint(0, 5, (2, 7))
    assert torch.equal(m(x)[0], loaded(x)[0])
    assert vocab == Vocab.from_chars("abcde") and meta["format"] == ckpt.FORMAT
    assert json.loads((tmp_path / "run" / "best" / "checkpoint.json").read_text())["model"]["cell"] == "gru"


def test_overwrite_is_a_swap_and_a_crash_inside_it_falls_back(tmp_path):
    run = tmp_path / "run"
    save(run / "last", cell="gru")
    m = save(run / "last", cell="lstm").eval()  # the second write replaces the first whole
    assert sorted(os.listdir(run)) == ["last"]
    os.rename(run / "last", run / ".last.old")  # as if killed between the two renames
    assert ckpt.resolve(run, "last") == run / ".last.old"
    loaded = ckpt.load_model(run, "last")[0]
    x = torch.randint(0, 5, (2, 7))
    assert loaded.config.cell == "lstm" and torch.equal(loaded(x)[0], m(x)[0])


def test_trainer_state_loads_with_weights_only(tmp_path):
    state = {"step": 3, "rng": torch.get_rng_state(), "hidden": [torch.zeros(2, 3)], "x": {"a": 1.5}}
    ckpt.save_checkpoint(tmp_path / "last", {}, {"model": {}, "vocab": {}}, state)
    loaded = ckpt.load_trainer_state(tmp_path / "last")  # torch.load(weights_only=True) inside
    assert loaded["step"] == 3 and torch.equal(loaded["rng"], state["rng"])


def test_missing_checkpoint_errors(tmp_path):
    with pytest.raises(CharRNNError, match="no such run folder"):
        ckpt.resolve(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CharRNNError, match="holds no checkpoint"):
        ckpt.resolve(tmp_path / "empty")


def test_a_checkpoint_of_an_unknown_task_is_refused_in_one_line(tmp_path):
    cfg = ModelConfig(vocab_size=4, hidden_size=8, embedding_size=4)
    meta = {"engine": "torch", "task": "translate", "model": cfg.to_json(), "vocab": Vocab.from_chars("abc\n").to_json()}
    ckpt.save_checkpoint(tmp_path / "best", CharRNN(cfg).state_dict(), meta)
    with pytest.raises(CharRNNError, match="unknown task 'translate': this charrnn knows next-char"):
        ckpt.load_model(tmp_path)
    meta["task"] = "next-char"
    ckpt.save_checkpoint(tmp_path / "best", CharRNN(cfg).state_dict(), meta)
    assert ckpt.load_model(tmp_path)[2]["task"] == "next-char"
