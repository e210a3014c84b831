"""The training config, and what follows from it: device, optimizer, learning-rate
schedule, and which knobs --resume may change.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from charrnn import checkpoint as ckpt
from charrnn.knobs import apply, knob
from charrnn.data.corpus import DataConfig
from charrnn.errors import CharRNNError
from charrnn.engines.model import ModelConfig

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd", "adagrad")
SCHEDULES = ("constant", "cosine", "step", "plateau")
ENGINES = ("torch", "reference")


@dataclass
class TrainConfig:
    out: str = knob("runs/charrnn", 'the run folder, for checkpoints (last/, best/) and metrics.jsonl')
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = knob(64, 'B: number of parallel text streams per batch')
    seq_len: int = knob(128, 'T: characters per stream per batch (steps of backprop through time)')
    optimizer: str = knob("adam", 'optimizer', choices=OPTIMIZERS)
    lr: float = knob(2e-3, 'peak learning rate')
    weight_decay: float = knob(0.0, 'weight decay (L2; decoupled for adamw)')
    momentum: float = knob(0.9, 'momentum of sgd')
    lr_schedule: str = knob("constant", 'learning-rate schedule: constant; cosine decay over the run; step: times --lr-decay every --lr-decay-every steps; plateau: times --lr-decay when validation stalls', choices=SCHEDULES)
    warmup_steps: int = knob(0, 'linear warm-up from 0 to --lr over this many steps')
    lr_decay: float = knob(0.97, 'decay factor of the step and plateau schedules')
    lr_decay_every: int = knob(0, 'steps between decays of the step schedule; 0 = one epoch, as char-rnn')
    min_lr_fraction: float = knob(0.1, 'the cosine schedule ends at --lr times this')
    plateau_patience: int = knob(2, 'plateau schedule: evaluations without improvement before a decay')
    grad_clip: float = knob(5.0, 'clip gradients to this global L2 norm; 0 = off')
    max_steps: int = knob(0, 'stop after this many optimizer steps; 0 = no limit')
    max_epochs: float = knob(10.0, 'stop after this many passes over the training data (may be fractional); 0 = no limit')
    max_time: float = knob(0.0, 'stop after this many seconds of training (wall clock); 0 = no limit')
    eval_every: int = knob(200, 'validate, and save checkpoints, every this many steps')
    eval_chars: int = knob(1_000_000, 'validate on at most this many characters of the validation split; 0 = all of it')
    log_every: int = knob(10, 'log the training loss to metrics.jsonl every this many steps')
    device: str = knob("auto", 'where to train: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps')
    threads: int = knob(0, "CPU threads for PyTorch; 0 = PyTorch's default (all cores)")
    seed: int = knob(1337, 'random seed for the initial weights and dropout')
    init_from: str | None = knob(None, "fine-tune: start from this run's best weights (its model shape; --dropout may change) instead of random ones, in a new --out; the vocabulary is the run's, grown by the new text's characters")
    quiet: bool = knob(False, 'no progress bar')
    engine: str = knob("torch", 'torch: PyTorch (fast, any device); reference: the NumPy engine of charrnn.reference (CPU, slower, the article\'s math written out)', choices=ENGINES)
    nproc: int = knob(0, 'train data-parallel on this many local processes, started by torchrun (one per GPU with nccl, or on CPU with gloo); --batch-size stays the global batch and must be a multiple; 0 = one plain process; not saved with the run. Several machines: docs/distributed.md')
    dist_timeout: float = knob(600.0, 'distributed: seconds a rank waits for the others in a collective before the run stops with an error')

    def validate(self) -> None:
        self.data.validate()
        if self.optimizer not in OPTIMIZERS:
            raise CharRNNError(f"unknown --optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise CharRNNError(f"unknown --lr-schedule {self.lr_schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.engine not in ENGINES:
            raise CharRNNError(f"unknown --engine {self.engine!r}: choose one of {', '.join(ENGINES)}")
        if self.device not in ("auto", "cpu", "cuda", "mps") and not self.device.startswith("cuda:"):
            raise CharRNNError(f"unknown --device {self.device!r}: choose auto, cpu, cuda or mps")
        for name in ("batch_size", "seq_len", "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise CharRNNError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.lr > 0:
            raise CharRNNError("--lr must be positive")
        if not (self.max_steps or self.max_epochs or self.max_time):
            raise CharRNNError("give at least one of --max-steps, --max-epochs or --max-time")
        if self.nproc < 0 or (self.nproc and self.batch_size % self.nproc):
            raise CharRNNError(f"--nproc must be 0 or a positive divisor of --batch-size {self.batch_size}, not {self.nproc}")
        if not self.dist_timeout > 0:
            raise CharRNNError("--dist-timeout must be positive")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names and k not in ("data", "model")}
        return cls(data=DataConfig(**d.get("data", {})), model=ModelConfig.from_json(d.get("model", {})), **kw)


def budget_used(config: TrainConfig, step: int, elapsed: float, steps_per_epoch: int) -> float:
    """The fraction of the run's budget used: how far it is towards its nearest stopping
    limit (steps, epochs or seconds); 1 = done."""
    done = []
    if config.max_steps:
        done.append(step / config.max_steps)
    if config.max_epochs:
        done.append(step / (config.max_epochs * steps_per_epoch))
    if config.max_time:
        done.append(elapsed / config.max_time)
    return max(done)


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
RESUME_CHANGEABLE = {"max_steps", "max_epochs", "max_time", "eval_every", "eval_chars", "log_every",
                     "device", "threads", "quiet", "data", "cache_dir", "nproc", "dist_timeout"}  # fmt: skip


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
