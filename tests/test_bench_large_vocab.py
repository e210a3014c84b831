"""benchmarks/large_vocab.py's adaptive-softmax prototype: its loss is the exact
log-likelihood of the targets, and the benchmark runs end to end on a small text."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import small_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import large_vocab  # noqa: E402

from charrnn.engines.model import ModelConfig  # noqa: E402


def test_frequency_rank_puts_the_most_frequent_first():
    rank = large_vocab.frequency_rank(np.array([2, 2, 2, 0, 1, 1], np.uint8), 4)
    assert rank.tolist() == [2, 1, 0, 3]  # counts 1, 2, 3, 0


def test_the_adaptive_loss_is_the_log_likelihood_of_the_targets_with_the_state_carried():
    V, B, T = 40, 3, 12
    torch.manual_seed(0)
    model = large_vocab.AdaptiveCharRNN(ModelConfig(vocab_size=V, hidden_size=16, embedding_size=8), [8, 20])
    rng = np.random.default_rng(0)
    rank = rng.permutation(V)
    engine = large_vocab.AdaptiveEngine(model, rank, grad_clip=1.0)
    x, y = rng.integers(0, V, (B, 2 * T)), rng.integers(0, V, (B, 2 * T))
    first, state = engine.loss_sum(x[:, :T], y[:, :T], None)
    second, _ = engine.loss_sum(x[:, T:], y[:, T:], state)
    with torch.no_grad():
        out, _ = model(torch.from_numpy(x))  # (B, 2T, H), read in one go
        logp = model.asm.log_prob(out.reshape(-1, 16))  # (B * 2T, V): every rank's log-probability
    assert torch.exp(logp).sum(-1).numpy() == pytest.approx(np.ones(B * 2 * T), abs=1e-5)
    ref = -float(logp[torch.arange(B * 2 * T), torch.from_numpy(rank[y.reshape(-1)])].sum())
    assert first + second == pytest.approx(ref, rel=1e-5)


def test_the_benchmark_trains_the_prototype_and_a_plain_variant(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(small_text(400))
    args = argparse.Namespace(budget=2.0, data=data, cutoffs=[5, 10], threads=1)
    for name in ("tiny", "adaptive"):
        r = large_vocab.run_variant(name, args, str(tmp_path / name))
        assert r["steps"] > 0 and math.isfinite(r["val_loss"]) and r["chars_per_sec"] > 0
    meta = json.loads((tmp_path / "adaptive" / "best" / "checkpoint.json").read_text())
    assert meta["model"]["adaptive"] == [5, 10]  # the replaced engine trained and saved it
