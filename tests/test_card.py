"""`charrnn card RUN`: the model card written into a run folder, checked against the run itself."""

import hashlib
import importlib.util
import json
import math
import re
import shlex
import shutil
import statistics

import pytest

from charrnn.cli import main
from charrnn.data.corpus import DataConfig
from charrnn.engines.model import ModelConfig
from charrnn.export.card import CardConfig, fence, write_card
from charrnn.load import load_model
from charrnn.sampling.generate import SampleConfig, sample
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train
from conftest import small_text


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A run trained for a few seconds on two files, as `charrnn train --data FOLDER` leaves it."""
    root = tmp_path_factory.mktemp("card")
    data = root / "texts"
    data.mkdir()
    (data / "a.txt").write_text(small_text(150))
    (data / "b.txt").write_text("café au lait\n" * 40)  # non-ASCII: characters differ from bytes
    config = TrainConfig(
        out=str(root / "run"),
        data=DataConfig(data=str(data)),
        model=ModelConfig(cell="gru", layers=1, hidden_size=24, embedding_size=8),
        batch_size=4,
        seq_len=16,
        max_steps=30,
        eval_every=10,
        log_every=5,
        quiet=True,
        threads=1,
    )
    train(config)
    return root / "run", data


def test_card_describes_the_run(trained, capsys):
    run, data = trained
    assert main(["card", str(run), "--length", "80", "--seed", "5"]) == 0
    assert "Wrote" in capsys.readouterr().err
    card = (run / "README.md").read_text(encoding="utf-8")
    model, vocab, meta = load_model(run)

    # What it was trained on: files, characters, vocabulary, the corpus's SHA-256.
    files = sorted(data.iterdir())
    joined = b"".join(f.read_bytes() for f in files)
    assert hashlib.sha256(joined).hexdigest() in card
    assert f"{len(joined.decode('utf-8')):,} characters" in card and f"{len(joined):,} bytes" in card
    assert all(f"`{f.name}`" in card and hashlib.sha256(f.read_bytes()).hexdigest()[:16] in card for f in files)
    assert json.dumps("".join(vocab.chars), ensure_ascii=False) in card and f"over {vocab.size} characters" in card

    # Config and budget, and the measured figures.
    assert "| `hidden_size` | `24` |" in card and "| `max_steps` | `30` |" in card and "| `cell` | `gru` |" in card
    best = meta["metrics"]["best_val_loss"]
    assert f"{best:.4f} nats/char = {best / math.log(2):.4f} bits/char" in card
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    speed = statistics.median(r["chars_per_sec"] for r in records if "chars_per_sec" in r)
    assert f"{speed:,.0f} characters/s" in card
    assert "![loss curve" in card and (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Three samples, each reproduced by the command the card gives for it.
    for seed in (5, 6, 7):
        text = sample(model, vocab, SampleConfig(length=80, temperature=0.8, seed=seed))[0]
        assert f"\n{text}\n" in card
        assert f"`charrnn sample . --length 80 --temperature 0.8 --seed {seed}`" in card  # from the card's folder

    # How to use it: the folder, the HTML page, the ONNX file.
    assert "charrnn export . --html model.html" in card and "charrnn export . --onnx model.onnx" in card
    assert "examples/onnx_sample.py" in card and card.startswith("---\nlibrary_name: charrnn\n")


def test_card_without_the_corpus_says_so(trained, tmp_path):
    run, data = trained
    moved = tmp_path / "elsewhere"
    data.rename(moved)
    try:
        card = write_card(run, CardConfig(length=20)).read_text(encoding="utf-8")
    finally:
        moved.rename(data)
    assert "The corpus was not found when this card was written" in card and "SHA-256 of the corpus" not in card


def test_card_rejects_bad_settings(trained, capsys):
    run, _ = trained
    assert main(["card", str(run), "--length", "0"]) == 2
    assert "--length must be >= 1, got 0" in capsys.readouterr().err
    assert main(["card", str(run.parent / "nothing")]) == 2


def test_fence_is_longer_than_any_backtick_run():
    assert fence("plain") == "```"
    assert fence("a ```` b `` c") == "`````"


def card_commands(card: str) -> list[list[str]]:
    """Every charrnn command the card gives, in its code spans and its sh blocks, as argv."""
    spans = re.findall(r"`(charrnn [^`]+)`", card)
    blocks = re.findall(r"```sh\n(.*?)```", card, re.S)
    lines = [line.split("  #")[0] for b in blocks for line in b.splitlines() if line.startswith("charrnn ")]
    return [shlex.split(c)[1:] for c in spans + lines if " " in c.strip()[len("charrnn ") :]]  # not "`charrnn train`"


@pytest.mark.parametrize("which", ["best", "last"])
def test_the_cards_commands_run_from_its_folder(trained, tmp_path, capsys, monkeypatch, which):
    """The card is read where it lies (or after the folder was moved or uploaded): each command in it
    works from there, and each sample command writes its sample again."""
    run, _ = trained
    moved = tmp_path / "downloaded"
    shutil.copytree(run, moved)
    monkeypatch.chdir(tmp_path)  # `charrnn card downloaded`, as one gives a run folder: a relative path
    assert main(["card", "downloaded" if which == "best" else "downloaded/last", "--length", "30", "--seed", "3"]) == 0
    card = (moved / "README.md").read_text(encoding="utf-8")
    monkeypatch.chdir(moved)
    commands = card_commands(card)
    assert {c[0] for c in commands} == {"sample", "serve", "export"}, commands
    capsys.readouterr()
    for argv in commands:
        if argv[0] == "serve" or "--onnx" in argv and importlib.util.find_spec("onnxscript") is None:
            continue  # serve blocks; ONNX export needs charrnn[export]
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        if argv[0] == "sample" and "--seed" in argv:
            assert f"\n{out}" in card, argv  # the very sample the card shows (it ends in a newline there too)
    assert (moved / "model.html").is_file()
    assert all(c[1] == ("." if which == "best" else "last") for c in commands), commands
