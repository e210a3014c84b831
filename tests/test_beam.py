"""Beam search (charrnn/sampling/beam.py) and the steppers' reorder().

References: PyTorch's full-sequence forward (log-probabilities of whole texts, and a
naive beam search that recomputes every hypothesis from scratch, with no state kept),
greedy decoding (`--temperature 0`), and a hand-made model where plain beam search
ends below greedy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from charrnn.cli import main
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.errors import CharRNNError
from charrnn.reference.model import CharRNN as RefCharRNN
from charrnn.reference.model import ModelConfig as RefModelConfig
from charrnn.reference.model import Stepper as RefStepper
from charrnn.sampling.beam import Hypothesis, beam_search
from charrnn.sampling.generate import SampleConfig, TorchStepper, sample
from charrnn.sampling.numpy_stepper import NumpyStepper
from viz_support import save_run

VOCAB = Vocab.from_chars("abcdefgh \n")
PRIME = "ab"


def make_model(cell: str, seed: int, scale: float = 2.0, dtype=torch.float32) -> CharRNN:
    """Random weights scaled up: sharper predictions, so that beams and greedy part ways."""
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(vocab_size=VOCAB.size, cell=cell, hidden_size=16, embedding_size=8))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(scale)
    return model.to(dtype).eval()


@torch.no_grad()
def total_logprob(model: CharRNN, prime: str, text: str) -> float:
    """log p(text[len(prime):] | prime) from one full forward pass, in float64."""
    ids = torch.from_numpy(VOCAB.encode(text))[None]
    logits, _ = model(ids)
    logp = torch.log_softmax(logits[0].double(), -1)
    return sum(float(logp[t - 1, ids[0, t]]) for t in range(len(prime), ids.shape[1]))


# -- reorder ------------------------------------------------------------------------------


def stepper_factories(cell: str):
    model = make_model(cell, 0)
    ref = RefCharRNN(RefModelConfig(vocab_size=VOCAB.size, cell=cell, layers=2, hidden_size=8, embedding_size=4), rng=0)
    return {
        "numpy": lambda: NumpyStepper(model),
        "torch": lambda: TorchStepper(model),
        "reference": lambda: RefStepper(ref),
    }


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_reorder_gathers_state_rows(cell):
    """After reorder(rows), row b continues the text of old row rows[b]: compare with a fresh
    stepper primed on those texts. The row count changes (3 -> 4 -> 2), as beams come and go."""
    for name, make in stepper_factories(cell).items():
        rng = np.random.default_rng(0)
        texts = rng.integers(0, VOCAB.size, (3, 5))
        stepper, fresh = make(), make()
        stepper.prime(texts)
        for rows in ([2, 0, 2, 1], [3, 1]):
            texts = texts[rows]
            stepper.reorder(rows)
            nxt = rng.integers(0, VOCAB.size, len(rows))
            got = stepper.step(nxt).copy()
            texts = np.concatenate([texts, nxt[:, None]], axis=1)
            np.testing.assert_allclose(got, fresh.prime(texts), rtol=1e-5, atol=1e-5, err_msg=name)


# -- against greedy -------------------------------------------------------------------------


MODELS = [(cell, seed) for cell in ("rnn", "lstm", "gru") for seed in range(3)]


@pytest.mark.parametrize("cell,seed", MODELS)
@pytest.mark.parametrize("stop", [None, "c"])
def test_beam_1_is_greedy(cell, seed, stop):
    model = make_model(cell, seed)
    greedy = sample(model, VOCAB, SampleConfig(prime=PRIME, length=60, temperature=0, stop=stop))
    assert sample(model, VOCAB, SampleConfig(prime=PRIME, length=60, beam=1, stop=stop)) == greedy


@pytest.mark.parametrize("cell,seed", MODELS)
def test_beam_total_logprob_is_never_below_greedy(cell, seed):
    model = make_model(cell, seed)
    greedy = sample(model, VOCAB, SampleConfig(prime=PRIME, length=40, temperature=0))[0]
    floor = total_logprob(model, PRIME, greedy)
    gains = []
    for width in (2, 3, 5, 8):
        text = sample(model, VOCAB, SampleConfig(prime=PRIME, length=40, beam=width))[0]
        assert len(text) == len(greedy)
        got = total_logprob(model, PRIME, text)
        assert got >= floor - 1e-4, f"width {width}: {got} < greedy's {floor}"
        gains.append(got - floor)
    if (cell, seed) in {("rnn", 1), ("lstm", 1), ("lstm", 2)}:  # models where the beams find better text
        assert max(gains) > 0.01


class TrapStepper:
    """A hand-made model where plain beam search of width 2 ends below greedy.

    Ids 0..3; each row's state is its history. First: p(1) = .40, p(2) = .35, p(3) = .25.
    After 1: p = (.3, .3, .2, .2) and then id 0 surely; after 2 or 3: the same id again
    with p .9, and then uniform. Greedy writes 1 0 0 0 ... (total .12); two beams keep
    "2 2" (.315) and "3 3" (.225) over greedy's "1 0" (.12) and then lose .25 a step."""

    def prime(self, ids):
        self.hist = [list(row) for row in ids]
        return self._logits()

    def step(self, ids):
        for h, i in zip(self.hist, ids.tolist()):
            h.append(i)
        return self._logits()

    def reorder(self, rows):
        self.hist = [list(self.hist[r]) for r in rows]

    def _logits(self):
        return np.log(np.array([self._probs(h[1:]) for h in self.hist]))

    @staticmethod
    def _probs(gen):
        if not gen:
            return [1e-9, 0.40, 0.35, 0.25]
        if gen[0] == 1:
            return [0.3, 0.3, 0.2, 0.2] if len(gen) == 1 else [1 - 3e-9, 1e-9, 1e-9, 1e-9]
        if len(gen) == 1:
            return [0.9 if i == gen[0] else 0.1 / 3 for i in range(4)]
        return [0.25] * 4


class EndingTrap(TrapStepper):
    """As TrapStepper, with end id 0: two beams "2 2" and "2 3" (.1575 each) push greedy's
    "1 1" (.12) out at step 2, then both end with 0 (p .5) at step 3, while greedy goes on
    alone, writing 1 with p .9 a step: .4 * .3 * .9 ** 3 = .0875 over 5 steps beats .07875."""

    @staticmethod
    def _probs(gen):
        if not gen:
            return [1e-9, 0.40, 0.35, 0.25]
        if gen[0] == 1:
            return [0.2, 0.3, 0.25, 0.25] if len(gen) == 1 else [1e-9, 0.9, 0.05, 0.05]
        if gen[0] == 2 and len(gen) <= 2:
            return [0.05, 0.05, 0.45, 0.45] if len(gen) == 1 else [0.5, 0.5 / 3, 0.5 / 3, 0.5 / 3]
        return [0.25] * 4


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_greedy_goes_on_alone_when_every_beam_has_ended(alpha):
    found = beam_search(EndingTrap(), np.array([0]), width=2, length=5, alpha=alpha, end_id=0, keep=2)
    assert [h.ids for h in found] == [[1, 1, 1, 1, 1], [2, 2, 0]]
    assert [h.finished for h in found] == [False, True]
    assert found[0].logprob == pytest.approx(np.log(0.4 * 0.3 * 0.9**3))


def test_greedy_competes_where_plain_beam_search_would_lose():
    best = beam_search(TrapStepper(), np.array([0]), width=2, length=6)[0]
    assert best.ids == [1, 0, 0, 0, 0, 0]
    assert best.logprob == pytest.approx(np.log(0.4 * 0.3 * (1 - 3e-9) ** 4))


# -- against a naive beam search --------------------------------------------------------------


@torch.no_grad()
def naive_beam(model, prime, width, length, alpha, end_id=None, stop_ids=None, keep=1):
    """Beam search as in charrnn/sampling/beam.py's docstring, recomputing each hypothesis by
    a full forward pass from the prime: no state, no reorder, no early stop, no shared rows."""

    def logp(ids):
        logits, _ = model(torch.tensor([list(prime) + ids]))
        return torch.log_softmax(logits[0, -1].double(), -1).numpy()

    def ended(ids):
        return (end_id is not None and ids[-1] == end_id) or (bool(stop_ids) and ids[-len(stop_ids) :] == stop_ids)

    live, done, greedy = [([], 0.0)], [], ([], 0.0, False)
    for _ in range(length):
        cands = [
            (lp + float(q[c]), p, c) for p, (ids, lp) in enumerate(live) for q in [logp(ids)] for c in range(len(q))
        ]
        cands.sort(key=lambda x: (-x[0], x[1], x[2]))
        nxt = []
        for total, p, c in cands[:width]:
            ids = live[p][0] + [c]
            (done if ended(ids) else nxt).append(Hypothesis(ids, total, ended(ids)))
        live = [(h.ids, h.logprob) for h in nxt]
        if not greedy[2]:
            q = logp(greedy[0])
            c = int(np.argmax(q))
            greedy = (greedy[0] + [c], greedy[1] + float(q[c]), ended(greedy[0] + [c]))
        if not live and greedy[2]:
            break
    pool = done + [Hypothesis(ids, lp) for ids, lp in live] + [Hypothesis(greedy[0], greedy[1], greedy[2])]
    order = sorted(range(len(pool)), key=lambda i: (-pool[i].score(alpha), i))
    out = []
    for i in order:
        if all(pool[i].ids != h.ids for h in out):
            out.append(pool[i])
    return out[:keep]


@pytest.mark.parametrize("cell,seed", [("lstm", 1), ("gru", 2), ("rnn", 1)])
@pytest.mark.parametrize("ending", ["none", "stop", "end_id"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_matches_a_naive_beam_search(cell, seed, ending, alpha):
    model = make_model(cell, seed, dtype=torch.float64)  # float64: no near-ties decided by rounding
    prime = VOCAB.encode(PRIME)
    end_id = int(VOCAB.encode("d")[0]) if ending == "end_id" else None
    stop_ids = VOCAB.encode("ee").tolist() if ending == "stop" else None
    for width, keep in [(1, 1), (3, 2), (5, 5)]:
        got = beam_search(TorchStepper(model), prime, width, 25, alpha, end_id, stop_ids, keep)
        want = naive_beam(model, prime, width, 25, alpha, end_id, stop_ids, keep)
        assert [(h.ids, h.finished) for h in got] == [(h.ids, h.finished) for h in want]
        np.testing.assert_allclose([h.logprob for h in got], [h.logprob for h in want], rtol=1e-9)


def test_end_id_finishes_a_beam_and_is_not_in_the_text():
    model = make_model("gru", 2)
    stepper = NumpyStepper(model)
    free = beam_search(stepper, VOCAB.encode(PRIME), 4, 30)[0]
    end = free.ids[7]  # an id the unconstrained best beam writes: ending there is likely
    found = beam_search(stepper, VOCAB.encode(PRIME), 4, 30, end_id=end, keep=4)
    assert any(h.finished for h in found)
    for h in found:
        assert (end in h.ids) == h.finished
        if h.finished:
            assert h.ids.index(end) == len(h.ids) - 1  # ended at its first end id


def test_stop_string_ends_a_beam():
    model = make_model("lstm", 1)
    free = sample(model, VOCAB, SampleConfig(prime=PRIME, length=40, beam=3))[0]
    stop = free[10:12]
    texts = sample(model, VOCAB, SampleConfig(prime=PRIME, length=40, beam=3, num_samples=3, stop=stop))
    assert all(stop not in t[len(PRIME) :] for t in texts)
    hyps = beam_search(NumpyStepper(model), VOCAB.encode(PRIME), 3, 40, stop_ids=VOCAB.encode(stop).tolist(), keep=3)
    assert any(h.finished for h in hyps)
    for h, text in zip(hyps, texts):
        written = VOCAB.decode(h.ids)
        assert written.endswith(stop) == h.finished and stop not in written[:-1]
        assert text == PRIME + (written[: -len(stop)] if h.finished else written)


def test_config_checks():
    with pytest.raises(CharRNNError, match="--beam must be >= 1"):
        SampleConfig(beam=-1).check()
    with pytest.raises(CharRNNError, match="more continuations than --beam 2"):
        SampleConfig(beam=2, num_samples=3).check()
    with pytest.raises(CharRNNError, match="--length-alpha"):
        SampleConfig(beam=2, length_alpha=-0.5).check()


def test_cli_beam(tmp_path, capsys):
    model = make_model("rnn", 1)
    run = save_run(tmp_path / "run", model, VOCAB)
    assert main(["sample", str(run), "--prime", PRIME, "--length", "30", "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert main(["sample", str(run), "--prime", PRIME, "--length", "30", "--beam", "1"]) == 0
    assert capsys.readouterr().out == greedy
    assert main(["sample", str(run), "--prime", PRIME, "--length", "30", "--beam", "4", "--num-samples", "2"]) == 0
    out = capsys.readouterr().out
    want = sample(model, VOCAB, SampleConfig(prime=PRIME, length=30, beam=4, num_samples=2))
    assert out == f"--- sample 1 ---\n{want[0]}\n\n--- sample 2 ---\n{want[1]}\n"
    assert main(["sample", str(run), "--beam", "2", "--num-samples", "3"]) == 2
    assert capsys.readouterr().err.strip() == (
        "charrnn sample: error: --num-samples 3 asks for more continuations than --beam 2 keeps"
    )
