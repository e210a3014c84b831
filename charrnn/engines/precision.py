"""--precision: float32 training, or bf16 autocast where the hardware runs it faster.

bf16 is mixed precision: torch.autocast(device, dtype=torch.bfloat16) around the
forward pass and the loss, so the matrix products (the recurrent layers, the (B, T, H)
x (H, V) head) run in bfloat16 while the weights, their gradients and the optimizer
state stay float32, and cross_entropy, which autocast keeps in float32, sums in float32.
bf16 has float32's exponent range, so no loss scaling is needed (unlike fp16).

auto picks bf16 only where it is fast: a CUDA GPU with native bf16 (Ampere and later),
or a CPU with AMX or AVX-512 BF16 (/proc/cpuinfo flags amx_bf16, avx512_bf16), where
oneDNN runs bf16 products natively. Elsewhere bf16 is emulated and slower than float32,
so auto picks fp32; a forced bf16 still runs, with one line saying it is not fast here.
On a CPU whose oneDNN has no bf16 kernels at all (no AVX-512, e.g. this AMD EPYC), its
LSTM refuses bf16, so the bf16 step runs without oneDNN: PyTorch's own RNN kernels,
whose bf16 products are slow but correct.

Scoring (validation, `charrnn eval`) stays float32 whatever the training precision: the
weights are float32, so the score is the one every engine and tool reports for them.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The flags of this CPU that make bf16 fast, from /proc/cpuinfo ([] where there is none)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return [f for f in BF16_CPU_FLAGS if f in flags]


def fast_bf16(device: torch.device) -> str | None:
    """What makes bf16 faster than float32 on `device` ("AMX", "a GPU with bf16", ...), or None."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False):
        return f"{torch.cuda.get_device_name(device)} (native bf16)"
    if device.type == "cpu" and (flags := cpu_bf16_flags()):
        return f"a CPU with {' and '.join(flags)}"
    return None


def pick_precision(requested: str, device: torch.device, fast=fast_bf16, say=None) -> str:
    """fp32 or bf16 for --precision `requested` on `device`. Says so in one line (`say`, default:
    stderr) when it trains in bf16 by choice, or when bf16 was forced where it is not fast."""
    say = say or (lambda line: print(line, file=sys.stderr))
    why = fast(device)
    precision = ("bf16" if why else "fp32") if requested == "auto" else requested
    if precision == "bf16" and requested == "auto":
        say(f"Training in bf16 (autocast, float32 weights): {why} runs it faster; --precision fp32 turns it off")
    elif precision == "bf16" and not why:
        say(
            f"--precision bf16 on {device.type} without fast bf16 (AMX, AVX-512 BF16 or a bf16 GPU): "
            "expect it slower than fp32"
        )
    return precision


def autocast(device: torch.device, precision: str):
    """The context a training step's forward pass and loss run in (a no-op for fp32)."""
    if precision != "bf16":
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    if device.type == "cpu" and not _onednn_has_bf16():
        stack.enter_context(_without_onednn())  # its LSTM refuses bf16 here: PyTorch's own kernels take it
    stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
    return stack


@functools.cache
def _onednn_has_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@contextlib.contextmanager
def _without_onednn():
    was = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = was
