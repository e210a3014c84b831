"""The --novelty index: build time, size on disk, peak memory and query time.

Indexes the train split (the first 90%) of a corpus, in a fresh process whose peak
resident memory is the figure reported (the corpus is encoded first, in another
process, so its cost is not counted), then measures 500-character samples: a stretch
of the held-out text (little copied) and one of the training text (all copied).

    python benchmarks/novelty_index.py                    # the bundled Tiny Shakespeare
    python benchmarks/novelty_index.py --size-mb 100      # big_corpus.py's synthetic text, 100 MB
    python benchmarks/novelty_index.py --size-mb 1000     # the 1 GB corpus: 4 GB of index, minutes
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from big_corpus import build_corpus

from charrnn.data.corpus import bundled_corpus

INDEX = """
import json, resource, sys, time
from pathlib import Path
from charrnn.data.corpus import DataConfig, load_corpus
from charrnn.sampling.novelty import NoveltyIndex
c = load_corpus(DataConfig(data=sys.argv[1], cache_dir=sys.argv[2]))
n = len(c.split(0.1)[0])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
index = NoveltyIndex(Path(c.ids.filename), c.ids.dtype, n, c.vocab)
build = time.perf_counter() - t
text = c.vocab.decode(c.ids[n + 1000 : n + 1500]), c.vocab.decode(c.ids[1000:1500])
times, reports = [], []
for q in text:
    t = time.perf_counter()
    reports.append(index.measure(q).line())
    times.append(time.perf_counter() - t)
print(json.dumps({"chars": n, "seconds": build, "bytes": index.sa_path.stat().st_size, "chunks": len(index.chunks),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "before_mb": before,
                  "query_s": times, "reports": reports}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mb", type=float, default=0, help="synthetic corpus size in MB; 0 = Tiny Shakespeare")
    p.add_argument("--workdir", default=None, help="where to build the corpus and index (default: a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        corpus, cache = bundled_corpus(), Path(tmp) / "cache"
        if args.size_mb:
            corpus = Path(tmp) / "big.txt"
            build_corpus(corpus, int(args.size_mb * 1e6))
        encode = (
            "import sys; from charrnn.data.corpus import DataConfig, load_corpus; "
            "load_corpus(DataConfig(data=sys.argv[1], cache_dir=sys.argv[2]))"
        )
        subprocess.run([sys.executable, "-c", encode, str(corpus), str(cache)], check=True)  # warm the corpus cache
        t = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", INDEX, str(corpus), str(cache)], capture_output=True, text=True, check=True
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        wall = time.perf_counter() - t
    print(f"\nNovelty index of {corpus.name}'s train split: {r['chars']:,} characters, {r['chunks']} chunk(s)")
    print("| measure | value |")
    print("|---|---:|")
    print(f"| build time | {r['seconds']:.1f} s |")
    print(f"| index size | {r['bytes'] / 1e6:,.1f} MB ({r['bytes'] / r['chars']:.1f} bytes a character) |")
    print(f"| peak RSS of the indexing process | {r['peak_mb']:,.0f} MB ({r['before_mb']:,.0f} MB before the build) |")
    held_out, copied = r["query_s"]
    print(f"| measuring a 500-character sample (held out / copied) | {held_out:.2f} s / {copied:.3f} s |")
    print(f"(whole process {wall:.0f} s)\n" + "\n".join(r["reports"]))


if __name__ == "__main__":
    main()
