"""Fault injection: kills at random moments, a disk that fills, a read-only run folder, two writers,
a damaged byte in each checkpoint file. Each test says what the README's "What charrnn guarantees"
promises, and checks it.

The kill test forks its runs from a server that has imported torch already (fault_support.py),
so that each of its starts costs milliseconds; CHARRNN_SLOW=1 runs 100 kills instead of 20.
"""

import errno
import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from charrnn import checkpoint as ckpt
from charrnn.cli import main
from charrnn.load import load_model
from conftest import SLOW, small_text
from fault_support import fill, forkserver, read_only, simulate_errno, start_cli, tmpfs

KILLS = 100 if SLOW else 20
MODEL = ["--hidden-size", "24", "--embedding-size", "8", "--batch-size", "4", "--seq-len", "16", "--seed", "3"]
QUIET = ["--quiet", "--threads", "1"]


@pytest.fixture(scope="module")
def ctx():
    return forkserver()


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(small_text(150))
    return path


def cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def one_line(result, code, *parts) -> str:
    got, err = result
    assert got == code and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for part in parts:
        assert part in err, err
    return err


def wait_for_lock(out: Path, proc) -> None:
    """Until `proc` holds the run folder's lock (its PID is in .lock.pid)."""
    deadline = time.time() + 120
    while proc.is_alive() and time.time() < deadline:
        try:
            if (out / ".lock.pid").read_text().strip() == str(proc.pid):
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.002)
    raise AssertionError(f"the run never took the lock (exit code {proc.exitcode})")


def wait_for_save(out: Path, pid: int) -> None:
    """Until process `pid` is writing a checkpoint (its temporary folder is there)."""
    deadline = time.time() + 60
    while not any(name.endswith(f".tmp{pid}") for name in os.listdir(out)):
        assert time.time() < deadline, "no save began"
        time.sleep(0.0002)


def check_after_kill(out: Path, killed: int) -> None:
    """Whatever the moment of the kill: every checkpoint there loads whole, and the only leftovers
    are the killed process's own (earlier ones were removed when it started)."""
    for entry in os.listdir(out):
        if entry.startswith(".") and entry not in (".lock", ".lock.pid", ".last.old", ".best.old"):
            assert entry.endswith(f".tmp{killed}"), f"{entry} left behind by an earlier process"
    for which in ("best", "last"):
        if (out / which).exists() or (out / f".{which}.old").exists():
            assert load_model(out, which)[0] is not None
    if ckpt.has_checkpoint(out):
        assert "optimizer" in ckpt.load_trainer_state(ckpt.resolve(out, "last"))


def test_sigkill_at_random_moments_loses_nothing_and_resume_is_exact(ctx, corpus, tmp_path):
    """KILLS SIGKILLs, each at a random moment of a run that validates and saves both checkpoints at
    every step; each next start resumes (or, with best/ but no last/, starts again). At the end the
    run equals, bit for bit, one that was never killed, and its metrics hold every step once."""
    # On a real disk, whose fsyncs make each save last milliseconds, most kills that aim at a save hit one.
    out, rng = tmp_path / "run", random.Random(11)
    fresh = ["train", "--data", corpus, "--out", out, *MODEL, "--max-epochs", 0, "--eval-every", 1, "--log-every", 1]
    for _ in range(KILLS):
        start = ["train", "--out", out, "--resume"] if ckpt.has_checkpoint(out) else fresh
        proc = start_cli(ctx, [*start, "--max-steps", 100_000, *QUIET])
        wait_for_lock(out, proc)
        time.sleep(rng.uniform(0, 0.6))
        if rng.random() < 0.5:  # half the kills land inside a save: a few ms of each step, rarely hit at random
            wait_for_save(out, proc.pid)
            time.sleep(rng.uniform(0, 0.002))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        assert proc.exitcode == -signal.SIGKILL, f"the run ended before the kill, with {proc.exitcode}"
        check_after_kill(out, proc.pid)
    steps = json.loads((ckpt.resolve(out, "last") / "checkpoint.json").read_text())["step"] + 5
    proc = start_cli(ctx, ["train", "--out", out, "--resume", "--max-steps", steps, *QUIET])
    proc.join()
    assert proc.exitcode == 0
    assert sorted(os.listdir(out)) == [".lock", "best", "last", "metrics.jsonl"]
    for kind in ("train_loss", "val_loss"):
        logged = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if kind in r]
        assert logged == list(range(1, steps + 1)), kind
    ref = tmp_path / "ref"
    proc = start_cli(ctx, [*fresh[:4], ref, *fresh[5:], "--max-steps", steps, *QUIET])  # never killed
    proc.join()
    assert proc.exitcode == 0
    for which in ("best", "last"):
        a, b = load_file(str(out / which / ckpt.WEIGHTS)), load_file(str(ref / which / ckpt.WEIGHTS))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), which


def test_two_writers_one_run(ctx, tmp_path, corpus, capsys):
    """A second train or --resume on a run being written is refused, naming the writer's PID;
    the lock of a writer killed by SIGKILL does not block the next run."""
    out = tmp_path / "run"
    first = start_cli(
        ctx, ["train", "--data", corpus, "--out", out, *MODEL, "--max-steps", 100_000, "--eval-every", "2", *QUIET]
    )
    try:
        wait_for_lock(out, first)
        while not ckpt.has_checkpoint(out) and first.is_alive():
            time.sleep(0.01)
        for again in (["--resume"], ["--data", corpus, *MODEL]):
            err = one_line(
                cli(capsys, "train", "--out", out, *again, "--max-steps", 4, *QUIET),
                2,
                f"is being written by another charrnn process (PID {first.pid})",
            )
            assert err.startswith("charrnn train: error:")
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.join()
    step = ckpt.read_meta(ckpt.resolve(out, "last"))["step"]
    assert cli(capsys, "train", "--out", out, "--resume", "--max-steps", step + 4, *QUIET)[0] == 0
    steps = [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "train_loss" in r]
    assert steps == sorted(set(steps)) and steps[-1] == step + 4


def test_a_disk_that_fills_during_a_save(tmp_path, corpus, capsys, monkeypatch):
    """The save fails with one line; the previous checkpoint stays whole, nothing half-written stays,
    and once there is room again --resume goes on."""
    with tmpfs(tmp_path / "small", 4096) as real:
        out = tmp_path / "small" / "run"
        big = ["--hidden-size", "64", "--embedding-size", "16", "--batch-size", "4", "--seq-len", "16"]
        common = ["--eval-every", "2", "--val-fraction", "0", "--log-every", "1000", *QUIET]
        assert cli(capsys, "train", "--data", corpus, "--out", out, *big, "--max-steps", 4, *common)[0] == 0
        before = {p.name: p.read_bytes() for p in (out / "last").iterdir()}
        if real:  # leave less room than one checkpoint needs (its weights alone are ~80 KB)
            filler = fill(tmp_path / "small", leave_bytes=48 * 1024)
        else:
            simulate_errno(monkeypatch, out / ".last.tmp", errno.ENOSPC, after_bytes=4096)
        result = cli(capsys, "train", "--out", out, "--resume", "--max-steps", 8)
        one_line(result, 2, f"could not save the checkpoint {out / 'last'}", "the disk is full", "is intact")
        assert {p.name: p.read_bytes() for p in (out / "last").iterdir()} == before
        assert not [p for p in os.listdir(out) if ".tmp" in p]
        filler.unlink() if real else monkeypatch.undo()
        assert cli(capsys, "train", "--out", out, "--resume", "--max-steps", 8)[0] == 0
        assert ckpt.read_meta(out / "last")["step"] == 8


def test_a_read_only_run_folder(tmp_path, corpus, capsys, monkeypatch):
    """--out, --resume and --cache-dir on a read-only file system: one line each; sampling still works."""
    ro = tmp_path / "ro"
    out = ro / "run"
    assert cli(capsys, "train", "--data", corpus, "--out", out, *MODEL, "--max-steps", 2, *QUIET)[0] == 0
    other = tmp_path / "other.txt"
    other.write_text(small_text(120))  # not in the cache yet
    with read_only(ro) as real:
        if not real:
            simulate_errno(monkeypatch, ro, errno.EROFS)
        one_line(cli(capsys, "train", "--out", out, "--resume", "--max-steps", 4), 2, "Read-only file system")
        new = ["--data", corpus, "--out", ro / "new", *MODEL, "--max-steps", 2]
        one_line(cli(capsys, "train", *new), 2, "Read-only file system")
        one_line(
            cli(
                capsys,
                "train",
                "--data",
                other,
                "--cache-dir",
                ro / "cache",
                "--out",
                tmp_path / "w",
                *MODEL,
                "--max-steps",
                2,
            ),
            2,
            "Read-only file system",
            "--cache-dir",
        )
        assert not (tmp_path / "w").exists()
        assert cli(capsys, "sample", out, "--length", 5)[0] == 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    corpus = run.parent / "corpus.txt"
    corpus.write_text(small_text(150))
    assert (
        main(
            ["train", "--data", str(corpus), "--out", str(run), *MODEL, "--max-steps", "4", "--eval-every", "2", *QUIET]
        )
        == 0
    )
    return run


@pytest.mark.parametrize(
    "which, name",
    [("best", ckpt.WEIGHTS), ("best", ckpt.META), ("last", ckpt.WEIGHTS), ("last", ckpt.META), ("last", ckpt.TRAINER)],
)
def test_a_damaged_byte_in_each_checkpoint_file(trained, tmp_path, capsys, which, name):
    """One flipped byte anywhere gets a one-line error naming the file and the intact other checkpoint."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    data = bytearray((run / which / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (run / which / name).write_bytes(bytes(data))
    other = "last" if which == "best" else "best"
    if name == ckpt.TRAINER:
        result = cli(capsys, "train", "--out", run, "--resume", "--max-steps", 6)
    else:
        result = cli(capsys, "sample", run, "--checkpoint", which, "--length", 5)
    intact = f"{run / other} is intact: use it with --checkpoint {other}"
    one_line(result, 2, f"{run / which / name} is damaged", intact)
    assert cli(capsys, "sample", run, "--checkpoint", other, "--length", 5)[0] == 0
