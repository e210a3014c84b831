"""The corpus suite: charrnn against a small transformer on several corpora, per wall-clock budget.

For each corpus and each budget it trains, one after the other in this process (never
at once), on the same threads:

  - charrnn, through the CLI's own flag parsing (`--charrnn-args`, default `--preset tiny`)
    with `--max-time BUDGET` (a preset ends a run by time alone, unless `--settings auto` stops a small
    text after 20 epochs); its best checkpoint (by its own validation);
  - a transformer with nanoGPT's README CPU configuration (benchmarks/tiny_gpt.py), for
    the same budget; the weights of its best validation estimate.

Both budgets include each model's own evaluations. Both models are then scored on the
same text, the validation split of charrnn's run (the last 10% of the corpus, read with
the run's own data config and vocabulary; the transformer trains on the first 90%), every
character but the first of the split, in nats per character:

  - charrnn: the split read as --score-streams streams (default 1: one stream, so every
    character is predicted from the whole split before it), the state carried across
    chunks (charrnn.evaluation.score);
  - transformer: sliding windows of 64, stride 32: the first window scores all its
    positions, each next one only its last 32, so every character has at least 32
    characters of context (tiny_gpt.window_score).

It prints a Markdown table (loss, bpc, the difference charrnn - transformer: negative
means charrnn is better, wall-clock seconds and steps of each), and writes corpora.json,
corpora.md and corpora.png (bpc per corpus, both models, one panel per budget) to --out.

    python benchmarks/corpora.py --budget 120 600 --threads 2      # the whole suite: ~2 hours
    python benchmarks/corpora.py --budget 30 --corpora verwandlung names
    python benchmarks/corpora.py --budget 120 --corpora mine=~/texts/ --charrnn-args "--preset small"
    python benchmarks/corpora.py --merge runs/a runs/b --out runs/suite   # one table and plot of several runs

--merge joins the corpora.json of runs made side by side (say, two processes of one thread
each on a 2-core machine, each given some of the corpora) into one table and plot.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import tiny_gpt  # beside this file (a test importing this module puts benchmarks/ on sys.path)
import torch

from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.data.vocab import Vocab
from charrnn.engines.torch_engine import TorchEngine
from charrnn.errors import CharRNNError
from charrnn.evaluation import score
from charrnn.load import LoadConfig

LN2 = math.log(2)
CORPORA = {  # name: file or folder in --data-dir (MANIFEST.md there says what each is)
    "shakespeare": "tinyshakespeare.txt",
    "pride": "pride_prejudice_en_pg1342.txt",
    "verwandlung": "verwandlung_de_pg22367.txt",
    "xiyouji": "xiyouji_zh_pg23962.txt",
    "names": "names",  # 18 files, read as one long text (concatenated in sorted order)
}
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXED = ("--data", "--out", "--max-time", "--threads", "--resume", "--items", "--nproc")  # the benchmark sets these


def corpus_paths(specs: list[str], data_dir: Path) -> dict[str, Path]:
    """{name: path} for names of CORPORA (in data_dir) or NAME=PATH."""
    out = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path and name not in CORPORA:
            raise CharRNNError(f"unknown corpus {name!r}: choose from {', '.join(CORPORA)} or give NAME=PATH")
        p = Path(path).expanduser() if path else data_dir / CORPORA[name]
        if not p.exists():
            raise CharRNNError(f"corpus {name}: {p} does not exist (see --data-dir)")
        out[name] = p
    return out


def charrnn_config(path: Path, out: Path, budget: float, threads: int, extra: str):
    """The TrainConfig that `charrnn train --data PATH --out OUT ... EXTRA --max-time BUDGET` would run."""
    from charrnn.cli import build_parser, train_config_from_args

    flags = shlex.split(extra)
    if taken := [f for f in flags if f.split("=")[0] in FIXED]:
        raise CharRNNError(f"--charrnn-args may not hold {', '.join(taken)}: the benchmark sets it")
    argv = ["train", "--data", str(path), "--out", str(out), "--quiet", *flags]
    argv += ["--max-time", str(budget), "--threads", str(threads)]
    return train_config_from_args(build_parser().parse_args(argv))


def run_split(run: Path):
    """(corpus, train ids, validation ids) exactly as the run split them: its data config and vocabulary."""
    meta = LoadConfig(str(run)).load()[2]
    data = DataConfig(**meta["train"]["data"])
    corpus = load_corpus(data, Vocab.from_json(meta["vocab"]).with_end(False))
    train_ids, val_ids, _ = corpus.split(data.val_fraction, data.test_fraction)
    return corpus, train_ids, val_ids


def bench_charrnn(path: Path, run: Path, budget: float, threads: int, extra: str, streams: int) -> dict:
    from charrnn.training.trainer import train

    config = charrnn_config(path, run, budget, threads, extra)
    shutil.rmtree(run, ignore_errors=True)  # this benchmark's own run folder, from an earlier call
    start = time.perf_counter()
    result = train(config)
    seconds = time.perf_counter() - start
    model = LoadConfig(str(run)).load()[0]
    _, _, val_ids = run_split(run)
    total, n = score(TorchEngine(model), val_ids, streams, 256)
    params = sum(p.numel() for p in model.parameters())
    return {
        "loss": total / n,
        "scored": n,
        "steps": result.step,
        "seconds": seconds,
        "params": params,
        "own_best_val": result.best_val_loss,
        "args": extra,
    }


def bench_gpt(train_ids, val_ids, V: int, budget: float, block: int, stride: int, log, seed: int = 1337) -> dict:
    start = time.perf_counter()
    config, recipe = tiny_gpt.GPTConfig(V, block_size=block), tiny_gpt.Recipe(seed=seed)
    g = tiny_gpt.train_gpt(train_ids, val_ids, V, budget, config, recipe, log=log)
    seconds = time.perf_counter() - start
    total, n = tiny_gpt.window_score(g.model, val_ids, block, stride)
    params = sum(p.numel() for p in g.model.parameters())
    return {
        "loss": total / n,
        "scored": n,
        "steps": g.steps,
        "seconds": seconds,
        "params": params,
        "own_best_val": g.best_estimate,
        "points": g.points,
    }


def bench_corpus(name: str, path: Path, budget: float, args) -> dict:
    run = Path(args.out) / "runs" / f"{name}-{budget:g}s"
    print(f"\n== {name}, {budget:g} s: charrnn {args.charrnn_args}", flush=True)
    rnn = bench_charrnn(path, run, budget, args.threads, args.charrnn_args, args.score_streams)
    print(f"  charrnn: {rnn['steps']} steps in {rnn['seconds']:.0f} s, {rnn['loss']:.4f} nats", flush=True)
    corpus, train_ids, val_ids = run_split(run)
    print(f"== {name}, {budget:g} s: transformer", flush=True)
    V, seed = corpus.vocab.size, args.transformer_seed
    gpt = bench_gpt(train_ids, val_ids, V, budget, args.block, args.stride, print, seed)
    print(f"  transformer: {gpt['steps']} steps in {gpt['seconds']:.0f} s, {gpt['loss']:.4f} nats", flush=True)
    assert rnn["scored"] == gpt["scored"] == len(val_ids) - 1, (rnn["scored"], gpt["scored"], len(val_ids))
    return {
        "corpus": name,
        "path": str(path),
        "budget": budget,
        "distinct": corpus.vocab.size,
        "chars": len(corpus.ids),
        "val_chars": len(val_ids),
        "charrnn": rnn,
        "transformer": gpt,
        "diff": rnn["loss"] - gpt["loss"],
    }


def table(results: list[dict]) -> str:
    lines = [
        "| corpus | distinct chars | chars | budget | charrnn loss | transformer loss | charrnn bpc | transformer bpc "
        "| difference (nats) | charrnn: s, steps | transformer: s, steps |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        a, b = r["charrnn"], r["transformer"]
        lines.append(
            f"| {r['corpus']} | {r['distinct']:,} | {r['chars']:,} | {r['budget']:g} s | {a['loss']:.3f} "
            f"| {b['loss']:.3f} | {a['loss'] / LN2:.3f} | {b['loss'] / LN2:.3f} | {r['diff']:+.3f} "
            f"| {a['seconds']:.0f}, {a['steps']:,} | {b['seconds']:.0f}, {b['steps']:,} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = sorted({r["budget"] for r in results})
    fig, axes = plt.subplots(1, len(budgets), figsize=(1.0 + 5.0 * len(budgets), 4.2), dpi=110, squeeze=False)
    for ax, budget in zip(axes[0], budgets):
        rows = [r for r in results if r["budget"] == budget]
        x = range(len(rows))
        for shift, who, color in ((-0.2, "charrnn", "tab:blue"), (0.2, "transformer", "tab:orange")):
            bpc = [r[who]["loss"] / LN2 for r in rows]
            bars = ax.bar([i + shift for i in x], bpc, width=0.4, label=who, color=color)
            ax.bar_label(bars, [f"{v:.2f}" for v in bpc], fontsize=7)
        ax.set_xticks(list(x), [f"{r['corpus']}\n{r['distinct']:,} chars" for r in rows], fontsize=8)
        ax.set(ylabel="validation bits per character", title=f"{budget:g} s budget")
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def machine() -> str:
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads"


def parse_args(argv: list[str] | None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, nargs="+", action="extend", help="seconds for each model (default 120 600)")
    p.add_argument(
        "--corpora", nargs="+", action="extend", help=f"names ({', '.join(CORPORA)}) or NAME=PATH; default: all"
    )
    p.add_argument("--data-dir", type=Path, default=DATA_DIR, help="folder of the named corpora")
    p.add_argument("--charrnn-args", default="--preset tiny", help="extra `charrnn train` flags, in one string")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both models; 0 = PyTorch's default")
    p.add_argument("--out", default="runs/bench-corpora", help="folder for corpora.json/.md/.png and the charrnn runs")
    p.add_argument("--score-streams", type=int, default=1, help="streams charrnn's scoring reads the split as")
    p.add_argument("--block", type=int, default=64, help="the transformer's context, and its scoring window")
    p.add_argument("--stride", type=int, default=32, help="the scoring window's stride")
    p.add_argument("--transformer-seed", type=int, default=1337, help="its seed (charrnn's: --charrnn-args '--seed N')")
    p.add_argument("--merge", type=Path, nargs="+", help="instead of training: join these runs' corpora.json in --out")
    args = p.parse_args(argv)
    args.budget = args.budget or [120.0, 600.0]
    args.corpora = args.corpora or list(CORPORA)
    if min(args.budget) <= 0 or args.threads < 0 or args.score_streams < 1 or not 1 <= args.stride <= args.block:
        p.error("--budget must be > 0, --threads >= 0, --score-streams >= 1, 1 <= --stride <= --block")
    return args


def merge(folders: list[Path], out: Path) -> list[dict]:
    """The results of several suite runs in one table and plot (sorted by budget, then corpus)."""
    runs = []
    for folder in folders:
        try:
            runs.append(json.loads((folder / "corpora.json").read_text()))
        except (OSError, ValueError) as e:
            raise CharRNNError(f"--merge: cannot read {folder / 'corpora.json'} ({e})") from None
    order = {name: i for i, name in enumerate(CORPORA)}
    results = sorted(
        (r for run in runs for r in run["results"]), key=lambda r: (r["budget"], order.get(r["corpus"], 99))
    )
    about = " / ".join(sorted({f"{run['machine']}; charrnn {run['charrnn_args']}" for run in runs}))
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpora.json").write_text(json.dumps({"merged": [str(f) for f in folders], "results": results}, indent=1))
    (out / "corpora.md").write_text(f"{about}\n\n{table(results)}\n")
    plot(results, out / "corpora.png", about)
    print(f"{about}\n\n{table(results)}\n\nwritten: {out}/corpora.json, .md, .png")
    return results


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, Path(args.out))
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()  # both models get this number, explicitly
    paths = corpus_paths(args.corpora, args.data_dir)
    out = Path(args.out)
    for path in paths.values():  # a bad --charrnn-args fails now, not an hour into the suite
        charrnn_config(path, out / "runs" / "check", max(args.budget), args.threads, args.charrnn_args).check()
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for budget in args.budget:
        for name, path in paths.items():
            results.append(bench_corpus(name, path, budget, args))
            write(results, out, args)  # after each corpus, so a long suite cut short keeps what it measured
    print(f"\n{machine()}; charrnn {args.charrnn_args}\n\n{table(results)}\n\nwritten: {out}/corpora.json, .md, .png")
    return results


def write(results: list[dict], out: Path, args) -> None:
    about = {
        "machine": machine(),
        "charrnn_args": args.charrnn_args,
        "threads": args.threads,
        "score_streams": args.score_streams,
        "block": args.block,
        "stride": args.stride,
    }
    (out / "corpora.json").write_text(json.dumps({**about, "results": results}, indent=1))
    (out / "corpora.md").write_text(f"{about['machine']}; charrnn {args.charrnn_args}\n\n{table(results)}\n")
    plot(results, out / "corpora.png", f"{about['machine']}; charrnn {args.charrnn_args}")


if __name__ == "__main__":
    try:
        main()
    except CharRNNError as e:
        sys.exit(f"error: {e}")
