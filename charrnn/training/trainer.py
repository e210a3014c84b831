"""The training loop and its bookkeeping, written once for every engine.

    layout chunk (x, y) -> engine.train_step -> loss -> window -> metrics.jsonl, progress bar
                        every --eval-every steps: score validation -> best/ and last/ checkpoints

The Trainer is given its parts (build.py makes them from a TrainConfig): an engine
(engines/protocol.py), the training layout, the validation ids, the vocabulary and
a process group (one process, or a rank of a torchrun group). It owns the
bookkeeping: stop limits, the learning-rate schedule, metrics, checkpoints, signals
and the NaN roll-back. What must survive a crash is `RunState` plus the engine's
state_dict. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import gc
import math
import os
import signal
import time
from dataclasses import asdict
from pathlib import Path

from charrnn import checkpoint as ckpt
from charrnn.data.items import ItemBatches
from charrnn.errors import CharRNNError
from charrnn.evaluation import score, score_batches
from charrnn.training.config import TrainConfig, budget_used, schedule_factor
from charrnn.training.parts import Parts, RunState, TrainResult
from charrnn.training.progress_bar import ProgressBar
from charrnn.training.run_folder import RunFolder

MAX_NAN_RETRIES = 3


class Trainer:
    """Trains one process's share: all of it alone, or its rows of each batch as one
    rank of a group, where every rank runs this same code."""

    def __init__(self, config: TrainConfig, parts: Parts, run: RunState | None = None, folder: RunFolder | None = None):
        self.config, self.out, self.parts = config, Path(config.out), parts
        self.folder = folder or RunFolder(self.out, writer=parts.group.is_main)  # unlocked unless train() opened it
        self.engine, self.batches, self.group = parts.engine, parts.batches, parts.group
        self.rows = self.group.rows(config.batch_size)  # this rank's streams: rows [start, end)
        self.run_state = run or RunState()
        self.hidden = None  # hidden state of this rank's streams, carried between batches (TBPTT)
        self.last_val, self.stop_signal = None, None
        self.chunk_chars = 0  # characters in the latest step's chunk, all ranks
        self.lr = math.nan  # the learning rate of the latest step

    @property
    def step(self) -> int:
        return self.run_state.step

    # -- state that survives a crash -------------------------------------------------

    def meta(self) -> dict:
        r = self.run_state
        return {
            "engine": self.engine.name,
            "task": self.parts.task.name,
            "model": self.parts.model_json,
            "vocab": self.parts.vocab.to_json(),
            **({"labels": list(self.parts.labels)} if self.parts.labels else {}),
            "step": r.step,
            "epoch": self.epochs(),
            "metrics": {"val_loss": self.last_val, "best_val_loss": r.best_val if r.best_val < math.inf else None},
            "train": self.config.to_json(),
        }

    def save(self, which: str) -> None:
        # On every rank: the engine's state_dict gathers the hidden state and RNGs.
        trainer = None
        if which == "last" and self.engine.resumable:
            trainer = {**asdict(self.run_state), **self.engine.state_dict(self.hidden)}
        if self.group.is_main:
            ckpt.save_checkpoint(self.out / which, self.engine.weights(), self.meta(), trainer)

    def snapshot(self) -> dict:
        """An in-memory copy of everything, to roll back to after a NaN."""
        return copy.deepcopy(
            {
                "run": asdict(self.run_state),
                "engine": self.engine.state_dict(self.hidden),
                "weights": self.engine.weights(),
            }
        )

    def restore(self, snap: dict) -> None:
        self.engine.load_weights(snap["weights"])
        self.run_state = RunState.from_dict(snap["run"])
        c = self.config
        self.hidden = self.engine.load_state_dict(copy.deepcopy(snap["engine"]), c.batch_size, c.seed, self.step)

    # -- the loop ----------------------------------------------------------------------

    def budget_used(self) -> float:
        return budget_used(self.config, self.step, self.run_state.elapsed, self.batches.num_chunks)

    def learning_rate(self) -> float:
        r, c = self.run_state, self.config
        f = schedule_factor(c, r.step, self.budget_used(), self.batches.num_chunks)
        return c.lr * f * r.plateau["factor"] * r.lr_scale

    def train_step(self):
        """One optimizer step on the next batch; returns its loss (see Engine.train_step)."""
        r = self.run_state
        if r.batch_index == self.batches.num_chunks:  # epoch boundary: streams restart
            r.epoch, r.batch_index, self.hidden = r.epoch + 1, 0, None
        if self.batches.starts_fresh(r.batch_index, r.epoch):  # new streams, or new items
            self.hidden = None
        x, y = self.batches.chunk(r.batch_index, self.rows, r.epoch)  # (b, T): this rank's rows
        self.chunk_chars = self.config.batch_size * x.shape[1]  # all ranks' characters (items: T varies)
        self.lr = self.learning_rate()
        loss, self.hidden = self.engine.train_step(x, y, self.hidden, self.lr)
        r.step, r.batch_index = r.step + 1, r.batch_index + 1
        return loss

    def validation_loss(self) -> float | None:
        """Mean loss over the validation split, sharded over the ranks and summed."""
        c, val, shard = self.config, self.parts.val, (self.group.rank, self.group.world_size)
        if isinstance(val, ItemBatches):  # per target: a character (each item's end included), a label or a tag
            if len(val.items) == 0:
                return None
            total, n, _ = score_batches(self.engine, val, shard)
        elif len(val) < 2:
            return None
        else:
            total, n = score(self.engine, val, c.batch_size, c.seq_len, c.eval_chars, shard)
        total, n = self.group.reduce([total, n])
        self.last_val = total / n
        return self.last_val

    def on_plateau(self, val: float) -> None:
        p = self.run_state.plateau
        if val < p["best"]:
            p["best"], p["bad"] = val, 0
        else:
            p["bad"] += 1
            if p["bad"] > self.config.plateau_patience:
                p["factor"], p["bad"] = p["factor"] * self.config.lr_decay, 0

    def roll_back(self, good: dict, step: int, loss: float) -> None:
        retries = self.run_state.nan_retries + 1
        if retries > MAX_NAN_RETRIES:
            raise CharRNNError(
                f"the loss became {loss} at step {step} again after {MAX_NAN_RETRIES} roll-backs with a halved "
                "learning rate; lower --lr, set --grad-clip, or check the data"
            )
        scale = self.run_state.lr_scale * 0.5
        self.restore(good)
        self.run_state.nan_retries, self.run_state.lr_scale = retries, scale
        self.folder.cut_metrics(self.step)  # the steps redone from here are logged once, so curves never fold back
        self.log({"step": step, "event": "nan", "loss": str(loss), "rolled_back_to": self.step, "lr_scale": scale})

    def log(self, record: dict) -> None:
        self.folder.log(record)  # rank 0 (the writer) only

    def evaluate_and_save(self, scheduled: bool) -> float | None:
        r = self.run_state
        val = self.validation_loss()
        if val is not None:
            self.log({"step": r.step, "time": round(r.elapsed, 3), "val_loss": val, "val_bpc": val / math.log(2)})
            if scheduled and self.config.lr_schedule == "plateau":
                self.on_plateau(val)
            improved = val < r.best_val
            r.best_val = min(r.best_val, val)
        # last/ first: a failure between the two saves must not leave a run with best/ alone
        self.save("last")
        if val is None or improved:
            self.save("best")  # with no validation split, the latest is the best we know
        return val

    def run(self) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        c, r = self.config, self.run_state
        good, last_eval, train_loss = self.snapshot(), self.step, math.nan
        window = _Window(self.group)
        bar = ProgressBar(c, self.batches.num_chunks, self.step, enabled=not c.quiet and self.group.is_main)
        handlers = self._catch_signals()
        try:
            stop = self.should_stop()
            while not stop:
                t = time.perf_counter()
                window.add(self.train_step(), self.chunk_chars)
                self.run_state.elapsed += window.took(t)
                stop = self.should_stop()
                due_log = self.step % c.log_every == 0 or stop
                due_eval = self.step % c.eval_every == 0
                if not (due_log or due_eval):
                    continue
                # Read the loss before anything is saved, so no checkpoint or snapshot holds NaNs.
                train_loss, cps = window.read()  # the global mean over all B x T characters
                if not math.isfinite(train_loss):
                    self.roll_back(good, self.step, train_loss)
                    stop = self.should_stop()
                    continue
                r = self.run_state
                if due_log:
                    self.log(
                        {
                            "step": r.step,
                            "epoch": round(r.step / self.batches.num_chunks, 4),
                            "time": round(r.elapsed, 3),
                            "train_loss": train_loss,
                            "lr": self.lr,
                            "chars_per_sec": round(cps),
                        }
                    )
                if due_eval:
                    t = time.perf_counter()
                    self.evaluate_and_save(scheduled=True)
                    r.elapsed += time.perf_counter() - t  # the time budget includes evaluation
                    good, last_eval = self.snapshot(), self.step
                bar.update(self.step, r.elapsed, train_loss, cps, self.last_val)
            if self.step != last_eval or not self.group.main_says((self.out / "last").exists()):
                self.evaluate_and_save(scheduled=False)
        finally:
            bar.close()
            self._restore_signals(handlers)
        best = self.run_state.best_val if self.run_state.best_val < math.inf else None
        stopped = self.stop_signal is not None
        return TrainResult(
            self.out, self.step, train_loss, self.last_val, best, stopped, self.group.is_main, self.epochs()
        )

    def epochs(self) -> float:
        """Passes over the training layout so far (the whole ones and the share of this one)."""
        return self.run_state.epoch + self.run_state.batch_index / self.batches.num_chunks

    def should_stop(self) -> bool:
        """Whether to stop now; all ranks agree, so they stop after the same step.

        A signal may reach one rank only, and a --max-time budget runs out at slightly
        different moments on each rank: the max over ranks settles both.
        """
        signum, done = self.group.reduce([self.stop_signal or 0, self.budget_used() >= 1.0], op="max")
        if signum and self.stop_signal is None:
            self.stop_signal = int(signum)  # another rank was signalled
        return bool(signum or done)

    def _catch_signals(self):
        def handler(signum, frame):
            self.stop_signal = signum

        try:
            return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        except ValueError:  # not the main thread: leave signals alone
            return {}

    def _restore_signals(self, handlers) -> None:
        for s, h in handlers.items():
            signal.signal(s, h)


class _Window:
    """Training loss and speed since the last read. A PyTorch loss stays on its device
    until read, so logging does not force a GPU sync at every step."""

    def __init__(self, group):
        self.group = group
        self.loss, self.steps, self.chars, self.seconds = 0.0, 0, 0, 0.0

    def add(self, loss, chars: int) -> None:
        self.loss = self.loss + loss
        self.steps, self.chars = self.steps + 1, self.chars + chars

    def took(self, start: float) -> float:
        dt = time.perf_counter() - start
        self.seconds += dt
        return dt

    def read(self) -> tuple[float, float]:
        """(mean loss in nats, training chars/s) over the window, and start a new one."""
        t = time.perf_counter()
        loss = float(self.group.mean(self.loss / self.steps))  # on a GPU this waits for the queued steps: count it
        self.seconds += time.perf_counter() - t
        cps = self.chars / max(self.seconds, 1e-9)
        self.loss, self.steps, self.chars, self.seconds = 0.0, 0, 0, 0.0
        return loss, cps


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train a model as `config` says (continuing the run in config.out if `resume`).

    Under torchrun this process is one rank of a data-parallel run (distributed.py);
    --nproc, which starts torchrun, is the CLI's job (cli.py).
    """
    from charrnn.training.build import accept, build_trainer

    config = accept(config, resume)  # a bad config is refused before the run folder is touched
    # One writer per run folder: locked, tidied and its metrics cut back before anything
    # reads it. Under torchrun, rank 0 writes (RANK is set before any process group exists).
    with RunFolder.open(config.out, resume, writer=int(os.environ.get("RANK", "0")) == 0) as folder:
        trainer, group = build_trainer(config, resume, folder)
        with group.errors():
            result = trainer.run()
    # The trainer sits in reference cycles, and its DDP module holds the process group:
    # left to the collector, gloo's group outlived destroy_process_group and was torn
    # down in interpreter shutdown, where a rank now and then died with SIGABRT
    # ("terminate called without an active exception") after a clean stop.
    del trainer
    gc.collect()
    # Only after success: with a rank gone, tearing the group down may itself block
    # (NCCL), and the process is about to exit anyway.
    group.close()
    return result
