"""`charrnn sample` never crashes on the output's encoding (charrnn/sampling/output.py).

A model whose vocabulary holds non-ASCII characters samples, in a subprocess, under
an ASCII locale or PYTHONIOENCODING=ascii: to a pipe or a file it must write valid
UTF-8, the same text as sample() here; to a terminal it writes '?' for what the
terminal cannot show and says what to set."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from charrnn.data.vocab import Vocab
from charrnn.sampling.generate import SampleConfig, sample
from charrnn.sampling.output import cannot_show, prepare_stdout
from pty_support import Terminal
from viz_support import save_run, tiny_model

ROOT = Path(__file__).resolve().parent.parent
TEXT = "Café au lait, naïve façade; 世界 — «très» ça va?\n"
ARGS = ["--prime", "Ca", "--length", "300", "--seed", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model, vocab = tiny_model("gru", layers=1, hidden_size=16, text=TEXT)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    want = sample(model, vocab, SampleConfig(prime="Ca", length=300, seed=3))[0]
    assert not want.isascii()  # the text to write holds characters outside ASCII
    return save_run(tmp_path_factory.mktemp("enc") / "run", model, vocab), want


def env_with(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING", "PYTHONUTF8"))}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.parametrize(
    "env, to",
    [
        ({"LANG": "C", "PYTHONIOENCODING": "ascii"}, "pipe"),
        ({"LANG": "C", "PYTHONIOENCODING": "ascii"}, "file"),
        (
            {"LC_ALL": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"},
            "pipe",
        ),  # a plain C locale: Python picks ASCII
        ({"LANG": "en_US.ISO-8859-1", "PYTHONIOENCODING": "latin-1"}, "file"),  # 世 and — have no Latin-1 byte
    ],
)
def test_pipe_or_file_gets_utf8(run, tmp_path, env, to):
    run_dir, want = run
    cmd = [sys.executable, "-m", "charrnn", "sample", str(run_dir), *ARGS]
    if to == "pipe":
        done = subprocess.run(cmd, env=env_with(**env), capture_output=True, timeout=120, check=False)
        out = done.stdout
    else:
        with open(tmp_path / "out.txt", "wb") as f:
            done = subprocess.run(cmd, env=env_with(**env), stdout=f, stderr=subprocess.PIPE, timeout=120, check=False)
        out = (tmp_path / "out.txt").read_bytes()
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert out.decode("utf-8") == want + "\n"


def test_terminal_that_cannot_show_a_character_gets_question_marks_and_a_note(run):
    run_dir, want = run
    env = env_with(LANG="C.UTF-8", PYTHONIOENCODING="ascii")
    term = Terminal(["-m", "charrnn", "sample", str(run_dir), *ARGS], env)
    screen = term.expect(want.encode("ascii", "replace").decode() + "\n")  # the text, '?' for what ASCII lacks
    assert "note: this terminal's encoding (ascii) cannot show 9 of the model's characters" in screen
    assert "Set LANG=C.UTF-8 (or PYTHONIOENCODING=utf-8)" in screen
    assert term.exit_code() == 0


class FakeStream(io.TextIOWrapper):
    def __init__(self, encoding: str, tty: bool):
        super().__init__(io.BytesIO(), encoding=encoding)
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_prepare_stdout_in_process():
    vocab = Vocab.from_chars(TEXT)
    assert cannot_show(vocab, "ascii") == [c for c in sorted(set(TEXT)) if ord(c) > 127]
    assert cannot_show(vocab, "utf-8") == [] and cannot_show(Vocab.bytes_vocab(), "latin-1") == ["\ufffd"]
    for encoding, tty in [("ascii", False), ("latin-1", False)]:
        stream = FakeStream(encoding, tty)
        assert prepare_stdout(vocab, stream) is None and stream.encoding == "utf-8"
    stream = FakeStream("latin-1", True)
    note = prepare_stdout(vocab, stream)
    assert "cannot show 3 of the model's characters" in note and stream.encoding == "latin-1"
    stream.write("é世")  # what Latin-1 can show stays, the rest is '?'
    stream.flush()
    assert stream.buffer.getvalue() == "é?".encode("latin-1")
    assert prepare_stdout(Vocab.from_chars("abc"), FakeStream("ascii", True)) is None
