"""What every export shares: the task check, the export config, atomic writes, hashes.

An export is written like a checkpoint: into a temporary file beside its destination,
flushed to disk and swapped in with os.replace, so a crash or an error at any moment
leaves the old file (or none) whole, never half of a new one. Each export records a
SHA-256 of its own content, so charrnn notices when a copy was damaged on the way.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.knobs import Checked, knob, like
from charrnn.load import LoadConfig

# The tasks whose model is a next-character stepper that the HTML page and the ONNX
# step graph can run. A checkpoint without a "task" field predates tasks: it is next-char.
EXPORTABLE_TASKS = ("next-char",)
PRECISIONS = ("float32", "float16")


@dataclass
class ExportConfig(Checked):
    run: str | None = knob(
        None,
        "a run folder (its best checkpoint) or a checkpoint folder; not with --verify",
        positional=True,
        nonempty=True,
    )
    checkpoint: str = like(LoadConfig, "checkpoint")
    html: str | None = knob(
        None, "write one self-contained HTML page that generates text in any browser, to this file", nonempty=True
    )
    onnx: str | None = knob(
        None, "write the step function as an ONNX graph, to this file (needs charrnn[export])", nonempty=True
    )
    precision: str = knob(
        "float32",
        "the HTML page's weights: float32 gives charrnn's own probabilities "
        "(within 1e-6); float16 halves the file and moves them by about 1e-4 to 1e-3",
        choices=PRECISIONS,
    )
    verify: str | None = knob(
        None,
        "instead of exporting: verify an exported .html or .onnx file, say what it holds",
        nonempty=True,
        metavar="FILE",
    )

    def rules(self) -> None:
        if self.verify is not None:
            if self.run is not None or self.html or self.onnx:
                raise CharRNNError("--verify FILE verifies an export on its own: give no RUN, --html or --onnx with it")
            return
        if self.run is None:
            raise CharRNNError("give a RUN folder to export, or --verify FILE to verify an export")
        if not (self.html or self.onnx):
            raise CharRNNError("say what to write: --html FILE, --onnx FILE, or both")


def task_of(meta: dict) -> str:
    """The checkpoint's task; checkpoints written before tasks existed are next-character models."""
    return meta.get("task") or "next-char"


def check_exportable(meta: dict, what: str) -> None:
    task = task_of(meta)
    if task not in EXPORTABLE_TASKS:
        supported = ", ".join(EXPORTABLE_TASKS)
        raise CharRNNError(f"{what} export supports only the {supported} task; this run's task is {task!r}")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file and os.replace: all of it or nothing."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CharRNNError(f"{path} is a folder; give a file name to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left over if something above failed
    return path


def damaged(path: Path, why: str, how: str) -> CharRNNError:
    """The one-line error for an export that fails its check."""
    return CharRNNError(f"{path} is damaged ({why}); {how}")
