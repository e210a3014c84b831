"""The exported HTML page: file size, and characters per second in headless Chromium.

    OPENBLAS_NUM_THREADS=1 python benchmarks/export_speed.py      # the presets tiny and small, float32 and float16
    python benchmarks/export_speed.py --presets tiny --length 20000

(On a shared 2-core machine OPENBLAS_NUM_THREADS=1 keeps NumPy's spinning threads from
starving charrnn sample's column; the page and onnxruntime use one thread anyway.)

For each preset's model shape (its cell, layers, hidden and embedding sizes) with
Tiny Shakespeare's 65 characters, it builds an untrained model (speed and size do not
depend on training), writes the page, opens it from a file:// URL in the system's
Chromium (via Playwright) and generates --length characters at temperature 1 with the
page's own generate(), which is what the Generate button runs: stepping, sampling, and
yielding to the browser every 30 ms. The figure is the best of --repeats runs.
For comparison, in the same run: `charrnn sample` (NumPy stepper) and the ONNX step
graph in onnxruntime (1 thread), both at batch 1 (ONNX needs charrnn[export]).
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from charrnn.data.vocab import Vocab
from charrnn.engines.model import CharRNN, ModelConfig
from charrnn.export.html import build_page
from charrnn.knobs import load_preset

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from browser_support import FLAGS, chromium_path  # noqa: E402

SHAKESPEARE_CHARS = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # V = 65


def preset_model(name: str) -> CharRNN:
    p = load_preset(name)
    torch.manual_seed(0)
    config = ModelConfig(
        vocab_size=len(SHAKESPEARE_CHARS),
        cell=p["cell"],
        layers=p["layers"],
        hidden_size=p["hidden_size"],
        embedding_size=p["embedding_size"],
    )
    return CharRNN(config).eval()


def page_speed(browser, path: Path, length: int, repeats: int) -> float:
    page = browser.new_page()
    page.goto(path.as_uri())
    page.evaluate("window.charrnn.ready")
    best = 0.0
    for seed in range(repeats):
        r = page.evaluate(
            "([n, s]) => window.charrnn.generate({prime: 'ROMEO:', length: n, temperature: 1, topK: 0, "
            "topP: 1, seed: s, stop: ''})",
            [length, seed],
        )
        best = max(best, r["chars"] / r["seconds"])
    page.close()
    return best


def onnx_speed(model: CharRNN, folder: Path, length: int, repeats: int) -> tuple[float, float] | None:
    try:
        import onnxruntime as ort

        from charrnn.export.onnx_export import build_onnx
    except ImportError:
        return None
    vocab = Vocab.from_chars(SHAKESPEARE_CHARS)
    path = folder / "model.onnx"
    path.write_bytes(build_onnx(model, vocab, {}).SerializeToString())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()[1:]]
    best = 0.0
    for _ in range(repeats):
        state = {n: np.zeros((model.config.layers, 1, model.config.hidden_size), np.float32) for n in names}
        ids, t0 = np.zeros(1, np.int64), time.perf_counter()
        for _ in range(length):
            logits, *new = session.run(None, {"ids": ids, **state})
            state = dict(zip(names, new))
            ids = logits.argmax(-1)  # the step is what is timed; greedy keeps the loop free of NumPy sampling
        best = max(best, length / (time.perf_counter() - t0))
    return path.stat().st_size / 1e6, best


def charrnn_speed(model: CharRNN, length: int, repeats: int) -> float:
    from charrnn.sampling.generate import SampleConfig, sample

    vocab, best = Vocab.from_chars(SHAKESPEARE_CHARS), 0.0
    for seed in range(repeats):
        t0 = time.perf_counter()
        sample(model, vocab, SampleConfig(prime="ROMEO:", length=length, temperature=1.0, seed=seed))
        best = max(best, length / (time.perf_counter() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "small"], help="presets whose model shapes to measure")
    parser.add_argument("--length", type=int, default=4000, help="characters per timed generation")
    parser.add_argument("--repeats", type=int, default=3, help="timed generations per page; the best is reported")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = chromium_path()
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"# {platform.processor() or platform.machine()}, {version}, torch {torch.__version__}")
    print(
        "| preset | model | weights | HTML file | chars/s in Chromium | ONNX file | chars/s in onnxruntime "
        "| chars/s in charrnn sample |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    vocab = Vocab.from_chars(SHAKESPEARE_CHARS)
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        for name in args.presets:
            model = preset_model(name)
            c = model.config
            onnx = onnx_speed(model, Path(tmp), args.length, args.repeats)
            numpy_speed = charrnn_speed(model, args.length, args.repeats)
            for precision in ("float32", "float16"):
                path = Path(tmp) / f"{name}-{precision}.html"
                path.write_text(build_page(model, vocab, {}, precision), encoding="utf-8")
                speed = page_speed(browser, path, args.length, args.repeats)
                tail = f"{onnx[0]:.2f} MB | {onnx[1]:,.0f}" if onnx and precision == "float32" else "| "
                tail += f" | {numpy_speed:,.0f}" if precision == "float32" else " | "
                print(
                    f"| {name} | {c.cell.upper()} {c.layers}x{c.hidden_size}, E={c.embedding_size}, V={c.vocab_size} "
                    f"| {precision} | {path.stat().st_size / 1e6:.2f} MB | {speed:,.0f} | {tail} |"
                )
        browser.close()


if __name__ == "__main__":
    main()
