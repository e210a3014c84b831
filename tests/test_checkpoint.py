import json
import os

import pytest
import torch

from charrnn import checkpoint as ckpt
from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.errors import CharRNNError
from charrnn.load import load_model


def save(folder, tie=False, cell="gru"):
    torch.manual_seed(1)
    cfg = ModelConfig(vocab_size=5, cell=cell, hidden_size=8, embedding_size=8, tie_weights=tie)
    m = CharRNN(cfg)
    ckpt.save_checkpoint(
        folder,
        m.state_dict(),
        {"engine": "torch", "model": cfg.to_json(), "vocab": Vocab.from_chars("abcde").to_json()},
    )
    return m


@pytest.mark.parametrize("tie", [False, True])
def test_round_trip_gives_identical_logits(tmp_path, tie):
    m = save(tmp_path / "run" / "best", tie).eval()
    loaded, vocab, meta = load_model(tmp_path / "run")
    x = torch.randint(0, 5, (2, 7))
    assert torch.equal(m(x)[0], loaded(x)[0])
    assert vocab == Vocab.from_chars("abcde") and meta["format"] == ckpt.FORMAT
    assert json.loads((tmp_path / "run" / "best" / "checkpoint.json").read_text())["model"]["cell"] == "gru"


def test_overwrite_is_a_swap_and_a_crash_inside_it_falls_back(tmp_path):
    run = tmp_path / "run"
    save(run / "last", cell="gru")
    m = save(run / "last", cell="lstm").eval()  # the second write replaces the first whole
    assert sorted(os.listdir(run)) == ["last"]
    os.rename(run / "last", run / ".last.old")  # as if killed between the two renames
    assert ckpt.resolve(run, "last") == run / ".last.old"
    loaded = load_model(run, "last")[0]
    x = torch.randint(0, 5, (2, 7))
    assert loaded.config.cell == "lstm" and torch.equal(loaded(x)[0], m(x)[0])


def test_trainer_state_loads_with_weights_only(tmp_path):
    state = {"step": 3, "rng": torch.get_rng_state(), "hidden": [torch.zeros(2, 3)], "x": {"a": 1.5}}
    ckpt.save_checkpoint(tmp_path / "last", {}, {"model": {}, "vocab": {}}, state)
    loaded = ckpt.load_trainer_state(tmp_path / "last")  # torch.load(weights_only=True) inside
    assert loaded["step"] == 3 and torch.equal(loaded["rng"], state["rng"])


def test_missing_checkpoint_errors(tmp_path):
    with pytest.raises(CharRNNError, match="no such run folder"):
        ckpt.resolve(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CharRNNError, match="holds no checkpoint"):
        ckpt.resolve(tmp_path / "empty")


def test_a_checkpoint_of_an_unknown_task_is_refused_in_one_line(tmp_path):
    cfg = ModelConfig(vocab_size=4, hidden_size=8, embedding_size=4)
    meta = {
        "engine": "torch",
        "task": "translate",
        "model": cfg.to_json(),
        "vocab": Vocab.from_chars("abc\n").to_json(),
    }
    ckpt.save_checkpoint(tmp_path / "best", CharRNN(cfg).state_dict(), meta)
    with pytest.raises(CharRNNError, match="unknown task 'translate': this charrnn knows next-char"):
        load_model(tmp_path)
    meta["task"] = "next-char"
    ckpt.save_checkpoint(tmp_path / "best", CharRNN(cfg).state_dict(), meta)
    assert load_model(tmp_path)[2]["task"] == "next-char"


# -- integrity: every damaged file is named, with what is still intact ------------------------


def run_with_both(tmp_path):
    """A run folder with best/ and last/ (last/ with a trainer.pt), as training leaves it."""
    run = tmp_path / "run"
    save(run / "best")
    m = save(run / "last")
    ckpt.save_checkpoint(
        run / "last",
        m.state_dict(),
        json.loads((run / "last" / "checkpoint.json").read_text()),
        {"step": 3, "rng": torch.get_rng_state()},
    )
    return run


def flip(path, at=None):
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x01
    path.write_bytes(bytes(data))


def one_line(excinfo, *parts):
    msg = str(excinfo.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    for part in parts:
        assert part in msg, msg


def test_checkpoint_json_records_the_hash_of_each_file(tmp_path):
    run = run_with_both(tmp_path)
    import hashlib

    meta = json.loads((run / "last" / "checkpoint.json").read_text())
    for name in ("model.safetensors", "trainer.pt"):
        data = (run / "last" / name).read_bytes()
        assert meta["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert ckpt.intact(run / "last") and ckpt.intact(run / "best")


@pytest.mark.parametrize(
    "damage",
    ["flip", "truncate", "empty", "header"],
)
def test_damaged_weights_are_named_and_the_other_checkpoint_offered(tmp_path, damage):
    run = run_with_both(tmp_path)
    path = run / "best" / "model.safetensors"
    data = path.read_bytes()
    if damage == "flip":
        flip(path)  # a weight changes: only the hash can tell
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(data[:8] + b"{garbage" + data[16:])
    with pytest.raises(CharRNNError) as e:
        load_model(run)
    one_line(e, str(path), "is damaged", f"{run / 'last'} is intact: use it with --checkpoint last")
    assert load_model(run, "last")[0] is not None and not ckpt.intact(run / "best")


def test_damage_without_hashes_is_still_caught_and_old_checkpoints_load(tmp_path):
    run = run_with_both(tmp_path)
    for which in ("best", "last"):  # as written before the hashes
        meta = json.loads((run / which / "checkpoint.json").read_text())
        del meta["files"], meta["meta_sha256"]
        (run / which / "checkpoint.json").write_text(json.dumps(meta))
    assert load_model(run)[0] is not None and ckpt.load_trainer_state(run / "last")["step"] == 3
    (run / "best" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CharRNNError) as e:
        load_model(run)
    one_line(e, "model.safetensors is damaged (not a valid safetensors file", "--checkpoint last")


@pytest.mark.parametrize("damage", ["truncate", "flip", "vocab_size"])
def test_damaged_checkpoint_json(tmp_path, damage):
    run = run_with_both(tmp_path)
    path = run / "last" / "checkpoint.json"
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "flip":
        path.write_text(text.replace('"hidden_size": 8', '"hidden_size": 9'))  # still JSON: its own hash tells
    else:
        path.write_text(text.replace('"vocab_size": 5', '"vocab_size": 6'))
    with pytest.raises(CharRNNError) as e:
        load_model(run, "last")
    one_line(
        e,
        str(path),
        "is damaged",
        f"{run / 'best'} is intact: use it with --checkpoint best",
        "--resume cannot continue from it",
    )


@pytest.mark.parametrize("problem", ["short_vocab", "wrong_shape"])
def test_json_and_weights_that_disagree_are_refused(tmp_path, problem):
    cfg = ModelConfig(vocab_size=5, cell="gru", hidden_size=8, embedding_size=8)
    weights = CharRNN(cfg).state_dict()
    vocab = Vocab.from_chars("abcd" if problem == "short_vocab" else "abcde")
    if problem == "wrong_shape":
        weights["head.weight"] = torch.zeros(5, 9)
    meta = {"engine": "torch", "model": cfg.to_json(), "vocab": vocab.to_json()}
    ckpt.save_checkpoint(tmp_path / "best", weights, meta)
    with pytest.raises(CharRNNError) as e:
        load_model(tmp_path / "best")
    what = "its vocabulary has 4 characters" if problem == "short_vocab" else "do not fit the model in checkpoint.json"
    one_line(e, "is damaged", what, "restore it from a backup or train again")


def test_a_trainer_pt_that_would_run_code_is_refused_in_one_line(tmp_path):
    import hashlib
    import io

    run = run_with_both(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    torch.save({"step": Evil()}, buf)
    (run / "last" / "trainer.pt").write_bytes(buf.getvalue())
    meta = json.loads((run / "last" / "checkpoint.json").read_text())  # as a forger would: fix the hashes
    meta["files"]["trainer.pt"] = {"sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "bytes": len(buf.getvalue())}
    meta["meta_sha256"] = ckpt._meta_hash(meta)
    (run / "last" / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CharRNNError) as e:
        ckpt.load_trainer_state(run / "last")
    one_line(e, "trainer.pt is damaged", "refused without running them")
    assert "weights_only" not in str(e.value) and not marker.exists()


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import errno

    from fault_support import simulate_errno

    run = tmp_path / "run"
    save(run / "last")
    before = {p.name: p.read_bytes() for p in (run / "last").iterdir()}
    simulate_errno(monkeypatch, run / ".last.tmp", errno.ENOSPC, after_bytes=100)
    with pytest.raises(CharRNNError) as e:
        save(run / "last", cell="lstm")
    one_line(e, "could not save the checkpoint", "the previous checkpoint there is intact", "the disk is full")
    monkeypatch.undo()
    assert sorted(os.listdir(run)) == ["last"]  # no half-written folder left
    assert {p.name: p.read_bytes() for p in (run / "last").iterdir()} == before
