"""--cutoffs: the adaptive-softmax head (engines/model.py AdaptiveHead) against references.

forward's (B, T, V) are nn.AdaptiveLogSoftmaxWithLoss.log_prob permuted to id order; the
training loss (which never forms all V) is cross-entropy of those; IGNORE targets are
skipped; the NumPy stepper, ONNX and 2 DDP ranks agree with PyTorch in one process; and
a run trains, samples, scores, resumes bit for bit and fine-tunes from the command line.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.cli import main
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.data.vocab import Vocab
from charrnn.engines.model import AdaptiveHead, CharRNN, ModelConfig, frequency_rank
from charrnn.engines.precision import autocast
from charrnn.engines.torch_engine import TorchEngine
from charrnn.sampling.generate import TorchStepper, pick_stepper
from charrnn.sampling.numpy_stepper import NumpyStepper
from charrnn.tasks import IGNORE
from charrnn.training.build import target_counts
from charrnn.training.config import TrainConfig, resumed_config
from charrnn.training.init_from import grow_weights
from charrnn.training.trainer import train
from conftest import small_text

V, CUT = 40, [6, 15]


def model(seed: int = 0, **kw) -> CharRNN:
    torch.manual_seed(seed)
    m = CharRNN(ModelConfig(vocab_size=V, hidden_size=32, embedding_size=8, cutoffs=CUT, **kw))
    m.set_rank(np.random.default_rng(seed).permutation(V))
    for p in m.parameters():  # logits of a trained model's size, so the clusters differ
        p.data.mul_(3.0)
    return m


def batch(B=3, T=11, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, V, (B, T), generator=g), torch.randint(0, V, (B, T), generator=g)


def test_forward_gives_the_adaptive_log_probabilities_in_id_order():
    m = model().eval()
    x, _ = batch()
    with torch.no_grad():
        logp, _ = m(x)  # (B, T, V)
        out, _ = m.rnn(m.embed(x))
        by_rank = m.head.asm.log_prob(out.reshape(-1, 32))  # (B*T, V), rank order
    assert logp.shape == (3, 11, V)
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(3, 11), atol=1e-5, rtol=0)
    rank = m.head.rank.tolist()
    for c in range(V):  # id c is at column rank[c] of the asm's order
        torch.testing.assert_close(logp.reshape(-1, V)[:, c], by_rank[:, rank[c]], atol=0, rtol=0)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_the_training_loss_is_cross_entropy_of_forward_and_skips_ignore(reduction):
    m = model()
    x, y = batch()
    y[0, :4], y[2, -1] = IGNORE, IGNORE
    loss, _ = m(x, None, targets=y, reduction=reduction)
    logp, _ = m(x)
    assert loss.item() == pytest.approx(F.cross_entropy(logp.reshape(-1, V), y.reshape(-1), reduction=reduction).item())
    naive, n = 0.0, 0
    for b in range(3):
        for t in range(11):
            if y[b, t] != IGNORE:
                naive, n = naive - logp[b, t, y[b, t]].item(), n + 1
    assert loss.item() == pytest.approx(naive / n if reduction == "mean" else naive, rel=1e-5)


def test_every_cluster_gets_a_gradient_even_with_no_target_in_it():
    """A cluster no target falls in is not run; DDP needs a gradient for every weight anyway."""
    m = model()
    x, _ = batch()
    common = int(np.flatnonzero(m.head.rank.numpy() == 0)[0])  # the most frequent id: the shortlist
    loss, _ = m(x, None, targets=torch.full_like(x, common))
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    assert all(torch.count_nonzero(p.grad) == 0 for p in m.head.asm.tail.parameters())


def test_bf16_autocast_keeps_the_loss_float32_and_close_to_fp32():
    m = model()
    x, y = batch()
    with autocast(torch.device("cpu"), "bf16"):
        loss, _ = m(x, None, targets=y)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(m(x, None, targets=y)[0].item(), rel=0.05)


def test_frequency_rank_and_the_training_split_counts():
    assert frequency_rank(np.array([1, 2, 3, 0])).tolist() == [2, 1, 0, 3]
    assert frequency_rank(np.array([5, 5, 1])).tolist() == [0, 1, 2]  # ties: the lower id first

    class Items:  # item k = ids[starts[k]:ends[k]]
        ids, starts, ends = np.array([0, 1, 1, 2, 2, 2, 0]), np.array([1, 5]), np.array([3, 6])

        def __len__(self):
            return 2

    class Batches:
        items, end_id = Items(), 3

    assert target_counts(Batches(), 4).tolist() == [0, 2, 1, 2]  # 1 1 | 2, and the end symbol twice


@pytest.mark.parametrize("B", [1, 3])
def test_the_numpy_stepper_matches_pytorch(B):
    m = model().eval()
    fast = pick_stepper(m)
    assert isinstance(fast, NumpyStepper)
    ref = TorchStepper(m)
    ids = np.random.default_rng(B).integers(0, V, (B, 20))
    a, b = fast.prime(ids[:, :5]).copy(), ref.prime(ids[:, :5])
    np.testing.assert_allclose(a, b, atol=2e-5)
    for t in range(5, 20):
        np.testing.assert_allclose(fast.step(ids[:, t]), ref.step(ids[:, t]), atol=2e-5)


def test_fine_tuning_grows_the_rarest_cluster_and_keeps_the_rest():
    old = model()
    old_vocab = Vocab("utf-8", tuple(chr(0x4E00 + i) for i in range(V)), False)
    new_vocab = Vocab("utf-8", old_vocab.chars + ("x", "y"), False)
    w = {k: v.numpy() for k, v in old.state_dict().items()}
    grown = grow_weights(w, old_vocab, new_vocab, tied=False, seed=0)
    new = CharRNN(ModelConfig(vocab_size=V + 2, hidden_size=32, embedding_size=8, cutoffs=CUT))
    new.load_state_dict({k: torch.as_tensor(v) for k, v in grown.items()})
    assert sorted(new.head.rank.tolist()) == list(range(V + 2)) and new.head.rank[V:].tolist() == [V, V + 1]
    x, _ = batch()
    with torch.no_grad():
        a, b = old.eval()(x)[0], new.eval()(x)[0]
    rank = old.head.rank.numpy()
    before_last = rank < CUT[-1]  # the shortlist and the first cluster: unchanged
    torch.testing.assert_close(b[..., :V][..., before_last], a[..., before_last], atol=1e-6, rtol=0)
    last = ~before_last  # the last cluster: the same odds among its old characters
    d = b[..., :V][..., last] - a[..., last]
    torch.testing.assert_close(d, d[..., :1].expand_as(d), atol=1e-5, rtol=0)
    with torch.no_grad():  # a new character's logit is 0 within the cluster: log p(new) - log p(c) = -z_c
        z = old.head.asm.tail[-1](old.rnn(old.embed(x))[0])  # (B, T, n) in rank order from CUT[-1]
    c = int(np.flatnonzero(rank == CUT[-1])[0])  # the id whose rank opens the last cluster
    for new_id in (V, V + 1):
        torch.testing.assert_close(b[..., new_id] - b[..., c], -z[..., 0], atol=1e-5, rtol=0)


# -- a run from the command line ----------------------------------------------------------

TINY = ["--hidden-size", "24", "--embedding-size", "8", "--batch-size", "4", "--seq-len", "16", "--quiet"]


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text(small_text(120))
    return p


def test_train_sample_eval_viz_onnx_and_resume(tmp_path, corpus, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data", corpus, "--out", run, "--cutoffs", 5, 12, "--max-steps", 12, "--eval-every", 6]
    code, _, err = run_cli(capsys, *argv, *TINY)
    assert code == 0 and "Trained 12 steps" in err
    meta = json.loads((run / "best" / "checkpoint.json").read_text())
    assert meta["model"]["cutoffs"] == [5, 12]
    counts = np.bincount(Vocab.from_json(meta["vocab"]).encode(corpus.read_text()))
    from charrnn.load import load_model

    m, vocab, _ = load_model(run)
    assert isinstance(m.head, AdaptiveHead) and m.head.rank[np.argmax(counts)] == 0  # the split's commonest

    code, out, _ = run_cli(capsys, "sample", run, "--prime", "the ", "--length", 40, "--seed", 5)
    assert code == 0 and out.startswith("the ") and len(out) == len("the ") + 40 + 1

    code, out, _ = run_cli(capsys, "eval", run, "--data", corpus, "--split", "val", "--batch-size", 1)
    nats = float(next(ln.split()[1] for ln in out.splitlines() if ln.startswith("loss")))
    val = torch.from_numpy(load_corpus(DataConfig(data=str(corpus)), vocab).split(0.1)[1].astype(np.int64))
    with torch.no_grad():  # the reference: one pass over the whole split, cross-entropy of forward's output
        naive = F.cross_entropy(m(val[None, :-1])[0][0], val[1:]).item()
    assert code == 0 and nats == pytest.approx(naive, abs=1e-4)

    code, _, err = run_cli(capsys, "viz", run, "--text", "the quick brown fox", "--out", tmp_path / "viz.html")
    assert code == 0 and (tmp_path / "viz.html").stat().st_size > 1000

    code, _, err = run_cli(capsys, "export", run, "--html", tmp_path / "m.html")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--cutoffs" in err

    ort = pytest.importorskip("onnxruntime")
    assert run_cli(capsys, "export", run, "--onnx", tmp_path / "m.onnx")[0] == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    state = m.init_state(2)
    ort_state = [s.numpy() for s in state]
    with torch.no_grad():
        for ids in np.random.default_rng(0).integers(0, vocab.size, (10, 2)):
            logits, *ort_state = session.run(None, {"ids": ids, **dict(zip(["h", "c"], ort_state))})
            want, state = m.step(torch.from_numpy(ids), state)
            np.testing.assert_allclose(logits, want.numpy(), atol=1e-5)


def test_resume_is_bitwise_exact(tmp_path, corpus):
    def config(name, steps):
        return TrainConfig(
            out=str(tmp_path / name),
            data=DataConfig(data=str(corpus)),
            model=ModelConfig(hidden_size=24, embedding_size=8, dropout=0.2, cutoffs=[5, 12]),
            batch_size=4,
            seq_len=16,
            max_epochs=0,
            max_steps=steps,
            eval_every=7,
            quiet=True,
            seed=3,
        )

    assert train(config("one", 30)).step == 30
    train(config("two", 15))
    two = train(resumed_config(str(tmp_path / "two"), {"max_steps": 30}), resume=True)
    assert two.step == 30
    from safetensors.torch import load_file

    a, b = (load_file(str(tmp_path / n / "last" / "model.safetensors")) for n in ("one", "two"))
    assert "head.rank" in a and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--cutoffs", 5, 3], "--cutoffs must be strictly increasing, got [5, 3]"),
        (["--cutoffs", 0, 3], "--cutoffs must each be >= 1, got [0, 3]"),
        (["--cutoffs", 5, 400], "--cutoffs 5 400: each must be below the vocabulary's"),
        (["--cutoffs", 5, "--tie-weights", "--embedding-size", 24], "--cutoffs replaces the output layer"),
        (["--cutoffs", 5, "--engine", "reference"], "--engine reference has the article's full softmax"),
    ],
)
def test_refusals_are_one_line(tmp_path, corpus, capsys, extra, message):
    code, _, err = run_cli(capsys, "train", "--data", corpus, "--out", tmp_path / "r", "--max-steps", 2, *TINY, *extra)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_a_labelled_task_is_refused_and_generate_trains(tmp_path, capsys):
    folder = tmp_path / "names"
    folder.mkdir()
    words = small_text(200).split()
    (folder / "Short.txt").write_text("\n".join(w for w in words if len(w) <= 4))
    (folder / "Long.txt").write_text("\n".join(w for w in words if len(w) > 4))
    base = ["train", "--data", folder, "--max-steps", 3, "--cutoffs", 4, *TINY]
    code, _, err = run_cli(capsys, *base, "--out", tmp_path / "c", "--task", "classify")
    assert code == 2 and "--cutoffs is a head over characters; --task classify" in err
    code, _, err = run_cli(capsys, *base, "--out", tmp_path / "g", "--task", "generate")
    assert code == 0 and math.isfinite(
        json.loads((tmp_path / "g" / "last" / "checkpoint.json").read_text())["metrics"]["val_loss"]
    )


def test_the_reference_engine_refuses_an_adaptive_checkpoint(tmp_path, corpus, capsys):
    from charrnn.errors import CharRNNError
    from charrnn.reference.checkpoint import from_state_dict

    with pytest.raises(CharRNNError, match="full softmax"):
        from_state_dict(ModelConfig(vocab_size=V, cutoffs=CUT), {k: v.numpy() for k, v in model().state_dict().items()})


def test_a_train_step_runs_the_adaptive_loss():
    """TorchEngine's step and loss_sum go through CharRNN.loss: the sum is n times the mean."""
    m = model()
    engine = TorchEngine(m, optimizer=torch.optim.SGD(m.parameters(), lr=0.0))
    x, y = (t.numpy() for t in batch())
    total, _ = engine.loss_sum(x, y, None)
    mean, _ = engine.train_step(x, y, None, 0.0)
    assert total == pytest.approx(mean.item() * x.size, rel=1e-6)


def test_two_ddp_ranks_equal_one_process(tmp_path):
    """Under DDP a cluster no target of a rank's batch falls in must still get its (zero)
    gradient, or the all-reduce waits for it; 2 gloo ranks then equal one process."""
    from charrnn.data.corpus import bundled_corpus
    from test_distributed import K, assert_same_run, make_config, run_one, run_ranks

    (tmp_path / "corpus.txt").write_text(bundled_corpus().read_text()[:20_000])
    adaptive = ModelConfig(cell="lstm", layers=2, hidden_size=16, embedding_size=8, cutoffs=[8, 20])
    run_one(make_config(tmp_path, "one", model=adaptive, max_steps=2 * K))
    run_ranks(tmp_path, [(make_config(tmp_path, "two", model=adaptive, max_steps=2 * K), False)])
    assert_same_run(str(tmp_path / "two"), str(tmp_path / "one"))
