"""What a Trainer is built from and what it hands back: the seams between build.py,
the training loop (trainer.py) and the process group (distributed.py).

    Parts    the engine, the training layout, the validation split, the vocabulary, the group
    RunState the trainer's share of what survives a crash (the engine's share is its state_dict)
    Solo     the process group of a one-process run (distributed.Dist is a torchrun rank)
    TrainResult what train() returns

Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from charrnn.data.items import ItemBatches
from charrnn.data.layout import Streams
from charrnn.data.vocab import Vocab
from charrnn.tasks import NEXT_CHAR, Task


@dataclass
class RunState:
    """The trainer's share of what survives a crash (the engine's share is its state_dict)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # whole passes over the training streams
    batch_index: int = 0  # the next chunk of the current epoch
    lr_scale: float = 1.0  # halved on each NaN roll-back
    plateau: dict = field(default_factory=lambda: {"best": math.inf, "bad": 0, "factor": 1.0})
    best_val: float = math.inf
    elapsed: float = 0.0  # seconds of training and validation, across resumes
    nan_retries: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> RunState:
        return cls(**{f.name: copy.deepcopy(d[f.name]) for f in fields(cls)})


class Solo:
    """The process group of a plain, one-process run: every collective is the identity.
    (training/distributed.py's Dist has the same methods for torchrun's ranks.)"""

    rank, world_size, is_main = 0, 1, True

    def reduce(self, values: list[float], op: str = "sum") -> list[float]:
        return list(values)

    def mean(self, value):
        return value

    def main_says(self, flag: bool) -> bool:
        return flag

    def rows(self, batch_size: int) -> tuple[int, int]:
        return 0, batch_size

    def errors(self):
        return contextlib.nullcontext()

    def close(self) -> None:
        pass


@dataclass
class TrainResult:
    out: Path
    step: int
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    interrupted: bool = False
    is_main: bool = True  # rank 0 (or the only process): the one that reports
    epochs: float = 0.0  # passes over the training text: what --settings auto's "can read" estimated


@dataclass
class Parts:
    """What a Trainer is built from (build.py makes them; tests may make their own)."""

    engine: object  # engines.protocol.Engine
    batches: Streams | ItemBatches  # the training layout
    val: np.ndarray | ItemBatches  # the validation split: ids of one text, or items in their scoring layout
    vocab: Vocab
    model_json: dict  # the model config as checkpoint.json records it
    group: object = field(default_factory=Solo)  # Solo, or a training.distributed.Dist rank
    task: Task = NEXT_CHAR  # what the head predicts from the layout's chunks (tasks.py)
    labels: tuple[str, ...] = ()  # the labelled tasks' label set (or tag set): id = position
