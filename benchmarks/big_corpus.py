"""Big corpora: encoding speed and the peak memory of training on a 1 GB text.

Builds a UTF-8 corpus of --size-gb on the fly (Tiny Shakespeare's lines, shuffled
anew in each block so the text is not one repeated file, with a sprinkling of
non-ASCII lines so the UTF-8 path is exercised), then, each in a fresh process:

1. encodes it (charrnn.data.corpus.load_corpus, cold cache) and reports MB/s and peak RSS;
2. trains a 2x256 LSTM on it for a few steps (`charrnn train`, warm cache) and
   reports the peak resident memory of the whole process.

    python benchmarks/big_corpus.py                   # 1 GB; targets: >= 50 MB/s, < 1.5 GB peak
    python benchmarks/big_corpus.py --size-gb 0.2 --steps 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from charrnn.data.corpus import bundled_corpus

ENCODE = """
import json, resource, sys, time
from charrnn.data.corpus import DataConfig, load_corpus
t = time.perf_counter()
c = load_corpus(DataConfig(data=sys.argv[1], cache_dir=sys.argv[2]))
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "chars": len(c.ids), "vocab": c.vocab.size,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TRAIN = """
import json, resource, sys
from charrnn.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_corpus(path: Path, size_bytes: int, seed: int = 0) -> None:
    lines = bundled_corpus().read_text().splitlines(keepends=True)
    lines += ["Ünïcödé lines keep the UTF-8 path honest: café, naïve, 世界.\n"] * 50
    rng = np.random.default_rng(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size_bytes:
            block = "".join(lines[i] for i in rng.permutation(len(lines)))
            block = block.encode("utf-8")[: size_bytes - written].decode("utf-8", errors="ignore")
            f.write(block)
            written += len(block.encode("utf-8"))


def run(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-gb", type=float, default=1.0, help="corpus size in GB (10^9 bytes)")
    p.add_argument("--steps", type=int, default=10, help="training steps of the memory run")
    p.add_argument("--workdir", default=None, help="where to build the corpus (default: a temporary folder)")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        corpus, cache = Path(tmp) / "big.txt", Path(tmp) / "cache"
        t = time.perf_counter()
        build_corpus(corpus, int(args.size_gb * 1e9))
        size = corpus.stat().st_size
        print(f"built {size / 1e6:,.0f} MB corpus in {time.perf_counter() - t:.0f} s", flush=True)

        enc = run(ENCODE, str(corpus), str(cache))
        print(f"encoded in {enc['seconds']:.1f} s", flush=True)
        tr = run(
            TRAIN,
            "train",
            "--data",
            str(corpus),
            "--cache-dir",
            str(cache),
            "--out",
            str(Path(tmp) / "run"),
            "--cell",
            "lstm",
            "--layers",
            "2",
            "--hidden-size",
            "256",
            "--max-steps",
            str(args.steps),
            "--max-epochs",
            "0",
            "--eval-every",
            str(args.steps),
            "--quiet",
        )
        assert tr["code"] == 0

    mbps = size / 1e6 / enc["seconds"]
    print(f"\nBig corpus: {size / 1e9:.2f} GB UTF-8, {enc['chars']:,} characters, vocabulary {enc['vocab']}")
    print("| measure | value | target |")
    print("|---|---:|---:|")
    print(f"| encoding speed (cold cache, 2 passes) | {mbps:,.0f} MB/s | >= 50 MB/s |")
    print(f"| peak RSS while encoding | {enc['peak_mb']:,.0f} MB | |")
    print(
        f"| peak RSS, training 2x256 LSTM {args.steps} steps + validation + checkpoint "
        f"| {tr['peak_mb']:,.0f} MB | < 1,500 MB |"
    )


if __name__ == "__main__":
    main()
