"""`charrnn card RUN`: a model card, README.md in the run folder, as the Hugging Face Hub has them.

It says what the model was trained on (files, characters, vocabulary, SHA-256 of the
corpus), with which config and budget, what it measured (validation loss, bpc, speed,
and the loss curve, drawn into loss.png beside the card), three samples with the seed
and settings that reproduce them, and how to sample from the folder, an HTML page and
an ONNX file. Its commands run from the card's own folder (`charrnn sample .`), so they
still work after the folder is moved, zipped or uploaded. Everything comes from the run
folder (checkpoint.json, metrics.jsonl) and the corpus files, which are hashed when the
card is written: checkpoints do not record a hash, so the card says which files it found.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import math
import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.export.common import task_of, write_atomic
from charrnn.knobs import MAX_SEED, Checked, knob
from charrnn.tasks import GENERATING, require

LN2 = math.log(2)
CHUNK = 1 << 20


@dataclass
class CardConfig(Checked):
    prime: str = knob("", "the samples' prime text; default: start after a newline")
    length: int = knob(300, "characters per sample", ge=1)
    temperature: float = knob(
        0.8, "the samples' softmax temperature", gt=0, off=(0, "always the most likely character")
    )
    seed: int = knob(
        1, "the first sample's seed; the second and third use seed + 1 and seed + 2", ge=0, le=MAX_SEED - 2
    )


def hash_corpus(files: list[Path], encoding: str) -> tuple[list[dict], str]:
    """Per file: name, bytes, characters, SHA-256; and the SHA-256 of all files joined in order."""
    total, rows = hashlib.sha256(), []
    for path in files:
        h, size, chars = hashlib.sha256(), 0, 0
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                total.update(chunk)
                size += len(chunk)
                chars += len(chunk) if encoding == "bytes" else len(decoder.decode(chunk))
        chars += 0 if encoding == "bytes" else len(decoder.decode(b"", final=True))
        rows.append({"file": str(path), "bytes": size, "chars": chars, "sha256": h.hexdigest()})
    return rows, total.hexdigest()


def corpus_section(data: dict) -> list[str]:
    from charrnn.data.corpus import BUNDLED, resolve_files

    spec, encoding = data.get("data"), data.get("encoding", "utf-8")
    lines = ["## Training data", ""]
    where = f"`{spec}`" if spec else f"Tiny Shakespeare, bundled with charrnn (`charrnn/corpora/{BUNDLED}`)"
    lines.append(f"- `--data`: {where}; encoding `{encoding}`; validation fraction {data.get('val_fraction', 0.1)}")
    try:
        files = resolve_files(spec, encoding)
    except CharRNNError as e:
        return lines + [f"- The corpus was not found when this card was written ({e}), so it is not hashed here.", ""]
    rows, digest = hash_corpus(files, encoding)
    shown = rows[:20]
    size, chars = sum(r["bytes"] for r in rows), sum(r["chars"] for r in rows)
    lines += [
        f"- {len(rows)} file(s), {size:,} bytes, {chars:,} characters",
        f"- SHA-256 of the corpus (its files joined in this order): `{digest}`",
        "",
        "| file | bytes | characters | SHA-256 |",
        "|---|---:|---:|---|",
    ]
    for r in shown:
        lines.append(f"| `{Path(r['file']).name}` | {r['bytes']:,} | {r['chars']:,} | `{r['sha256'][:16]}…` |")
    if len(rows) > len(shown):
        lines.append(f"| … and {len(rows) - len(shown)} more | | | |")
    return lines + ["", "Hashed when this card was written, from the paths as given to `charrnn train`.", ""]


def read_metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a crash can leave the last line half written
    return records


def figures_section(meta: dict, records: list[dict], curve: str | None) -> list[str]:
    best = (meta.get("metrics") or {}).get("best_val_loss")
    vals = [r["val_loss"] for r in records if isinstance(r.get("val_loss"), (int, float))]
    speeds = [r["chars_per_sec"] for r in records if isinstance(r.get("chars_per_sec"), (int, float))]
    times = [r["time"] for r in records if isinstance(r.get("time"), (int, float))]
    lines = ["## Measured", "", "| figure | value |", "|---|---|"]
    if best is not None:
        lines.append(f"| best validation loss | {best:.4f} nats/char = {best / LN2:.4f} bits/char (bpc) |")
    if vals:
        last = f"{vals[-1]:.4f} nats/char = {vals[-1] / LN2:.4f} bpc"
        lines.append(f"| last validation loss | {last} ({len(vals)} evaluations) |")
    if speeds:
        speed = f"{statistics.median(speeds):,.0f} characters/s"
        lines.append(f"| training speed | {speed} (median of {len(speeds)} log records) |")
    if times:
        lines.append(f"| training time | {max(times):,.0f} s |")
    if len(lines) == 4:
        lines.append("| (none) | this run has no validation loss or metrics.jsonl |")
    lines.append("")
    if curve:
        lines += [f"![loss curve: bits per character against step and time]({curve})", ""]
    return lines


def config_section(model, meta: dict) -> list[str]:
    c, train = model.config, meta.get("train") or {}
    article = "An" if c.cell in ("rnn", "lstm") else "A"
    keys = (
        "batch_size",
        "seq_len",
        "optimizer",
        "lr",
        "lr_schedule",
        "warmup_steps",
        "grad_clip",
        "weight_decay",
        "max_steps",
        "max_epochs",
        "max_time",
        "seed",
        "device",
    )
    lines = [
        "## Config and budget",
        "",
        f"{article} {c.cell.upper()} of {c.layers} layer(s) x {c.hidden_size} units, "
        + (f"a {c.embedding_size}-wide embedding" if c.embedding_size else "one-hot input")
        + f", {sum(p.numel() for p in model.parameters()):,} parameters; task `{task_of(meta)}`.",
        "",
        "| knob | value |",
        "|---|---|",
    ]
    lines += [f"| `{k}` | `{v}` |" for k, v in c.to_json().items()]
    lines += [f"| `{k}` | `{train[k]}` |" for k in keys if k in train]
    epoch = meta.get("epoch")
    spent = f"{meta.get('step')} steps" + (f", {epoch:.2f} epochs" if isinstance(epoch, (int, float)) else "")
    return lines + ["", f"This checkpoint: {spent}. Budget: the `max_*` limits above (0 = no limit).", ""]


def fence(text: str) -> str:
    """A Markdown code fence longer than any run of backticks in `text`."""
    n, run = 3, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        n = max(n, run + 1)
    return "`" * n


def here(folder: Path) -> str:
    """The checkpoint `folder` as the card's commands name it from the card's folder (its parent):
    "." for best, which a run folder gives, else the checkpoint folder's own name ("last")."""
    name = folder.name.strip(".").removesuffix(".old")  # a crash inside a swap leaves .best.old: still best
    return "." if name == "best" else name


def samples_section(model, vocab, run: str, config: CardConfig) -> list[str]:
    from charrnn.sampling.generate import SampleConfig, sample

    lines = ["## Samples", "", "Each is written again by the command beside it, run from this folder.", ""]
    for seed in range(config.seed, config.seed + 3):
        sc = SampleConfig(prime=config.prime, length=config.length, temperature=config.temperature, seed=seed)
        text = sample(model, vocab, sc)[0]
        prime = f" --prime {shlex.quote(config.prime)}" if config.prime else ""
        settings = f"--length {config.length} --temperature {config.temperature} --seed {seed}"
        command = f"charrnn sample {shlex.quote(run)}{prime} {settings}"
        f = fence(text)
        lines += [
            f"Seed {seed}, temperature {config.temperature}, {config.length} characters: `{command}`",
            "",
            f,
            text,
            f,
            "",
        ]
    return lines


def usage_section(run: str, vocab, prime: str) -> list[str]:
    r, p = shlex.quote(run), f" --prime {shlex.quote(prime)}" if prime else ""
    chars = json.dumps("".join(vocab.chars), ensure_ascii=False)
    return [
        "## How to use it",
        "",
        "From this folder (the one this card is in), with charrnn installed:",
        "",
        "```sh",
        f"charrnn sample {r}{p} --length 500 --temperature 0.8",
        f"charrnn serve {r}    # a local web playground, with the model's guesses and neurons",
        "```",
        "",
        "As one HTML page that writes in any browser, offline (open it from disk or host it anywhere):",
        "",
        "```sh",
        f"charrnn export {r} --html model.html",
        "```",
        "",
        "As an ONNX step graph, for onnxruntime and other runtimes (`pip install 'charrnn[export]'`); "
        "the vocabulary and config are in its metadata, and `examples/onnx_sample.py` in charrnn's repository "
        "samples from it with onnxruntime and NumPy alone (give that script's path in your copy of the repository):",
        "",
        "```sh",
        f"charrnn export {r} --onnx model.onnx",
        f"python path/to/charrnn/examples/onnx_sample.py model.onnx{' ' + shlex.quote(prime) if prime else ''}",
        "```",
        "",
        "## Vocabulary",
        "",
        (
            "256 byte values (`--encoding bytes`)."
            if vocab.encoding == "bytes"
            else f"{vocab.size} characters, id = position:\n\n```json\n{chars}\n```"
        ),
        "",
    ]


def draw_curve(run: Path) -> str | None:
    """Draw loss.png beside the card (atomically); None if the run has no losses logged."""
    from charrnn.inspection.plot import figure, read_curves

    try:
        curves = read_curves(run)
    except CharRNNError:
        return None
    buf = io.BytesIO()
    figure([curves], f"loss of {run.name}").savefig(buf, format="png", dpi=110)
    write_atomic(run / "loss.png", buf.getvalue())
    return "loss.png"


def write_card(run: str | Path, config: CardConfig | None = None, which: str = "best") -> Path:
    """Write README.md (and loss.png) into the run folder; returns the card's path."""
    from charrnn.checkpoint import resolve
    from charrnn.load import load_model

    config = config or CardConfig()
    config.check()
    folder = resolve(run, which)
    run_dir = Path(run).expanduser()
    run_dir = folder.parent if folder == run_dir else run_dir  # given a checkpoint folder: its run
    model, vocab, meta = load_model(folder)
    require(meta, "card", GENERATING)
    records = read_metrics(run_dir)
    c = model.config
    run_here = here(folder)  # the commands in the card run from run_dir, where it is written
    head = [
        "---",
        "library_name: charrnn",
        "pipeline_tag: text-generation",
        f"tags: [charrnn, character-level, {c.cell}, text-generation]",
        "---",
        "",
        f"# {run_dir.name}: a character-level {c.cell.upper()}",
        "",
        f"A {c.layers}-layer {c.cell.upper()} language model over {vocab.size} characters, trained with charrnn: "
        "it writes text one character at a time in the style of its training text. "
        f"This card describes the `{folder.name}` checkpoint.",
        "",
    ]
    lines = (
        head
        + corpus_section((meta.get("train") or {}).get("data") or {})
        + config_section(model, meta)
        + figures_section(meta, records, draw_curve(run_dir))
        + samples_section(model, vocab, run_here, config)
        + usage_section(run_here, vocab, config.prime)
    )
    return write_atomic(run_dir / "README.md", "\n".join(lines).encode("utf-8"))
