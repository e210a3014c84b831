"""Fine-tuning (--init-from): the grown vocabulary and weights, and a run that starts from another."""

import json

import numpy as np
import pytest
import torch

from charrnn.cli import main
from charrnn.data.corpus import DataConfig
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.errors import CharRNNError
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig
from charrnn.training.init_from import Source, fine_tuning_config, grow_vocab, grow_weights, id_map
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
        if "init_from" in dict(extra):  # the model's shape is the old run's: it may not be given
            config.model = ModelConfig(weight_drop=weight_drop)
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


def source(task="next-char", items=None, vocab=None, **model) -> Source:
    """A run to fine-tune from, as load_source reads it (weights are not needed here)."""
    model = ModelConfig(cell="gru", layers=1, hidden_size=32, embedding_size=16, **model)
    return Source({}, vocab or Vocab.from_chars("ab\n").with_end(items is not None), model, 10, task, items)


@pytest.mark.parametrize("task", ["classify", "tag", "truecase"])
def test_a_run_whose_head_is_not_characters_is_refused_in_one_line(task):
    config = TrainConfig(init_from="runs/cls")
    with pytest.raises(CharRNNError, match=f"runs/cls was trained with --task {task}; --init-from fine-tunes"):
        fine_tuning_config(config, source(task))


def test_the_model_is_the_runs_with_its_regularisation_unless_given():
    src = source(dropout=0.25, weight_drop=0.3, items="lines")
    tuned = fine_tuning_config(TrainConfig(init_from="runs/de", lr=0.01), src)
    assert tuned.model == src.model and tuned.model.dropout == 0.25 and tuned.model.weight_drop == 0.3
    assert tuned.data.items == "lines"  # the end symbol stays: samples are still whole items
    assert tuned.keep == ["init_from", "lr"]  # what was given, so that --resume sees the same
    # typed on the command line: a 0 too
    typed = TrainConfig(init_from="runs/de", keep=["init_from", "dropout", "items"])
    typed.data.items = "paragraphs"
    tuned = fine_tuning_config(typed, src)
    assert (tuned.model.dropout, tuned.model.weight_drop, tuned.data.items) == (0.0, 0.3, "paragraphs")
    assert tuned.model.hidden_size == 32 and tuned.model.cell == "gru"


@pytest.mark.parametrize(
    "model, keep, flag",
    [
        (ModelConfig(hidden_size=512), None, "--hidden-size"),
        (ModelConfig(cell="gru"), None, "--cell"),
        (ModelConfig(layers=3, cutoffs=[10]), None, "--cutoffs, --layers"),
        (ModelConfig(), ["init_from", "embedding_size"], "--embedding-size"),  # typed, even as the default
        (ModelConfig(hidden_size=64, embedding_size=64, tie_weights=True), None, "--hidden-size, --tie-weights"),
    ],
)
def test_a_given_model_shape_is_refused_in_one_line(model, keep, flag):
    config = TrainConfig(init_from="runs/de", model=model, keep=keep)
    with pytest.raises(CharRNNError, match=f"^--init-from keeps the model shape of runs/de: drop {flag}"):
        config.check()
    TrainConfig(init_from="runs/de", model=ModelConfig(dropout=0.5, weight_drop=0.2)).check()  # these may change


def test_a_typed_shape_flag_is_refused_before_anything_is_read(tmp_path, capsys):
    (tmp_path / "t.txt").write_text(small_text(50))
    argv = ["train", "--data", str(tmp_path / "t.txt"), "--out", str(tmp_path / "x"), "--init-from", "runs/de"]
    assert main([*argv, "--hidden-size", "512", "--cell", "lstm"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["charrnn train: error: --init-from keeps the model shape of runs/de: drop --cell, --hidden-size"]
    assert not (tmp_path / "x").exists()


def test_label_symbols_of_a_generate_run_are_dropped():
    old = Vocab.from_chars("ab\n").with_labels(("x", "y"))  # a b \n <end> <x> <y>
    new = grow_vocab(old, Vocab.from_chars("abc\n"), end=False)
    assert new.chars == ("\n", "a", "b", "c") and not new.labels and new.size == 4
    assert id_map(old, new).tolist() == [0, 1, 2, -1, -1, -1]
    w = {"embedding.weight": np.ones((6, 2)), "head.weight": np.ones((6, 3)), "head.bias": np.arange(6.0)}
    g = grow_weights(w, old, new, tied=False, seed=0)
    assert g["head.weight"].shape == (4, 3) and not g["head.weight"][3].any()  # c is new, not label x
    assert g["head.bias"].tolist() == [0, 1, 2, 0]
    with pytest.raises(CharRNNError, match="--task generate run with --cutoffs"):
        fine_tuning_config(TrainConfig(init_from="runs/gen"), source("generate", vocab=old, cutoffs=[2]))


def _train(*argv) -> None:
    common = ["--batch-size", "4", "--lr", "0.01", "--max-epochs", "0", "--eval-every", "10", "--quiet"]
    assert main(["train", *argv, *common]) == 0


def _meta(run) -> dict:
    return json.loads((run / "best" / "checkpoint.json").read_text())


def test_fine_tuning_keeps_the_items_and_regularisation_of_the_run(tmp_path, capsys):
    (tmp_path / "names.txt").write_text("\n".join(w.capitalize() for w in small_text(60).split()) + "\n")
    (tmp_path / "new.txt").write_text(small_text(60).replace("o", "ö"))
    shape = ["--hidden-size", "32", "--embedding-size", "16", "--layers", "1", "--cell", "gru"]
    old_run = ["--out", str(tmp_path / "names"), "--items", "lines", "--dropout", "0.25", "--weight-drop", "0.3"]
    _train("--data", str(tmp_path / "names.txt"), *old_run, "--max-steps", "10", *shape)
    tune = ["--init-from", str(tmp_path / "names"), "--max-steps", "10"]
    _train("--data", str(tmp_path / "new.txt"), "--out", str(tmp_path / "i3"), *tune)
    meta, old = _meta(tmp_path / "i3"), _meta(tmp_path / "names")
    assert meta["train"]["data"]["items"] == "lines" and meta["vocab"]["end"]
    assert meta["vocab"]["chars"].startswith(old["vocab"]["chars"]) and "ö" in meta["vocab"]["chars"]
    assert meta["model"] == {**old["model"], "vocab_size": meta["model"]["vocab_size"]}  # the run's model
    assert meta["model"]["dropout"] == 0.25 and meta["model"]["weight_drop"] == 0.3
    # typed, they change
    (tmp_path / "paragraphs.txt").write_text(small_text(60).replace("\n", "\n\n"))
    typed = ["--items", "paragraphs", "--dropout", "0"]
    _train("--data", str(tmp_path / "paragraphs.txt"), "--out", str(tmp_path / "i4"), *tune, *typed)
    meta = _meta(tmp_path / "i4")
    assert meta["train"]["data"]["items"] == "paragraphs" and meta["vocab"]["end"]
    assert (meta["model"]["dropout"], meta["model"]["weight_drop"]) == (0.0, 0.3)
    capsys.readouterr()


def test_a_classifier_is_refused_and_a_generate_run_fine_tunes(tmp_path, capsys):
    folder = tmp_path / "labelled"
    folder.mkdir()
    (folder / "Russian.txt").write_text("Ivanov\nPetrov\nSidorov\nPopov\nOrlov\n" * 3)
    (folder / "Swedish.txt").write_text("Ivarson\nPetterson\nSvenson\nOlson\nLarson\n" * 3)
    (tmp_path / "new.txt").write_text(small_text(60))
    shape = ["--hidden-size", "16", "--embedding-size", "8", "--layers", "1"]
    for task in ("classify", "generate"):
        _train("--task", task, "--data", str(folder), "--out", str(tmp_path / task), "--max-steps", "4", *shape)
    capsys.readouterr()
    argv = ["train", "--data", str(tmp_path / "new.txt"), "--max-steps", "4", "--quiet", "--batch-size", "4"]
    assert main([*argv, "--out", str(tmp_path / "i3"), "--init-from", str(tmp_path / "classify")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "was trained with --task classify; --init-from fine-tunes" in err[0]
    assert not (tmp_path / "i3").exists()
    assert main([*argv, "--out", str(tmp_path / "gen"), "--init-from", str(tmp_path / "generate")]) == 0
    meta, old = _meta(tmp_path / "gen"), _meta(tmp_path / "generate")
    assert meta["task"] == "next-char" and "labels" not in meta["vocab"] and not meta["vocab"].get("end")
    assert meta["vocab"]["chars"].startswith(old["vocab"]["chars"])
