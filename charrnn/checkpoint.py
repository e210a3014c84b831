"""Checkpoints: plain data, self-contained, written atomically.

A run folder holds

    runs/NAME/
      metrics.jsonl            every logged figure, one JSON object a line
      last/                    the latest state (what --resume continues)
      best/                    the lowest validation loss so far (what sample/eval use)

and each checkpoint folder holds

      model.safetensors        the weights, named as CharRNN's state_dict
      checkpoint.json          format, engine, task, model config, vocabulary, step, metrics,
                               the training and data configs
      trainer.pt               (last/ only) optimizer, schedule, RNG states, data position and
                               hidden state: tensors, numbers and dicts only, so it loads
                               with torch.load(..., weights_only=True). Nothing is pickled.

Sampling needs only model.safetensors and checkpoint.json: no dataset, no GPU.

A checkpoint is written into a temporary folder beside its destination, flushed to
disk, and swapped in by rename, so a crash at any moment leaves either the old
checkpoint or the new one whole. If the crash falls between the two renames of the
swap, the old one is still found under its `.old` name and loading falls back to it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import CharRNNError
from charrnn.tasks import get_task
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.knobs import REQUIRED, Checked, knob

if TYPE_CHECKING:  # torch is imported where used, so that the NumPy engine can read and write checkpoints without it
    import torch

FORMAT = "charrnn-checkpoint"
VERSION = 1
WEIGHTS, META, TRAINER = "model.safetensors", "checkpoint.json", "trainer.pt"


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def save_checkpoint(folder: Path, weights: dict, meta: dict, trainer_state: dict | None = None) -> None:
    """Atomically (re)write the checkpoint `folder`. `meta` must hold "model" and "vocab".
    `weights` maps names to torch tensors, or to NumPy arrays (the reference engine)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp{os.getpid()}"
    old = folder.parent / f".{folder.name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    _save_weights(tmp / WEIGHTS, weights)
    (tmp / META).write_text(json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=1))
    if trainer_state is not None:
        import torch

        torch.save(trainer_state, tmp / TRAINER)
    for name in os.listdir(tmp):
        _fsync_file(tmp / name)
    if folder.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(folder, old)
        os.rename(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, folder)


def _save_weights(path: Path, weights: dict) -> None:
    if all(isinstance(v, np.ndarray) for v in weights.values()):
        from safetensors.numpy import save_file as save_numpy

        save_numpy({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path))
        return
    from safetensors.torch import save_file

    # Clone to plain contiguous CPU tensors: safetensors refuses shared storage (tied weights).
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()}, str(path))


def resolve(path: str | Path, which: str = "best") -> Path:
    """The checkpoint folder that a run folder or checkpoint path names.

    A run folder gives its `which` checkpoint (best, falling back to last, or last).
    """
    path = Path(path).expanduser()
    if (path / META).exists():
        return path
    if path.name in ("last", "best") and (path.parent / f".{path.name}.old" / META).exists():
        return path.parent / f".{path.name}.old"  # a crash fell inside the swap
    order = [which, "last"] if which == "best" else [which]
    for name in order:
        for cand in (path / name, path / f".{name}.old"):
            if (cand / META).exists():
                return cand
    if not path.exists():
        raise CharRNNError(f"no such run folder or checkpoint: {path}")
    raise CharRNNError(f"{path} holds no checkpoint (looked for {' or '.join(order)}/{META}); train first")


def has_checkpoint(run: str | Path) -> bool:
    run = Path(run)
    return any((run / name / META).exists() for name in ("last", "best", ".last.old", ".best.old"))


def read_meta(folder: Path) -> dict:
    meta = json.loads((Path(folder) / META).read_text())
    if meta.get("format") != FORMAT:
        raise CharRNNError(f"{folder} is not a charrnn checkpoint")
    if meta.get("version", 0) > VERSION:
        raise CharRNNError(f"{folder} was written by a newer charrnn (format {meta['version']}); upgrade charrnn")
    return meta


def load_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(Path(folder) / WEIGHTS), device="cpu")


def load_model(path: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """Load (model, vocab, meta) from a run folder or checkpoint, on CPU unless told."""
    from charrnn.engines.model import CharRNN, ModelConfig

    folder = resolve(path, which)
    meta = read_meta(folder)
    get_task(meta.get("task"))  # a task this charrnn does not know is refused in one line
    model = CharRNN(ModelConfig.from_json(meta["model"]))
    model.load_state_dict(load_weights(folder))
    model.to(device).eval()
    return model, Vocab.from_json(meta["vocab"]), meta


@dataclass
class LoadConfig(Checked):
    """Which model to load, and where to run it: the flags that sample, eval, viz and serve share."""

    run: str = knob(REQUIRED, 'a run folder (its best checkpoint) or a checkpoint folder', positional=True,
                    nonempty=True)  # fmt: skip
    checkpoint: str = knob("best", 'which checkpoint of a run folder', choices=("best", "last"))
    device: str = knob("cpu", 'where to run the model: cpu, cuda, cuda:N or mps',
                       pattern=(r"cpu|mps|cuda(:[0-9]+)?", "cpu, cuda, cuda:N or mps"))  # fmt: skip

    def load(self):
        """(model, vocab, meta), after checking these knobs."""
        self.check()
        return load_model(self.run, self.checkpoint, self.device)


def load_trainer_state(folder: Path) -> dict:
    path = Path(folder) / TRAINER
    if not path.exists():
        raise CharRNNError(f"{folder} has no {TRAINER}, so it cannot be resumed")
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)
