"""Data-parallel training (charrnn/distributed.py) on CPU: gloo, 2 processes, tiny models.

The reference is a one-process run with the same global batch and seed: 2 ranks
must give the same losses and weights to 1e-5, write each checkpoint once, resume
on a different number of ranks as if never stopped, stop together on a signal,
and fail in bounded time when a rank dies.

Ranks are started the way torchrun starts them (RANK, WORLD_SIZE, MASTER_* in the
environment), by running this file as a script, so that a test can count the
checkpoint writes of each rank; the CLI tests go through torchrun itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
if __name__ == "__main__":  # run as a rank: import this checkout's charrnn
    sys.path.insert(0, str(REPO))

from charrnn import checkpoint as ckpt  # noqa: E402
from charrnn.data.corpus import DataConfig, bundled_corpus  # noqa: E402
from charrnn.engines.model import CharRNN, ModelConfig  # noqa: E402
from charrnn.engines.torch_engine import TorchEngine  # noqa: E402
from charrnn.errors import CharRNNError  # noqa: E402
from charrnn.evaluation import evaluate, score  # noqa: E402
from charrnn.training.build import build_trainer  # noqa: E402
from charrnn.training.config import TrainConfig  # noqa: E402
from charrnn.training.distributed import Dist, torchrun_args  # noqa: E402
from charrnn.training.trainer import train  # noqa: E402

K = 6  # steps of the first leg; a resumed run goes on to 2K
TIMEOUT = 180  # seconds any one subprocess may take (a slow, shared 2-core machine took over 60 for the ranks fixture)


def env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(tmp: Path, out: str, dropout: float = 0.0, **kw) -> TrainConfig:
    model = ModelConfig(cell="lstm", layers=2, hidden_size=16, embedding_size=8, dropout=dropout)
    data = DataConfig(data=str(tmp / "corpus.txt"), cache_dir=str(tmp / "cache"))
    defaults = dict(
        out=str(tmp / out),
        data=data,
        model=model,
        batch_size=4,
        seq_len=16,
        lr=1e-2,
        max_steps=K,
        max_epochs=0,
        eval_every=3,
        log_every=1,
        eval_chars=2000,
        device="cpu",
        quiet=True,
        threads=1,
        precision="fp32",  # rank-split bf16 products round differently from one process's; auto is bf16 on AMX
    )
    return TrainConfig(**{**defaults, **kw})


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("dist")
    (tmp / "corpus.txt").write_text(bundled_corpus().read_text()[:20_000])
    (tmp / "names").mkdir()  # a labelled task: a folder of LABEL.txt files
    words = bundled_corpus().read_text()[:20_000].split()
    (tmp / "names" / "Short.txt").write_text("\n".join(w for w in words if len(w) <= 4))
    (tmp / "names" / "Long.txt").write_text("\n".join(w for w in words if len(w) > 4))
    return tmp


# -- ranks without torchrun, so that their checkpoint writes can be counted ----------


def rank_main(spec_path: str) -> None:
    """Run as one rank: train each job of the spec in turn (a process group each), and
    write the checkpoints this rank wrote to a JSON file."""
    spec = json.loads(Path(spec_path).read_text())
    saves: list[str] = []
    real_save = ckpt.save_checkpoint
    ckpt.save_checkpoint = lambda folder, *a, **k: (saves.append(Path(folder).name), real_save(folder, *a, **k))
    reports = []
    for job in spec["jobs"]:
        config = TrainConfig.from_json(job["config"])
        config.out = job["config"]["out"]
        os.environ["MASTER_PORT"] = str(job["port"])
        saves.clear()
        train(config, resume=job["resume"])
        reports.append(list(saves))
    Path(spec["report"].format(rank=os.environ["RANK"])).write_text(json.dumps(reports))


def run_ranks(tmp: Path, jobs: list[tuple[TrainConfig, bool]], n: int = 2) -> list[list[list[str]]]:
    """Train each (config, resume) of `jobs` on n local ranks over gloo, one job after the
    other in the same processes (to pay Python's start-up once). Returns, per rank and job,
    the checkpoints written."""
    spec, report = tmp / "ranks.spec.json", str(tmp / "ranks.{rank}.json")
    jobs = [{"config": {**c.to_json(), "out": c.out}, "resume": r, "port": free_port()} for c, r in jobs]
    spec.write_text(json.dumps({"jobs": jobs, "report": report}))
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, str(spec)],
            stderr=subprocess.PIPE,
            text=True,
            env={**env(), "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": str(n), "MASTER_ADDR": "127.0.0.1"},
        )
        for r in range(n)
    ]
    errs = []
    try:
        for p in procs:
            errs.append(p.communicate(timeout=TIMEOUT)[1])
    finally:
        for p in procs:
            p.kill()
    for r, (p, err) in enumerate(zip(procs, errs)):
        assert p.returncode == 0, f"rank {r} failed:\n{err[-3000:]}"
    return [json.loads(Path(report.format(rank=r)).read_text()) for r in range(n)]


def run_one(config: TrainConfig, resume: bool = False) -> list[str]:
    """Train `config` in this process (the reference); the checkpoints it wrote, in order."""
    saves, real_save = [], ckpt.save_checkpoint
    ckpt.save_checkpoint = lambda folder, *a, **k: (saves.append(Path(folder).name), real_save(folder, *a, **k))
    try:
        build_trainer(config, resume)[0].run()
    finally:
        ckpt.save_checkpoint = real_save
    return saves


def metrics(out: str) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(out: str, ref: str) -> None:
    """Same losses at every step, same weights and same (L, B, H) hidden state, to 1e-5."""
    got, want = metrics(out), metrics(ref)
    assert [m["step"] for m in got] == [m["step"] for m in want]
    for g, w in zip(got, want):
        for key in ("train_loss", "val_loss"):
            if key in w:
                assert g[key] == pytest.approx(w[key], abs=1e-5), (key, g["step"])
    a, b = ckpt.load_weights(Path(out) / "last"), ckpt.load_weights(Path(ref) / "last")
    for name in b:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0, msg=name)
    ha, hb = (
        ckpt.load_trainer_state(Path(out) / "last")["hidden"],
        ckpt.load_trainer_state(Path(ref) / "last")["hidden"],
    )
    assert [h.shape for h in ha] == [h.shape for h in hb] == [torch.Size([2, 4, 16])] * 2
    for x, y in zip(ha, hb):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def runs(tmp) -> dict:
    """One-process references (K steps; 2K steps without a stop) and the 2-rank runs:
    K steps from scratch, the K-step reference resumed on 2 ranks up to 2K, and with
    dropout, 2K steps without a stop and K steps resumed up to 2K."""
    classify = dict(task="classify", data=DataConfig(data=str(tmp / "names"), cache_dir=str(tmp / "cache")))
    saves = {
        "ref_k": run_one(make_config(tmp, "ref_k")),
        "ref_2k": run_one(make_config(tmp, "ref_2k", max_steps=2 * K)),
        "cls_ref": run_one(make_config(tmp, "cls_ref", **classify)),
    }
    shutil.copytree(tmp / "ref_k", tmp / "one_then_two")
    jobs = [
        (make_config(tmp, "two"), False),
        (make_config(tmp, "one_then_two", max_steps=2 * K), True),
        (make_config(tmp, "drop_2k", dropout=0.3, max_steps=2 * K), False),
        (make_config(tmp, "drop_k_2k", dropout=0.3), False),
        (make_config(tmp, "drop_k_2k", dropout=0.3, max_steps=2 * K), True),
        (make_config(tmp, "cls_two", **classify), False),
    ]
    per_rank = run_ranks(tmp, jobs)
    saves |= {"two": per_rank[0][0], "two_rank1": per_rank[1][0]}
    return saves


def test_two_ranks_equal_one_process_and_write_checkpoints_once(tmp, runs):
    assert_same_run(str(tmp / "two"), str(tmp / "ref_k"))
    assert runs["two"] == runs["ref_k"] and runs["two"].count("last") == 2
    assert runs["two_rank1"] == []  # rank 1 writes nothing...
    assert len(metrics(str(tmp / "two"))) == len(metrics(str(tmp / "ref_k")))  # ...not even metrics
    assert not [p.name for p in (tmp / "two").iterdir() if ".tmp" in p.name or ".old" in p.name]
    assert ckpt.load_trainer_state(tmp / "two" / "last")["world_size"] == 2


def test_a_classifier_on_two_ranks_equals_one_process(tmp, runs):
    """The labelled tasks share the item layout's rows among ranks like streams."""
    assert_same_run(str(tmp / "cls_two"), str(tmp / "cls_ref"))
    assert json.loads((tmp / "cls_two" / "last" / "checkpoint.json").read_text())["labels"] == ["Long", "Short"]


def test_resume_two_ranks_on_one(tmp, runs):
    shutil.copytree(tmp / "two", tmp / "two_then_one")
    run_one(make_config(tmp, "two_then_one", max_steps=2 * K), resume=True)
    assert_same_run(str(tmp / "two_then_one"), str(tmp / "ref_2k"))


def test_resume_one_process_on_two_ranks(tmp, runs):
    assert_same_run(str(tmp / "one_then_two"), str(tmp / "ref_2k"))


def test_resume_on_as_many_ranks_restores_each_ranks_dropout_stream(tmp, runs):
    assert_same_run(str(tmp / "drop_k_2k"), str(tmp / "drop_2k"))
    # and the two ranks did draw different masks: rank 1 has its own stream
    rng = ckpt.load_trainer_state(tmp / "drop_2k" / "last")["rng_ranks"]
    assert not torch.equal(rng[0]["cpu"], rng[1]["cpu"])


# -- the CLI through torchrun: signals and a dead rank ------------------------------------


def start_cli(tmp: Path, out: str, *extra: str) -> subprocess.Popen:
    """`charrnn train --nproc 2` on a run too long to finish: the process becomes torchrun.
    Its temporary files go to tmp/out-tmp (TMPDIR), so a test can see what is left there."""
    (tmp / f"{out}-tmp").mkdir()
    args = [
        "--data",
        str(tmp / "corpus.txt"),
        "--cache-dir",
        str(tmp / "cache"),
        "--out",
        str(tmp / out),
        "--cell",
        "gru",
        "--layers",
        "1",
        "--hidden-size",
        "16",
        "--embedding-size",
        "8",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--max-steps",
        "1000000",
        "--max-epochs",
        "0",
        "--eval-every",
        "20",
        "--eval-chars",
        "500",
        "--device",
        "cpu",
        "--quiet",
        "--nproc",
        "2",
        *extra,
    ]
    # A session of its own, as a command typed at a terminal has: Ctrl-C there signals the whole group.
    return subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", *args],
        stderr=subprocess.PIPE,
        text=True,
        env={**env(), "TMPDIR": str(tmp / f"{out}-tmp")},
        start_new_session=True,
    )


def ranks_of(torchrun: subprocess.Popen, n: int = 2) -> dict[int, int]:
    """{rank: pid} of torchrun's workers (its children, told apart by their RANK)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == torchrun.pid:
                    environ = (stat.parent / "environ").read_bytes().split(b"\0")
                    found[int(next(e for e in environ if e.startswith(b"RANK="))[5:])] = int(stat.parent.name)
            except (OSError, StopIteration, ValueError, IndexError):
                continue
        if len(found) == n:
            return found
        time.sleep(0.2)
    raise AssertionError("torchrun did not start its workers")


def wait_for_checkpoint(torchrun: subprocess.Popen, out: Path) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not (out / "last" / "checkpoint.json").exists():
        assert torchrun.poll() is None, torchrun.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_sigterm_to_one_rank_stops_all_after_one_checkpoint(tmp):
    torchrun = start_cli(tmp, "sigterm")
    wait_for_checkpoint(torchrun, tmp / "sigterm")
    os.kill(ranks_of(torchrun)[1], signal.SIGTERM)  # rank 0 is not told: it must learn it from rank 1
    err = torchrun.communicate(timeout=TIMEOUT)[1]
    assert torchrun.returncode == 0, err[-3000:]
    assert err.count("Stopped at step") == 1  # rank 0 alone reports
    assert "Traceback" not in err
    step = ckpt.read_meta(tmp / "sigterm" / "last")["step"]
    assert ckpt.load_trainer_state(tmp / "sigterm" / "last")["step"] == step
    records = metrics(str(tmp / "sigterm"))
    assert [m["step"] for m in records if "val_loss" in m].count(step) == 1  # one final checkpoint
    assert records[-1]["step"] == step and "val_loss" in records[-1]


def test_ctrl_c_stops_torchrun_and_every_rank_cleanly(tmp):
    """Ctrl-C at a terminal signals torchrun and all its workers at once."""
    torchrun = start_cli(tmp, "ctrl-c")
    wait_for_checkpoint(torchrun, tmp / "ctrl-c")
    os.killpg(torchrun.pid, signal.SIGINT)
    err = torchrun.communicate(timeout=TIMEOUT)[1]
    assert torchrun.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    assert err.count("Stopped at step") == 1 and "--resume --nproc N" in err
    left = [p.name for p in (tmp / "ctrl-c-tmp").iterdir() if p.name.startswith(("torchelastic_", "charrnn-"))]
    assert left == []  # torchrun's log folder is removed (torch's torchinductor_USER cache may stay)
    step = ckpt.read_meta(tmp / "ctrl-c" / "last")["step"]
    assert ckpt.load_trainer_state(tmp / "ctrl-c" / "last")["step"] == step


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks through /proc")
def test_killed_rank_ends_the_run_with_an_error_in_bounded_time(tmp):
    torchrun = start_cli(tmp, "killed", "--dist-timeout", "20")
    wait_for_checkpoint(torchrun, tmp / "killed")
    os.kill(ranks_of(torchrun)[1], signal.SIGKILL)
    t0 = time.monotonic()
    err = torchrun.communicate(timeout=TIMEOUT)[1]
    assert time.monotonic() - t0 < 30
    assert torchrun.returncode != 0
    assert "charrnn train: error: rank 0 of 2: another rank died or did not answer" in err, err[-3000:]
    assert "charrnn train: error: the run on 2 processes stopped (" in err and "rank 1 was killed by SIGKILL" in err
    assert "Traceback" not in err, err[-3000:]
    # Whatever the moment of the kill, the checkpoint is whole: it loads and resumes.
    last = ckpt.resolve(tmp / "killed", "last")
    CharRNN(ModelConfig.from_json(ckpt.read_meta(last)["model"])).load_state_dict(ckpt.load_weights(last))
    assert ckpt.load_trainer_state(last)["step"] == ckpt.read_meta(last)["step"]


def test_ranks_that_fail_at_start_up_say_nothing_was_saved(tmp):
    """A start-up error in every rank (a text too short for one batch) leaves no run to --resume,
    so the launcher's last line must not advise one."""
    (tmp / "short.txt").write_text("too short for a batch of 4 x 16\n")
    torchrun = start_cli(tmp, "short", "--data", str(tmp / "short.txt"))
    err = torchrun.communicate(timeout=TIMEOUT)[1]
    assert torchrun.returncode == 2 and "too few for one batch of --batch-size 4" in err
    assert "the run on 2 processes stopped (rank 0 exited with code 2" in err and "nothing was saved" in err
    assert "--resume" not in err and "Traceback" not in err, err[-3000:]
    assert "failed (exitcode" not in err and "OMP_NUM_THREADS" not in err  # torchrun's own lines, said once by charrnn


# -- the pieces ----------------------------------------------------------------------------


def test_rows_split_the_streams_and_need_a_multiple():
    assert [Dist(rank=r, world_size=4).rows(8) for r in range(4)] == [(0, 2), (2, 4), (4, 6), (6, 8)]
    with pytest.raises(CharRNNError, match="multiple of the number of processes"):
        Dist(rank=0, world_size=3).rows(4)
    with pytest.raises(CharRNNError, match="--nproc"):
        TrainConfig(batch_size=4, nproc=3, max_steps=1).check()
    if "RANK" not in os.environ:
        with pytest.raises(CharRNNError, match="torchrun"):
            train(TrainConfig(batch_size=4, nproc=2, max_steps=1))
    state = (torch.arange(2 * 6 * 3).reshape(2, 6, 3),)
    assert torch.equal(Dist(rank=1, world_size=3).take_rows(state, 6)[0], state[0][:, 2:4])


def test_sharded_validation_adds_up_to_the_whole():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(cell="gru", layers=1, hidden_size=8, embedding_size=4, vocab_size=10))
    ids = torch.randint(0, 10, (1000,)).numpy()
    engine = TorchEngine(model)
    mean, n = evaluate(engine, ids, 5, 16)
    parts = [score(engine, ids, 5, 16, shard=(k, 3)) for k in range(3)]
    assert sum(c for _, c in parts) == n
    assert sum(t for t, _ in parts) / n == pytest.approx(mean, rel=1e-6)  # float32 sums over other batches
    assert score(engine, ids, 2, 16, shard=(2, 3)) == (0.0, 0)  # more ranks than streams: nothing to do


def test_torchrun_args_leave_out_nproc():
    cmd = torchrun_args(2, ["--out", "x", "--nproc", "2", "--lr", "0.1", "--nproc=2"])
    assert cmd == ["--standalone", "--nproc-per-node=2", "-m", "charrnn", "train", "--out", "x", "--lr", "0.1"]


def test_a_plain_process_is_one_rank():
    d = Dist()
    assert (d.active, d.is_main, d.rows(4), d.reduce([1.0, 2.0])) == (False, True, (0, 4), [1.0, 2.0])


if __name__ == "__main__":
    rank_main(sys.argv[1])
