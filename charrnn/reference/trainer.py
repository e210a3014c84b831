"""`charrnn train --engine reference`: the training loop with the NumPy engine.

It reads the same TrainConfig, the same data (charrnn.data.corpus's cache and TBPTT
batches, which is why this one module imports torch) and writes the same run folder
as the PyTorch engine: metrics.jsonl, last/ and best/, whose checkpoints `charrnn
sample` and `charrnn eval` load unchanged. Each step is the article's recipe:

    loss, grads = forward and backward through T steps of B streams (model.py)
    clip the gradients' joint norm (--grad-clip), then update (--optimizer, --lr)
    carry the final hidden state into the next batch, cutting the gradient there

Not available here, with a clear error: --resume, dropout, tied weights, the adamw
optimizer, the plateau schedule, and devices other than the CPU.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from charrnn import checkpoint as ckpt
from charrnn.data.corpus import StreamBatches, load_corpus
from charrnn.errors import CharRNNError
from charrnn.training.progress_bar import Progress
from charrnn.training.run_folder import RunFolder
from charrnn.reference.checkpoint import save
from charrnn.reference.model import CharRNN, ModelConfig
from charrnn.reference.optim import OPTIMIZERS, clip_grad_norm, make_optimizer
from charrnn.training.trainer import TrainConfig, TrainResult, schedule_factor
from charrnn.training.config import progress


def check_config(config: TrainConfig, resume: bool) -> None:
    """Reject, at once, what the reference engine does not do."""
    config.validate()
    if resume:
        raise CharRNNError("--engine reference cannot --resume a run; start a new --out")
    if config.optimizer not in OPTIMIZERS:
        choices = ", ".join(OPTIMIZERS)
        raise CharRNNError(f"--engine reference has no --optimizer {config.optimizer}: choose one of {choices}")
    if config.lr_schedule == "plateau":
        raise CharRNNError("--engine reference has no --lr-schedule plateau: choose constant, cosine or step")
    if config.device not in ("auto", "cpu"):
        raise CharRNNError(f"--engine reference runs on the CPU with NumPy: drop --device {config.device}")
    ModelConfig.from_json(config.model.to_json())  # rejects dropout and tied weights


def evaluate(model: CharRNN, ids: np.ndarray, batch_size: int, seq_len: int, max_chars: int = 0) -> float:
    """Mean cross-entropy (nats) over `ids` read as B streams with the state carried
    across chunks of T: the same streams and scoring as charrnn.evaluation.evaluate."""
    if max_chars:
        ids = ids[: max_chars + 1]
    n = len(ids) - 1
    B = max(1, min(batch_size, n // seq_len))
    L = n // B
    rows, total, state = np.arange(B)[:, None] * L, 0.0, None
    for start in range(0, L, seq_len):
        chunk = np.asarray(ids[rows + start + np.arange(min(seq_len, L - start) + 1)], dtype=np.int64)
        logits, state, _ = model.forward(chunk[:, :-1], state)
        z = logits - logits.max(axis=-1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
        total -= np.take_along_axis(log_p, chunk[:, 1:, None], axis=-1).sum()
    return float(total / (B * L))


class ReferenceTrainer:
    """The reference engine's counterpart of charrnn.training.trainer.Trainer (without resume)."""

    def __init__(self, config: TrainConfig, resume: bool = False, folder: RunFolder | None = None):
        check_config(config, resume)
        self.config, self.out = config, Path(config.out)
        self.folder = folder or RunFolder(self.out)  # unlocked unless train_reference() opened it
        if ckpt.has_checkpoint(self.out):
            raise CharRNNError(f"{self.out} already holds a run; choose another --out")
        corpus = load_corpus(config.data)
        self.vocab = corpus.vocab
        train_ids, self.val_ids, _ = corpus.split(config.data.val_fraction, config.data.test_fraction)
        self.batches = StreamBatches(train_ids, config.batch_size, config.seq_len)
        config.model.vocab_size = self.vocab.size
        self.model = CharRNN(ModelConfig.from_json(config.model.to_json()), rng=config.seed)
        self.optimizer = make_optimizer(config.optimizer, config.lr, config.momentum, config.weight_decay)
        self.step = self.batch_index = self.epoch = 0
        self.state = None  # hidden state carried between batches (TBPTT)
        self.best_val, self.last_val, self.elapsed = math.inf, None, 0.0

    def train_step(self) -> float:
        """One optimizer step on the next batch; returns its loss in nats."""
        c = self.config
        if self.batch_index == self.batches.num_batches:  # epoch boundary: streams restart
            self.epoch, self.batch_index, self.state = self.epoch + 1, 0, None
        x, y = (t.numpy() for t in self.batches.get(self.batch_index))
        loss, grads, self.state = self.model.loss(x, y, self.state)
        if c.grad_clip:
            clip_grad_norm(grads, c.grad_clip)
        self.optimizer.lr = c.lr * schedule_factor(c, self.step, self.progress(), self.batches.num_batches)
        self.optimizer.step(self.model.params(), grads)
        self.step, self.batch_index = self.step + 1, self.batch_index + 1
        return loss

    def progress(self) -> float:
        return progress(self.config, self.step, self.elapsed, self.batches.num_batches)

    def finished(self) -> bool:
        return self.progress() >= 1.0

    def log(self, record: dict) -> None:
        self.folder.log(record)

    def save(self, which: str) -> None:
        best = self.best_val if self.best_val < math.inf else None
        epoch = self.epoch + self.batch_index / self.batches.num_batches
        metrics = {"val_loss": self.last_val, "best_val_loss": best}
        meta = {"step": self.step, "epoch": epoch, "metrics": metrics, "train": self.config.to_json()}
        save(self.out / which, self.model, self.vocab, meta)

    def evaluate_and_save(self) -> None:
        c = self.config
        if len(self.val_ids) >= 2:
            self.last_val = evaluate(self.model, self.val_ids, c.batch_size, c.seq_len, c.eval_chars)
            self.log({"step": self.step, "time": round(self.elapsed, 3), "val_loss": self.last_val,
                      "val_bpc": self.last_val / math.log(2)})  # fmt: skip
            if self.last_val < self.best_val:
                self.best_val = self.last_val
                self.save("best")
        else:
            self.save("best")  # no validation split: the latest is the best we know
        self.save("last")

    def run(self) -> TrainResult:
        self.out.mkdir(parents=True, exist_ok=True)
        c, tokens = self.config, self.config.batch_size * self.config.seq_len
        bar = Progress(self, enabled=not c.quiet)
        losses, train_loss, last_eval = [], math.nan, -1
        t0, t_log, step_log = time.perf_counter(), time.perf_counter(), 0
        try:
            while not self.finished():
                losses.append(self.train_step())
                self.elapsed = time.perf_counter() - t0
                if self.step % c.log_every == 0 or self.finished():
                    train_loss, losses = float(np.mean(losses)), []
                    if not math.isfinite(train_loss):
                        at = f"the loss became {train_loss} at step {self.step}"
                        raise CharRNNError(f"{at}; lower --lr or set --grad-clip")
                    now = time.perf_counter()
                    cps = (self.step - step_log) * tokens / max(now - t_log, 1e-9)
                    t_log, step_log = now, self.step
                    self.log({"step": self.step, "epoch": round(self.step / self.batches.num_batches, 4),
                              "time": round(self.elapsed, 3), "train_loss": train_loss, "lr": self.optimizer.lr,
                              "chars_per_sec": round(cps), "engine": "reference"})  # fmt: skip
                    bar.update(train_loss, cps)
                if self.step % c.eval_every == 0:
                    self.evaluate_and_save()
                    last_eval = self.step
                    bar.update(train_loss, None, self.last_val)
        finally:
            bar.close()
        if self.step != last_eval:
            self.evaluate_and_save()
        best = self.best_val if self.best_val < math.inf else None
        return TrainResult(self.out, self.step, train_loss, self.last_val, best)


def train_reference(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train as `config` says with the NumPy engine."""
    check_config(config, resume)  # before the folder is touched: it cannot resume
    with RunFolder.open(config.out, resume) as folder:
        return ReferenceTrainer(config, resume, folder).run()
