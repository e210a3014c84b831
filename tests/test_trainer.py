import gc
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from charrnn.data.corpus import DataConfig
from charrnn.engines.model import ModelConfig
from charrnn.errors import CharRNNError
from charrnn.training.build import build_trainer
from charrnn.training.config import OPTIMIZERS, SCHEDULES, TrainConfig, resumed_config, schedule_factor
from charrnn.training.trainer import train
from conftest import Diverging, small_text


def config(tmp_path, name="run", **kw) -> TrainConfig:
    corpus = tmp_path / "corpus.txt"
    if not corpus.exists():
        corpus.write_text(small_text(150))
    model = ModelConfig(**{k: kw.pop(k) for k in list(kw) if k in ModelConfig.__dataclass_fields__})
    base = dict(
        out=str(tmp_path / name),
        data=DataConfig(data=str(corpus)),
        batch_size=4,
        seq_len=16,
        max_epochs=0,
        max_steps=20,
        eval_every=7,
        log_every=3,
        quiet=True,
        seed=3,
    )
    model = (
        ModelConfig(**{"hidden_size": 24, "embedding_size": 8, **model.__dict__})
        if not kw.pop("full", False)
        else model
    )
    return TrainConfig(model=model, **{**base, **kw})


def weights(run, which="last"):
    return load_file(str(run / which / "model.safetensors"))


def metrics(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_result_counts_the_epochs_read(tmp_path):
    """What the CLI's last line reports beside the steps, to set against --settings auto's estimate."""
    two = train(config(tmp_path, "two", max_steps=0, max_epochs=2))
    assert two.epochs == 2.0 and two.step % 2 == 0
    part = train(config(tmp_path, "part", max_steps=two.step // 2 + 3))
    assert part.epochs == pytest.approx(1 + 3 / (two.step // 2))


def test_resuming_a_finished_run_names_the_limit_to_raise(tmp_path):
    """--resume on a run whose limit is spent would train nothing: it says which flag to raise."""
    train(config(tmp_path, max_steps=4))
    run = str(tmp_path / "run")
    with pytest.raises(CharRNNError, match=r"run already reached --max-steps 4; raise it \(0: no limit\)"):
        train(resumed_config(run, {}), resume=True)
    assert train(resumed_config(run, {"max_steps": 6}), resume=True).step == 6


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_is_bitwise_exact(tmp_path, precision):
    """2N steps in one run == N steps, then --resume to 2N: identical weights, bit for bit,
    in every precision. The run crosses epoch boundaries, evaluations and uses dropout, so the
    data position, hidden state, RNG and optimizer state all have to come back exactly."""
    short = tmp_path / "short.txt"
    short.write_text(small_text(40))  # ~1.5 KB: about 20 batches an epoch
    kw = dict(hidden_size=24, layers=2, dropout=0.2, data=DataConfig(data=str(short)), precision=precision)
    one = train(config(tmp_path, "one", max_steps=46, **kw))
    assert one.step == 46
    half = train(config(tmp_path, "two", max_steps=23, **kw))
    assert half.step == 23
    resumed = resumed_config(str(tmp_path / "two"), {"max_steps": 46})
    assert resumed.precision == precision  # saved with the run
    two = train(resumed, resume=True)
    assert two.step == 46
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    epochs = max(r.get("epoch", 0) for r in metrics(tmp_path / "one"))
    assert epochs > 2, "the test must cross epoch boundaries"


def test_resume_refuses_to_change_the_model_and_new_runs_refuse_an_existing_folder(tmp_path):
    train(config(tmp_path, max_steps=3))
    with pytest.raises(CharRNNError, match="--hidden-size cannot change"):
        resumed_config(str(tmp_path / "run"), {"hidden_size": 99})
    with pytest.raises(CharRNNError, match="already holds a run; pass --resume"):
        train(config(tmp_path, max_steps=3))


def test_tie_weights_through_the_python_api_sets_the_embedding_to_the_hidden_size(tmp_path):
    """As `charrnn train --tie-weights` does: E left at its default follows H; a changed E is refused."""
    tied = ModelConfig(hidden_size=24, tie_weights=True)
    train(config(tmp_path, max_steps=2, full=True, **tied.__dict__))
    saved = json.loads((tmp_path / "run" / "last" / "checkpoint.json").read_text())["model"]
    assert saved["tie_weights"] and saved["embedding_size"] == saved["hidden_size"] == 24
    with pytest.raises(CharRNNError, match="--tie-weights needs --embedding-size equal to --hidden-size"):
        train(config(tmp_path, "typed", max_steps=2, full=True, **{**tied.__dict__, "embedding_size": 8}))


def test_train_frees_its_trainer_before_the_process_group_closes(tmp_path, monkeypatch):
    """The trainer sits in reference cycles; under torchrun its DDP module holds the gloo group, which
    must go at group.close(), not in interpreter shutdown (where a rank aborted now and then)."""
    from charrnn.training.distributed import Dist
    from charrnn.training.trainer import Trainer

    alive = []
    monkeypatch.setattr(Dist, "close", lambda self: alive.extend(o for o in gc.get_objects() if type(o) is Trainer))
    gc.disable()
    try:
        train(config(tmp_path, max_steps=2))
    finally:
        gc.enable()
    assert alive == []


def test_metrics_checkpoints_and_best(tmp_path):
    r = train(config(tmp_path, max_steps=20))
    run = tmp_path / "run"
    rows = metrics(run)
    train_rows = [m for m in rows if "train_loss" in m]
    val_rows = [m for m in rows if "val_loss" in m]
    assert [m["step"] for m in train_rows] == [3, 6, 9, 12, 15, 18, 20]
    assert [m["step"] for m in val_rows] == [7, 14, 20]
    assert all(abs(m["val_bpc"] - m["val_loss"] / math.log(2)) < 1e-9 for m in val_rows)
    best = json.loads((run / "best" / "checkpoint.json").read_text())
    assert best["metrics"]["val_loss"] == min(m["val_loss"] for m in val_rows) == r.best_val_loss
    assert not (run / "best" / "trainer.pt").exists() and (run / "last" / "trainer.pt").exists()


def test_max_time_stops_the_run(tmp_path):
    r = train(config(tmp_path, max_steps=0, max_time=1.0, eval_every=10_000))
    assert r.step > 0
    assert metrics(tmp_path / "run")[-1]["time"] < 5


def diverging_trainer(cfg, bad, value=float("nan")):
    trainer, _ = build_trainer(cfg)
    trainer.engine = Diverging(trainer.engine, bad, value)
    return trainer


def test_nan_rolls_back_and_halves_the_learning_rate(tmp_path):
    r = diverging_trainer(config(tmp_path, max_steps=20, log_every=1, eval_every=5), bad=[10]).run()
    assert r.step == 20 and math.isfinite(r.train_loss)
    events = [m for m in metrics(tmp_path / "run") if m.get("event") == "nan"]
    assert len(events) == 1 and events[0]["rolled_back_to"] == 5 and events[0]["lr_scale"] == 0.5
    assert all(torch.isfinite(w).all() for w in weights(tmp_path / "run").values())
    lrs = {m["step"]: m["lr"] for m in metrics(tmp_path / "run") if "lr" in m}
    assert lrs[20] == pytest.approx(0.5 * 2e-3)  # constant schedule, halved once


def test_nan_three_times_stops_with_a_clear_error(tmp_path):
    trainer = diverging_trainer(config(tmp_path, max_steps=20, log_every=1), bad=["all"], value=float("inf"))
    with pytest.raises(CharRNNError, match="again after 3 roll-backs.*lower --lr"):
        trainer.run()


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("lr_schedule", SCHEDULES)
def test_every_optimizer_and_schedule_trains(tmp_path, optimizer, lr_schedule):
    lr = {"sgd": 0.5, "adagrad": 0.05}.get(optimizer, 0.01)
    trainer, _ = build_trainer(
        config(
            tmp_path,
            max_steps=30,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            lr=lr,
            warmup_steps=3,
            lr_decay_every=10,
            eval_every=5,
            plateau_patience=0,
        )
    )
    untrained = trainer.validation_loss()
    r = trainer.run()
    rows = [m for m in metrics(tmp_path / "run") if "train_loss" in m]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert r.val_loss < untrained - 0.2, (untrained, r.val_loss)


def test_schedules():
    c = TrainConfig(lr_schedule="cosine", warmup_steps=10, min_lr_fraction=0.1)
    assert schedule_factor(c, 0, 0.0, 100) == pytest.approx(0.1)
    assert schedule_factor(c, 9, 0.0, 100) == pytest.approx(1.0)
    assert schedule_factor(c, 50, 0.5, 100) == pytest.approx(0.55)
    assert schedule_factor(c, 100, 1.0, 100) == pytest.approx(0.1)
    s = TrainConfig(lr_schedule="step", lr_decay=0.5, lr_decay_every=0)
    assert [schedule_factor(s, k, 0, 10) for k in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]


def test_bad_options_are_rejected_with_the_choices(tmp_path):
    with pytest.raises(
        CharRNNError, match="--optimizer must be one of adam, adamw, rmsprop, sgd, adagrad, got .lbfgs."
    ):
        train(config(tmp_path, optimizer="lbfgs"))
    with pytest.raises(CharRNNError, match="too few for one batch"):
        train(config(tmp_path, batch_size=512, seq_len=512))
