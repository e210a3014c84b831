"""The training config, and what follows from it: device, optimizer, learning-rate
schedule, and which knobs --resume may change.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace

from charrnn import checkpoint as ckpt
from charrnn.data.corpus import DataConfig
from charrnn.engines.config import TRAINING_ONLY, ModelConfig
from charrnn.errors import CharRNNError
from charrnn.knobs import MAX_SEED, Checked, apply, knob
from charrnn.tasks import TASK_NAMES

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "adagrad")
SCHEDULES = ("constant", "cosine", "step", "plateau")
ENGINES = ("torch", "reference")
PRECISIONS = ("auto", "fp32", "bf16")
SETTINGS = ("auto", "fixed")

DEVICE = (r"auto|cpu|mps|cuda(:[0-9]+)?", "auto, cpu, cuda, cuda:N or mps")


@dataclass
class TrainConfig(Checked):
    out: str = knob("runs/charrnn", "the run folder, for checkpoints (last/, best/) and metrics.jsonl", nonempty=True)
    task: str = knob(
        "next-char",
        "what to learn: next-char (write like the text); classify (a label per item), tag (a tag per "
        "character), truecase (restore capitals) or generate (write items for a label), from labelled "
        "--data: a folder of LABEL.txt files or a .tsv/.csv file (README: Beyond generation)",
        choices=TASK_NAMES,
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    settings: str = knob(
        "auto",
        "auto: with a time budget (--max-time or a preset), choose what you leave out (hidden size, layers, "
        "embedding, tying, dropout, weight drop, batch, seq len, lr) for this corpus, the budget and this "
        "machine's speed, and print why; fixed: the defaults and preset as they are",
        choices=SETTINGS,
    )
    keep: list[str] | None = knob(
        None,
        "the knobs --settings auto leaves alone (the CLI: the flags typed; None: those changed from their default)",
        flag=False,
    )
    balance: float = knob(
        0.0,
        "classify: repeat the training items of rarer labels, so that a label with n items weighs "
        "n**(1-b) * most**b (0: as they come; 1: every label alike); helps macro-F1 on unbalanced data",
        ge=0,
        le=1,
    )
    batch_size: int = knob(64, "B: number of parallel text streams per batch", ge=1)
    seq_len: int = knob(
        128, "T: characters per stream per batch; training backpropagates through this many steps", ge=1
    )
    optimizer: str = knob("adam", "optimizer", choices=OPTIMIZERS)
    lr: float = knob(2e-3, "peak learning rate", gt=0)
    weight_decay: float = knob(0.0, "weight decay: L2, decoupled for adamw", ge=0)
    momentum: float = knob(0.9, "momentum of sgd", ge=0, lt=1)
    lr_schedule: str = knob(
        "constant",
        "learning-rate schedule: constant; cosine decay over the run; step: times "
        "--lr-decay every --lr-decay-every steps; plateau: times --lr-decay when validation stalls",
        choices=SCHEDULES,
    )
    warmup_steps: int = knob(0, "linear warm-up from 0 to --lr over this many steps", ge=0)
    lr_decay: float = knob(0.97, "decay factor of the step and plateau schedules", gt=0, le=1)
    lr_decay_every: int = knob(0, "steps between decays of the step schedule", ge=1, off=(0, "one epoch, as char-rnn"))
    min_lr_fraction: float = knob(0.1, "the cosine schedule ends at --lr times this", ge=0, le=1)
    plateau_patience: int = knob(2, "plateau schedule: evaluations without improvement before a decay", ge=0)
    grad_clip: float = knob(5.0, "clip gradients to this global L2 norm", gt=0, off=(0, "off"))
    max_steps: int = knob(0, "stop after this many optimizer steps", ge=1, off=(0, "no limit"))
    max_epochs: float = knob(
        10.0, "stop after this many passes over the training data, fractions too", gt=0, off=(0, "no limit")
    )
    max_time: float = knob(0.0, "stop after this many seconds of training, wall clock", gt=0, off=(0, "no limit"))
    eval_every: int = knob(200, "validate, and save checkpoints, every this many steps", ge=1)
    eval_chars: int = knob(
        1_000_000, "validate on at most this many characters of the validation split", ge=1, off=(0, "all of it")
    )
    log_every: int = knob(10, "log the training loss to metrics.jsonl every this many steps", ge=1)
    device: str = knob(
        "auto", "where to train: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps", pattern=DEVICE
    )
    threads: int = knob(
        0,
        "CPU threads for PyTorch",
        ge=1,
        off=(0, "auto: on the CPU, the cores other busy processes leave free, re-counted as it trains"),
    )
    precision: str = knob(
        "auto",
        "bf16: autocast the forward pass and loss to bfloat16, weights and optimizer float32; auto: bf16 on "
        "hardware that runs it faster (a CUDA GPU with bf16, a CPU with AMX or AVX-512 BF16), else fp32; "
        "saved with the run as fp32 or bf16",
        choices=PRECISIONS,
    )
    seed: int = knob(1337, "random seed for the initial weights and dropout", ge=0, le=MAX_SEED)
    init_from: str | None = knob(
        None,
        "fine-tune: start from this run's best weights (its model shape; its --items, --dropout and "
        "--weight-drop unless given) instead of random ones, in a new --out; the vocabulary is the run's, "
        "grown by the new text's characters",
        nonempty=True,
    )
    quiet: bool = knob(False, "no progress bar")
    engine: str = knob(
        "torch",
        "torch: PyTorch (fast, any device); reference: the NumPy engine of charrnn.reference "
        "(CPU, slower, the article's math written out)",
        choices=ENGINES,
    )
    nproc: int = knob(
        0,
        "train data-parallel on this many local processes, started by torchrun (one per GPU with "
        "nccl, or on CPU with gloo); --batch-size stays the global batch and must be a multiple; "
        "saved with the run, and --resume may change it. Several machines: docs/distributed.md",
        ge=1,
        off=(0, "one plain process"),
    )
    dist_timeout: float = knob(
        600.0,
        "distributed: seconds a rank waits for the others in a collective before the run stops with an error",
        gt=0,
    )

    def rules(self) -> None:
        if not (self.max_steps or self.max_epochs or self.max_time):
            raise CharRNNError("give at least one of --max-steps, --max-epochs or --max-time (0 means no limit)")
        if self.nproc and self.batch_size % self.nproc:
            raise CharRNNError(f"--nproc must divide --batch-size {self.batch_size}, not {self.nproc}")
        if self.model.bidirectional and self.task not in ("classify", "tag", "truecase"):
            raise CharRNNError("--bidirectional reads ahead, which only --task classify, tag and truecase may do")
        if self.task not in ("next-char", "truecase") and self.data.items:
            raise CharRNNError(f"--task {self.task} reads labelled items as they are: drop --items")
        if self.balance and self.task != "classify":
            raise CharRNNError("--balance weighs the labels of --task classify; drop it for this task")
        if self.task != "next-char" and self.init_from:
            raise CharRNNError("--init-from fine-tunes next-char models; train a new --task model instead")
        if self.init_from and (shape := sorted(self.given() & MODEL_SHAPE)):  # else silently the run's
            flags = ", ".join("--" + k.replace("_", "-") for k in shape)
            raise CharRNNError(f"--init-from keeps the model shape of {self.init_from}: drop {flags}")

    def given(self) -> set[str]:
        """The knobs the user set: those named in `keep` (the CLI lists the flags typed), or, when keep
        is None (a Python caller's config), the training and model fields changed from their default."""
        if self.keep is not None:
            return set(self.keep)
        return {
            f.name
            for config in (self, self.model)
            for f in fields(config)
            if f.name not in ("data", "model", "keep") and getattr(config, f.name) != _default(f)
        }

    def with_tied_embedding(self) -> TrainConfig:
        """Tying shares one matrix as the (V, E) embedding and the (V, H) head, so it needs E = H:
        with --tie-weights and no --embedding-size given, E follows H (asked by build.accept)."""
        if not self.model.tie_weights or "embedding_size" in self.given():
            return self
        return replace(self, model=replace(self.model, embedding_size=self.model.hidden_size))

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and k not in ("data", "model")}
        kw.setdefault("precision", "fp32")  # a run saved before --precision existed trained in float32
        return cls(data=DataConfig(**d.get("data", {})), model=ModelConfig.from_json(d.get("model", {})), **kw)


# What --init-from takes from the run it starts from, which therefore cannot be given: the model's
# flags but those that act only while training (vocab_size and head_size follow the data).
MODEL_SHAPE = frozenset(f.name for f in fields(ModelConfig) if f.metadata["knob"].flag and f.name not in TRAINING_ONLY)


def _default(f):
    return f.default_factory() if f.default_factory is not MISSING else f.default


def limits_used(config: TrainConfig, step: int, elapsed: float, steps_per_epoch: int) -> dict[str, float]:
    """How far the run is towards each stopping limit it has, by field (max_steps, max_epochs,
    max_time); 1 = reached."""
    used = {}
    if config.max_steps:
        used["max_steps"] = step / config.max_steps
    if config.max_epochs:
        used["max_epochs"] = step / (config.max_epochs * steps_per_epoch)
    if config.max_time:
        used["max_time"] = elapsed / config.max_time
    return used


def budget_used(config: TrainConfig, step: int, elapsed: float, steps_per_epoch: int) -> float:
    """The fraction of the run's budget used: how far it is towards its nearest stopping
    limit (steps, epochs or seconds); 1 = done."""
    return max(limits_used(config, step, elapsed, steps_per_epoch).values())


def schedule_factor(config: TrainConfig, step: int, used: float, steps_per_epoch: int) -> float:
    """The learning rate at `step` as a fraction of --lr (before plateau and NaN halvings).

    used in [0, 1] is the fraction of the budget used (budget_used), so a cosine
    schedule decays over whatever budget is set: steps, epochs or time.
    """
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    if config.lr_schedule == "cosine":
        lo = config.min_lr_fraction
        return warm * (lo + (1 - lo) * 0.5 * (1 + math.cos(math.pi * min(1.0, used))))
    if config.lr_schedule == "step":
        period = config.lr_decay_every or steps_per_epoch
        return warm * config.lr_decay ** (step // period)
    return warm  # constant, and plateau (whose decays are applied on evaluation)


# What --resume may change: when and how long to train, where and how verbosely.
# Everything else would make the continued run a different run.
# The number of processes may change too: streams and hidden state are re-split (distributed.py).
RESUME_CHANGEABLE = {
    "max_steps",
    "max_epochs",
    "max_time",
    "eval_every",
    "eval_chars",
    "log_every",
    "device",
    "threads",
    "quiet",
    "data",
    "cache_dir",
    "nproc",
    "dist_timeout",
}


def resumed_config(out: str, given: dict) -> TrainConfig:
    """The saved config of the run in `out`, with the knobs in `given` that may change."""
    config = TrainConfig.from_json(read_run_config(out))
    config.out = out
    saved = {**asdict(config), **asdict(config.data), **asdict(config.model)}
    changed = sorted(k for k, v in given.items() if k not in RESUME_CHANGEABLE and saved.get(k) != v)
    if changed:
        flags = ", ".join("--" + k.replace("_", "-") for k in changed)
        raise CharRNNError(f"--resume continues the run as saved, so {flags} cannot change; start a new --out instead")
    apply(config, given)
    return config


def read_run_config(out: str) -> dict:
    return ckpt.read_meta(ckpt.resolve(out, "last"))["train"]
