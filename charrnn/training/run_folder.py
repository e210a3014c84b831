"""The run folder as a whole: one writer at a time, nothing left behind, metrics that never fold back.

    runs/NAME/
      .lock             flock()ed (through filelock) by the one process writing the run, for its
                        whole life; the kernel drops it when that process dies, even by SIGKILL
      .lock.pid         that process's PID, for the error a second writer gets
      metrics.jsonl     one JSON object a line, each with its "step"
      last/ best/       the checkpoints (checkpoint.py writes and checks them)
      .last.tmpPID      a checkpoint being written; left behind by a kill, removed at the next start
      .last.old         the previous checkpoint during a swap; restored or removed at the next start

`with RunFolder.open(out, resume) as folder:` around a run takes the lock, tidies the
folder, cuts metrics.jsonl back to the checkpoint the run continues from, and, if the
run fails before it saved anything, removes what it made, so a failed start never
blocks the next one. `folder.log(record)` appends to metrics.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from charrnn import checkpoint as ckpt
from charrnn.errors import CharRNNError, os_error

LOCK, PID, METRICS = ".lock", ".lock.pid", "metrics.jsonl"


class RunFolder:
    """A run folder. Only a `writer` (rank 0, or the only process) locks it and writes metrics."""

    def __init__(self, out: str | Path, writer: bool = True):
        self.out, self.writer = Path(out), writer
        self._lock: FileLock | None = None

    @classmethod
    @contextlib.contextmanager
    def open(cls, out: str | Path, resume: bool, writer: bool = True) -> Iterator[RunFolder]:
        """Hold `out` for one run (a new one, or a --resume) for as long as the block lasts."""
        folder = cls(out, writer)
        if not writer:
            yield folder
            return
        made = folder._create()
        folder._acquire()
        try:
            folder._tidy()
            if not resume and ckpt.has_checkpoint(folder.out):
                raise CharRNNError(
                    f"{folder.out} already holds a run; pass --resume to continue it or choose another --out"
                )
            step = ckpt.read_meta(ckpt.resolve(folder.out, "last"))["step"] if resume else 0
            folder.cut_metrics(step)
            yield folder
        except BaseException:
            folder._remove_if_unsaved(made)  # a failed start (bad flag, Ctrl-C, no data) leaves nothing
            raise
        finally:
            folder._release()

    # -- the lock ------------------------------------------------------------------------

    def _create(self) -> list[Path]:
        """mkdir -p the folder; the folders it made, outermost first. A file in the way is a clean error."""
        made, path = [], self.out
        while not path.exists() and path != path.parent:
            made.append(path)
            path = path.parent
        if not path.is_dir():
            what = "is a file" if path == self.out else f"cannot be made: {path} is a file"
            raise CharRNNError(f"--out {self.out} {what}, not a folder; choose another --out")
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise os_error(e, f"make the run folder {self.out}", hint=" with --out") from None
        return made[::-1]

    def _acquire(self) -> None:
        lock = FileLock(self.out / LOCK, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise CharRNNError(
                f"{self.out} is being written by another charrnn process ({self.holder()}); "
                "wait for it to finish or stop it, or choose another --out"
            ) from None
        except OSError as e:
            raise os_error(e, f"write to the run folder {self.out}") from None
        self._lock = lock
        try:
            (self.out / PID).write_text(f"{os.getpid()}\n")
        except OSError as e:
            self._release()
            raise os_error(e, f"write to the run folder {self.out}") from None

    def holder(self) -> str:
        """'PID 1234': who holds the lock, as far as its PID file says."""
        with contextlib.suppress(OSError, ValueError):
            return f"PID {int((self.out / PID).read_text())}"
        return "PID unknown: it is still starting"

    def _release(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                (self.out / PID).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    # -- nothing left behind ---------------------------------------------------------------

    def _tidy(self) -> None:
        """Remove what killed writers left: half-written checkpoints, and a swap's old copy
        (put back in place if the kill fell between the swap's two renames)."""
        for path in self.out.iterdir():
            name = path.name
            if name.startswith((".last.tmp", ".best.tmp")):
                shutil.rmtree(path, ignore_errors=True)
            elif name in (".last.old", ".best.old"):
                live = self.out / name[1:].removesuffix(".old")
                if (live / ckpt.META).exists():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    shutil.rmtree(live, ignore_errors=True)
                    os.rename(path, live)

    def _remove_if_unsaved(self, made: list[Path]) -> None:
        """After a failed start that saved no checkpoint: remove the metrics and the folders it made."""
        if any((self.out / name / ckpt.META).exists() for name in ("last", "best")):
            return
        with contextlib.suppress(OSError):
            (self.out / METRICS).unlink(missing_ok=True)
            if made:
                self._release()
                (self.out / LOCK).unlink(missing_ok=True)
                for path in reversed(made):
                    path.rmdir()

    # -- metrics ---------------------------------------------------------------------------

    def cut_metrics(self, step: int) -> None:
        """Keep the records up to `step` (the checkpoint a run continues from) and drop the rest,
        and any line a kill cut short, so that steps only ever grow."""
        path = self.out / METRICS
        if not path.exists():
            return
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        kept = [ln for ln in lines if ln.endswith("\n") and _step(ln) is not None and _step(ln) <= step]
        if kept == lines:
            return
        tmp = path.with_name(f".{METRICS}.tmp{os.getpid()}")
        try:
            tmp.write_text("".join(kept))
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise os_error(e, f"cut {path} back to step {step}") from None

    def log(self, record: dict) -> None:
        """Append one record to metrics.jsonl (the writer only)."""
        if not self.writer:
            return
        path = self.out / METRICS
        try:
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:
            raise os_error(e, f"append to {path} (the last checkpoint is intact: --resume continues it)") from None


def _step(line: str) -> int | None:
    try:
        step = json.loads(line).get("step")
    except (ValueError, AttributeError):
        return None
    return step if isinstance(step, int) else None
