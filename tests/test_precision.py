"""--precision (engines/precision.py): what auto picks and says, bf16 training that learns
like float32, and scoring that stays float32. Exact resume in bf16 is in test_trainer.py;
speed is benchmarks/precision.py's job."""

import json

import numpy as np
import pytest
import torch

from charrnn.data.corpus import DataConfig
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.engines.precision import cpu_bf16_flags, pick_precision
from charrnn.engines.torch_engine import TorchEngine
from charrnn.errors import CharRNNError
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train
from conftest import small_text

XEON = "flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8\n"


def test_fast_bf16_cpus_are_told_by_their_flags(tmp_path):
    (tmp_path / "xeon").write_text("processor\t: 0\n" + XEON)
    (tmp_path / "epyc").write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512_fp16_not\n")
    assert cpu_bf16_flags(tmp_path / "xeon") == ["amx_bf16", "avx512_bf16"]
    assert cpu_bf16_flags(tmp_path / "epyc") == []
    assert cpu_bf16_flags(tmp_path / "missing") == []  # no /proc/cpuinfo (macOS): not fast


@pytest.mark.parametrize(
    "requested, fast, picked, says",
    [
        ("auto", "a CPU with amx_bf16", "bf16", "Training in bf16 (autocast, float32 weights): a CPU with amx_bf16"),
        ("auto", None, "fp32", ""),
        ("bf16", None, "bf16", "--precision bf16 on cpu without fast bf16"),
        ("bf16", "a CPU with amx_bf16", "bf16", ""),
        ("fp32", "a CPU with amx_bf16", "fp32", ""),
    ],
)
def test_auto_picks_bf16_only_where_it_is_fast_and_says_so_in_one_line(capsys, requested, fast, picked, says):
    assert pick_precision(requested, torch.device("cpu"), fast=lambda device: fast) == picked
    err = capsys.readouterr().err
    assert err.startswith(says) and err.count("\n") == (1 if says else 0)


def run(tmp_path, precision, steps=100):
    corpus = tmp_path / "c.txt"
    if not corpus.exists():
        corpus.write_text(small_text(400))
    config = TrainConfig(
        out=str(tmp_path / precision),
        data=DataConfig(data=str(corpus)),
        model=ModelConfig(hidden_size=64, embedding_size=16),
        batch_size=8,
        seq_len=32,
        lr=1e-2,
        max_epochs=0,
        max_steps=steps,
        eval_every=100,
        log_every=10,
        quiet=True,
        seed=3,
        precision=precision,
    )
    train(config)
    rows = [json.loads(line) for line in (tmp_path / precision / "metrics.jsonl").read_text().splitlines()]
    meta = json.loads((tmp_path / precision / "last" / "checkpoint.json").read_text())
    return [m["train_loss"] for m in rows if "train_loss" in m], meta


def test_bf16_learns_and_its_loss_curve_follows_float32(tmp_path):
    fp32, fp32_meta = run(tmp_path, "fp32")
    bf16, bf16_meta = run(tmp_path, "bf16")
    assert bf16[-1] < bf16[0] - 2.0  # learns: from ~3.1 nats to ~0.2 on this text
    # the same curve to rounding (measured here: within 0.002 nats at every logged step)
    assert np.allclose(bf16, fp32, atol=0.02), list(zip(fp32, bf16))
    assert bf16 != fp32  # and it did train in bf16
    assert (fp32_meta["train"]["precision"], bf16_meta["train"]["precision"]) == ("fp32", "bf16")


def test_auto_is_saved_as_what_it_picked_and_old_runs_resume_in_fp32(tmp_path):
    _, meta = run(tmp_path, "auto", steps=2)
    assert meta["train"]["precision"] == ("bf16" if cpu_bf16_flags() else "fp32")  # this machine's answer
    old = {k: v for k, v in meta["train"].items() if k != "precision"}  # saved before --precision existed
    assert TrainConfig.from_json(old).precision == "fp32"


def test_scoring_stays_float32_whatever_the_training_precision():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=30, hidden_size=32, embedding_size=8))
    x = np.random.default_rng(0).integers(0, 30, (4, 20))
    fp32 = TorchEngine(model, precision="fp32").loss_sum(x[:, :-1], x[:, 1:], None)[0]
    bf16 = TorchEngine(model, precision="bf16").loss_sum(x[:, :-1], x[:, 1:], None)[0]
    assert bf16 == fp32


def test_the_reference_engine_refuses_bf16(tmp_path):
    config = TrainConfig(out=str(tmp_path / "r"), engine="reference", precision="bf16", max_steps=1)
    with pytest.raises(CharRNNError, match="--engine reference computes in float64 with NumPy: drop --precision"):
        train(config)
