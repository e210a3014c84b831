"""Training: the loop, with resume, NaN roll-back and signals (the config is in train_config.py).

`train(TrainConfig(...))` is the whole of `charrnn train`. The Trainer owns the
state that must survive a crash (weights, optimizer, schedule, RNG, data position,
hidden state) and can turn it into plain tensors and numbers and back, which is
what checkpoints, `--resume` and the NaN roll-back all use.
"""

from __future__ import annotations

import copy
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn import checkpoint as ckpt
from charrnn.data.corpus import StreamBatches, load_corpus
from charrnn.training.distributed import Dist, launched
from charrnn.errors import CharRNNError
from charrnn.evaluation import score
from charrnn.engines.model import CharRNN, detach_state, loss_fn
from charrnn.training.progress_bar import Progress
from charrnn.training.run_folder import RunFolder
from charrnn.training.config import (  # noqa: F401  (re-exported: the training API lives here)
    OPTIMIZERS, SCHEDULES, TrainConfig, make_optimizer, pick_device, progress, resumed_config, schedule_factor,
)
from charrnn.data.vocab import Vocab

MAX_NAN_RETRIES = 3


@dataclass
class TrainResult:
    out: Path
    step: int
    train_loss: float
    val_loss: float | None
    best_val_loss: float | None
    interrupted: bool = False
    is_main: bool = True  # rank 0 (or the only process): the one that reports


class Trainer:
    """Trains one process's share: all of it alone, or its rows of each batch as one rank
    of a `Dist` group (see distributed.py), where every rank runs this same code."""

    def __init__(self, config: TrainConfig, resume: bool = False, dist: Dist | None = None,
                 folder: RunFolder | None = None):
        config.validate()
        self.config, self.out, self.dist = config, Path(config.out), dist or Dist()
        self.folder = folder or RunFolder(self.out, writer=self.dist.is_main)  # unlocked unless train() opened it
        if not resume and ckpt.has_checkpoint(self.out):
            raise CharRNNError(f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = self.dist.device or pick_device(config.device)
        saved = ckpt.read_meta(ckpt.resolve(self.out, "last")) if resume else None
        vocab = Vocab.from_json(saved["vocab"]) if saved else None
        corpus = load_corpus(config.data, vocab)
        self.vocab = corpus.vocab
        train_ids, val_ids, _ = corpus.split(config.data.val_fraction, config.data.test_fraction)
        self.batches = StreamBatches(train_ids, config.batch_size, config.seq_len)
        self.rows = self.dist.rows(config.batch_size)  # this rank's streams: rows [start, end) of each batch
        self.val_ids = val_ids
        config.model.vocab_size = self.vocab.size
        torch.manual_seed(config.seed)
        self.model = CharRNN(config.model).to(self.device)
        self.net = self.dist.wrap(self.model)  # what the training step runs: the model, or DDP around it
        self.dist.seed_rank(config.seed)
        self.optimizer = make_optimizer(config, self.model.parameters())
        self.step = self.batch_index = self.epoch = 0
        self.state = None  # hidden state of this rank's streams, carried between batches (TBPTT)
        self.lr_scale = 1.0  # halved on each NaN roll-back
        self.plateau = {"best": math.inf, "bad": 0, "factor": 1.0}
        self.best_val, self.last_val, self.elapsed, self.nan_retries = math.inf, None, 0.0, 0
        if resume:
            self.load_state_dict(ckpt.load_trainer_state(ckpt.resolve(self.out, "last")), ckpt.load_weights(ckpt.resolve(self.out, "last")))
        self.stop_signal = None

    # -- state that survives a crash -------------------------------------------------

    def state_dict(self) -> dict:
        """Everything to continue from (all ranks call it: it gathers the hidden state and RNGs)."""
        hidden = self.dist.gather_rows(self.state)  # (L, B, H) each: all streams, whatever N is
        return {
            "optimizer": self.optimizer.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_index": self.batch_index,
            "hidden": [s.cpu() for s in hidden] if hidden is not None else [],
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "rng_ranks": self.dist.gather_rng(), "world_size": self.dist.world_size,
            "lr_scale": self.lr_scale, "plateau": dict(self.plateau), "best_val": self.best_val,
            "elapsed": self.elapsed, "nan_retries": self.nan_retries,
        }  # fmt: skip

    def load_state_dict(self, d: dict, weights: dict) -> None:
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(d["optimizer"])
        self.step, self.epoch, self.batch_index = d["step"], d["epoch"], d["batch_index"]
        self.state = self.dist.take_rows(tuple(s.to(self.device) for s in d["hidden"]) or None, self.config.batch_size)
        torch.set_rng_state(d["rng_cpu"])
        if d["rng_cuda"] and self.device.type == "cuda" and not self.dist.active:
            torch.cuda.set_rng_state_all(d["rng_cuda"])
        self.dist.restore_rng(d.get("rng_ranks", []), self.config.seed, self.step)
        self.lr_scale, self.plateau, self.best_val = d["lr_scale"], dict(d["plateau"]), d["best_val"]
        self.elapsed, self.nan_retries = d["elapsed"], d["nan_retries"]

    def snapshot(self) -> dict:
        """An in-memory copy of everything, to roll back to after a NaN."""
        return copy.deepcopy({"trainer": self.state_dict(), "weights": self.model.state_dict()})

    def meta(self) -> dict:
        return {
            "engine": "torch", "model": self.config.model.to_json(), "vocab": self.vocab.to_json(),
            "step": self.step, "epoch": self.epoch + self.batch_index / self.batches.num_batches,
            "metrics": {"val_loss": self.last_val, "best_val_loss": self.best_val if self.best_val < math.inf else None},
            "train": self.config.to_json(),
        }  # fmt: skip

    def save(self, which: str) -> None:
        trainer = self.state_dict() if which == "last" else None  # on every rank: it gathers
        if self.dist.is_main:
            ckpt.save_checkpoint(self.out / which, self.model.state_dict(), self.meta(), trainer)

    # -- the loop ----------------------------------------------------------------------

    def progress(self) -> float:
        return progress(self.config, self.step, self.elapsed, self.batches.num_batches)

    def set_lr(self) -> float:
        f = schedule_factor(self.config, self.step, self.progress(), self.batches.num_batches)
        lr = self.config.lr * f * self.plateau["factor"] * self.lr_scale
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the next batch; returns the (detached) loss in nats."""
        if self.batch_index == self.batches.num_batches:  # epoch boundary: streams restart
            self.epoch, self.batch_index, self.state = self.epoch + 1, 0, None
        x, y = self.batches.get(self.batch_index, *self.rows)  # (b, T): this rank's streams
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        self.model.train()
        logits, state = self.net(x, self.state)
        loss = loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip, foreach=True)
        self.set_lr()
        self.optimizer.step()
        self.state = detach_state(state)
        self.step, self.batch_index = self.step + 1, self.batch_index + 1
        return loss.detach()

    def validate(self) -> float | None:
        if len(self.val_ids) < 2:
            return None
        c = self.config
        # Sharded: each rank scores its share of the validation streams; sums are then all-reduced.
        shard = (self.dist.rank, self.dist.world_size)
        total, n = score(self.model, self.val_ids, c.batch_size, c.seq_len, c.eval_chars, self.device, shard)
        total, n = self.dist.reduce([total, n])
        self.last_val = total / n
        return self.last_val

    def on_plateau(self, val: float) -> None:
        p = self.plateau
        if val < p["best"]:
            p["best"], p["bad"] = val, 0
        else:
            p["bad"] += 1
            if p["bad"] > self.config.plateau_patience:
                p["factor"], p["bad"] = p["factor"] * self.config.lr_decay, 0

    def finished(self) -> bool:
        return self.progress() >= 1.0

    def roll_back(self, good: dict, step: int, loss: float) -> None:
        self.nan_retries += 1
        if self.nan_retries > MAX_NAN_RETRIES:
            raise CharRNNError(
                f"the loss became {loss} at step {step} again after {MAX_NAN_RETRIES} roll-backs with a halved "
                "learning rate; lower --lr, set --grad-clip, or check the data"
            )
        retries, scale = self.nan_retries, self.lr_scale * 0.5
        self.load_state_dict(copy.deepcopy(good["trainer"]), good["weights"])
        self.nan_retries, self.lr_scale = retries, scale
        self.log({"step": step, "event": "nan", "loss": str(loss), "rolled_back_to": self.step, "lr_scale": scale})

    def log(self, record: dict) -> None:
        self.folder.log(record)

    def evaluate_and_save(self, scheduled: bool) -> float | None:
        val = self.validate()
        if val is not None:
            self.log({"step": self.step, "time": round(self.elapsed, 3), "val_loss": val, "val_bpc": val / math.log(2)})
            if scheduled and self.config.lr_schedule == "plateau":
                self.on_plateau(val)
            if val < self.best_val:
                self.best_val = val
                self.save("best")
        self.save("last")
        if val is None:
            self.save("best")  # no validation split: the latest is the best we know
        return val

    def run(self) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        c = self.config
        good, last_eval, train_loss = self.snapshot(), self.step, math.nan
        window = _Window(self.device, c.batch_size * c.seq_len, self.dist)
        bar = Progress(self, enabled=not c.quiet and self.dist.is_main)
        handlers = self._catch_signals()
        try:
            stop = self.should_stop()
            while not stop:
                t = time.perf_counter()
                window.add(self.train_step())
                self.elapsed += window.took(t)
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
                if due_log:
                    self.log({"step": self.step, "epoch": round(self.step / self.batches.num_batches, 4),
                              "time": round(self.elapsed, 3), "train_loss": train_loss,
                              "lr": self.optimizer.param_groups[0]["lr"], "chars_per_sec": round(cps)})  # fmt: skip
                if due_eval:
                    t = time.perf_counter()
                    self.evaluate_and_save(scheduled=True)
                    self.elapsed += time.perf_counter() - t  # the time budget includes evaluation
                    good, last_eval = self.snapshot(), self.step
                bar.update(train_loss, cps, self.last_val)
            if self.step != last_eval or not self.dist.main_says((self.out / "last").exists()):
                self.evaluate_and_save(scheduled=False)
        finally:
            bar.close()
            self._restore_signals(handlers)
        best = self.best_val if self.best_val < math.inf else None
        return TrainResult(self.out, self.step, train_loss, self.last_val, best, self.stop_signal is not None, self.dist.is_main)

    def should_stop(self) -> bool:
        """Whether to stop now; all ranks agree, so they stop after the same step.

        A signal may reach one rank only, and a --max-time budget runs out at slightly
        different moments on each rank: the max over ranks settles both.
        """
        signum, done = self.dist.reduce([self.stop_signal or 0, self.finished()], op="max")
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
    """Training loss and speed since the last read. The loss stays on the device until
    read, so logging does not force a GPU sync at every step."""

    def __init__(self, device: torch.device, chars_per_step: int, dist: Dist):
        self.chars_per_step, self.zero, self.dist = chars_per_step, torch.zeros((), device=device), dist
        self.loss, self.steps, self.seconds = self.zero.clone(), 0, 0.0

    def add(self, loss: torch.Tensor) -> None:
        self.loss += loss
        self.steps += 1

    def took(self, start: float) -> float:
        dt = time.perf_counter() - start
        self.seconds += dt
        return dt

    def read(self) -> tuple[float, float]:
        """(mean loss in nats, training chars/s) over the window, and start a new one."""
        t = time.perf_counter()
        loss = self.dist.mean(self.loss / self.steps).item()  # on a GPU this waits for the queued steps: count it
        self.seconds += time.perf_counter() - t
        cps = self.steps * self.chars_per_step / max(self.seconds, 1e-9)
        self.loss, self.steps, self.seconds = self.zero.clone(), 0, 0.0
        return loss, cps


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train a model as `config` says (continuing the run in config.out if `resume`).

    Under torchrun this process is one rank of a data-parallel run (distributed.py);
    --nproc, which starts torchrun, is the CLI's job (cli.py).
    """
    if config.engine == "reference":
        from charrnn.reference.trainer import train_reference

        return train_reference(config, resume)
    if config.nproc and not launched():
        raise CharRNNError("--nproc starts torchrun from the command line (charrnn train --nproc N); "
                           "from Python, run your script under torchrun instead")  # fmt: skip
    dist = Dist.from_env(config.device, config.dist_timeout)
    with dist.errors(), RunFolder.open(config.out, resume, writer=dist.is_main) as folder:
        result = Trainer(config, resume, dist, folder).run()
    # Only after success: with a rank gone, tearing the group down may itself block
    # (NCCL), and the process is about to exit anyway.
    dist.close()
    return result
