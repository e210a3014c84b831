"""benchmarks/large_vocab.py runs end to end on a small text: its adaptive variant is the
normal trainer with --cutoffs (the head itself is tested in tests/test_adaptive_softmax.py)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from conftest import small_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import large_vocab  # noqa: E402


def test_the_benchmark_trains_an_adaptive_and_a_plain_variant(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(small_text(400))
    args = argparse.Namespace(budget=2.0, data=data, cutoffs=[5, 10], threads=1)
    for name in ("tiny", "adaptive"):
        r = large_vocab.run_variant(name, args, str(tmp_path / name))
        assert r["steps"] > 0 and math.isfinite(r["val_loss"]) and r["chars_per_sec"] > 0
    meta = json.loads((tmp_path / "adaptive" / "best" / "checkpoint.json").read_text())
    assert meta["model"]["cutoffs"] == [5, 10]  # the trainer built and saved the adaptive head
    assert json.loads((tmp_path / "tiny" / "best" / "checkpoint.json").read_text())["model"]["cutoffs"] == []
