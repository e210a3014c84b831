"""benchmarks/quality.py: the plain baseline is scored by charrnn's own scorer on its very weights."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import quality  # noqa: E402


def test_the_plain_model_and_its_charrnn_copy_give_the_same_logits_and_states():
    torch.manual_seed(0)
    plain = quality.PlainLSTM(40, hidden=16, layers=2, emb=8)
    x = torch.randint(0, 40, (3, 11))
    logits, (h, c) = plain(x)
    copy_logits, (copy_h, copy_c) = plain.as_charrnn()(x)
    assert torch.allclose(logits, copy_logits, atol=1e-6)
    assert torch.allclose(h, copy_h, atol=1e-6) and torch.allclose(c, copy_c, atol=1e-6)
