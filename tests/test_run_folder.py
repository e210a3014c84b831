import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn import checkpoint as ckpt
from charrnn.errors import CharRNNError
from charrnn.load import load_model
from charrnn.training.build import build_trainer
from charrnn.training.config import resumed_config
from charrnn.training.run_folder import RunFolder
from charrnn.training.trainer import train
from conftest import Diverging
from test_trainer import config, metrics


def test_a_second_writer_is_refused_with_the_pid_of_the_first(tmp_path):
    out = tmp_path / "run"
    with RunFolder.open(out, resume=False):
        assert (out / ".lock.pid").read_text().strip() == str(os.getpid())
        with pytest.raises(CharRNNError, match=rf"being written by another charrnn process \(PID {os.getpid()}\)"):
            train(config(tmp_path, max_steps=3))
        with pytest.raises(CharRNNError, match="another charrnn process"), RunFolder.open(out, resume=True):
            pass
        assert RunFolder.open(out, resume=False, writer=False).__enter__().out == out  # other ranks do not lock
    train(config(tmp_path, max_steps=3))  # released: the next run goes ahead
    assert sorted(os.listdir(out)) == [".lock", "best", "last", "metrics.jsonl"]


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    out = tmp_path / "run"
    code = (
        "import sys, time; from charrnn.training.run_folder import RunFolder\n"
        f"with RunFolder.open({str(out)!r}, resume=False):\n"
        "    print('held', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(CharRNNError, match=f"PID {child.pid}"):
            RunFolder.open(out, resume=False).__enter__()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert (out / ".lock.pid").read_text().strip() == str(child.pid)  # a kill leaves it: it must not matter
    r = train(config(tmp_path, max_steps=3))
    assert r.step == 3 and not (out / ".lock.pid").exists()


def test_leftovers_of_killed_saves_are_removed_and_a_torn_swap_put_back(tmp_path):
    out = tmp_path / "run"
    train(config(tmp_path, max_steps=7))
    (out / ".last.tmp4242").mkdir()  # a kill while writing
    (out / ".best.tmp4243").mkdir()
    (out / ".best.tmp4243" / "model.safetensors").write_bytes(b"half")
    os.rename(out / "best", out / ".best.old")  # a kill between the two renames of a swap
    os.mkdir(out / ".last.old")  # a kill just before the old copy was removed
    with RunFolder.open(out, resume=True):
        assert sorted(os.listdir(out)) == [".lock", ".lock.pid", "best", "last", "metrics.jsonl"]
    assert ckpt.intact(out / "best")


def test_metrics_are_cut_back_to_the_checkpoint_on_resume(tmp_path):
    out = tmp_path / "run"
    train(config(tmp_path, max_steps=14))
    with open(out / "metrics.jsonl", "a") as f:  # what a kill after step 14's checkpoint leaves
        f.write(json.dumps({"step": 15, "train_loss": 9.0}) + "\n" + json.dumps({"step": 16, "val_loss": 9.0}) + "\n")
        f.write('{"step": 17, "train_lo')  # cut short mid-line
    train(resumed_config(str(out), {"max_steps": 20}), resume=True)
    rows = metrics(out)
    for kind in ("train_loss", "val_loss"):
        steps = [r["step"] for r in rows if kind in r]
        assert steps == sorted(set(steps)), (kind, steps)  # never twice, never back
    assert [r["step"] for r in rows if "train_loss" in r] == [3, 6, 9, 12, 14, 15, 18, 20]
    assert all(r.get("train_loss") != 9.0 and r.get("val_loss") != 9.0 for r in rows)


def test_a_run_with_best_but_no_last_starts_again(tmp_path):
    out = tmp_path / "run"
    train(config(tmp_path, max_steps=7))
    (out / "last").rename(tmp_path / "gone")  # as a full disk between the first best and last saves leaves it
    with pytest.raises(CharRNNError, match="has best/ but no last/.*without --resume to start again"):
        resumed_config(str(out), {"max_steps": 20})
    assert load_model(out)[0] is not None  # best/ still samples meanwhile
    r = train(config(tmp_path, max_steps=5, eval_every=5))
    assert r.step == 5 and json.loads((out / "last" / "checkpoint.json").read_text())["step"] == 5
    assert [m["step"] for m in metrics(out) if "train_loss" in m] == [3, 5]  # the old attempt's lines are gone


def test_a_failed_start_leaves_nothing_behind(tmp_path, monkeypatch):
    out = tmp_path / "new" / "run"
    with pytest.raises(CharRNNError, match="no such file"):
        train(config(tmp_path, name="new/run", data=_data(tmp_path / "missing.txt")))
    assert not (tmp_path / "new").exists()
    # a loss that is never finite (as train() runs it, with an engine whose every step diverges)
    cfg = config(tmp_path, name="new/run", max_steps=20, log_every=1, eval_every=50)
    with pytest.raises(CharRNNError, match="roll-backs"):
        with RunFolder.open(cfg.out, resume=False) as folder:
            trainer, _ = build_trainer(cfg, folder=folder)
            trainer.engine = Diverging(trainer.engine, bad=["all"], value=float("inf"))
            trainer.run()
    assert not (tmp_path / "new").exists()
    assert train(config(tmp_path, name="new/run", max_steps=3)).step == 3  # nothing blocks the next start
    assert out.exists()


def _data(path):
    from charrnn.data.corpus import DataConfig

    return DataConfig(data=str(path))


@pytest.mark.parametrize("where", ["is_file", "parent_is_file"])
def test_an_out_that_is_a_file_is_refused_in_one_line(tmp_path, where):
    (tmp_path / "f").write_text("my notes")
    name = "f" if where == "is_file" else "f/run"
    with pytest.raises(CharRNNError) as e:
        train(config(tmp_path, name=name, max_steps=3))
    assert "\n" not in str(e.value) and "not a folder; choose another --out" in str(e.value)
    assert (tmp_path / "f").read_text() == "my notes"


def test_pid_message_while_the_holder_is_starting(tmp_path):
    out = tmp_path / "run"
    with RunFolder.open(out, resume=False):
        (out / ".lock.pid").unlink()  # as between the holder's lock and its PID file
        with pytest.raises(CharRNNError, match="PID unknown"):
            RunFolder.open(out, resume=False).__enter__()
