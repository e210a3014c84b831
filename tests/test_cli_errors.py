"""One-line errors for what the machine cannot do: a device this PyTorch lacks, sizes too big for
its memory, a text in an encoding the model does not read. Each runs the real command."""

import re
from pathlib import Path

import pytest
import torch

import charrnn.engines.model as torch_model
import charrnn.sampling.generate as generate
from charrnn.cli import build_parser, main
from charrnn.errors import _SIZE_FLAGS, out_of_memory
from conftest import small_text
from test_cli import TINY, one_line_error, run_cli

# Each command that loads a model to run it, with the flags it needs besides RUN.
LOADING = {
    "sample": [],
    "eval": ["--data", "{corpus}"],
    "viz": ["--data", "{corpus}"],
    "classify": ["--data", "{corpus}"],
    "tag": ["--data", "{corpus}"],
    "serve": ["--port", "0"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    corpus = run.parent / "corpus.txt"
    corpus.write_text(small_text(120))
    assert main(["train", "--data", str(corpus), "--out", str(run), "--max-steps", "2", *TINY]) == 0
    return run


@pytest.fixture
def no_gpu(monkeypatch):
    """This PyTorch as a CPU-only build sees it, whatever the machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.mark.parametrize("command", sorted(LOADING))
@pytest.mark.parametrize(
    "device, says",
    [
        ("cuda", "--device cuda was asked for but PyTorch sees no CUDA GPU; use --device cpu"),
        ("cuda:0", "--device cuda:0 was asked for but PyTorch sees no CUDA GPU; use --device cpu"),
        ("mps", "--device mps was asked for but this machine has no MPS; use --device cpu"),
    ],
)
def test_a_device_this_pytorch_lacks_is_one_line(trained, capsys, no_gpu, command, device, says):
    extra = [a.format(corpus=trained.parent / "corpus.txt") for a in LOADING[command]]
    one_line_error(run_cli(capsys, command, trained, *extra, "--device", device), command, says)


def test_a_gpu_number_past_the_last_is_one_line(trained, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    result = run_cli(capsys, "sample", trained, "--device", "cuda:3")
    one_line_error(result, "sample", "--device cuda:3 was asked for but PyTorch sees 1 CUDA GPU(s), cuda:0 to cuda:0")


def test_card_runs_on_the_cpu_and_has_no_device_flag(trained, capsys):
    card = build_parser()._subparsers._group_actions[0].choices["card"]
    assert "--device" not in {o for a in card._actions for o in a.option_strings}
    with pytest.raises(SystemExit) as exit_:
        main(["card", str(trained), "--device", "cuda"])
    assert exit_.value.code == 2 and "unrecognized arguments: --device cuda" in capsys.readouterr().err


def _refuses_huge_allocations() -> bool:
    """Whether an allocation far beyond RAM fails at once (overcommit 0 or 2) instead of being
    granted and then filled until the kernel kills the process (1)."""
    mode = Path("/proc/sys/vm/overcommit_memory")
    return mode.is_file() and mode.read_text().strip() in ("0", "2")


huge = pytest.mark.skipif(not _refuses_huge_allocations(), reason="this kernel may grant a TiB it does not have")


@huge
def test_numpy_out_of_memory_is_one_line(tmp_path, capsys):
    # numpy: 7.28 TiB for W_hh, refused by malloc before a byte is touched
    result = run_cli(capsys, "hello", "--hidden-size", 1_000_000)
    one_line_error(result, "hello", "out of memory (could not allocate 7.28 TiB); choose a smaller --hidden-size")


@huge
def test_too_many_samples_is_one_line(trained, capsys):
    result = run_cli(capsys, "sample", trained, "--num-samples", 10**12, "--length", 2)
    one_line_error(result, "sample", "out of memory (could not allocate")
    assert "choose a smaller --num-samples" in result[2]


def test_pytorch_out_of_memory_in_train_is_one_line_and_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    # what PyTorch's CPU allocator raises for --hidden-size 1000000, without asking for 16 TB
    def refuse(self, config):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
            "to allocate 16000000000000 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(torch_model.CharRNN, "__init__", refuse)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(small_text(120))
    out = tmp_path / "run"
    huge_model = [*TINY, "--hidden-size", 1_000_000, "--max-steps", 2]
    result = run_cli(capsys, "train", "--data", corpus, "--out", out, *huge_model)
    one_line_error(result, "train", "out of memory (could not allocate 14.55 TiB); choose a smaller --hidden-size")
    assert not out.exists()  # it failed before any save: nothing half made is left


def test_gpu_out_of_memory_is_one_line(trained, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 GiB of which "
            "1.02 GiB is free.\nIf reserved but unallocated memory is large try setting "
            "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True"
        )

    monkeypatch.setattr(generate, "sample", refuse)
    result = run_cli(capsys, "sample", trained, "--num-samples", 4)
    one_line_error(result, "sample", "out of GPU memory (could not allocate 2.00 GiB); choose a smaller --num-samples")


def test_out_of_memory_names_only_flags_the_command_has():
    commands = build_parser()._subparsers._group_actions[0].choices
    for command, flags in _SIZE_FLAGS.items():
        have = {o for a in commands[command]._actions for o in a.option_strings}
        named = set(re.findall(r"--[a-z-]+", flags))
        assert named and named <= have, (command, named - have)


def test_other_runtime_errors_are_not_taken_for_out_of_memory(trained, capsys, monkeypatch):
    assert out_of_memory(RuntimeError("shape mismatch"), "sample") is None

    def fail(*args, **kwargs):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(generate, "sample", fail)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug stays a traceback that points at it
        main(["sample", str(trained)])


def test_eval_of_a_non_utf8_text_says_to_convert_it(trained, tmp_path, capsys):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 au lait".encode("latin-1"))
    result = run_cli(capsys, "eval", trained, "--data", latin1)
    one_line_error(result, "eval", "latin1.txt is not valid UTF-8 (byte offset 3); this model reads UTF-8 text")
    assert f"iconv -f latin1 -t utf-8 {latin1} > {tmp_path / 'latin1.utf8.txt'}" in result[2]
    assert "--encoding" not in result[2]  # eval has no such flag: the encoding is the model's

    result = run_cli(capsys, "train", "--data", latin1, "--out", tmp_path / "r", "--max-steps", 2, *TINY)
    one_line_error(result, "train", "latin1.txt is not valid UTF-8 (byte offset 3); convert it to UTF-8 (if it is")
    assert result[2].rstrip().endswith("or pass --encoding bytes to read any file as bytes")


def test_small_mistakes_get_a_line_that_says_what_happened(trained, capsys):
    """--label on a model without labels, a file given for the run folder, an empty --stop, --version."""
    result = run_cli(capsys, "sample", trained, "--label", "Russian")
    one_line_error(result, "sample", "--label 'Russian': this model has no labels (it was not trained with --task")
    metrics = trained / "metrics.jsonl"
    one_line_error(run_cli(capsys, "sample", metrics), "sample", "metrics.jsonl is a file; give the run folder")
    one_line_error(run_cli(capsys, "sample", trained, "--stop", ""), "sample", "--stop")
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and re.fullmatch(r"charrnn \d+\.\d+\.\d+\n", capsys.readouterr().out)
