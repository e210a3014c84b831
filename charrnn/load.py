"""Loading a trained model to use it: LoadConfig, the flags that sample, eval, viz, serve and
export share (which run, which checkpoint, which device), and load_model, which builds the
PyTorch CharRNN a checkpoint describes and fills it. The checkpoint format itself, and every
check made when reading it, is checkpoint.py's."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn.checkpoint import META, advice, load_into, read_meta, resolve
from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError
from charrnn.knobs import REQUIRED, Checked, knob
from charrnn.tasks import get_task

if TYPE_CHECKING:
    import torch


def check_device(name: str) -> None:
    """Refuse, in one line, a device this PyTorch cannot run on: torch itself says so with an
    AssertionError or RuntimeError only once a tensor is moved there. ("auto" is train's choice.)"""
    import torch

    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise CharRNNError(f"--device {name} was asked for but PyTorch sees no CUDA GPU; use --device cpu")
        index = int(name.partition(":")[2] or 0)
        if index >= count:
            raise CharRNNError(
                f"--device {name} was asked for but PyTorch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}; "
                "choose one of them or --device cpu"
            )
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CharRNNError("--device mps was asked for but this machine has no MPS; use --device cpu")


def load_model(path: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """Load (model, vocab, meta) from a run folder or checkpoint, on CPU unless told."""
    from charrnn.engines.model import CharRNN, ModelConfig

    check_device(str(device))
    folder = resolve(path, which)
    meta = read_meta(folder)
    get_task(meta.get("task"))  # a task this charrnn does not know is refused in one line
    try:
        config = ModelConfig.from_json(meta["model"])
        model = CharRNN(config)
    except (KeyError, TypeError, ValueError) as e:
        raise CharRNNError(
            f"{folder / META} is damaged (its model config cannot be read: {type(e).__name__} {e}){advice(folder)}"
        ) from None
    load_into(folder, model, meta)
    model.to(device).eval()
    return model, Vocab.from_json(meta["vocab"]), meta


@dataclass
class LoadConfig(Checked):
    """Which model to load, and where to run it: the flags that sample, eval, viz and serve share."""

    run: str = knob(
        REQUIRED, "a run folder (its best checkpoint) or a checkpoint folder", positional=True, nonempty=True
    )
    checkpoint: str = knob("best", "which checkpoint of a run folder", choices=("best", "last"))
    device: str = knob(
        "cpu",
        "where to run the model: cpu, cuda, cuda:N or mps",
        pattern=(r"cpu|mps|cuda(:[0-9]+)?", "cpu, cuda, cuda:N or mps"),
    )

    def check(self) -> None:
        super().check()
        check_device(self.device)  # here, so that every command refuses it before it reads any data

    def load(self):
        """(model, vocab, meta), after checking these knobs."""
        self.check()
        return load_model(self.run, self.checkpoint, self.device)
