"""Items mode (--items): cutting, the item layout, scoring, training, sampling whole items."""

import json
import math

import numpy as np
import pytest
import torch

from charrnn.cli import main
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.data.items import ItemBatches, cut_items, newline_id
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig, loss_fn
from charrnn.engines.torch_engine import TorchEngine
from charrnn.evaluation import score_items
from charrnn.reference import CharRNN as RefCharRNN
from charrnn.reference import ModelConfig as RefModelConfig
from charrnn.reference import grad_check
from charrnn.tasks import IGNORE
from charrnn.training.build import build_trainer
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

NAMES = ["anna", "bob", "carl", "dora", "emil", "fritz", "greta", "hans", "ida", "jon", "karl", "lena"]


def items_of(text: str, kind: str, files=None):
    vocab = Vocab.from_chars(text)
    ids = vocab.encode(text)
    items = cut_items(ids, newline_id(vocab), kind, files or [len(ids)])
    return [vocab.decode(items.item(k)) for k in range(len(items))]


@pytest.mark.parametrize("text", ["a\nbb\n\nccc", "\n\nx y\nz\n\n\nw\n", "one\n", "é\nß\n"])
def test_lines_and_paragraphs_match_str_split(text):
    assert items_of(text, "lines") == [s for s in text.split("\n") if s]
    paragraphs = [p.strip("\n") for p in text.replace("\n\n\n", "\n\n").split("\n\n")]
    assert items_of(text, "paragraphs") == [p for p in paragraphs if p]


def test_files_are_items_without_their_trailing_newlines():
    text = "first file\nline two\n\n" + "second\n"
    assert items_of(text, "files", files=[len("first file\nline two\n\n"), len("second\n")]) == [
        "first file\nline two",
        "second",
    ]


def test_the_layout_reads_every_item_once_an_epoch_from_its_end_symbol():
    text = "\n".join(NAMES * 3) + "\n"
    vocab = Vocab.from_chars(text).with_end()
    items = cut_items(vocab.encode(text), newline_id(vocab), "lines", [len(text)])
    layout = ItemBatches(items, batch_size=4, seq_len=3, end_id=vocab.end_id, seed=5)
    for epoch in (0, 1):
        seen = []
        for i in range(layout.num_chunks):
            x, y = layout.chunk(i, epoch=epoch)
            if layout.starts_fresh(i, epoch):
                assert (x[:, 0] == vocab.end_id).all()  # every row begins an item
                rows_x, rows_y = [list(r) for r in x], [list(r) for r in y]
            else:
                rows_x, rows_y = [a + list(r) for a, r in zip(rows_x, x)], [a + list(r) for a, r in zip(rows_y, y)]
            last = i + 1 == layout.num_chunks or layout.starts_fresh(i + 1, epoch)
            if last:
                for rx, ry in zip(rows_x, rows_y):
                    n = ry.index(vocab.end_id)
                    assert rx[1 : n + 1] == ry[:n] and all(t == IGNORE for t in ry[n + 1 :])
                    seen.append(vocab.decode(ry[:n]))
        assert sorted(seen) == sorted(NAMES * 3)
    plans = [layout.plan(e) for e in range(4)]
    assert len({tuple(p) for p in plans}) > 1 and layout.plan(2) == plans[2]  # new order each epoch, reproducible


def test_scoring_items_equals_each_item_alone_from_zeros():
    vocab = Vocab.from_chars("".join(NAMES)).with_end()
    text = "\n".join(NAMES)
    base = Vocab.from_chars(text)
    items = cut_items(base.encode(text), newline_id(base), "lines", [len(text)])
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=vocab.size + 1, cell="lstm", hidden_size=16, embedding_size=8)).eval()
    end = base.end_id
    total, chars, n = score_items(TorchEngine(model), items, batch_size=5, seq_len=3, end_id=end)
    naive = 0.0
    for k in range(len(items)):  # the reference: one item at a time, one forward, no padding
        ids = torch.tensor([[end, *items.item(k).tolist(), end]])
        naive += loss_fn(model(ids[:, :-1])[0], ids[:, 1:], reduction="sum").item()
    assert n == len(NAMES) and chars == sum(len(s) + 1 for s in NAMES)
    assert total == pytest.approx(naive, rel=1e-6)


def test_the_reference_engines_loss_ignores_padding_and_its_gradients_check():
    model = RefCharRNN(RefModelConfig(7, "gru", 1, 5, 3), rng=0)
    x = np.array([[6, 1, 2, 3], [6, 4, 6, 6]])
    y = np.array([[1, 2, 3, 6], [4, 6, IGNORE, IGNORE]])
    loss, _, _ = model.loss(x, y)
    unpadded, _, _ = model.loss(x[1:, :2], y[1:, :2])
    first, _, _ = model.loss(x[:1], y[:1])
    assert loss == pytest.approx((4 * first + 2 * unpadded) / 6)  # the mean over the 6 scored positions
    assert max(grad_check(model, x, y).values()) < 1e-6


def names_config(tmp_path, **kw):
    corpus = tmp_path / "names.txt"
    corpus.write_text("\n".join(NAMES * 20) + "\n")
    base = dict(
        out=str(tmp_path / "run"),
        data=DataConfig(data=str(corpus), items="lines"),
        batch_size=8,
        seq_len=16,
        lr=1e-2,
        max_epochs=0,
        max_steps=300,
        eval_every=100,
        log_every=50,
        quiet=True,
        seed=1,
        model=ModelConfig(hidden_size=48, embedding_size=16),
    )
    return TrainConfig(**{**base, **kw})


def test_training_on_items_samples_whole_items_ended_by_the_model(tmp_path, capsys):
    r = train(names_config(tmp_path))
    assert r.val_loss < 0.6, r.val_loss  # a dozen names, learnt
    meta = json.loads((tmp_path / "run" / "best" / "checkpoint.json").read_text())
    assert meta["vocab"]["end"] is True and meta["train"]["data"]["items"] == "lines"
    assert (
        main(
            [
                "sample",
                str(tmp_path / "run"),
                "--num-samples",
                "20",
                "--length",
                "40",
                "--seed",
                "2",
                "--temperature",
                "0.5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 20 and sum(name in NAMES for name in out) >= 16, out  # whole names, not cut at 40
    assert main(["eval", str(tmp_path / "run"), "--data", str(tmp_path / "names.txt")]) == 0
    text = capsys.readouterr().out
    assert f"items       {len(NAMES) * 20:,} scored" in text


def test_items_resume_exactly(tmp_path):
    one = train(names_config(tmp_path, out=str(tmp_path / "one"), max_steps=60, eval_every=25))
    train(names_config(tmp_path, out=str(tmp_path / "two"), max_steps=30, eval_every=25))
    trainer, _ = build_trainer(
        names_config(tmp_path, out=str(tmp_path / "two"), max_steps=60, eval_every=25), resume=True
    )
    two = trainer.run()
    assert one.step == two.step == 60 and math.isclose(one.val_loss, two.val_loss, rel_tol=0, abs_tol=0)


def test_too_few_items_for_a_batch_is_one_line(tmp_path):
    from charrnn.errors import CharRNNError

    with pytest.raises(CharRNNError, match="items, too few for one batch of --batch-size 512"):
        build_trainer(names_config(tmp_path, batch_size=512))


def test_load_corpus_records_where_each_file_ends(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("xy\n")
    (tmp_path / "d" / "b.txt").write_text("zzz\n")
    corpus = load_corpus(DataConfig(data=str(tmp_path / "d")))
    assert corpus.file_ids == [3, 4]


def test_novel_only_gives_items_that_are_not_training_items(tmp_path, capsys):
    train(names_config(tmp_path, max_steps=40))  # half-trained: some samples are names it saw, some new
    run = str(tmp_path / "run")
    assert main(["sample", run, "--num-samples", "12", "--seed", "3", "--novelty", "--length", "20"]) == 0
    out, err = capsys.readouterr()
    copied = int(err.split("novelty: ")[1].split(" of ")[0])
    assert sum(line in NAMES for line in out.splitlines()) == copied  # the report counts what was copied
    assert main(["sample", run, "--num-samples", "8", "--seed", "3", "--novel-only", "--length", "20"]) == 0
    fresh = capsys.readouterr().out.splitlines()
    assert len(fresh) == 8 and not set(fresh) & set(NAMES)


def test_novel_only_needs_a_model_of_items(tmp_path, capsys):
    from conftest import small_text

    (tmp_path / "t.txt").write_text(small_text(100))
    train(
        TrainConfig(
            out=str(tmp_path / "run"),
            data=DataConfig(data=str(tmp_path / "t.txt")),
            batch_size=4,
            seq_len=16,
            max_epochs=0,
            max_steps=2,
            quiet=True,
            model=ModelConfig(hidden_size=8),
        )
    )
    assert main(["sample", str(tmp_path / "run"), "--novel-only"]) == 2
    assert "for a model trained on items" in capsys.readouterr().err
