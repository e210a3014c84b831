"""The labelled tasks end to end: classify, tag, truecase and generate train on the
same loop, checkpoints and guarantees as next-char, and do what their mode says."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from charrnn.cli import main
from charrnn.data.corpus import DataConfig
from charrnn.data.labelled import lower_and_case
from charrnn.engines.config import ModelConfig
from charrnn.engines.model import CharRNN, loss_fn, row_lengths
from charrnn.errors import CharRNNError
from charrnn.evaluation import EvalConfig
from charrnn.labelled_eval import _casing_baseline, eval_labelled, labelled_items, texts_of
from charrnn.load import LoadConfig, load_model
from charrnn.predict import Labeller, classify, tag
from charrnn.reference.gradcheck import grad_check
from charrnn.reference.model import CharRNN as RefRNN
from charrnn.sampling.generate import SampleConfig, sample
from charrnn.sampling.seen_items import items_for_run
from charrnn.tasks import IGNORE
from charrnn.training.config import TrainConfig, resumed_config
from charrnn.training.trainer import train

STEMS = "iv petr sid kuzn mor vol lebed sokol pop fedor ivan mikhail orl bel nov smirn".split()


def names_folder(tmp_path):
    """Two learnable classes: -ov names and -son names; the first letter says nothing."""
    folder = tmp_path / "names"
    folder.mkdir(exist_ok=True)
    (folder / "Russian.txt").write_text("\n".join(s.capitalize() + "ov" for s in STEMS * 2) + "\n")
    (folder / "Swedish.txt").write_text("\n".join(s.capitalize() + "son" for s in STEMS) + "\n")
    return folder


def config(tmp_path, out, task, data, **kw):
    model = kw.pop("model", ModelConfig(hidden_size=32, layers=1, embedding_size=16))
    defaults = dict(batch_size=4, lr=1e-2, max_steps=60, max_epochs=0, eval_every=30, quiet=True, threads=1)
    data = DataConfig(data=str(data), val_fraction=0.2, **kw.pop("data_kw", {}))
    return TrainConfig(out=str(tmp_path / out), task=task, data=data, model=model, **{**defaults, **kw})


@pytest.mark.parametrize("bidirectional", [False, True])
def test_classify_learns_the_suffix_and_records_its_labels(tmp_path, bidirectional):
    model = ModelConfig(hidden_size=32, layers=1, embedding_size=16, bidirectional=bidirectional)
    result = train(config(tmp_path, "cls", "classify", names_folder(tmp_path), max_steps=120, model=model))
    meta = json.loads((result.out / "best" / "checkpoint.json").read_text())
    assert meta["task"] == "classify" and meta["labels"] == ["Russian", "Swedish"]
    assert meta["model"]["head_size"] == 2
    out = classify(result.out, ["Kozlov", "Larsson", "Bergov"])
    assert [next(iter(p)) for p in out] == ["Russian", "Swedish", "Russian"]  # names it never saw
    assert out[0]["Russian"] > 0.9 and sum(out[0].values()) == pytest.approx(1.0)
    labeller = Labeller.load(LoadConfig(str(result.out)), "classify", ("classify",))
    steps = labeller.prefix_probabilities("Kozlov")
    assert steps.shape == (6, 2) and np.allclose(steps.sum(1), 1)
    np.testing.assert_allclose(steps[-1], labeller.classify(["Kozlov"])[0], rtol=1e-5)
    np.testing.assert_allclose(steps[2], labeller.classify(["Koz"])[0], rtol=1e-5)  # float32: batch shapes differ


@pytest.mark.parametrize("task", ["classify", "generate"])
def test_resume_is_bitwise_exact_for_labelled_tasks(tmp_path, task):
    folder = names_folder(tmp_path)
    model = ModelConfig(32, "lstm", 1, 16, 8, dropout=0.2)  # dropout: the random generators must come back too
    train(config(tmp_path, "one", task, folder, max_steps=24, eval_every=5, model=model))
    train(config(tmp_path, "two", task, folder, max_steps=12, eval_every=5, model=model))
    train(resumed_config(str(tmp_path / "two"), {"max_steps": 24}), resume=True)
    a, b = (load_file(str(tmp_path / r / "last" / "model.safetensors")) for r in ("one", "two"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generate_writes_items_for_the_label_asked(tmp_path):
    folder = names_folder(tmp_path)
    run = train(config(tmp_path, "gen", "generate", folder, max_steps=600, eval_every=300)).out
    model, vocab, meta = load_model(run)
    assert vocab.labels == ("Russian", "Swedish") and meta["task"] == "generate"
    for label, suffix in (("Russian", "ov"), ("Swedish", "son")):
        texts = sample(model, vocab, SampleConfig(label=label, num_samples=20, seed=3, length=30))
        assert sum(t.endswith(suffix) for t in texts) >= 16, (label, texts)
        assert all("\n" not in t for t in texts)
    val = eval_labelled(run, EvalConfig(data=str(folder), split="val")).figures
    assert val["nats_true"] < val["nats_other"]
    assert eval_labelled(run, EvalConfig(data=str(folder), split="train")).figures["true_lowest"] > 0.8


def cli_generate_run(tmp_path, capsys, steps: int):
    """(names folder, run folder, stderr) of `charrnn train --task generate` on names_folder."""
    folder, run = names_folder(tmp_path), tmp_path / "gen"
    flags = f"--task generate --data {folder} --out {run} --val-fraction 0.2 --hidden-size 32 --layers 1"
    flags += f" --embedding-size 16 --batch-size 4 --lr 1e-2 --max-steps {steps} --max-epochs 0"
    assert main(["train", *flags.split(), "--eval-every", str(steps), "--threads", "1", "--quiet"]) == 0
    return folder, run, capsys.readouterr().err


def test_train_ends_with_a_sample_command_that_works_for_a_generate_model(tmp_path, capsys):
    _, run, err = cli_generate_run(tmp_path, capsys, steps=4)
    hint = err.strip().splitlines()[-1]
    assert hint.endswith(f"Use it with: charrnn sample {run} --label Russian"), hint
    assert main(hint.split("Use it with: charrnn ")[1].split()) == 0  # as shown, it samples
    assert capsys.readouterr().out.strip()


def test_novelty_and_novel_only_compare_a_generate_model_with_its_training_items(tmp_path, capsys):
    folder, run, _ = cli_generate_run(tmp_path, capsys, steps=600)
    meta = json.loads((run / "best" / "checkpoint.json").read_text())
    train_items, val_items, vocab, _ = labelled_items(meta, str(folder), "val")
    seen, held_out = texts_of(train_items, vocab), texts_of(val_items, vocab)
    args = ["sample", str(run), "--label", "Russian", "--num-samples", "12", "--seed", "1", "--length", "30"]
    assert main([*args, "--novelty"]) == 0
    out = capsys.readouterr()
    names = out.out.split()
    copied = sum(name in seen for name in names)
    assert len(names) == 12 and copied >= 3, names  # it writes back training names: the count is not 0 by chance
    assert f"novelty: {copied} of 12 items exist verbatim in the training set" in out.err
    joined = "\n".join(seen)  # the index reads the training items, one after the other
    for i, name in enumerate(names):
        longest = max(j - a for a in range(len(name)) for j in range(a, len(name) + 1) if name[a:j] in joined)
        assert f"novelty of sample {i + 1}: longest stretch copied from the training text: {longest} char" in out.err
    # every label's training items count as seen (a Swedish name is copied under any label), held-out ones do not
    assert items_for_run(meta).items_seen(seen + held_out) == [True] * len(seen) + [False] * len(held_out)
    assert main([*args, "--novel-only", "--temperature", "1.5"]) == 0  # hotter: new names are rare at 1
    names = capsys.readouterr().out.split()
    assert len(names) == 12 and not set(names) & set(seen), names


def test_cli_refuses_a_command_that_does_not_fit_the_task(tmp_path):
    run = train(config(tmp_path, "cls", "classify", names_folder(tmp_path), max_steps=4)).out
    cli = [sys.executable, "-m", "charrnn"]
    out = subprocess.run([*cli, "sample", str(run)], capture_output=True, text=True)
    assert out.returncode == 2 and "use `charrnn classify`" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([*cli, "classify", str(run), "Ivanov", "--top", "1"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("Ivanov\t") and out.stdout.count(" 0.") == 1


def test_truecase_restores_capitals_and_beats_nothing_else(tmp_path):
    text = "".join(f"Then Anna met Paul in Rome on day {i}.\nAnna and Paul saw Rome.\n" for i in range(60))
    (tmp_path / "t.txt").write_text(text)
    model = ModelConfig(hidden_size=32, layers=1, embedding_size=16, bidirectional=True)
    run = train(config(tmp_path, "tc", "truecase", tmp_path / "t.txt", max_steps=150, eval_every=75, model=model)).out
    assert tag(run, ["then anna met paul in rome."]) == ["Then Anna met Paul in Rome."]
    report = eval_labelled(run, EvalConfig(data=str(tmp_path / "t.txt"), split="val"))
    assert report.figures["upper_f1"] > 0.95 and report.figures["accuracy"] > 0.99


def test_the_casing_baseline_writes_each_word_as_most_often_seen():
    seen = [lower_and_case(t) for t in ("Paris is in France", "PARIS", "Paris", "And")]
    tags = _casing_baseline([t for t, _ in seen], [c for _, c in seen], ["france and paris, rome"], ("U", "l"))
    # paris: "Paris" twice, "PARIS" once; and: seen only capitalised; rome: never seen, stays lower case
    assert "".join("Ul"[t] for t in tags) == lower_and_case("France And Paris, rome")[1]


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_bidirectional_padding_changes_nothing(cell):
    """A padded batch with row lengths gives each item the logits it gets alone."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(7, cell, 2, 8, 4, bidirectional=True, head_size=3)).eval()
    items = [torch.tensor([1, 2, 3, 4, 5]), torch.tensor([6, 1]), torch.tensor([2, 2, 2])]
    x = torch.zeros(3, 5, dtype=torch.long)
    y = torch.full((3, 5), IGNORE)
    for k, item in enumerate(items):
        x[k, : len(item)], y[k, : len(item)] = item, 0
    assert row_lengths(y).tolist() == [5, 2, 3]
    with torch.no_grad():
        batched, _ = model(x, None, row_lengths(y))
        for k, item in enumerate(items):
            alone, _ = model(item[None])
            torch.testing.assert_close(batched[k, : len(item)], alone[0], rtol=1e-5, atol=1e-6)
            unpacked, _ = model(x[k : k + 1])  # without lengths the backward pass reads the padding
            if len(item) < 5:
                assert not torch.allclose(unpacked[0, : len(item)], alone[0], atol=1e-4)


def classify_batch(C=3, V=6, B=3, T=5, seed=0):
    """Targets IGNORE everywhere but the last character of each item (of lengths T, T-2, 1)."""
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, V, (B, T)), np.full((B, T), IGNORE)
    for b, n in enumerate((T, T - 2, 1)):
        y[b, n - 1] = rng.integers(0, C)
    return x, y


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_the_reference_many_to_one_loss_passes_the_gradient_check(cell):
    model = RefRNN(ModelConfig(6, cell, 2, hidden_size=4, embedding_size=3, head_size=3), rng=1)
    errors = grad_check(model, *classify_batch())
    assert max(errors.values()) < 1e-6, errors


def test_the_reference_classifier_agrees_with_pytorch():
    config = ModelConfig(6, "gru", 1, hidden_size=5, embedding_size=0, head_size=3)
    torch_model = CharRNN(config).double()
    ref = RefRNN(config, rng=0)
    from charrnn.reference.checkpoint import from_state_dict

    ref = from_state_dict(config, {k: v.numpy() for k, v in torch_model.state_dict().items()})
    x, y = classify_batch()
    ref_loss, _, _ = ref.loss(x, y)
    logits, _ = torch_model(torch.from_numpy(x))
    assert ref_loss == pytest.approx(loss_fn(logits, torch.from_numpy(y)).item(), rel=1e-10)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(task="next-char", model=ModelConfig(bidirectional=True)), "--bidirectional reads ahead"),
        (dict(task="generate", model=ModelConfig(bidirectional=True)), "--bidirectional reads ahead"),
        (dict(task="classify", data_kw={"items": "lines"}), "drop --items"),
        (dict(task="classify", model=ModelConfig(hidden_size=64, embedding_size=64, tie_weights=True)), "--tie"),
    ],
)
def test_configs_that_cannot_work_are_refused_in_one_line(tmp_path, kw, message):
    with pytest.raises(CharRNNError, match=message):
        train(config(tmp_path, "bad", data=names_folder(tmp_path), **kw))


def test_one_label_is_not_a_classification(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    (folder / "A.txt").write_text("x\ny\n")
    with pytest.raises(CharRNNError, match="needs at least two different labels"):
        train(config(tmp_path, "bad", "classify", folder))


def test_the_reference_engine_trains_a_classifier_that_pytorch_then_applies(tmp_path):
    """The NumPy engine's many-to-one loss, end to end: its checkpoint loads into the PyTorch
    model, which then classifies names it never saw."""
    model = ModelConfig(hidden_size=16, layers=1, embedding_size=8)
    run = train(
        config(tmp_path, "ref", "classify", names_folder(tmp_path), engine="reference", model=model, max_steps=150)
    ).out
    assert json.loads((run / "best" / "checkpoint.json").read_text())["engine"] == "reference"
    assert [next(iter(p)) for p in classify(run, ["Kozlov", "Larsson"])] == ["Russian", "Swedish"]


def test_a_classifier_rolls_back_a_nan_like_any_run(tmp_path):
    from charrnn.training.build import build_trainer
    from conftest import Diverging

    cfg = config(tmp_path, "nan", "classify", names_folder(tmp_path), max_steps=20, log_every=1, eval_every=5)
    trainer, _ = build_trainer(cfg)
    trainer.engine = Diverging(trainer.engine, [10])
    result = trainer.run()
    events = [json.loads(line) for line in (result.out / "metrics.jsonl").read_text().splitlines()]
    nan = [e for e in events if e.get("event") == "nan"]
    assert result.step == 20 and len(nan) == 1 and nan[0]["rolled_back_to"] == 5
    assert all(torch.isfinite(w).all() for w in load_file(str(result.out / "last" / "model.safetensors")).values())


def test_sigterm_saves_a_classifier_that_resumes(tmp_path):
    """The labelled tasks stop on a signal like next-char: last/ saved, exit 0, and --resume goes on."""
    import os
    import signal
    import time
    from pathlib import Path

    run, folder = tmp_path / "run", names_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "charrnn", "train", "--task", "classify", "--data", str(folder), "--out", str(run)]
    flags = ["--max-steps", "1000000", "--max-epochs", "0", "--eval-every", "1000000", "--log-every", "1"]
    small = ["--hidden-size", "16", "--layers", "1", "--embedding-size", "8", "--batch-size", "4", "--threads", "1"]
    proc = subprocess.Popen([*cmd, *flags, *small], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "--resume" in err, err
    step = json.loads((run / "last" / "checkpoint.json").read_text())["step"]
    done = subprocess.run(
        [*cmd[:4], "--out", str(run), "--resume", "--max-steps", str(step + 5)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((run / "last" / "checkpoint.json").read_text())["step"] == step + 5
