"""Make the screenshots of docs/visualize.md and the README: the playground and the activation view.

    python docs/make_screenshots.py                    # trains runs/screenshots first (about 3 min on CPU)
    python docs/make_screenshots.py --run runs/demo    # or use a run you have
    python docs/make_screenshots.py --classify-run runs/names   # also docs/img/classify.png

It trains (unless --run has a checkpoint) a small LSTM on the bundled Tiny
Shakespeare, writes a viz report and the loss curve, serves the playground, and
photographs both pages in the system's headless Chromium (Debian's `chromium`; set
CHARRNN_CHROMIUM to use another). Writes docs/img/{activations,playground,curve}.png;
with --classify-run (a run of `charrnn train --task classify --data names/`), also
classify.png: the classifier page as "Dostoevsky" is typed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from charrnn import knobs
from charrnn.checkpoint import has_checkpoint
from charrnn.data.corpus import bundled_corpus
from charrnn.inspection.plot import plot_runs
from charrnn.inspection.serve import BackgroundServer, ServeConfig, create_app
from charrnn.inspection.viz import build_report
from charrnn.load import load_model
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import train

ROOT = Path(__file__).resolve().parent.parent
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


# Smaller than the tiny preset, so that a couple of minutes on a busy CPU buy
# hundreds of steps: enough for Shakespeare-like lines and neurons worth showing.
SHOTS_MODEL = {
    "cell": "lstm",
    "layers": 2,
    "hidden_size": 128,
    "embedding_size": 32,
    "batch_size": 32,
    "seq_len": 64,
    "lr": 0.004,
    "lr_schedule": "cosine",
    "warmup_steps": 20,
    "max_epochs": 0,
    "eval_every": 100,
    "eval_chars": 50_000,
    "log_every": 10,
}


def ensure_run(run: Path, seconds: float) -> None:
    if has_checkpoint(run):
        return
    config = TrainConfig()
    knobs.apply(config, {**SHOTS_MODEL, "out": str(run), "max_time": seconds, "quiet": True})
    print(f"training {run} for {seconds:.0f} s ...", file=sys.stderr)
    train(config)


def shoot_report(browser, run: Path, out: Path) -> None:
    model, vocab, _ = load_model(run)
    text = bundled_corpus().read_text(encoding="utf-8")[-700:]  # from the validation split
    html, _ = build_report(model, vocab, text, f"inside {run.name}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "report.html"
        path.write_text(html, encoding="utf-8")
        page = browser.new_page(viewport={"width": 1200, "height": 960})
        page.goto(path.as_uri())
        page.select_option(".ct-criterion", "position in line")
        page.click(".ct-ranking li:nth-child(1) a")  # the neuron that best tracks the position in the line
        page.hover(".ct-text span:nth-child(120)")
        page.screenshot(path=str(out))
        page.close()


def shoot_playground(browser, run: Path, out: Path) -> None:
    model, vocab, _ = load_model(run)
    with BackgroundServer(create_app(model, vocab, ServeConfig(), name=run.name)) as url:
        page = browser.new_page(viewport={"width": 1200, "height": 820})
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('LSTM')")
        page.fill("#prime", "ROMEO:\n")
        page.fill("#length", "400")
        page.fill("#seed", "3")
        page.click("#go")
        page.wait_for_selector(".ct-text span", timeout=60_000)
        page.locator(".ct-text span:visible").nth(59).click()  # a generated character: its top-5 guesses
        page.screenshot(path=str(out))
        page.close()


def shoot_classifier(browser, run: Path, out: Path) -> None:
    model, vocab, meta = load_model(run)
    with BackgroundServer(create_app(model, vocab, ServeConfig(), name=run.name, meta=meta)) as url:
        page = browser.new_page(viewport={"width": 1100, "height": 560})
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('classifier')")
        page.focus("#text")
        page.keyboard.type("Dostoevsky", delay=30)  # letter by letter, as a user types
        page.wait_for_function("document.getElementById('bars').dataset.text === 'Dostoevsky'")
        page.hover("#strip .step:nth-child(7)")  # after "Dostoev"
        page.screenshot(path=str(out))
        page.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--run", default=str(ROOT / "runs" / "screenshots"), help="run folder; trained first if it has no checkpoint"
    )
    parser.add_argument("--train-seconds", type=float, default=180, help="training time when the run must be trained")
    parser.add_argument("--classify-run", help="also photograph the classifier page of this classify run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "img"), help="folder for the PNGs")
    args = parser.parse_args()
    run, out = Path(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ensure_run(run, args.train_seconds)
    plot_runs([run], out / "curve.png")

    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("CHARRNN_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no Chromium found: apt-get install chromium, or set CHARRNN_CHROMIUM")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        shoot_report(browser, run, out / "activations.png")
        shoot_playground(browser, run, out / "playground.png")
        if args.classify_run:
            shoot_classifier(browser, Path(args.classify_run), out / "classify.png")
        browser.close()
    for name in ("activations.png", "playground.png", "curve.png") + (("classify.png",) if args.classify_run else ()):
        print(out / name)


if __name__ == "__main__":
    main()
