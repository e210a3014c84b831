import numpy as np
import pytest
import torch

from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.errors import CharRNNError
from charrnn.sampling.draw import sample_next, top_k_mask, top_p_mask
from charrnn.sampling.generate import SampleConfig, sample

VOCAB = Vocab.from_chars("abcdefgh \n")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=VOCAB.size, cell="lstm", hidden_size=16, embedding_size=8)).eval()


def test_top_k_keeps_the_k_largest():
    logits = np.array([[0.1, 3.0, -1.0, 2.0, 0.5]])
    out = top_k_mask(logits, 2)
    assert np.isfinite(out).tolist() == [[False, True, False, True, False]]
    assert np.array_equal(top_k_mask(logits, 0), logits)


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = np.log(probs)
    assert np.isfinite(top_p_mask(logits, 0.75)).tolist() == [[True, True, False, False]]
    assert np.isfinite(top_p_mask(logits, 0.79)).tolist() == [[True, True, False, False]]
    assert np.isfinite(top_p_mask(logits, 0.81)).tolist() == [[True, True, True, False]]
    assert np.isfinite(top_p_mask(logits, 0.1)).tolist() == [[True, False, False, False]]


def test_temperature_zero_is_argmax_and_draws_follow_the_distribution():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 10))
    assert np.array_equal(sample_next(logits, 0, 0, 1.0, rng), logits.argmax(-1))
    p = np.array([0.7, 0.2, 0.1])
    draws = sample_next(np.log(np.tile(p, (20000, 1))), 1.0, 0, 1.0, rng)
    assert np.allclose(np.bincount(draws, minlength=3) / 20000, p, atol=0.02)
    assert set(sample_next(np.log(np.tile(p, (2000, 1))), 1.0, 1, 1.0, rng)) == {0}


def test_greedy_sample_is_the_argmax_path(model):
    text = sample(model, VOCAB, SampleConfig(prime="ab", length=20, temperature=0))[0]
    ids, state = torch.from_numpy(VOCAB.encode("ab"))[None], None
    logits, state = model(ids)
    expected, nxt = "ab", logits[0, -1].argmax()
    for _ in range(20):
        expected += VOCAB.chars[nxt]
        logits, state = model.step(nxt[None], state)
        nxt = logits[0].argmax()
    assert text == expected


def test_same_seed_same_text_and_batches(model):
    cfg = SampleConfig(prime="a", length=60, seed=7, num_samples=3)
    a, b = sample(model, VOCAB, cfg), sample(model, VOCAB, cfg)
    assert a == b and len(a) == 3 and all(len(t) == 61 for t in a)
    assert sample(model, VOCAB, SampleConfig(prime="a", length=60, seed=8)) != a[:1]


def test_stop_string_ends_the_sample_and_streaming_matches(model):
    full = sample(model, VOCAB, SampleConfig(length=300, seed=3))[0]
    stop = full[40:42]
    start = full.index(stop)
    chunks = []
    text = sample(model, VOCAB, SampleConfig(length=300, seed=3, stop=stop), on_text=chunks.append)[0]
    assert text == full[:start] and "".join(chunks) == text


def test_prime_outside_vocabulary(model):
    with pytest.raises(CharRNNError, match=r"'XZ'.*--unknown skip"):
        sample(model, VOCAB, SampleConfig(prime="aXbZ", length=5))
    assert sample(model, VOCAB, SampleConfig(prime="aXbZ", length=5, unknown="skip", seed=1))[0].startswith("ab")


def test_prime_file_is_the_prime(model, tmp_path):
    path = tmp_path / "prime.txt"
    path.write_text("ab cd\nef " * 300, encoding="utf-8")  # 2,700 characters, a final space included
    want = sample(model, VOCAB, SampleConfig(prime=path.read_text(), length=30, seed=2))
    assert sample(model, VOCAB, SampleConfig(prime_file=str(path), length=30, seed=2)) == want
    assert want[0].startswith(path.read_text())


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", r"^--prime-file .*nothere\.txt: no such file$"),
        ("latin1", r"^--prime-file .*latin1\.txt is not UTF-8 \(byte offset 3\); save it as UTF-8$"),
        ("folder", r"^--prime-file .*: cannot read it"),
        ("both", r"^give the prime with --prime or with --prime-file, not both$"),
    ],
)
def test_prime_file_errors(model, tmp_path, case, message):
    (tmp_path / "latin1.txt").write_bytes("abc\xe9".encode("latin-1"))
    path = {
        "missing": tmp_path / "nothere.txt",
        "latin1": tmp_path / "latin1.txt",
        "folder": tmp_path,
        "both": tmp_path / "latin1.txt",
    }[case]
    config = SampleConfig(prime_file=str(path), prime="a" if case == "both" else "", length=5)
    with pytest.raises(CharRNNError, match=message):
        sample(model, VOCAB, config)


def test_cli_prime_file(model, tmp_path, capsys):
    from charrnn.cli import main
    from viz_support import save_run

    run = save_run(tmp_path / "run", model, VOCAB)
    (tmp_path / "p.txt").write_text("abc\n", encoding="utf-8")
    assert main(["sample", str(run), "--prime-file", str(tmp_path / "p.txt"), "--length", "20", "--seed", "1"]) == 0
    assert capsys.readouterr().out == sample(model, VOCAB, SampleConfig(prime="abc\n", length=20, seed=1))[0] + "\n"
    assert main(["sample", str(run), "--prime-file", str(tmp_path / "nope.txt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such file" in err


class LabelLover:
    """A stepper whose favourite next id, by far, is a label's symbol; then 'a', then the end."""

    def __init__(self, vocab: Vocab, label: str):
        self.logits = np.zeros(vocab.size)
        self.logits[vocab.label_id(label)] = 50.0
        self.logits[vocab.chars.index("a")] = 5.0

    def prime(self, ids):
        return np.tile(self.logits, (ids.shape[0], 1))

    def step(self, ids):
        return np.tile(self.logits, (len(ids), 1))

    def reorder(self, rows):
        pass


@pytest.mark.parametrize("beam", [0, 2])
def test_a_label_symbol_is_never_written(beam):
    from charrnn.sampling.generate import generate

    vocab = VOCAB.with_labels(("x", "y"))
    config = SampleConfig(length=6, num_samples=2, temperature=0.0, seed=0, label="y", beam=beam)
    texts = generate(LabelLover(vocab, "x"), vocab, config)
    # without the mask the label's symbol (50 nats ahead) would be drawn, and end every item at once
    assert texts[0] == "aaaaaa" and [len(t) for t in texts] == [6, 6]  # beam 2: the runner-up differs at the end
