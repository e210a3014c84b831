"""--settings auto (charrnn/training/settings.py): the rule, its cost model against PyTorch's
own modules, which knobs it leaves alone, and the CLI that prints it."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from charrnn.data.corpus import DataConfig
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.training import settings
from charrnn.training.config import TrainConfig
from charrnn.training.settings import choose, given_knobs, measure_speed, recurrent_weights, train_cost
from conftest import small_text

SPEED = 25e9  # multiply-adds/s: what measure_speed reads on the 2-core AMD EPYC the rule was fitted on
TS = 1_003_854  # Tiny Shakespeare's training characters


def zipf(V: int, total: int) -> np.ndarray:
    """(V,) character counts summing to about `total`, the k-th commonest ~1/k (as in natural text)."""
    weights = 1.0 / np.arange(1, V + 1)
    return np.maximum(1, np.round(total * weights / weights.sum())).astype(np.int64)


def pick(budget, train_chars=TS, V=65, speed=SPEED, given=(), lines=0, **knobs):
    config = TrainConfig(max_time=budget)
    config = replace(config, **{k: v for k, v in knobs.items() if k in settings.TRAIN_KNOBS})
    config.model = replace(config.model, **{k: v for k, v in knobs.items() if k in settings.MODEL_KNOBS})
    return choose(config, zipf(V, train_chars), speed, set(given), lines)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_recurrent_weights_count_pytorchs_own_layers(cell):
    m = ModelConfig(vocab_size=50, cell=cell, layers=3, hidden_size=24, embedding_size=10)
    rnn = CharRNN(m).rnn
    weights = sum(p.numel() for name, p in rnn.named_parameters() if name.startswith("weight"))
    assert recurrent_weights(m) == weights
    # training one character: 3x the forward's multiply-adds, the head's H x V included
    assert train_cost(m) == 3 * (weights + 24 * 50)


def test_on_tiny_shakespeare_it_picks_what_the_presets_were_tuned_to():
    tiny, small, medium = pick(120).config, pick(600).config, pick(3600).config
    assert (tiny.model.layers, tiny.model.hidden_size, tiny.model.embedding_size) == (2, 256, 64)
    assert (tiny.batch_size, tiny.seq_len, tiny.model.dropout) == (16, 64, 0.0)
    assert tiny.lr == pytest.approx(4e-3, rel=0.05)
    assert (tiny.lr_schedule, tiny.min_lr_fraction) == ("cosine", 0.02) and 80 <= tiny.warmup_steps <= 120
    assert 150 <= small.warmup_steps <= 300
    assert (small.model.layers, small.model.hidden_size, small.model.dropout) == (2, 384, 0.25)
    assert (medium.model.layers, medium.model.hidden_size) == (3, 512)
    assert not tiny.model.tie_weights


def test_more_budget_or_speed_never_picks_a_smaller_model():
    sizes = [pick(b).config.model.hidden_size for b in (5, 30, 120, 600, 3600, 36000)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert pick(120, speed=SPEED * 20).config.model.hidden_size > pick(120).config.model.hidden_size


def test_a_large_vocabulary_gets_an_adaptive_softmax_and_an_embedding_as_wide_as_h():
    big = pick(120, V=4594).config.model
    assert big.cutoffs and big.embedding_size == big.hidden_size and not big.tie_weights
    assert big.vocab_size == 4594
    assert not pick(120, V=900).config.model.cutoffs  # a few hundred characters: the full softmax


def test_a_large_vocabulary_read_over_six_times_gets_a_full_softmax_tied_to_the_embedding():
    # 西遊記 (682k training characters) at 10 minutes, the probe at 80 G: the adaptive 2x384 would read it
    # ~10 times; tied, the 2x384 reads it under 6 times, the 2x256 over 6
    xiyouji = dict(train_chars=682_398, V=4594, speed=80e9)
    tied = pick(600, **xiyouji).config
    assert tied.model.tie_weights and tied.model.cutoffs == [] and tied.model.hidden_size == 256
    assert tied.model.embedding_size == 256 and tied.model.weight_drop == 0.3 and tied.lr == settings.LR_MAX
    assert settings.train_cost(tied.model) * 6 * 682_398 <= 600 * 80e9
    assert "a full softmax tied to the embedding" in pick(600, **xiyouji).why
    short = pick(120, **xiyouji).config.model  # read ~4 times: the adaptive head, faster, wins there
    assert short.cutoffs and not short.tie_weights and short.weight_drop == 0
    # a fast machine at 2 minutes (~7 epochs): only a tied 2x128 would read it 6 times, two steps below
    # the adaptive 2x256, too small to be worth it
    assert pick(120, **(xiyouji | {"speed": 150e9})).config.model.cutoffs
    typed = pick(600, given={"cutoffs"}, cutoffs=[500, 1500], **xiyouji).config.model
    assert typed.cutoffs == [500, 1500] and not typed.tie_weights  # a typed head stays


def test_a_list_read_two_and_a_half_to_twenty_times_gets_its_head_tied_at_the_untied_h():
    names = pick(120, train_chars=100_000, lines=12_800)  # the names: ~7.8 characters a line, ~15 epochs
    m = names.config.model
    assert m.tie_weights and m.embedding_size == m.hidden_size == 256 and m.cutoffs == [] and m.dropout == 0.25
    assert "a list of short lines" in names.why
    m.rules()
    for prose in (pick(120, train_chars=100_000), pick(120, train_chars=100_000, lines=100_000 // 60)):
        assert not prose.config.model.tie_weights and prose.config.model.embedding_size == 64  # Die Verwandlung
    assert prose.config.model.hidden_size == m.hidden_size
    # past the 20-epoch cap (the names at 10 minutes, dropout 0.5) and under 2.5 epochs: untied
    capped = pick(600, train_chars=100_000, lines=12_800).config.model
    assert not capped.tie_weights and capped.hidden_size == 384
    assert not pick(60, train_chars=400_000, lines=50_000).config.model.tie_weights  # ~2 epochs
    assert not pick(120, lines=TS // 8).config.model.tie_weights  # short lines, but a large text
    typed = pick(120, train_chars=100_000, lines=12_800, given={"embedding_size"}, embedding_size=32).config.model
    assert typed.embedding_size == 32 and not typed.tie_weights  # a typed embedding stays untied
    # read as --items, the validation items come from the whole list: the names scored better untied
    config = TrainConfig(max_time=120, data=DataConfig(items="lines"))
    assert not choose(config, zipf(65, 100_000), SPEED, set(), 12_800).config.model.tie_weights


def test_the_rule_is_told_how_many_lines_the_training_split_has(tmp_path, monkeypatch):
    from charrnn.training.trainer import train

    told = {}
    real = settings.choose

    def spy(config, counts, speed, given, lines=0, *rest):
        told.update(chars=int(sum(counts)), lines=lines)
        return real(config, counts, speed, given, lines, *rest)

    monkeypatch.setattr(settings, "choose", spy)
    data = tmp_path / "names.txt"
    data.write_text("".join(f"{name}\n" for name in ["anna", "boris", "chen", "dmitri", "eve"] * 200))
    train(TrainConfig(data=DataConfig(data=str(data)), out=str(tmp_path / "run"), max_time=2, max_steps=2, quiet=True))
    train_text = data.read_text()[: told["chars"]]
    assert told["lines"] == train_text.count("\n") > 0


def test_a_typed_tie_weights_gets_an_embedding_as_wide_as_h_and_a_full_softmax():
    for V in (65, 4594):
        m = pick(120, V=V, given={"tie_weights"}, tie_weights=True).config.model
        assert m.tie_weights and m.embedding_size == m.hidden_size and m.cutoffs == []
        m.rules()  # the model it builds passes the tying rule


def test_cutoffs_start_where_the_commonest_characters_cover_80_and_95_percent():
    counts = zipf(4594, 700_000)
    share = np.cumsum(np.sort(counts)[::-1]) / counts.sum()
    first, second = settings.adaptive_cutoffs(counts)
    assert share[first - 101] < 0.80 <= share[first - 1] and share[second - 101] < 0.95 <= share[second - 1]
    assert first % 100 == 0 and second % 100 == 0
    assert settings.adaptive_cutoffs(np.ones(150, np.int64)) == [149]  # rounded up, but always below V


def test_the_adaptive_heads_cost_follows_its_clusters():
    full = ModelConfig(vocab_size=4594, hidden_size=256, embedding_size=256)
    adaptive = replace(full, cutoffs=[500, 1500])
    layers = train_cost(replace(full, vocab_size=0))
    head = 256 * 502 + 0.15 * 64 * (256 + 1000) + 0.05 * 16 * (256 + 3094)
    assert train_cost(adaptive) == pytest.approx(layers + 3 * head)
    assert train_cost(adaptive) - layers < (train_cost(full) - layers) / 5  # the head: a fifth of the full one


def test_a_small_corpus_gets_a_gru_a_larger_one_an_lstm_unless_the_cell_is_given():
    assert pick(120, train_chars=100_000).config.model.cell == "gru"
    assert pick(120, train_chars=TS).config.model.cell == "lstm"
    assert pick(120, train_chars=100_000, given={"cell"}, cell="rnn").config.model.cell == "rnn"


@pytest.mark.parametrize(
    "train_chars, typed, cell", [(100_000, None, "gru"), (TS, None, "lstm"), (100_000, "rnn", "rnn")]
)
def test_the_speed_probe_times_the_cell_the_rule_builds(monkeypatch, train_chars, typed, cell):
    timed = []
    monkeypatch.setattr(settings, "measure_speed", lambda device, precision, cell: timed.append(cell) or SPEED)
    config = TrainConfig(max_time=120, keep=["cell"] if typed else [])
    config.model.cell = typed or config.model.cell
    chosen = settings.adapt(config, zipf(65, train_chars), torch.device("cpu"), log=lambda line: None)
    assert timed == [cell] and chosen.model.cell == cell


def test_a_small_corpus_caps_the_model_at_16_recurrent_weights_per_character():
    small = pick(600, train_chars=110_000).config.model
    assert recurrent_weights(small) <= settings.DATA_RATIO * 110_000 == 16 * 110_000
    assert 16 * 110_000 < recurrent_weights(replace(small, hidden_size=512))
    assert pick(3600, train_chars=110_000).config.model.hidden_size == small.hidden_size == 384  # time can't buy more
    # without weight drop (typed --weight-drop 0), 8 a character: a 2x384 GRU learned Die Verwandlung by heart
    plain = pick(600, train_chars=110_000, given={"weight_drop"}).config.model
    assert plain.weight_drop == 0 and recurrent_weights(plain) <= 8 * 110_000 and plain.hidden_size == 256
    assert pick(600).config.model.hidden_size == 384  # Tiny Shakespeare is large enough for the time


@pytest.mark.parametrize("train_chars, evals", [(110_000, 12), (TS, 3)])
def test_a_text_read_over_ten_times_is_validated_about_twelve_times_else_three(train_chars, evals):
    for budget in (120, 600):
        c = pick(budget, train_chars=train_chars).config
        chars = min(budget * SPEED / train_cost(c.model), (c.max_epochs or math.inf) * train_chars)  # 20 epochs
        expected_steps = chars / (c.batch_size * c.seq_len)
        assert evals - 1 <= expected_steps / c.eval_every <= evals + 1


def test_a_text_read_over_five_times_gets_16x64_whatever_the_probe_read():
    # Tiny Shakespeare at 10 minutes on the Intel machine reads 8 to 16 epochs as the probe varies
    # (~80 to ~150 G): at the old threshold of 10 epochs the batches flipped from one run to the next
    for speed in (SPEED * 3, SPEED * 4, SPEED * 6):
        c = pick(600, speed=speed).config
        assert (c.batch_size, c.seq_len) == (16, 64)
    assert pick(120, speed=SPEED * 3).config.batch_size == 32  # ~3 epochs: batches from the updates wanted


def test_a_gru_the_budget_stops_gets_32x64_where_a_text_read_over_five_times_would_get_16x64():
    names = pick(120, train_chars=100_000, lines=12_800).config  # ~15 epochs: the budget ends the run
    assert names.model.cell == "gru" and (names.batch_size, names.seq_len) == (32, 64)
    assert names.lr == settings.LR_MAX  # 1 / H x sqrt(32 / 16), capped
    capped = pick(600, train_chars=100_000).config  # 20 epochs end it: more updates, the smallest batches
    assert capped.max_epochs == 20 and capped.batch_size == 16
    lstm = pick(120, train_chars=100_000, given={"cell"}, cell="lstm", speed=SPEED / 2).config
    assert lstm.max_epochs == 0 and lstm.batch_size == 16


def test_a_tiny_text_on_a_fast_machine_still_gets_batches_that_fit_it_ten_times():
    c = pick(60, train_chars=12_150, speed=SPEED * 40).config  # what a quiet CI machine chose: 128 x 128
    assert c.batch_size * c.seq_len * 10 <= 12_150 and c.batch_size >= 1


def test_items_bound_the_batch_and_every_process_gets_as_many_rows():
    """--items: a batch holds whole items, so 3 files cannot fill 16 rows; --nproc 2 needs an even B."""
    three = TrainConfig(max_time=10, data=DataConfig(items="files"))
    assert choose(three, zipf(40, 30_000), SPEED, set(), items=3).config.batch_size == 1
    assert choose(three, zipf(40, 30_000), SPEED, set(), items=200).config.batch_size == 20  # 10 batches an epoch
    two = choose(TrainConfig(max_time=10), zipf(30, 270), SPEED, set(), ranks=2).config
    tiny = [pick(10, train_chars=270).config, two]
    assert [c.batch_size for c in tiny] == [1, 2]
    typed = choose(TrainConfig(max_time=10, batch_size=3), zipf(30, 270), SPEED, {"batch_size"}, ranks=2)
    assert typed.config.batch_size == 3  # a typed B is the user's: distributed.py refuses it in one line


def test_adapt_tells_the_rule_how_many_processes_train(monkeypatch):
    class Two:  # a training.distributed.Dist of two ranks, each measuring SPEED
        world_size = 2

        def reduce(self, values):
            return [2 * v for v in values]

    monkeypatch.setattr(settings, "measure_speed", lambda device, precision, cell: SPEED)
    chosen = settings.adapt(TrainConfig(max_time=10), zipf(30, 270), torch.device("cpu"), Two(), lambda line: None)
    assert chosen.batch_size == 2


def test_a_few_files_as_items_train_with_the_chosen_settings(tmp_path):
    from charrnn.training.trainer import train

    folder = tmp_path / "poems"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.txt").write_text(small_text(300 + i))  # ~11 KB: 10 batches of 16x64 by characters
    data = DataConfig(data=str(folder), items="files", val_fraction=0.0)
    result = train(TrainConfig(data=data, out=str(tmp_path / "run"), max_time=3, max_steps=3, quiet=True))
    assert result.step == 3


def test_dropout_weight_decay_and_weight_drop_follow_the_epochs_the_budget_allows():
    assert pick(120, train_chars=100_000).config.model.dropout > pick(120, train_chars=TS).config.model.dropout
    once = pick(120, train_chars=100_000_000).config
    assert once.model.dropout == 0 and once.weight_decay == 0 and once.model.weight_drop == 0
    many = pick(600, train_chars=100_000)  # the names: read ~80 times in 10 minutes
    m = many.config
    assert (m.model.dropout, m.optimizer, m.weight_decay, m.model.weight_drop) == (0.5, "adamw", 0.1, 0.3)
    assert "weight drop 0.3" in many.why and "weight drop" not in pick(120, train_chars=100_000_000).why
    assert pick(600, train_chars=100_000, given={"weight_drop"}).config.model.weight_drop == 0  # typed: kept
    # weight drop is for small texts: on Tiny Shakespeare's million characters it cost more than it gave
    assert pick(600).config.weight_decay == 0.1 and pick(600).config.model.weight_drop == 0
    # and it lets a small text hold a larger model: the names get a 2x384 at 10 minutes, a 2x256 at 2
    assert (m.model.hidden_size, pick(120, train_chars=100_000).config.model.hidden_size) == (384, 256)
    many = m
    fast = pick(600, train_chars=100_000, speed=SPEED * 8).config  # a GPU: still the smallest, noisiest batches
    assert (many.batch_size, many.seq_len) == (fast.batch_size, fast.seq_len) == (16, 64)
    # Tiny Shakespeare read under SMALL_BATCH_EPOCHS times on a fast machine: larger batches
    assert pick(120, speed=SPEED * 8).config.batch_size > 16


def test_a_small_text_stops_after_20_epochs_and_a_typed_max_epochs_is_kept():
    names = pick(600, train_chars=100_000)  # could read it ~80 times
    c = names.config
    assert c.max_epochs == settings.EPOCH_CAP == 20 and "stops after 20 epochs" in names.why
    assert c.model.dropout == 0.5  # regularised by what the budget could read, not by the cap
    steps = 20 * 100_000 / (c.batch_size * c.seq_len)  # validated ~EVALS times within those 20 epochs
    assert c.eval_every == pytest.approx(steps / settings.EVALS, rel=0.01)
    assert pick(600).config.max_epochs == 0  # Tiny Shakespeare, ~5 epochs: the time budget alone
    kept = pick(600, train_chars=100_000, given={"max_epochs"}, max_epochs=50).config
    assert (
        kept.max_epochs == 50
        and kept.eval_every * kept.batch_size > c.eval_every * c.batch_size  # validated every more characters
        and "stops after" not in pick(600, train_chars=100_000, given={"max_epochs"}, max_epochs=50).why
    )


def test_a_typed_optimizer_keeps_its_own_weight_decay():
    c = pick(600, train_chars=100_000, given={"optimizer"}, optimizer="rmsprop").config
    assert (c.optimizer, c.weight_decay) == ("rmsprop", 0.0)
    c = pick(600, train_chars=100_000, given={"weight_decay"}, weight_decay=0.01).config
    assert (c.optimizer, c.weight_decay) == ("adamw", 0.01)


def test_knobs_given_are_kept_and_the_rest_follow_them():
    c = pick(120, given={"hidden_size", "dropout"}, hidden_size=40, dropout=0.5).config
    assert (c.model.hidden_size, c.model.dropout) == (40, 0.5)
    assert c.lr == 5e-3  # 1/40 is capped
    c = pick(120, V=4594, given={"embedding_size", "cutoffs"}, embedding_size=32).config
    assert c.model.embedding_size == 32 and c.model.cutoffs == []  # the user's full softmax stays
    c = pick(120, given={"batch_size", "lr", "lr_schedule"}, batch_size=7, lr=0.1, lr_schedule="step").config
    assert (c.batch_size, c.lr, c.lr_schedule) == (7, 0.1, "step")


def test_given_knobs_are_the_typed_flags_or_else_those_changed_from_their_default():
    config = TrainConfig(model=ModelConfig(hidden_size=512, layers=2), lr=2e-3)
    assert given_knobs(config) == {"hidden_size"}  # layers and lr are at their defaults
    config.keep = ["layers", "data", "out"]
    assert given_knobs(config) == {"layers"}


def test_why_says_what_was_chosen_and_what_was_kept():
    why = pick(120, given={"lr"}, lr=0.01).why
    assert "LSTM 2x256" in why and "kept from your flags: lr" in why and "--settings fixed" in why
    bytes_vocab = np.zeros(256, np.int64)
    bytes_vocab[97:122] = 4_000  # --encoding bytes: 256 ids, 25 of them in the text
    assert "training characters (25 distinct)" in choose(TrainConfig(max_time=120), bytes_vocab, SPEED, set()).why


def test_the_speed_probe_leaves_the_random_streams_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    assert measure_speed(torch.device("cpu"), seconds=0.05) > 0
    assert measure_speed(torch.device("cpu"), seconds=0.05, precision="bf16", cell="gru") > 0  # the run's own
    assert torch.equal(torch.rand(4), expected)


def run_cli(tmp_path, *flags):
    tmp_path.mkdir(exist_ok=True)
    data = tmp_path / "text.txt"
    data.write_text("the quick brown fox jumps over the lazy dog. " * 300)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "charrnn", "train", "--data", str(data), "--out", str(out), "--quiet", *flags]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stderr, json.loads((out / "last" / "checkpoint.json").read_text())["train"]


def test_cli_chooses_prints_and_saves_the_settings_and_keeps_typed_flags(tmp_path):
    err, saved = run_cli(tmp_path, "--max-time", "2", "--max-epochs", "0", "--max-steps", "3", "--hidden-size", "24")
    assert "Settings for 2 s" in err and "kept from your flags: hidden_size" in err
    assert saved["model"]["hidden_size"] == 24 and saved["keep"] and "hidden_size" in saved["keep"]
    assert saved["batch_size"] <= 32 and saved["seq_len"] == 64  # chosen, not the defaults 64 and 128


def test_cli_without_a_budget_or_with_settings_fixed_uses_the_defaults(tmp_path):
    err, saved = run_cli(tmp_path, "--max-steps", "2", "--batch-size", "4", "--seq-len", "16")
    assert "Settings for" not in err and saved["model"]["hidden_size"] == 256
    fixed = ("--max-time", "2", "--max-steps", "2", "--settings", "fixed", "--seq-len", "16")
    err, saved = run_cli(tmp_path / "b", *fixed)
    assert "Settings for" not in err and saved["model"]["hidden_size"] == 256 and saved["batch_size"] == 64


def test_resume_keeps_the_chosen_settings_without_choosing_again(tmp_path):
    _, first = run_cli(tmp_path, "--max-time", "60", "--max-steps", "2", "--hidden-size", "24", "--eval-every", "1")
    err, resumed = run_cli(tmp_path, "--max-time", "60", "--max-steps", "4", "--resume")
    assert "Settings for" not in err
    assert {k: v for k, v in resumed.items() if k != "max_steps"} == {
        k: v for k, v in first.items() if k != "max_steps"
    }
