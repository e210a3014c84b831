"""`charrnn sample RUN --interactive` through a pseudo-terminal, as a person would use it:
typed lines, streamed continuations, settings commands, Ctrl-C and Ctrl-D. The
continuations are compared with sample() in this process."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytest

from charrnn.cli import main
from charrnn.errors import CharRNNError
from charrnn.sampling.generate import SampleConfig, sample
from charrnn.sampling.interactive import interactive, set_knob
from pty_support import Terminal
from viz_support import save_run, tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model, vocab = tiny_model("lstm", layers=1, hidden_size=16)
    return save_run(tmp_path_factory.mktemp("interactive") / "run", model, vocab), model, vocab


def start(run_dir: Path, *flags: str) -> Terminal:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "dumb", "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    term = Terminal(["-m", "charrnn", "sample", str(run_dir), "--interactive", *flags], env)
    term.expect("Ctrl-D ends.")
    term.expect("> ")
    return term


def test_a_session(run):
    run_dir, model, vocab = run
    term = start(run_dir, "--length", "40")
    term.type(":seed 5\n")
    term.expect("> ")
    term.type("He said\n")
    shown = term.expect("> ")
    want = sample(model, vocab, SampleConfig(prime="He said", length=40, seed=5))[0]
    assert shown.endswith(want + "\n")
    term.type(":temperature 0\n")
    term.expect("> ")
    term.type(":length 12\n")
    term.expect("> ")
    term.type("She\\n[\n")  # \n typed as two characters stands for a newline
    shown = term.expect("> ")
    assert shown.endswith(sample(model, vocab, SampleConfig(prime="She\n[", length=12, temperature=0))[0] + "\n")
    term.type(":temperature hot\n")
    assert "error: :temperature takes a number, not 'hot'" in term.expect("> ")
    term.type(":settings\n")
    assert "temperature=0.0  length=12  seed=5" in term.expect("> ")
    term.type(":help\n")
    assert ":seed N" in term.expect("> ")
    term.type(":seed random\n")
    term.expect("> ")
    term.type("(\n")
    shown = term.expect("]\n> ")  # a drawn seed is shown, so the text can be made again
    seed = int(shown.rsplit("[seed ", 1)[1])
    want = sample(model, vocab, SampleConfig(prime="(", length=12, temperature=0, seed=seed))[0]
    assert shown.endswith(want + f"\n[seed {seed}")
    term.type("\x04")  # Ctrl-D at the prompt
    term.expect("bye")
    assert term.exit_code() == 0


def test_ctrl_c_stops_a_continuation_then_ends_the_loop(run):
    run_dir, _, _ = run
    term = start(run_dir, "--length", "100000000")
    term.type("He\n")
    term.expect("He\n")  # the terminal's echo of the typed line
    term.expect("He")  # the continuation, prime first, is being written
    term.type("\x03")
    term.expect("[stopped]")
    term.expect("> ")
    # A person does not press Ctrl-C within microseconds of the prompt: CPython's readline can
    # miss a SIGINT that arrives before it starts waiting for input (it then acts on the next key).
    time.sleep(0.5)
    term.type("\x03")  # Ctrl-C at the prompt
    term.expect("bye")
    assert term.exit_code() == 0


def test_the_loop_without_a_terminal(run, monkeypatch, capsys):
    """Lines from a pipe: the same commands; :quit ends it."""
    _, model, vocab = run
    monkeypatch.setattr(sys, "stdin", io.StringIO(":length 30\n:seed 2\n:top-k 3\nShe\n:quit\nnever read\n"))
    assert interactive(model, vocab, SampleConfig()) == 0
    out = capsys.readouterr().out
    want = sample(model, vocab, SampleConfig(prime="She", length=30, seed=2, top_k=3))[0]
    assert out.endswith(f"> {want}\n> bye\n")


def test_bad_flags(run, capsys):
    run_dir, _, _ = run
    assert main(["sample", str(run_dir), "--interactive", "--prime", "x"]) == 2
    assert "error: --interactive reads its primes at the prompt" in capsys.readouterr().err


def test_set_knob_checks_like_the_flags():
    config = SampleConfig()
    assert set_knob(config, "top-k", "5").top_k == 5 and config.top_k == 0  # a copy
    assert set_knob(config, "stop", "\\n\\n").stop == "\n\n"
    assert set_knob(set_knob(config, "seed", "3"), "seed", "random").seed is None
    with pytest.raises(CharRNNError, match="--top-p must be in"):
        set_knob(config, "top_p", "2")
    with pytest.raises(CharRNNError, match="unknown command :colour"):
        set_knob(config, "colour", "red")
