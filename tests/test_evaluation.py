import math

import numpy as np
import torch

from charrnn.checkpoint import save_checkpoint
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig, loss_fn
from charrnn.engines.torch_engine import TorchEngine
from charrnn.evaluation import EvalConfig, eval_run, evaluate


def test_evaluate_equals_one_pass_over_each_whole_stream():
    torch.manual_seed(0)
    m = CharRNN(ModelConfig(vocab_size=6, cell="gru", hidden_size=12, embedding_size=4)).eval()
    ids = np.random.default_rng(0).integers(0, 6, 1003)
    loss, n = evaluate(TorchEngine(m), ids, batch_size=4, seq_len=7)
    L = 1002 // 4
    total = 0.0
    for b in range(4):  # naive reference: each stream in a single forward, no chunking
        end = 1003 if b == 3 else b * L + L + 1  # the last stream runs on to the end
        s = torch.from_numpy(ids[b * L : end])[None]
        total += loss_fn(m(s[:, :-1])[0], s[:, 1:], reduction="sum").item()
    assert n == 1002
    assert math.isclose(loss, total / n, rel_tol=1e-5)


def test_eval_run_counts_characters_outside_the_vocabulary(tmp_path):
    vocab = Vocab.from_chars("ab \n")
    cfg = ModelConfig(vocab_size=vocab.size, hidden_size=8, embedding_size=4)
    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "run" / "best",
        CharRNN(cfg).state_dict(),
        {"engine": "torch", "model": cfg.to_json(), "vocab": vocab.to_json()},
    )
    (tmp_path / "held_out.txt").write_text("ab ba XX ab\nZa b\n")
    r = eval_run(str(tmp_path / "run"), EvalConfig(str(tmp_path / "held_out.txt"), seq_len=4))
    assert r.unknown == {"X": 2, "Z": 1} and r.unknown_count == 3
    assert r.chars == len("ab ba  ab\na b\n") - 1
    assert math.isclose(r.bpc, r.loss / math.log(2)) and math.isclose(r.perplexity, math.exp(r.loss))


class ContiguousOnly(CharRNN):
    """A CharRNN that refuses a non-contiguous state, as cuDNN does ("rnn: hx is not contiguous")."""

    def forward(self, x, state=None, *args, **kwargs):  # (lengths, targets, reduction) as CharRNN's
        assert state is None or all(s.is_contiguous() for s in state), "a non-contiguous state reached the RNN"
        return super().forward(x, state, *args, **kwargs)


def test_the_scorer_hands_the_rnn_contiguous_states():
    # 1003 ids at B=4: 2 characters past the last stream, scored from a slice of its state
    torch.manual_seed(0)
    m = ContiguousOnly(ModelConfig(vocab_size=6, cell="lstm", layers=2, hidden_size=12, embedding_size=4)).eval()
    ids = np.random.default_rng(0).integers(0, 6, 1003)
    loss, n = evaluate(TorchEngine(m), ids, batch_size=4, seq_len=7)
    assert n == 1002 and math.isfinite(loss)
