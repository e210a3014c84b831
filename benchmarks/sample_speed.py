"""Sampling speed: charrnn's sampler against the naive per-character loop.

    python benchmarks/sample_speed.py                  # the table of docs/sampling-speed.md
    OPENBLAS_NUM_THREADS=1 python benchmarks/sample_speed.py --cells lstm --hidden 512

For each cell and hidden size (L = 2 layers, V = 65, embedding 64: ModelConfig's
defaults; random weights, since speed does not depend on training) it times

  naive    what a user would write: CharRNN.forward (so nn.LSTM/GRU/RNN) on a (1, 1)
           input per character, softmax, torch.multinomial, x.item()
  charrnn  charrnn.sampling.generate.sample with SampleConfig(temperature=1): the whole path,
           prime, stepper, sampling rules and text assembly

at batch 1, and then charrnn at --num-samples B (32) against batch 1, as total
characters per second. Each figure is the best of --repeats runs, naive and charrnn
interleaved, so a burst of load from other processes hits both alike.

The batched table also gives the arithmetic ceiling: a character costs
2 * (G*H*H + (L-1)*G*H*2H + V*H) floating-point operations in the stepper's matrix
products (layer 0's input side is a table look-up), so no batch size can write more
than peak / that many characters per second, where peak is the float32 rate of
NumPy's BLAS measured in the same run on large square products. "ceiling / batch 1"
is the most that any batch could give over batch 1 on this machine in float32.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.sampling.generate import SampleConfig, pick_stepper, sample
from charrnn.sampling.numpy_stepper import GATES

V = 65


@torch.inference_mode()
def naive_loop(model: CharRNN, length: int, seed: int) -> list[int]:
    """The loop a user writes first: one full forward call per character."""
    torch.manual_seed(seed)
    x = torch.zeros(1, 1, dtype=torch.long)
    state, out = None, []
    for _ in range(length):
        logits, state = model(x, state)  # (1, 1, V)
        probs = torch.softmax(logits[0, -1], dim=-1)
        x = torch.multinomial(probs, 1).view(1, 1)
        out.append(x.item())
    return out


def best_rate(fn, chars: int, repeats: int) -> float:
    """Characters per second, best of `repeats` runs."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return chars / best


def measure(model: CharRNN, vocab: Vocab, args) -> tuple[float, float]:
    naive_len, fast_len = args.naive_length, args.length
    config = SampleConfig(length=fast_len, temperature=1.0, seed=0)
    naive_loop(model, 5, 0)  # warm-up: first-call set-up of oneDNN
    sample(model, vocab, SampleConfig(length=5, seed=0))
    naive = fast = 0.0
    for _ in range(args.repeats):  # interleaved: load bursts hit both
        naive = max(naive, best_rate(lambda: naive_loop(model, naive_len, 0), naive_len, 1))
        fast = max(fast, best_rate(lambda: sample(model, vocab, config), fast_len, 1))
    return naive, fast


def batch_rates(model: CharRNN, vocab: Vocab, args) -> tuple[float, float]:
    """Total chars/s of charrnn at batch 1 and at args.num_samples."""
    B, n = args.num_samples, args.length
    one = SampleConfig(length=n, temperature=1.0, seed=0)
    many = SampleConfig(length=max(n // 8, 50), temperature=1.0, seed=0, num_samples=B)
    r1 = rB = 0.0
    for _ in range(args.repeats):
        r1 = max(r1, best_rate(lambda: sample(model, vocab, one), n, 1))
        rB = max(rB, best_rate(lambda: sample(model, vocab, many), B * many.length, 1))
    return r1, rB


def flops_per_char(cell: str, H: int, L: int) -> int:
    """Floating-point operations of the stepper's matrix products for one character
    (fastsample.NumpyStepper: layer 0 reads its input side from a table). GRU's
    layers >= 1 multiply a (4H, 2H) block matrix, a quarter of it zeros."""
    G = GATES[cell]
    upper = 4 * H * 2 * H if cell == "gru" else G * H * 2 * H
    return 2 * (G * H * H + (L - 1) * upper + V * H)


PEAK_N, PEAK_REPEATS = 1536, 5  # the peak's square size and timed runs


def sgemm_peak(n: int = PEAK_N, repeats: int = PEAK_REPEATS) -> float:
    """NumPy's float32 matrix-product rate on large square matrices, FLOP/s (best of
    `repeats`): what the BLAS gets when arithmetic, not overhead or memory, limits it."""
    a, b = np.random.default_rng(0).standard_normal((2, n, n), dtype=np.float32)
    out = np.empty((n, n), np.float32)
    np.dot(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.dot(a, b, out=out)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru"], help="cells to time")
    p.add_argument("--hidden", nargs="+", type=int, default=[128, 256, 512], help="H values to time")
    p.add_argument("--layers", type=int, default=2, help="L")
    p.add_argument("--length", type=int, default=2000, help="characters charrnn writes per timed run")
    p.add_argument("--naive-length", type=int, default=100, help="characters the naive loop writes per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the best is shown")
    p.add_argument("--num-samples", type=int, default=32, help="B for the batched rows (lstm)")
    args = p.parse_args()

    torch.manual_seed(0)
    vocab = Vocab.from_chars([chr(32 + i) for i in range(V - 1)] + ["\n"])
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), numpy {np.__version__}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    print(f"# L={args.layers}, V={V}, E=64, batch 1, temperature 1; best of {args.repeats}")
    print("| cell | H | naive chars/s | charrnn chars/s | ratio | stepper |")
    print("|---|---:|---:|---:|---:|---|")
    models = {}
    for H in args.hidden:
        for cell in args.cells:
            model = CharRNN(ModelConfig(vocab_size=V, cell=cell, layers=args.layers, hidden_size=H)).eval()
            models[cell, H] = model
            naive, fast = measure(model, vocab, args)
            name = type(pick_stepper(model)).__name__
            print(f"| {cell} | {H} | {naive:,.0f} | {fast:,.0f} | {fast / naive:.1f}x | {name} |", flush=True)
    cell = "lstm" if "lstm" in args.cells else args.cells[0]
    B, peak = args.num_samples, sgemm_peak()
    print(
        f"\n# float32 peak of NumPy's BLAS here: {peak / 1e9:.0f} GFLOP/s ({PEAK_N}^3 products, best of {PEAK_REPEATS})"
    )
    print(
        f"| cell | H | batch 1 chars/s | batch {B} chars/s (total) | ratio | ceiling chars/s "
        f"| ceiling / batch 1 | batch {B} / ceiling |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for H in args.hidden:
        r1, rB = batch_rates(models[cell, H], vocab, args)
        ceiling = peak / flops_per_char(cell, H, args.layers)
        print(
            f"| {cell} | {H} | {r1:,.0f} | {rB:,.0f} | {rB / r1:.1f}x | {ceiling:,.0f} | {ceiling / r1:.1f}x "
            f"| {rB / ceiling:.0%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
