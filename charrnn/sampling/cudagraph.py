"""A CUDA stepper that replays one captured CUDA graph per character.

`sample()` picks it for a float32 model on CUDA (generate.pick_stepper).
tests/test_cudagraph.py compares it with TorchStepper where CUDA is available; it
passed on an NVIDIA H200 (scripts/gpu_check.sh, docs/gpu.md: bit-identical logits,
3.8-6.1x the characters per second of TorchStepper at batch 1).

Why: at B = 1 a CharRNN step is a handful of small kernels (embedding or one-hot,
one cuDNN RNN call per step, the head), and on a GPU launching them costs more than
running them. A CUDA graph records the step's kernels once and a replay launches
them all in one call. What remains per character is copying B ids to the GPU and
B x V logits back, which the sampling rules need on the host (they run in NumPy so
every stepper draws the same characters for the same seed).

Shapes as in model.py: B rows, V vocabulary, L layers, H hidden.
"""

from __future__ import annotations

import numpy as np
import torch


class CudaGraphStepper:
    """Steps a CharRNN on CUDA by graph replay. The graph is captured at the first
    prime() for a batch size B (and again when B changes); it reads the fixed input
    tensor `ids` (B,) and state tuple of (L, B, H), and writes the next state into
    the same tensors and the logits into `logits` (B, V) float64."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        if self.device.type != "cuda":
            raise ValueError(f"CudaGraphStepper needs a model on a CUDA device, not {self.device}")
        self.B = 0

    def _body(self) -> torch.Tensor:
        """One step on the static tensors: what the graph records."""
        logits, state = self.model.step(self.ids, self.state)
        for dst, src in zip(self.state, state):
            dst.copy_(src)
        return logits.double()

    def _capture(self, B: int) -> None:
        dtype = next(self.model.parameters()).dtype
        self.ids = torch.zeros(B, dtype=torch.long, device=self.device)
        self.state = self.model.init_state(B, self.device, dtype)
        # Warm up on a side stream before capturing, as torch.cuda.graphs asks: cuDNN
        # chooses its algorithms and the allocator fills its pools outside the graph.
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self._body()
        torch.cuda.current_stream(self.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.logits = self._body()
        self.B = B

    @torch.inference_mode()
    def prime(self, ids: np.ndarray) -> np.ndarray:
        """(B, P) ids -> (B, V) logits of the last position: one full-sequence forward
        (eager), whose final state is copied into the graph's state tensors."""
        if ids.shape[0] != self.B:
            self._capture(ids.shape[0])
        logits, state = self.model(torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)).to(self.device))
        for dst, src in zip(self.state, state):
            dst.copy_(src)
        return logits[:, -1].double().cpu().numpy()

    @torch.inference_mode()
    def reorder(self, rows) -> None:
        """Row b of the state becomes row rows[b] (beam search). A new number of rows
        captures a new graph, as prime() does for a new B."""
        index = torch.as_tensor(np.asarray(rows, dtype=np.int64), device=self.device)
        picked = [s.index_select(1, index) for s in self.state]  # copies, taken before a capture resets the state
        if len(rows) != self.B:
            self._capture(len(rows))
        for dst, src in zip(self.state, picked):
            dst.copy_(src)

    @torch.inference_mode()
    def step(self, ids: np.ndarray) -> np.ndarray:
        """(B,) ids -> (B, V) logits: copy the ids in, replay, copy the logits out."""
        self.ids.copy_(torch.from_numpy(ids))
        self.graph.replay()
        return self.logits.cpu().numpy()  # waits for the replay
