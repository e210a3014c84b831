"""`charrnn export`: the command, its checks, atomic writes, and one-line errors."""

import json
import os
import sys

import pytest

from charrnn import checkpoint as ckpt
from charrnn.checkpoint import META
from charrnn.cli import main
from charrnn.export.common import write_atomic
from charrnn.export.html import load_html
from charrnn.load import load_model
from export_support import export_model
from viz_support import save_run


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def run(tmp_path):
    model, vocab = export_model("gru", layers=1)
    return save_run(tmp_path / "run", model, vocab)


def set_task(run, task):
    path = run / "best" / META
    meta = json.loads(path.read_text())
    meta["task"] = task
    meta["meta_sha256"] = ckpt._meta_hash(meta)  # a deliberate edit: keep checkpoint.json's own hash right
    path.write_text(json.dumps(meta))


def test_export_html_then_check(run, tmp_path, capsys):
    page = tmp_path / "out" / "model.html"
    code, _, err = run_cli(capsys, "export", run, "--html", page)
    assert code == 0 and "open it in any browser" in err
    model, _, _ = load_model(run)
    loaded, _, manifest = load_html(page)
    assert manifest["model"] == model.config.to_json()
    code, out, _ = run_cli(capsys, "export", "--verify", page)
    assert code == 0 and "SHA-256 verified" in out and "GRU 1x8" in out
    page.write_bytes(page.read_bytes().replace(b"<title>charrnn", b"<title>charrnm", 1))  # one byte in the title
    code, out, err = run_cli(capsys, "export", "--verify", page)
    assert code == 2 and "is damaged (its SHA-256 differs" in err and len(err.strip().splitlines()) == 1


def test_export_onnx_from_the_command_line(run, tmp_path, capsys):
    pytest.importorskip("onnxscript", reason="ONNX export NOT tested: pip install -e '.[export]'")
    path = tmp_path / "model.onnx"
    code, _, err = run_cli(capsys, "export", run, "--onnx", path, "--checkpoint", "best")
    assert code == 0 and path.stat().st_size > 0, err
    code, out, _ = run_cli(capsys, "export", "--verify", path)
    assert code == 0 and "charrnn ONNX step graph, SHA-256 verified; GRU 1x8" in out


def test_export_without_onnx_says_what_to_install(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed: importing it raises ImportError
    code, _, err = run_cli(capsys, "export", run, "--html", tmp_path / "m.html", "--onnx", tmp_path / "m.onnx")
    assert code == 2 and "pip install 'charrnn[export]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.html").exists() and not (tmp_path / "m.onnx").exists()  # nothing half done


def test_export_refuses_other_tasks_in_one_line(run, tmp_path, capsys):
    set_task(run, "classify")
    code, _, err = run_cli(capsys, "export", run, "--html", tmp_path / "m.html")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'classify'" in err and "next-char" in err  # refused, naming the task export supports
    set_task(run, "next-char")
    assert run_cli(capsys, "export", run, "--html", tmp_path / "m.html")[0] == 0


@pytest.mark.parametrize(
    "argv,message",
    [
        ([], "give a RUN folder to export, or --verify FILE"),
        (["RUN"], "say what to write: --html FILE, --onnx FILE, or both"),
        (["RUN", "--verify", "x.html"], "--verify FILE verifies an export on its own"),
        (["--verify", "missing.onnx"], "no such file: missing.onnx"),
    ],
)
def test_bad_export_flags_get_one_line_errors(run, capsys, argv, message):
    code, _, err = run_cli(capsys, "export", *[str(run) if a == "RUN" else a for a in argv])
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_the_page_refuses_an_adaptive_softmax_and_says_what_to_do(tmp_path, capsys):
    from charrnn.data.vocab import Vocab
    from charrnn.engines.model import CharRNN, ModelConfig
    from export_support import TEXT

    vocab = Vocab.from_chars(TEXT)
    adaptive = CharRNN(ModelConfig(vocab_size=vocab.size, hidden_size=8, embedding_size=8, cutoffs=[10]))
    run = save_run(tmp_path / "adaptive", adaptive, vocab)
    code, _, err = run_cli(capsys, "export", run, "--html", tmp_path / "a.html")
    assert code == 2 and "has an adaptive one (--cutoffs): export --onnx, or train one with a full softmax" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "a.html").exists()


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "model.html"
    path.write_text("the previous export")

    def fail(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError):
        write_atomic(path, b"x" * 100_000)
    assert path.read_text() == "the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["model.html"]  # no temporary file left behind
    monkeypatch.undo()
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"


def test_verify_says_when_a_file_is_not_an_export_at_all(run, tmp_path, capsys):
    png = tmp_path / "de.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    for path in (png, run / "best" / "model.safetensors", run / "best" / META):
        code, _, err = run_cli(capsys, "export", "--verify", path)
        says = f"{path} is not a charrnn export (an .html page or an .onnx file); give a file that charrnn export wrote"
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    junk = tmp_path / "cut.onnx"  # named as an export: then it is a damaged one
    junk.write_bytes(png.read_bytes())
    code, _, err = run_cli(capsys, "export", "--verify", junk)
    assert code == 2 and "is damaged" in err and "not a charrnn export" not in err


def test_verify_finds_a_renamed_onnx_export(run, tmp_path, capsys):
    pytest.importorskip("onnxscript", reason="ONNX export NOT tested: pip install -e '.[export]'")
    path = tmp_path / "model.onnx"
    assert run_cli(capsys, "export", run, "--onnx", path)[0] == 0
    renamed = path.rename(tmp_path / "model.bin")
    code, out, err = run_cli(capsys, "export", "--verify", renamed)
    assert code == 0 and "charrnn ONNX step graph, SHA-256 verified" in out, err
