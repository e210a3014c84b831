"""GPU readiness check (issue 12): run every CUDA path of charrnn once and write one Markdown table.

    bash scripts/gpu_check.sh                 # on a machine with a CUDA GPU: about 6 minutes, at most 8
    bash scripts/gpu_check.sh --cpu-dry-run   # the same steps on the CPU with tiny budgets: tests this script

Steps, each in its own process under coreutils `timeout`, so that a failure or a hang of one is written into the
table and the next step still runs:
  1. the CUDA-only tests (tests/test_cudagraph.py: CudaGraphStepper against TorchStepper)
  2. `charrnn train --preset large --device cuda --max-time 180` on the bundled Tiny Shakespeare
  3. `charrnn train --nproc 1 --device cuda --max-steps 50`: DDP with one rank over NCCL
  4. sampling speed at B = 1 and 32, TorchStepper against CudaGraphStepper, and whether they agree
     (`python scripts/gpu_check.py sample`, also usable alone)
  5. benchmarks/train_speed.py --device cuda: charrnn's trainer against a plain PyTorch loop
The table goes to stdout and to $OUT/gpu_check.md if $OUT is set, else to runs/gpu_check/gpu_check.md, with the
full log (gpu_check.log) and the large run's metrics.jsonl beside it. The table is rewritten after every step, so
even a killed run leaves what it had.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LARGE_SECONDS = 180  # issue 12: the large preset for 3 minutes


# -- the sampling step: `python scripts/gpu_check.py sample` --------------------------------------------------


def sample_bench(args) -> list[dict]:
    """For a large model (the trained run if there is one) and a 2x256 LSTM, at B = 1 and B = 32: chars/s of
    TorchStepper and of the fast stepper (CudaGraphStepper on CUDA; NumpyStepper on the CPU, for the dry run),
    whether the same seed gives the same text, and the largest |logit difference| over a prime and 50 steps."""
    import numpy as np
    import torch

    from charrnn.checkpoint import has_checkpoint
    from charrnn.data.vocab import Vocab
    from charrnn.engines.model import CharRNN, ModelConfig
    from charrnn.load import load_model
    from charrnn.sampling.generate import SampleConfig, TorchStepper, sample

    device = torch.device(args.device)
    if device.type == "cuda":
        from charrnn.sampling.cudagraph import CudaGraphStepper as Fast
    else:
        from charrnn.sampling.numpy_stepper import NumpyStepper as Fast
    vocab = Vocab.from_chars(sorted(set((ROOT / "charrnn/corpora/tinyshakespeare.txt").read_text())))
    models = []
    if args.checkpoint and has_checkpoint(args.checkpoint):
        model, vocab, meta = load_model(args.checkpoint, device=device)
        m = meta["model"]
        models.append((f"{m['layers']}x{m['hidden_size']} {m['cell']} (trained run)", model))
    else:
        torch.manual_seed(0)
        config = ModelConfig(vocab_size=vocab.size, layers=3, hidden_size=args.large_hidden, embedding_size=128)
        models.append((f"3x{args.large_hidden} lstm (random weights)", CharRNN(config).to(device).eval()))
    torch.manual_seed(0)
    small = ModelConfig(vocab_size=vocab.size, layers=2, hidden_size=256, embedding_size=64)
    models.append(("2x256 lstm (random weights)", CharRNN(small).to(device).eval()))

    rows = []
    for name, model in models:
        ref, fast = TorchStepper(model), Fast(model)
        for B in (1, 32):
            length = args.length if B == 1 else max(args.length // 8, 20)
            config = SampleConfig(length=length, temperature=1.0, seed=0, num_samples=B)
            for s in (ref, fast):  # warm-up: cuDNN plans, the graph's capture for this B
                sample(model, vocab, SampleConfig(length=20, seed=1, num_samples=B), stepper=s)
            best = {"ref": math.inf, "fast": math.inf}
            texts = {}
            for _ in range(args.repeats):  # interleaved, so that noise hits both alike
                for key, s in (("ref", ref), ("fast", fast)):
                    t = time.perf_counter()
                    texts[key] = sample(model, vocab, config, stepper=s)  # ends in a copy to the host: synced
                    best[key] = min(best[key], time.perf_counter() - t)
            rng = np.random.default_rng(B)
            ids = rng.integers(0, vocab.size, (B, 8))
            gap = float(np.abs(ref.prime(ids) - fast.prime(ids)).max())
            for _ in range(50):
                x = rng.integers(0, vocab.size, B)
                gap = max(gap, float(np.abs(ref.step(x) - fast.step(x)).max()))
            chars = B * length
            rows.append(
                {
                    "model": name,
                    "B": B,
                    "fast": Fast.__name__,
                    "ref_cps": chars / best["ref"],
                    "fast_cps": chars / best["fast"],
                    "same_text": texts["ref"] == texts["fast"],
                    "max_logit_diff": gap,
                    "chars": chars,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


# -- the driver: `python scripts/gpu_check.py all` --------------------------------------------------------------


class Check:
    """Runs the steps under one deadline, and keeps the table and the log up to date after each."""

    def __init__(self, dry: bool, out: Path, budget: float):
        self.dry, self.out, self.deadline = dry, out, time.monotonic() + budget
        self.device = "cpu" if dry else "cuda"
        self.work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "CHARRNN_CACHE": str(self.work / "cache"),
        }
        self.facts: list[tuple[str, str]] = []
        self.rows: list[tuple[str, str, str, str, float]] = []
        self.extra: list[str] = []  # sub-tables under the main one
        self.log = open(out / "gpu_check.log", "w")

    def run(self, name: str, cmd: list[str], limit: float, env: dict | None = None) -> tuple[int, str, float]:
        """Run cmd under `timeout`, at most `limit` seconds and never past the deadline; (rc, output, seconds).
        rc 124 (or 137) means it was stopped at its limit."""
        limit = int(max(5, min(limit, self.deadline - time.monotonic() - 5)))
        self.log.write(f"\n===== {name}: {' '.join(cmd)}  (limit {limit} s)\n")
        self.log.flush()
        print(f"[gpu_check] {name} (limit {limit} s)", flush=True)
        t = time.monotonic()
        try:
            p = subprocess.run(
                ["timeout", "-k", "10", str(limit), *cmd],
                cwd=ROOT,
                env=env or self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            )
            rc, text = p.returncode, p.stdout
        except OSError as e:
            rc, text = 127, f"could not start: {e}"
        seconds = time.monotonic() - t
        if rc < 0 and seconds >= limit:  # timeout's SIGKILL after the grace period can show as -9
            rc = 124
        self.log.write(text + f"\n===== {name}: exit {rc} after {seconds:.1f} s\n")
        self.log.flush()
        return rc, text, seconds

    def add(self, step: str, result: str, figures: str, command: str, seconds: float) -> None:
        self.rows.append((step, result, figures, command, seconds))
        self.write()

    def table(self) -> str:
        lines = ["# charrnn GPU check" + (" (CPU DRY RUN: not GPU figures)" if self.dry else ""), ""]
        lines += [f"- **{k}**: {v}" for k, v in self.facts] + [
            "",
            "| step | result | figures | command | s |",
            "|---|---|---|---|---:|",
        ]
        lines += [f"| {s} | {r} | {f} | `{c}` | {t:.0f} |" for s, r, f, c, t in self.rows]
        return "\n".join(lines + [""] + self.extra) + "\n"

    def write(self) -> None:
        (self.out / "gpu_check.md").write_text(self.table())


def failure(rc: int, text: str, limit_note: str = "") -> str:
    """'FAIL (...)' with the reason: stopped at its limit, or the last line of the output."""
    if rc in (124, 137):
        return f"FAIL (stopped at its time limit{limit_note})"
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-1:] or ["no output"]
    return f"FAIL (exit {rc}: {last[0][:150].replace('|', '/')})"


def step_facts(c: Check) -> None:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            return f"unavailable ({e.__class__.__name__})"

    c.facts.append(("nvidia-smi -L", out(["nvidia-smi", "-L"]).replace("\n", "; ") or "no output"))
    q = out(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    c.facts.append(("GPU (name, driver, memory)", q.replace("\n", "; ") or "none"))
    probe = (
        "import torch, json; c = torch.cuda.is_available(); print(json.dumps([torch.__version__, "
        "torch.version.cuda, torch.backends.cudnn.version(), c, torch.cuda.get_device_name(0) if c else None, "
        "torch.cuda.get_device_properties(0).multi_processor_count if c else None]))"
    )
    torch_info = out([sys.executable, "-c", probe])
    try:
        version, cuda, cudnn, available, name, sms = json.loads(torch_info.splitlines()[-1])
        c.facts.append(("torch", f"{version}, CUDA {cuda}, cuDNN {cudnn}, cuda.is_available() = {available}"))
        c.facts.append(("torch.cuda device 0", f"{name}, {sms} SMs" if available else "none"))
    except (ValueError, IndexError):
        c.facts.append(("torch", f"probe failed: {torch_info[-200:]}"))
    cpu = dict(re.findall(r"^([^:\n]+):\s*(.+)$", out(["lscpu"]), re.M))
    meminfo = Path("/proc/meminfo")
    mem = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text()) if meminfo.exists() else None
    c.facts.append(
        (
            "CPU",
            f"{cpu.get('Model name', platform.processor() or '?')}, {os.cpu_count()} logical CPUs"
            + (f", {int(mem.group(1)) / 2**20:.0f} GiB RAM" if mem else ""),
        )
    )
    c.facts.append(("system", f"Python {platform.python_version()}, {platform.platform()}"))
    c.write()


def step_tests(c: Check) -> None:
    # The CUDA-only tests: every test file that skips without CUDA (grep -l 'cuda.is_available' tests/).
    files = sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if "cuda.is_available()" in p.read_text()
    )
    cmd = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files]
    rc, text, s = c.run("CUDA tests", cmd, 90)
    summary = ([ln for ln in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", ln)] or [""])[-1]
    summary = summary.strip("= ")
    if rc == 0 and "passed" in summary and "skipped" not in summary:
        result = "PASS"
    elif rc == 0 and "skipped" in summary:
        result = "SKIPPED (no CUDA)" if c.dry else "FAIL (skipped on the GPU machine)"
    else:
        result = failure(rc, text)
    c.add("CUDA tests: " + ", ".join(files), result, summary or "-", "pytest -q " + " ".join(files), s)


def run_summary(run: Path) -> dict:
    """Steps, chars/s and the best validation loss of a finished run folder."""
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    train = [r for r in rows if "train_loss" in r]
    val = [r for r in rows if "val_loss" in r]
    best = json.loads((run / "best" / "checkpoint.json").read_text())
    cfg = best["train"]
    nats = best["metrics"]["best_val_loss"]
    return {
        "steps": train[-1]["step"],
        "time": train[-1]["time"],
        "mean_cps": train[-1]["step"] * cfg["batch_size"] * cfg["seq_len"] / train[-1]["time"],
        "median_cps": statistics.median(r["chars_per_sec"] for r in train[1:] or train),
        "nats": nats,
        "bpc": nats / math.log(2),
        "model": best["model"],
        "B": cfg["batch_size"],
        "T": cfg["seq_len"],
        "best_step": best["step"],
        "epochs": train[-1]["epoch"],
        "last_val": val[-1]["val_loss"] if val else math.nan,
    }


def step_train_large(c: Check) -> None:
    run = c.work / "large"
    seconds = 6 if c.dry else LARGE_SECONDS
    args = [
        "train",
        "--preset",
        "large",
        "--device",
        c.device,
        "--max-time",
        str(seconds),
        "--out",
        str(run),
        "--quiet",
    ]
    if c.dry:  # the large model would take minutes per step on a CPU
        args += ["--hidden-size", "32", "--batch-size", "8", "--eval-every", "20"]
    rc, text, s = c.run("train large", [sys.executable, "-m", "charrnn", *args], seconds + 90)
    try:
        r = run_summary(run)
        m = r["model"]
        figures = (
            f"{m['layers']}x{m['hidden_size']} {m['cell']}, B={r['B']}, T={r['T']}: {r['steps']} steps in "
            f"{r['time']:.0f} s, {r['mean_cps']:,.0f} chars/s mean ({r['median_cps']:,.0f} median of the logged "
            f"windows), {r['epochs']:.1f} epochs; best/ validation loss {r['nats']:.4f} nats = "
            f"{r['bpc']:.4f} bpc at step {r['best_step']}; last validation {r['last_val']:.4f}"
        )
        shutil.copy(run / "metrics.jsonl", c.out / "large_metrics.jsonl")
    except (OSError, ValueError, KeyError, IndexError) as e:
        figures = f"no run summary ({e.__class__.__name__}: {e})"
    c.add(
        "train --preset large (3 min)",
        "PASS" if rc == 0 else failure(rc, text),
        figures,
        "charrnn " + " ".join(args).replace(str(run), "RUN"),
        s,
    )


def step_ddp(c: Check) -> None:
    run = c.work / "ddp"
    args = [
        "train",
        "--nproc",
        "1",
        "--device",
        c.device,
        "--preset",
        "tiny",
        "--max-steps",
        "50",
        "--eval-every",
        "25",
        "--out",
        str(run),
        "--quiet",
    ]
    if c.dry:
        args += ["--hidden-size", "32"]
    env = {**c.env, "NCCL_DEBUG": "INFO"}  # proves NCCL came up: its INFO lines appear in the log
    rc, text, s = c.run("DDP nproc 1", [sys.executable, "-m", "charrnn", *args], 120, env)
    saved = [n for n in ("last", "best") if (run / n / "checkpoint.json").exists()]
    step = json.loads((run / "last" / "checkpoint.json").read_text())["step"] if "last" in saved else None
    nccl = re.search(r"NCCL version [\w.+-]+", text)
    backend = nccl.group(0) if nccl else ("no NCCL lines" if c.device == "cuda" else "gloo (CPU)")
    ok = rc == 0 and saved == ["last", "best"] and step == 50
    figures = f"saved: {', '.join(saved) or 'nothing'}; last/ at step {step}; {backend}"
    c.add(
        "train --nproc 1 (DDP, 1 rank)",
        "PASS" if ok else (failure(rc, text) if rc else "FAIL (see figures)"),
        figures,
        "charrnn " + " ".join(args).replace(str(run), "RUN"),
        s,
    )


def step_sample(c: Check, large: Path) -> None:
    cmd = [
        sys.executable,
        str(ROOT / "scripts/gpu_check.py"),
        "sample",
        "--device",
        c.device,
        "--checkpoint",
        str(large),
        "--json",
        str(c.out / "sample_speed.json"),
    ]
    if c.dry:
        cmd += ["--length", "200", "--repeats", "1", "--large-hidden", "64"]
    rc, text, s = c.run("sampling", cmd, 120)
    try:
        rows = json.loads((c.out / "sample_speed.json").read_text())
    except (OSError, ValueError):
        rows = []
    if rows:
        fast = rows[0]["fast"]
        c.extra += [
            f"Sampling on {c.device}, temperature 1, best of the timed runs (chars/s = B x length / seconds):",
            "",
            f"| model | B | TorchStepper chars/s | {fast} chars/s | speed-up | same text, same seed | "
            "max abs logit diff |",
            "|---|---:|---:|---:|---:|---|---:|",
        ]
        c.extra += [
            f"| {r['model']} | {r['B']} | {r['ref_cps']:,.0f} | {r['fast_cps']:,.0f} | "
            f"{r['fast_cps'] / r['ref_cps']:.2f}x | {'yes' if r['same_text'] else 'NO'} | "
            f"{r['max_logit_diff']:.2e} |"
            for r in rows
        ] + [""]
    agree = rows and all(r["same_text"] or r["max_logit_diff"] <= 1e-4 for r in rows)
    ok = rc == 0 and agree
    figures = f"{len(rows)} rows (table below); steppers " + ("agree" if agree else "DISAGREE") if rows else "-"
    c.add(
        "sampling: TorchStepper vs " + (rows[0]["fast"] if rows else "fast stepper"),
        "PASS" if ok else (failure(rc, text) if rc else "FAIL (see figures)"),
        figures,
        "python scripts/gpu_check.py sample --device " + c.device,
        s,
    )


def step_train_speed(c: Check) -> None:
    # More steps than the benchmark's default 15: a GPU step takes milliseconds, and charrnn's figure subtracts
    # a separately timed evaluation and save, whose noise must stay small against the timed steps.
    shapes = [
        ["--hidden", "256", "512", "--steps", "60"],
        ["--layers", "3", "--hidden", "1024", "--batch-size", "128", "--steps", "30"],
    ]
    if c.dry:
        shapes = [
            ["--hidden", "32", "--steps", "2", "--rounds", "1", "--warmup", "1", "--batch-size", "8", "--seq-len", "16"]
        ]
    for shape in shapes:
        cmd = [sys.executable, str(ROOT / "benchmarks/train_speed.py"), "--device", c.device, *shape]
        rc, text, s = c.run("train speed", cmd, 100)
        rows = [ln for ln in text.splitlines() if ln.startswith("| LSTM")]
        head = [ln for ln in text.splitlines() if ln.startswith("Training speed on")]
        if rows:
            c.extra += head + [
                "",
                "| model | plain loop chars/s | charrnn chars/s | charrnn / plain | overhead |",
                "|---|---:|---:|---:|---:|",
                *rows,
                "",
            ]
        figures = "; ".join(f"{r.split('|')[1].strip()}: overhead {r.split('|')[5].strip()}" for r in rows) or "-"
        c.add(
            "train speed vs plain PyTorch loop",
            "PASS" if rc == 0 and rows else failure(rc, text),
            figures,
            "python benchmarks/train_speed.py --device " + c.device + " " + " ".join(shape),
            s,
        )


def step_precision(c: Check) -> None:
    """bf16 against fp32 (--precision): training speed and the loss after the same steps (issue 12)."""
    shape = ["--hidden", "1024", "--layers", "3", "--batch-size", "128", "--steps", "200"]
    if c.dry:
        shape = ["--hidden", "32", "--layers", "1", "--batch-size", "8", "--seq-len", "16", "--steps", "3"]
    cmd = [sys.executable, str(ROOT / "benchmarks/precision.py"), "--device", c.device, *shape]
    rc, text, s = c.run("precision", cmd, 150)
    rows = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines() if ln.split()[:1] in (["fp32"], ["bf16"])}
    figures = "; ".join(f"{k}: {v[-2]} chars/s, val {v[-1]}" for k, v in rows.items()) or "-"  # (seed,) chars/s, loss
    if len(rows) == 2:
        ratio = float(rows["bf16"][-2].replace(",", "")) / float(rows["fp32"][-2].replace(",", ""))
        figures += f"; bf16 / fp32 speed {ratio:.2f}"
    ok = rc == 0 and len(rows) == 2
    c.add("--precision bf16 vs fp32", "PASS" if ok else failure(rc, text), figures, " ".join(cmd[1:]), s)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("all", help="every step, then the table")
    a.add_argument("--cpu-dry-run", action="store_true", help="the same steps on the CPU with tiny budgets")
    a.add_argument("--budget", type=float, default=450, help="seconds for all steps; no step runs past them")
    a.add_argument("--keep-work", action="store_true", help="keep the temporary folder with the runs")
    s = sub.add_parser("sample", help="the sampling step alone")
    s.add_argument("--device", default="cuda", help="cuda (CudaGraphStepper) or cpu (NumpyStepper stands in)")
    s.add_argument("--checkpoint", default="", help="a run folder to take the large model from; default: random")
    s.add_argument("--large-hidden", type=int, default=1024, help="H of the random 3-layer model without a checkpoint")
    s.add_argument("--length", type=int, default=2000, help="characters per timed run at B = 1 (an eighth at B = 32)")
    s.add_argument("--repeats", type=int, default=3, help="timed runs per stepper; the best is shown")
    s.add_argument("--json", default="", help="also write the rows to this file")
    args = p.parse_args()

    if args.command == "sample":
        rows = sample_bench(args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=1))
        return
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "runs" / "gpu_check"
    out.mkdir(parents=True, exist_ok=True)
    c = Check(args.cpu_dry_run, out, args.budget)
    start = time.monotonic()
    large = c.work / "large"
    steps = [
        ("facts", step_facts),
        ("CUDA tests", step_tests),
        ("train large", step_train_large),
        ("DDP", step_ddp),
        ("sampling", lambda c: step_sample(c, large)),
        ("train speed", step_train_speed),
        ("precision", step_precision),
    ]
    try:
        for name, step in steps:
            try:
                step(c)
            except Exception as e:  # a bug of this script in one step must not cost the others
                c.add(name, f"FAIL (gpu_check.py: {e.__class__.__name__}: {str(e)[:150]})", "-", "-", 0.0)
    finally:
        c.extra.append(f"Total {time.monotonic() - start:.0f} s. Log: gpu_check.log beside this file.")
        c.write()
        if not args.keep_work:
            shutil.rmtree(c.work, ignore_errors=True)
    print(c.table())


if __name__ == "__main__":
    main()
