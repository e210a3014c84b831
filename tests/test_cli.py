import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charrnn.cli import build_parser, main
from charrnn.errors import CharRNNError
from conftest import small_text

TINY = ["--hidden-size", "24", "--embedding-size", "8", "--batch-size", "4", "--seq-len", "16", "--quiet"]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(small_text(120))
    return p


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_train_sample_eval_end_to_end(tmp_path, corpus, capsys):
    run = tmp_path / "runs" / "mine"
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", run, "--max-steps", 12, "--eval-every", 6, *TINY)
    assert (
        code == 0
        and re.search(r"Trained 12 steps \(\d+\.\d epochs\), validation loss", err)
        and "charrnn sample" in err
    )
    assert (run / "best" / "model.safetensors").exists() and (run / "metrics.jsonl").exists()

    code, out, _ = run_cli(capsys, "sample", run, "--prime", "the ", "--length", 40, "--seed", 5)
    assert code == 0 and out.startswith("the ") and len(out) == len("the ") + 40 + 1
    assert run_cli(capsys, "sample", run, "--prime", "the ", "--length", 40, "--seed", 5)[1] == out

    code, out, _ = run_cli(capsys, "sample", run, "--num-samples", 3, "--length", 10, "--seed", 1, "--temperature", 0)
    assert code == 0 and out.count("--- sample") == 3

    code, out, _ = run_cli(capsys, "eval", run, "--data", corpus)
    assert code == 0 and "bpc" in out and "perplexity" in out and f"{corpus.stat().st_size - 1:,} scored" in out

    code, _, err = run_cli(capsys, "train", "--out", run, "--resume", "--max-steps", 18)
    assert code == 0 and "Trained 18 steps" in err


def test_a_run_without_validation_says_so(tmp_path, corpus, capsys):
    run = tmp_path / "noval"
    code, _, err = run_cli(
        capsys, "train", "--data", corpus, "--out", run, "--max-steps", 3, "--val-fraction", 0, *TINY
    )
    assert code == 0 and "Trained 3 steps" in err and "no validation text" in err and "best/ is the last" in err


def one_line_error(result, command, pattern):
    code, _, err = result
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"charrnn {command}: error:"), err
    assert pattern in lines[0], err


def test_bad_input_gets_one_line_errors(tmp_path, corpus, capsys):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait".encode("latin-1"))
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("just a few characters")
    out = ["--out", tmp_path / "r", "--max-steps", 2]
    one_line_error(run_cli(capsys, "train", "--data", tmp_path / "missing.txt", *out, *TINY), "train", "no such file")
    result = run_cli(capsys, "train", "--data", tmp_path / "latin1.txt", *out, *TINY)
    one_line_error(result, "train", "latin1.txt is not valid UTF-8 (byte offset 3)")
    assert "--encoding bytes" in result[2]
    one_line_error(run_cli(capsys, "train", "--data", tmp_path / "empty.txt", *out, *TINY), "train", "is empty")
    one_line_error(
        run_cli(capsys, "train", "--data", tmp_path / "short.txt", *out, *TINY), "train", "too few for one batch"
    )
    one_line_error(run_cli(capsys, "sample", tmp_path / "nowhere"), "sample", "no such run folder")
    assert not (tmp_path / "r" / "last").exists()


def test_prime_outside_vocabulary_lists_the_characters(tmp_path, corpus, capsys):
    run = tmp_path / "r"
    assert run_cli(capsys, "train", "--data", corpus, "--out", run, "--max-steps", 2, *TINY)[0] == 0
    one_line_error(run_cli(capsys, "sample", run, "--prime", "the QX"), "sample", "'QX'")
    code, out, _ = run_cli(capsys, "sample", run, "--prime", "the QX", "--unknown", "skip", "--length", 5)
    assert code == 0 and out.startswith("the ")


def test_every_flag_has_help():
    parser = build_parser()
    for sub in parser._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            assert action.help, f"{sub.prog} {action.option_strings} has no help"


def test_preset_and_flags_override_it(tmp_path, corpus):
    from charrnn.cli import train_config_from_args

    args = build_parser().parse_args(["train", "--preset", "tiny", "--hidden-size", "32"])
    c = train_config_from_args(args)
    assert c.model.hidden_size == 32 and c.max_time == 120 and c.lr_schedule == "cosine"


def test_tie_weights_alone_sets_the_embedding_to_the_hidden_size():
    from charrnn.cli import train_config_from_args
    from charrnn.training.build import accept

    def train_config(*flags):
        return accept(train_config_from_args(build_parser().parse_args(["train", *flags])))

    c = train_config("--preset", "tiny", "--tie-weights")  # the preset's E = 64 would have been refused
    assert c.model.tie_weights and c.model.embedding_size == c.model.hidden_size == 256
    with pytest.raises(CharRNNError, match="--tie-weights needs --embedding-size equal to --hidden-size"):
        train_config("--tie-weights", "--embedding-size", "32")  # a typed size is kept, and refused in one line


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_last_and_exits_zero(tmp_path, corpus, sig):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "charrnn",
        "train",
        "--data",
        str(corpus),
        "--out",
        str(run),
        "--max-steps",
        "1000000",
        "--eval-every",
        "1000000",
        "--log-every",
        "1",
        *TINY,
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Resume with: charrnn train --out" in err and "--resume" in err
    assert (run / "last" / "trainer.pt").exists()


@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_as_data_is_named_as_such(tmp_path, capsys, special):
    data = tmp_path / "pipe" if special == "fifo" else Path(special)
    if special == "fifo":
        os.mkfifo(data)
    result = run_cli(capsys, "train", "--data", data, "--out", tmp_path / "r", "--max-steps", 2, *TINY)
    one_line_error(result, "train", "is not a regular file (a FIFO, a device or a socket)")


def test_text_entirely_outside_the_vocabulary_and_long_unknown_lists(tmp_path, corpus, capsys):
    run = tmp_path / "r"
    assert run_cli(capsys, "train", "--data", corpus, "--out", run, "--max-steps", 2, *TINY)[0] == 0
    (tmp_path / "greek.txt").write_text("αβγδεζηθ" * 50)
    one_line_error(run_cli(capsys, "eval", run, "--data", tmp_path / "greek.txt"), "eval", "none of the characters of")
    many = "".join(chr(0x4E00 + i) for i in range(5000))  # 5,000 distinct unknown characters
    code, _, err = run_cli(capsys, "sample", run, "--prime", many)
    one_line_error((code, "", err), "sample", "and 4,980 more (5,000 in all)")
    assert len(err) < 400
    (tmp_path / "cjk.txt").write_text(many)
    code, _, err = run_cli(capsys, "train", "--out", run, "--resume", "--data", tmp_path / "cjk.txt", "--max-steps", 4)
    one_line_error((code, "", err), "train", "holds characters outside the vocabulary")
    assert len(err) < 400


def test_viz_out_that_is_a_folder(tmp_path, corpus, capsys):
    run = tmp_path / "r"
    assert run_cli(capsys, "train", "--data", corpus, "--out", run, "--max-steps", 2, *TINY)[0] == 0
    result = run_cli(capsys, "viz", run, "--text", "the ", "--out", tmp_path)
    one_line_error(result, "viz", "is a folder; give a file name")


def test_a_corrupted_best_checkpoint_names_the_file_and_the_intact_last(tmp_path, corpus, capsys):
    run = tmp_path / "r"
    assert run_cli(capsys, "train", "--data", corpus, "--out", run, "--max-steps", 4, "--eval-every", 2, *TINY)[0] == 0
    (run / "best" / "checkpoint.json").write_text((run / "best" / "checkpoint.json").read_text()[:100])
    for command, extra in (
        ("sample", []),
        ("viz", ["--text", "the ", "--out", tmp_path / "v.html"]),
        ("eval", ["--data", corpus]),
    ):
        result = run_cli(capsys, command, run, *extra)
        one_line_error(result, command, f"{run / 'best' / 'checkpoint.json'} is damaged")
        assert f"{run / 'last'} is intact: use it with --checkpoint last" in result[2]
    assert run_cli(capsys, "sample", run, "--checkpoint", "last", "--length", 5)[0] == 0


def _wait_for_sigterm_handler(pid: int) -> None:
    """Until charrnn's main() has installed its SIGTERM handler (SigCgt in /proc): start-up has begun."""
    deadline = time.time() + 60
    while time.time() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)
    raise AssertionError("charrnn never installed its SIGTERM handler")


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_start_up_exits_with_a_short_line(tmp_path, corpus, sig, code, word):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "charrnn", "train", "--data", str(corpus), "--out", str(tmp_path / "run"), *TINY]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_sigterm_handler(proc.pid)  # then it is importing torch: seconds of start-up
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and err.strip() == f"charrnn train: {word}", err
    assert not (tmp_path / "run").exists()
