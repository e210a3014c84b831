"""The training progress bar (tqdm): chars/s, loss, validation bpc and ETA."""

from __future__ import annotations

import math

from tqdm import tqdm


class Progress:
    def __init__(self, trainer, enabled: bool = True):
        self.trainer = trainer
        c = trainer.config
        limits = [c.max_steps] if c.max_steps else []
        if c.max_epochs:
            limits.append(math.ceil(c.max_epochs * trainer.batches.num_batches))
        self.total = min(limits) if limits else None
        self.bar = tqdm(total=self.total, initial=trainer.step, unit="step", disable=not enabled, dynamic_ncols=True)
        self.loss, self.cps, self.val = math.nan, 0.0, trainer.last_val

    def update(self, loss: float, cps: float | None, val: float | None = None) -> None:
        t = self.trainer
        self.loss = loss
        if cps is not None:
            self.cps = cps
        if val is not None:
            self.val = val
        c = t.config
        if c.max_time and self.cps:  # a time budget may end the run before the step limit
            steps_left = (c.max_time - t.elapsed) * self.cps / (c.batch_size * c.seq_len)
            by_time = t.step + max(0, math.ceil(steps_left))
            self.bar.total = min(self.total, by_time) if self.total else by_time
        parts = [f"loss {self.loss:.3f}"]
        if self.val is not None:
            parts.append(f"val bpc {self.val / math.log(2):.3f}")
        parts.append(f"{self.cps / 1000:.1f}k chars/s")
        self.bar.set_postfix_str(" | ".join(parts), refresh=False)
        self.bar.update(t.step - self.bar.n)

    def close(self) -> None:
        self.bar.close()
