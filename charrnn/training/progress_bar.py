"""The training progress bar (tqdm): chars/s, loss, validation bpc and an ETA.

It is given numbers, not the trainer: the step, the seconds spent, the latest losses.
"""

from __future__ import annotations

import math

from tqdm import tqdm


class ProgressBar:
    def __init__(self, config, steps_per_epoch: int, step: int, enabled: bool = True):
        """config: the TrainConfig whose limits (--max-steps, --max-epochs, --max-time) end the run."""
        self.max_time = config.max_time
        limits = [config.max_steps] if config.max_steps else []
        if config.max_epochs:
            limits.append(math.ceil(config.max_epochs * steps_per_epoch))
        self.total = min(limits) if limits else None
        self.bar = tqdm(total=self.total, initial=step, unit="step", disable=not enabled, dynamic_ncols=True)
        self.cps, self.val = 0.0, None

    def update(self, step: int, elapsed: float, loss: float, cps: float | None, val: float | None = None) -> None:
        if cps is not None:
            self.cps = cps
        if val is not None:
            self.val = val
        if self.max_time and elapsed > 0:  # a time budget may end the run before the step limit
            steps_left = (self.max_time - elapsed) * step / elapsed  # at the run's mean rate (items vary in length)
            by_time = step + max(0, math.ceil(steps_left))
            self.bar.total = min(self.total, by_time) if self.total else by_time
        parts = [f"loss {loss:.3f}"]
        if self.val is not None:
            parts.append(f"val bpc {self.val / math.log(2):.3f}")
        parts.append(f"{self.cps / 1000:.1f}k chars/s")
        self.bar.set_postfix_str(" | ".join(parts), refresh=False)
        self.bar.update(step - self.bar.n)

    def close(self) -> None:
        self.bar.close()
