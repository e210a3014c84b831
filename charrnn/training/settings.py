"""Settings that fit the corpus: `--settings auto` (the default) picks the knobs the user
left out from the time budget (--max-time, or a preset's), the corpus and this machine.

    budget S seconds x this machine's measured speed (multiply-adds per second, a 1 s probe)
        / the cost of one training character of a candidate model (multiply-adds)
        = C, the characters that model can read in the budget

    cell            GRU for a corpus under SMALL_CORPUS training characters (on the suite's two small
                    corpora it learned faster: names -0.46 nats, Die Verwandlung -0.09 at 2 minutes),
                    else LSTM (equal on Tiny Shakespeare at 2 minutes, 0.02 better at 10 in one run)
    hidden size H   the largest of the ladder whose model reads C >= RATIO x its recurrent
                    weights (a bigger model would stop before it has learned what it can) and
                    has at most DATA_RATIO recurrent weights per training character (a bigger
                    one learns its text by heart: without weight drop 8 was the limit, and on Die
                    Verwandlung's 110k characters a 2x384 GRU fell to 0.90 nats on its training
                    text and rose to 1.52 on validation; with it, the names' 2x384 (14 a
                    character) scored 1.680 at 10 minutes against 1.748 for a 2x256; larger
                    models were not measured)
    layers L        2, or 3 from H = 512 up (the former medium and large presets)
    embedding E     64; for V > LARGE_VOCAB, E = H and an adaptive softmax (--cutoffs) whose
    cutoffs         clusters start where the commonest characters cover COVERAGE of the training
                    text: a 256-wide full head of 4,594 characters costs more than two LSTM layers,
                    and measured slowest per minute (README "Large vocabularies"); but once the budget
                    reads the text over TIED_EPOCHS times, a full softmax tied to the embedding, at
                    the largest H that reads it that often (at most one step below the adaptive
                    one's), learns the rare characters better. A list (a small text whose lines average
                    under SHORT_LINES characters: names, words) read as one long text 2.5 to EPOCH_CAP
                    times: E = H, tied
    dropout,        from the epochs the budget allows (C / training characters): a model that
    weight decay    sees its text once cannot overfit it, one that sees it 20 times will; from
                    2.5 epochs AdamW's decoupled weight decay 0.1 as well (西遊記 at 10 minutes:
                    4.46-4.47 nats in three runs, against 4.56 without; the names, read ~80 times:
                    1.78 at dropout 0.5 with decay, where a 2x384 GRU at 0.35 without got 1.82)
    weight drop     0.3 on a small text (under SMALL_CORPUS) read over 2.5 epochs: DropConnect
                    on the recurrent weights (the names at 10 minutes: 1.783 -> 1.748, and a 2x384
                    then 1.680; at 2 minutes 1.790 -> 1.753), not on a large one (Tiny Shakespeare
                    at 10 minutes: 1.405 -> 1.453, the LSTM's bf16 kernel ~20% slower with it),
                    unless it has a large vocabulary and the tied head (few examples a character)
    batch B, T      as many updates as the budget allows: B = C / (STEPS x T), 16 to 128, and at most
                    what leaves 10 batches an epoch (a text of a few thousand characters, or --items:
                    of whole items), rounded up to a multiple of the processes (--nproc); a text read
                    over SMALL_BATCH_EPOCHS times: 16x64, whose noisier updates generalise better (the
                    names at 10 minutes: best validation 1.777 nats against 1.819 at 32x128; 西遊記,
                    ~9 epochs: 4.330 against 4.363); 32x64 for a GRU whose run the budget ends (on a
                    CPU it reads 1.45x more characters a second at 32; the LSTM as much, but its
                    loss did not gain)
    lr              1 / H, times sqrt(B / 16): smaller for wider layers, larger for bigger batches;
                    at most LR_MAX, and LR_MAX for the tied head of a large vocabulary
    schedule        cosine down to 2% over the budget, after a warm-up of a tenth of the expected
                    steps (at most 300): the presets' schedule, whatever the budget
    max_epochs      EPOCH_CAP when the budget could read the text more often than that (a small text only
                    overfits after it: Die Verwandlung at 10 minutes, best at 16 epochs of 82), else 0
    eval_every      when the budget reads the text over 10 times, about EVALS validations, so that
                    best/ catches the minimum of the validation loss, which such a run passes early
                    (and its validation split is small, so they are cheap); else 3 (the budget
                    includes them, and the end of a cosine schedule is about its best)

The constants were fitted on the corpus suite (benchmarks/corpora.py, README "Settings that fit
your text"). The rule is a pure function (choose) so it can be read and tested; adapt()
measures the machine, applies it to the knobs the user did not set, and says what it chose.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

from charrnn.engines.config import ModelConfig
from charrnn.training.config import TrainConfig

LADDER = (64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)  # hidden sizes the rule picks from
RATIO = 1.0  # characters read per recurrent weight that a model must reach in the budget
DATA_RATIO = 16.0  # recurrent weights per training character that a model may have at most
DATA_RATIO_PLAIN = 8.0  # the same without weight drop (a typed --weight-drop 0)
MANY_EPOCHS = 10  # a text read more often than this is validated EVALS times
SMALL_BATCH_EPOCHS = 5  # a text read more often than this is trained in batches of 16x64
EVALS = 12  # validations per budget when the text is read over MANY_EPOCHS times
EPOCH_CAP = 20  # a budget that could read the text more often than this reads it this often, and stops early
LARGE_VOCAB = 1000  # above this many distinct characters: an adaptive softmax, and an embedding as wide as H
TIED_EPOCHS = 6  # a large vocabulary read more often than this: a full softmax tied to the embedding
SHORT_LINES = 16  # a small text whose lines average fewer characters than this is a list (names, words, titles)
COVERAGE = (0.80, 0.95)  # the adaptive softmax's clusters start where the commonest characters cover these
SMALL_CORPUS = 500_000  # training characters below which the cell is a GRU
LR_MAX = 5e-3  # the largest learning rate the rule gives
STEPS = 2000  # updates the batch size aims for: fewer, larger batches once the budget allows more
# (epochs up to, dropout, AdamW's weight decay, weight drop): more regularisation the more often the
# text is read; weight drop only for a text under SMALL_CORPUS characters (or a large vocabulary's tied head)
WELL_READ = 2.5  # epochs above which weight decay and weight drop start (REGULARISE), and a list is tied
REGULARISE = ((1.5, 0.0, 0.0, 0.0), (WELL_READ, 0.1, 0.0, 0.0), (20.0, 0.25, 0.1, 0.3), (math.inf, 0.5, 0.1, 0.3))
GATES = {"rnn": 1, "gru": 3, "lstm": 4}
# The knobs the rule sets, by where they live (model config or training config).
MODEL_KNOBS = ("cell", "layers", "hidden_size", "embedding_size", "tie_weights", "cutoffs", "dropout", "weight_drop")
TRAIN_KNOBS = (
    "batch_size",
    "seq_len",
    "lr",
    "lr_schedule",
    "warmup_steps",
    "min_lr_fraction",
    "eval_every",
    "optimizer",
    "weight_decay",
    "max_epochs",
)


def train_cost(m: ModelConfig) -> float:
    """Multiply-adds to train on one character: each layer's G gate matrices (G x H x (input + H)),
    the head, and about twice the forward pass again for the backward. The full head is H x V; an
    adaptive one (cutoffs at COVERAGE) H x its shortlist, plus each rarer cluster's narrower projection
    and outputs for the share of characters that fall in it (the rest of COVERAGE)."""
    E = m.embedding_size or m.vocab_size  # one-hot input: a V-wide input matrix
    G, H = GATES[m.cell], m.hidden_size
    layers = G * H * (E + H) + (m.layers - 1) * G * H * (2 * H)
    if not m.cutoffs:
        return 3.0 * (layers + H * m.vocab_size)
    edges, shares = [*m.cutoffs, m.vocab_size], [b - a for a, b in zip((0, *COVERAGE), (*COVERAGE, 1.0))][1:]
    head = H * (m.cutoffs[0] + len(m.cutoffs))
    for i, share in enumerate(shares[: len(m.cutoffs)]):
        narrow = H // 4 ** (i + 1)  # nn.AdaptiveLogSoftmaxWithLoss's div_value 4
        head += share * narrow * (H + edges[i + 1] - edges[i])
    return 3.0 * (layers + head)


def pick_cell(config: TrainConfig, train_chars: int, given: set[str]) -> str:
    """A typed --cell, else GRU under SMALL_CORPUS training characters and LSTM above. adapt() times
    this cell and choose() builds it."""
    return config.model.cell if "cell" in given else "gru" if train_chars < SMALL_CORPUS else "lstm"


def recurrent_weights(m: ModelConfig) -> int:
    """The weights of the recurrent layers (embedding and head left out: they grow with V, not with what
    the model can learn from context)."""
    G, H, E = GATES[m.cell], m.hidden_size, m.embedding_size or m.vocab_size
    return G * H * (E + H) + (m.layers - 1) * G * H * 2 * H


@dataclass
class Choice:
    """What the rule chose, and the one or two lines that say why."""

    config: TrainConfig
    why: str


def choose(
    config: TrainConfig, counts, speed: float, given: set[str], lines: int = 0, items: int = 0, ranks: int = 1
) -> Choice:
    """The rule: `config` with the knobs not in `given` chosen for a budget of config.max_time
    seconds and a training split whose characters occur `counts` (V,) times, in `lines` lines (its
    newlines; 0: unknown) or, with --items, `items` items, on a machine doing `speed` multiply-adds
    per second (measure_speed), trained by `ranks` processes."""
    m, budget = config.model, config.max_time
    V, train_chars = len(counts), int(sum(counts))
    wide = V > LARGE_VOCAB
    cutoffs = adaptive_cutoffs(counts) if wide else []
    m = replace(m, cell=pick_cell(config, train_chars, given))

    def shaped(H: int, tied: bool = False) -> ModelConfig:
        L, E = 2 if H < 512 else 3, H if wide or tied or m.tie_weights else 64  # a tied head needs E = H
        head = {"tie_weights": tied, "cutoffs": [] if tied or m.tie_weights else cutoffs}
        new = {"hidden_size": H, "layers": L, "embedding_size": E, **head}
        return replace(m, vocab_size=V, **{k: v for k, v in new.items() if k not in given})

    def chars(model: ModelConfig) -> float:
        return budget * speed / train_cost(model)

    def fit(model: ModelConfig, least: float = 0.0) -> bool:
        """It reads RATIO characters a recurrent weight (and `least` in all) and has at most data_ratio a
        training character."""
        weights = recurrent_weights(model)
        return max(RATIO * weights, least) <= chars(model) and weights <= data_ratio * train_chars

    # Weight drop (below) lets a small text hold twice the weights; a typed --weight-drop 0 keeps the old limit
    plain = "weight_drop" in given and not m.weight_drop
    data_ratio = DATA_RATIO_PLAIN if plain else DATA_RATIO
    if "hidden_size" in given:
        model = shaped(m.hidden_size)
    else:
        fits = [H for H in LADDER if fit(shaped(H))]
        model = shaped(fits[-1] if fits else LADDER[0])
    # A large vocabulary read over TIED_EPOCHS times: a full softmax tied to the embedding, at the largest H
    # that still reads it that often, and at most one step below the adaptive one's. The adaptive softmax's
    # narrow clusters cost the rare characters most, and tying lets every step train every character's row
    # (西遊記 at 10 minutes: tied 2x256 4.27 to 4.31 nats, tied 2x192 4.32, the adaptive 2x384 4.31 to 4.41;
    # at 2 minutes the adaptive 2x256 is faster and wins, 4.78 against a tied 2x192's 4.84).
    least, head_given = TIED_EPOCHS * train_chars, bool(given & {"embedding_size", "tie_weights", "cutoffs"})
    if wide and not head_given and "hidden_size" not in given and chars(model) > least:
        step = LADDER.index(model.hidden_size)
        tied = [H for H in LADDER[max(0, step - 1) : step + 1] if fit(shaped(H, True), least)]
        model = shaped(tied[-1], True) if tied else model
    # A list (a small text of short lines) read as one long text 2.5 to EPOCH_CAP times: the head tied to the
    # embedding (E = H) at the H picked untied. It learns the list by heart more slowly: the names at 2 minutes
    # (validated on the text's end, other languages) 1.692 tied, 1.716 untied on the mean of their seeds. Not
    # as --items (validated on items from all of it: 2.003, 1.979 tied, 1.962, 1.942 untied), nor past the cap
    # (the names at 10 minutes: 1.752 tied, 1.680 untied), nor on prose (Die Verwandlung: 1.440 against ~1.40).
    a_list = train_chars < SHORT_LINES * lines and not config.data.items and not wide and train_chars < SMALL_CORPUS
    list_tied = a_list and not head_given and WELL_READ * train_chars < chars(model) <= EPOCH_CAP * train_chars
    if list_tied:
        model = shaped(model.hidden_size, True)
    tied_head = wide and model.tie_weights  # a large vocabulary's tied full softmax, chosen or typed
    C = full = chars(model)
    could = full / max(1, train_chars)  # epochs the budget could read
    # Regularise by how often the budget could read the text: a text small enough for that to pass
    # EPOCH_CAP wants the most dropout even when the cap below stops it there (at 10 minutes, capped
    # at 20 epochs: the names 1.765 at dropout 0.5 against 1.807 at 0.25; Die Verwandlung 1.436
    # against 1.419; 0.5 better on the mean, and on the text where charrnn is furthest behind)
    _, dropout, decay, weight_drop = next(row for row in REGULARISE if could <= row[0])
    # A small text read many times also gets weight drop, which lets it hold a larger model (DATA_RATIO):
    # the names at 10 minutes 1.783 -> 1.748 (2x256) -> 1.680 (2x384). Not a large one: Tiny Shakespeare
    # at 10 minutes went from 1.405 to 1.453 (the LSTM's fused bf16 kernel runs ~20% slower with it).
    # But a large vocabulary given the tied head: 西遊記's 4,594 characters, ~150 occurrences each,
    # overfit like a small text (the adaptive 2x384 at 10 minutes: 4.330 -> 4.311 with it)
    weight_drop = weight_drop if train_chars < SMALL_CORPUS or tied_head else 0.0
    # A small text read over EPOCH_CAP times only overfits after that (Die Verwandlung at 10 minutes:
    # best validation at 16 epochs of 82, 1.475 nats, and 1.776 at the end): the schedule decays over
    # EPOCH_CAP epochs and the run ends there, with the low learning rate the best model needs (the
    # same budget capped at 20 epochs: 1.436 on the whole split; at 12 epochs: 1.451).
    capped = "max_epochs" not in given and could > EPOCH_CAP
    limit = (config.max_epochs or math.inf) if "max_epochs" in given else EPOCH_CAP
    C = min(full, limit * train_chars)
    epochs = C / max(1, train_chars)
    model = replace(model, **{k: v for k, v in (("dropout", dropout), ("weight_drop", weight_drop)) if k not in given})
    # AdamW decays decoupled from the gradient's scale; a typed --optimizer keeps its own (L2) weight decay
    regularise = {"optimizer": "adamw", "weight_decay": decay} if "optimizer" not in given else {}
    # A text read over SMALL_BATCH_EPOCHS times keeps the smallest batches: their noisier updates generalise
    # better (西遊記 at 10 minutes, ~9 epochs: 4.330 at 16x64 against 4.363 and 4.399 at 32x128). Not at
    # MANY_EPOCHS: this machine's speed varies ~1.5x from run to run, and 西遊記 and Tiny Shakespeare at 10
    # minutes, 8 to 16 epochs, flipped between the two from one run to the next.
    many, small_batches = epochs > MANY_EPOCHS, epochs > SMALL_BATCH_EPOCHS
    T = config.seq_len if "seq_len" in given else 64 if C < 5e6 or small_batches else 128
    most = max(1, (items or (train_chars - 1) // T) // 10)  # a small text still makes 10 batches an epoch
    # But a GRU whose run the budget ends (not an epoch limit) takes 32: a wider batch shares a step's fixed work
    # (2x256, one thread: 1.45x the characters a second at 32), so it reads more (the names at 2 minutes, side by
    # side: 1.679, 1.691, 1.685 against 1.707, 1.699, 1.715 at 16). The LSTM gains as much speed but not loss: at
    # 10 minutes Tiny Shakespeare scored 1.4067 at 32 against 1.4074 at 16, 西遊記 4.288 against 4.226
    smallest = 32 if model.cell == "gru" and C >= full else 16  # C < full: an epoch limit ends the run
    wanted = smallest if small_batches else _power_of_two(C / (STEPS * T), 16, 128)
    # every rank reads as many rows of a batch (distributed.py), so B is a multiple of the processes
    B = config.batch_size if "batch_size" in given else -(-min(most, wanted) // ranks) * ranks
    # The tied head of a large vocabulary takes the largest step: a rare character's row learns from few
    # occurrences (西遊記 at 10 minutes, tied 2x256: 4.318 and 4.306 nats at 1 / H, 4.282 and 4.269 at 0.005)
    rate = LR_MAX if tied_head else math.sqrt(B / 16) / model.hidden_size
    lr = config.lr if "lr" in given else round(min(LR_MAX, rate), 5)
    steps = C / (B * T)
    schedule = {
        "lr_schedule": "cosine",
        "min_lr_fraction": 0.02,
        "warmup_steps": min(300, round(steps / 10)),
        "eval_every": max(10, round(steps / (EVALS if many else 3))),
    }
    schedule["max_epochs"] = EPOCH_CAP if capped else 0  # 0: the time budget alone ends the run
    schedule = {k: v for k, v in (schedule | regularise).items() if k not in given}
    chosen = replace(config, model=model, batch_size=B, seq_len=T, lr=lr, **schedule)
    distinct = sum(1 for n in counts if n)  # --encoding bytes has V = 256 however few occur
    shape = f"{model.cell.upper()} {model.layers}x{model.hidden_size}"
    embed = f"embedding {model.embedding_size}" + (" tied to the output layer" if model.tie_weights else "")
    embed += f", adaptive softmax --cutoffs {' '.join(map(str, model.cutoffs))}" if model.cutoffs else ""
    why = (
        f"Settings for {budget:g} s on {train_chars:,} training characters ({distinct:,} distinct), this machine "
        f"~{speed / 1e9:.1f} G multiply-adds/s: {shape}, {embed}, dropout {model.dropout:g}"
        + (f", weight drop {model.weight_drop:g}" if model.weight_drop else "")
        + (f", weight decay {chosen.weight_decay:g}" if chosen.weight_decay else "")
        + f", batch {B}x{T}, "
        f"lr {lr:g} ({chosen.lr_schedule}, warm-up {chosen.warmup_steps}).\n"
        f"  Why: it can read ~{full / 1e6:.1f} M characters ({could:.1f} epochs, "
        f"{full / recurrent_weights(model):.1f} per recurrent weight)"
        + (
            f"; it stops after {EPOCH_CAP} epochs (~{C / full * config.max_time:.0f} s): more would overfit this text"
            if capped
            else ""
        )
        + (
            f"; {V:,} characters read over {TIED_EPOCHS} times: a full softmax tied to the embedding, which "
            "learns the rare ones better than an adaptive one"
            if tied_head and "tie_weights" not in given
            else ""
        )
        + (
            f"; a list of short lines read under {EPOCH_CAP} times: the output layer tied to the embedding, "
            "which learns it by heart more slowly"
            if list_tied
            else ""
        )
        + (f"; kept from your flags: {', '.join(sorted(given & _RULE))}" if given & _RULE else "")
        + ". Any flag overrides a choice; --settings fixed turns this off."
    )
    return Choice(chosen, why)


_RULE = set(MODEL_KNOBS) | set(TRAIN_KNOBS)


def adaptive_cutoffs(counts) -> list[int]:
    """The ranks at which the commonest characters cover COVERAGE of the text, rounded up to a
    hundred: 西遊記's 4,594 characters give [500, 1500] (83% and 96% of it)."""
    import numpy as np

    share = np.cumsum(np.sort(np.asarray(counts, dtype=np.float64))[::-1]) / max(1, sum(counts))
    ranks = [int(np.searchsorted(share, c)) + 1 for c in COVERAGE]
    cutoffs = sorted({min(100 * math.ceil(r / 100), len(counts) - 1) for r in ranks})
    return [c for c in cutoffs if 0 < c < len(counts)]


def _power_of_two(x: float, lo: int, hi: int) -> int:
    return int(min(hi, max(lo, 2 ** round(math.log2(max(x, 1.0))))))


def given_knobs(config: TrainConfig) -> set[str]:
    """The rule's knobs the user set (TrainConfig.given)."""
    return config.given() & _RULE


def measure_speed(device, seconds: float = 1.0, precision: str = "fp32", cell: str = "lstm") -> float:
    """This machine's training speed in multiply-adds per second, as train_cost counts them: a 2x256
    `cell` with a 64-character head trained on random ids (B=16, T=64) for about `seconds`, in the
    precision the run trains in. Both matter: per multiply-add oneDNN runs an LSTM faster than a GRU,
    and bf16 on AMX speeds the LSTM up ~1.8x but the GRU only ~1.1x (one thread, B=16, T=64). The median
    step counts, not the mean: the first steps are slow (allocation, kernel choice), and a shared
    machine has hiccups."""
    import statistics

    import torch

    from charrnn.engines.model import CharRNN, loss_fn
    from charrnn.engines.precision import autocast

    probe = ModelConfig(cell=cell, vocab_size=64, hidden_size=256, layers=2, embedding_size=64)
    generator = torch.Generator().manual_seed(0)
    fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with fork:  # the probe's weights must not move the run's seeded random streams
        model = CharRNN(probe).to(device)
        optimizer = torch.optim.Adam(model.parameters())
        x = torch.randint(0, 64, (16, 65), generator=generator).to(device)
        times: list[float] = []
        while sum(times[1:]) < seconds or len(times) < 6:
            start = time.perf_counter()
            with autocast(device, precision):
                logits, _ = model(x[:, :-1])
                loss = loss_fn(logits, x[:, 1:])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return 16 * 64 * train_cost(probe) / statistics.median(times[1:])


def adapt(config: TrainConfig, counts, device, dist=None, log=print, lines: int = 0, items: int = 0) -> TrainConfig:
    """config with the rule applied, when it applies: --settings auto, a time budget, next-character
    prediction on the PyTorch engine. A distributed run's speed is the sum of its ranks' (the same on each)."""
    if config.settings != "auto" or not config.max_time or config.task != "next-char" or config.engine != "torch":
        return config
    given = given_knobs(config)
    speed = measure_speed(device, precision=config.precision, cell=pick_cell(config, int(sum(counts)), given))
    if dist is not None:
        speed = dist.reduce([speed])[0]
    choice = choose(config, counts, speed, given, lines, items, dist.world_size if dist is not None else 1)
    log(choice.why)
    return choice.config
