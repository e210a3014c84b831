"""benchmarks/corpora.py and its transformer (benchmarks/tiny_gpt.py): the sliding-window
scorer against a naive loop, and the whole suite on tiny texts with a tiny budget, so
that the benchmark cannot rot."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import small_text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import corpora  # noqa: E402
import tiny_gpt  # noqa: E402


@torch.no_grad()
def naive_score(model, ids: np.ndarray, block: int) -> tuple[float, int]:
    """Each position alone, from all of its left context up to `block` characters."""
    total = 0.0
    for i in range(len(ids) - 1):
        x = torch.as_tensor(np.asarray(ids[max(0, i - block + 1) : i + 1], np.int64))[None]
        total += float(F.cross_entropy(model(x)[0, -1:].double(), torch.tensor([int(ids[i + 1])])))
    return total, len(ids) - 1


@pytest.fixture(scope="module")
def gpt():
    torch.manual_seed(0)
    return tiny_gpt.GPT(tiny_gpt.GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16)).eval()


@pytest.mark.parametrize("n", [2, 9, 17, 100])
def test_windows_with_stride_1_score_like_a_naive_loop(gpt, n):
    ids = np.random.default_rng(n).integers(0, 11, n)
    total, count = tiny_gpt.window_score(gpt, ids, block=16, stride=1, batch=7)
    ref, ref_count = naive_score(gpt, ids, 16)
    assert count == ref_count == n - 1
    assert total == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("n", [2, 16, 17, 18, 50, 97])
@pytest.mark.parametrize("stride", [1, 5, 8, 16])
def test_every_character_but_the_first_is_scored_once_with_enough_context(n, stride):
    block = 16
    seen = []
    for a, lo in tiny_gpt.windows(n, block, stride):
        w = min(block, n - 1)
        assert 0 <= a and a + w <= n - 1 and 0 <= lo < w
        for t in range(lo, w):  # input position a + t, predicting a + t + 1, from a .. a + t
            seen.append(a + t)
            assert a == 0 or t + 1 >= block - stride + 1
    assert sorted(seen) == seen == list(range(n - 1))


def test_window_score_counts_the_split_minus_one_and_matches_its_windows(gpt):
    """Stride 8 of 16: the sum equals the naive loop over the same windows' contexts."""
    ids = np.random.default_rng(3).integers(0, 11, 61)
    total, count = tiny_gpt.window_score(gpt, ids, block=16, stride=8)
    assert count == len(ids) - 1
    ref = 0.0
    with torch.no_grad():
        for a, lo in tiny_gpt.windows(len(ids), 16, 8):
            for t in range(lo, 16):
                x = torch.as_tensor(ids[a : a + t + 1], dtype=torch.int64)[None]
                ref += float(F.cross_entropy(gpt(x)[0, -1:], torch.tensor([int(ids[a + t + 1])])))
    assert total == pytest.approx(ref, rel=1e-5)


def test_the_transformer_learns_a_repeating_text():
    ids = np.tile(np.arange(7), 200)
    run = tiny_gpt.train_gpt(
        ids[:1200], ids[1200:], 7, budget=60, config=tiny_gpt.GPTConfig(7, 16, 1, 2, 16),
        recipe=tiny_gpt.Recipe(batch_size=8, warmup_iters=5, eval_interval=20, eval_iters=2, lr=1e-2),
        log=None, max_steps=120,
    )  # fmt: skip
    total, n = tiny_gpt.window_score(run.model, ids[1200:], 16, 8)
    assert run.steps == 120 and total / n < 0.05 < math.log(7)


def test_the_suite_runs_on_tiny_texts(tmp_path):
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "A.txt").write_text("anna\nbob\ncarla\n" * 60)
    (tmp_path / "names" / "B.txt").write_text("dieter\nelse\n" * 60)
    (tmp_path / "verwandlung.txt").write_text(small_text(120))
    argv = ["--budget", "1.5", "--data-dir", str(tmp_path), "--out", str(tmp_path / "out"), "--threads", "1"]
    argv += ["--corpora", "names", "small=" + str(tmp_path / "verwandlung.txt"), "--block", "16", "--stride", "8"]
    small = "--hidden-size 16 --embedding-size 8 --layers 1 --batch-size 4 --seq-len 16 --eval-every 10"
    results = corpora.main([*argv, "--charrnn-args", small])
    assert [r["corpus"] for r in results] == ["names", "small"]
    for r in results:
        assert r["charrnn"]["scored"] == r["transformer"]["scored"] == r["val_chars"] - 1
        assert r["charrnn"]["steps"] > 0 and r["transformer"]["steps"] > 0
        assert r["diff"] == pytest.approx(r["charrnn"]["loss"] - r["transformer"]["loss"])
    names = results[0]
    assert names["chars"] == len("anna\nbob\ncarla\n" * 60 + "dieter\nelse\n" * 60)  # the files, concatenated
    assert names["val_chars"] == int(names["chars"] * 0.1)
    saved = json.loads((tmp_path / "out" / "corpora.json").read_text())
    assert saved["results"][1]["transformer"]["loss"] == results[1]["transformer"]["loss"]
    assert (tmp_path / "out" / "corpora.png").stat().st_size > 1000
    assert names["distinct"] == len(set("anna\nbob\ncarla\ndieter\nelse\n"))
    assert f"| names | {names['distinct']} |" in (tmp_path / "out" / "corpora.md").read_text()

    # two runs made side by side, merged: sorted by budget then corpus, the rows unchanged
    first = json.loads((tmp_path / "out" / "corpora.json").read_text())
    (tmp_path / "b").mkdir()
    late = {**first, "results": [{**first["results"][0], "budget": 0.5}]}
    (tmp_path / "b" / "corpora.json").write_text(json.dumps(late))
    merged = corpora.main(["--merge", str(tmp_path / "out"), str(tmp_path / "b"), "--out", str(tmp_path / "m")])
    assert [(r["corpus"], r["budget"]) for r in merged] == [("names", 0.5), ("names", 1.5), ("small", 1.5)]
    assert merged[1] == first["results"][0]
    assert (tmp_path / "m" / "corpora.png").stat().st_size > 1000


def test_flags_the_benchmark_sets_are_refused_in_charrnn_args(tmp_path):
    with pytest.raises(corpora.CharRNNError, match="--max-time"):
        corpora.charrnn_config(tmp_path, tmp_path / "run", 10, 1, "--preset tiny --max-time 5")
    with pytest.raises(corpora.CharRNNError, match="unknown corpus"):
        corpora.corpus_paths(["nope"], tmp_path)
