"""benchmarks/by_frequency.py: the per-character losses it groups are the suite's own score,
character by character (charrnn.evaluation.score reads the split as one stream too)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import small_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import by_frequency  # noqa: E402
import corpora  # noqa: E402


def test_per_character_losses_add_up_to_the_suites_score_and_ranks_follow_the_counts(tmp_path):
    data = tmp_path / "text.txt"
    data.write_text(small_text(300))
    run = tmp_path / "run"
    small = "--hidden-size 16 --embedding-size 8 --layers 1 --batch-size 4 --seq-len 16 --max-steps 20"
    r = corpora.bench_charrnn(data, run, 0, 1, small, 1)
    nll, rank = by_frequency.per_character_nll(str(run / "best"), chunk=7)  # chunks that do not divide it
    assert len(nll) == r["scored"] and nll.mean() == pytest.approx(r["loss"], rel=1e-5)
    _, train_ids, val_ids = corpora.run_split(run / "best")
    counts = np.bincount(train_ids, minlength=int(max(train_ids.max(), val_ids.max())) + 1)
    targets = counts[val_ids[1:]][np.argsort(rank, kind="stable")]  # by rank: commonest first
    assert np.all(np.diff(targets) <= 0)
    text = by_frequency.table([str(run / "best")], [2, 5])
    assert text.count("\n") == 1 + 4 and f"| all | 1.000 | {nll.mean():.4f} |" in text
