"""The PyTorch engine: CharRNN (model.py) behind the engine protocol (protocol.py).

It owns what only PyTorch knows about: the device, the optimizer, the random
generators, and, under torchrun, the DistributedDataParallel wrapper and this
rank's rows of the hidden state (training/distributed.py). The trainer above it
hands it NumPy chunks from the layout and gets back a loss and an opaque state.

Shapes: x, y (b, T) int64 (b = this rank's rows of the B streams); state a tuple of
(L, b, H) tensors, (h,) or (h, c) for LSTM.
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.engines.model import CharRNN, State, detach_state, row_lengths
from charrnn.engines.precision import autocast


class TorchEngine:
    name = "torch"
    resumable = True  # its state_dict() goes into trainer.pt (torch.save, loaded weights_only)

    def __init__(
        self,
        model: CharRNN,
        device: torch.device | str = "cpu",
        optimizer: torch.optim.Optimizer | None = None,
        grad_clip: float = 0.0,
        dist=None,
        threads=None,  # engines/threads.py AdaptiveThreads: ticked between steps on the CPU; None: fixed
        precision: str = "fp32",  # or bf16: autocast around the forward pass and loss (engines/precision.py)
    ):
        from charrnn.training.distributed import Dist

        self.model, self.device = model, torch.device(device)
        self.optimizer, self.grad_clip, self.dist = optimizer, grad_clip, dist or Dist()
        self.net = self.dist.wrap(model)  # what the training step runs: the model, or DDP around it
        self.threads, self.precision = threads, precision

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).to(self.device, non_blocking=True)

    def train_step(self, x: np.ndarray, y: np.ndarray, state: State | None, lr: float) -> tuple[torch.Tensor, State]:
        """One optimizer step at learning rate lr. The loss stays on the device (no sync per step)."""
        if self.threads is not None:
            self.threads.tick()
        x, y = self._tensor(x), self._tensor(y)
        self.model.train()
        with autocast(self.device, self.precision):
            loss, state = self.net(x, state, *self._lengths(y), targets=y)  # float32 (CharRNN.loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip, foreach=True)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        return loss.detach(), detach_state(state)

    @torch.no_grad()
    def loss_sum(self, x: np.ndarray, y: np.ndarray, state: State | None) -> tuple[float, State]:
        """Summed cross-entropy (nats) of y given x from `state`, in eval mode (no dropout).
        A float64 model keeps float64 throughout; others are scored in float32, bf16-trained ones
        too: their weights are float32, and the score is the one `charrnn eval` gives them."""
        if self.threads is not None:
            self.threads.tick()
        was_training = self.model.training
        self.model.eval()
        if state is not None:  # callers may pass a slice of rows (the scorer's tail): cuDNN wants it contiguous
            state = tuple(s.contiguous() for s in state)
        y = self._tensor(y)
        total, state = self.model(self._tensor(x), state, *self._lengths(y), targets=y, reduction="sum")
        self.model.train(was_training)
        return float(total), state

    def _lengths(self, y: torch.Tensor) -> tuple:
        """(row lengths,) for a bidirectional model (model.CharRNN.forward), else (): the
        forward(x, state) call every other model (and wrapper) takes."""
        return (row_lengths(y),) if self.model.config.bidirectional else ()

    # -- weights and state, as plain data --------------------------------------------

    def weights(self) -> dict[str, np.ndarray]:
        return {k: v.detach().to("cpu").numpy().copy() for k, v in self.model.state_dict().items()}

    def load_weights(self, weights: dict) -> None:
        self.model.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})

    def state_dict(self, hidden: State | None) -> dict:
        """Optimizer, random generators and the full (L, B, H) hidden state (gathered from
        every rank: all ranks call this together)."""
        full = self.dist.gather_rows(hidden)
        cuda = self.device.type == "cuda"
        return {
            "optimizer": self.optimizer.state_dict(),
            "hidden": [s.cpu() for s in full] if full is not None else [],
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if cuda else [],
            "rng_ranks": self.dist.gather_rng(),
            "world_size": self.dist.world_size,
        }

    def load_state_dict(self, d: dict, batch_size: int, seed: int, step: int) -> State | None:
        """Restore what state_dict() saved; returns this rank's rows of the hidden state."""
        self.optimizer.load_state_dict(d["optimizer"])
        hidden = self.dist.take_rows(tuple(s.to(self.device) for s in d["hidden"]) or None, batch_size)
        torch.set_rng_state(d["rng_cpu"])
        if d["rng_cuda"] and self.device.type == "cuda" and not self.dist.active:
            torch.cuda.set_rng_state_all(d["rng_cuda"])
        self.dist.restore_rng(d.get("rng_ranks", []), seed, step)
        return hidden
