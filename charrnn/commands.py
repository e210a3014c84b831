"""What each `charrnn` command does with its parsed flags: build the configs from
them, check them, call the Python API, print. cli.py parses and dispatches here.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from dataclasses import dataclass

from charrnn import knobs
from charrnn.knobs import knob
from charrnn.tasks import GENERATING, get_task, require


@dataclass
class TrainStart(knobs.Checked):
    """The flags of `charrnn train` that say how to start, not what the run is."""

    preset: str | None = knob(
        None,
        "a time budget and its schedule: tiny 2 min, small 10, medium 1 h, large 10 min on a GPU "
        "(charrnn/presets/NAME.json); --settings auto fits the model to your corpus in it, fixed trains the "
        "preset's own model; flags given override both",
        choices=knobs.preset_names,
    )
    resume: bool = knob(False, "continue the run in --out from its last checkpoint")


def train_config_from_args(args: argparse.Namespace):
    """defaults <- preset <- flags; on --resume, the run's saved config <- the flags allowed to change."""
    from charrnn.training.config import TrainConfig, resumed_config

    start = knobs.from_args(TrainStart, args)
    given = {k: v for k, v in vars(args).items() if k not in ("command", "preset", "resume")}
    if start.resume:
        return resumed_config(given.pop("out", TrainConfig().out), given)
    config = TrainConfig()
    if start.preset is not None:
        knobs.apply(config, knobs.load_preset(start.preset))
    knobs.apply(config, given)
    config.keep = sorted(given)  # --settings auto chooses the others (training/settings.py)
    return config


def cmd_train(args, argv: list[str]) -> int:
    from charrnn.training.build import accept
    from charrnn.training.distributed import launched, run_torchrun
    from charrnn.training.trainer import train

    start = knobs.from_args(TrainStart, args)
    # every flag, before any data is read, and once rather than in each of nproc workers
    config = accept(train_config_from_args(args), start.resume)
    if config.nproc and not launched():
        # This process becomes torchrun, which starts nproc copies of this same command
        # (where --nproc is ignored) and forwards Ctrl-C and SIGTERM to them.
        return run_torchrun(config.nproc, argv[argv.index("train") + 1 :], config.out)
    result = train(config, resume=start.resume)
    if not result.is_main:
        return 0
    if result.interrupted:
        how = " --nproc N (any N that divides --batch-size)" if launched() else ""
        print(
            f"Stopped at step {result.step}; saved {result.out / 'last'}. "
            f"Resume with: charrnn train --out {result.out} --resume{how}",
            file=sys.stderr,
        )
        return 0
    per = "char" if get_task(config.task).generates else "target"
    val = (
        f", validation loss {result.val_loss:.4f} nats/{per} ({result.val_loss / math.log(2):.4f} bits)"
        if result.val_loss is not None
        else "; no validation text (--val-fraction, or too few items), so best/ is the last checkpoint"
    )
    use = f"{get_task(config.task).command} {result.out}"
    if config.task == "generate":  # `charrnn sample` refuses it without --label: name a real one
        from charrnn import checkpoint as ckpt

        labels = ckpt.read_meta(ckpt.resolve(result.out)).get("labels") or []
        use += f" --label {shlex.quote(labels[0])}" if labels else ""
    read = f" ({result.epochs:.1f} epochs)" if result.epochs >= 0.05 else ""
    print(f"Trained {result.step} steps{read}{val}. Use it with: charrnn {use}", file=sys.stderr)
    return 0


def cmd_sample(args) -> int:
    from charrnn.load import LoadConfig
    from charrnn.sampling.generate import SampleConfig, sample
    from charrnn.sampling.output import prepare_stdout

    config = knobs.from_args(SampleConfig, args)
    config.check()  # before the model is loaded
    model, vocab, meta = knobs.from_args(LoadConfig, args).load()
    require(meta, "sample", GENERATING)
    if note := prepare_stdout(vocab):  # never a UnicodeEncodeError, whatever the locale
        print(note, file=sys.stderr)
    if config.interactive:
        from charrnn.sampling.interactive import interactive

        return interactive(model, vocab, config)
    index = None
    if config.novelty:  # before sampling: a missing training text fails at once
        from charrnn.sampling.novelty import index_for_run

        index = index_for_run(meta, config.novelty_data, log=lambda line: print(line, file=sys.stderr))
    stream = config.num_samples == 1

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    seen = None
    if config.novel_only or (config.novelty and vocab.end):  # whole items: which exist in the training set
        from charrnn.sampling.seen_items import items_for_run, sample_novel

        seen = items_for_run(meta, config.novelty_data)
    if config.novel_only:
        texts = sample_novel(model, vocab, config, seen)
        write("".join(text + "\n" for text in texts))
        return 0
    texts = sample(model, vocab, config, on_text=write if stream else None)
    if stream:
        write("\n")
    elif vocab.end:  # whole items (names, titles, lines): one a line
        write("".join(text + "\n" for text in texts))
    else:
        for i, text in enumerate(texts):
            write(f"{'' if i == 0 else chr(10)}--- sample {i + 1} ---\n{text}\n")
    if index is not None:
        from charrnn.sampling.generate import prime_ids, prime_text

        ids, shown = prime_ids(vocab, prime_text(config), config.unknown, config.label)
        skip = len(vocab.decode(ids)) if shown else 0  # the prime is the user's: only the continuation is measured
        for i, text in enumerate(texts):
            print(f"novelty of sample {i + 1}: {index.measure(text[skip:]).line()}", file=sys.stderr)
    if seen is not None:
        copied = sum(seen.items_seen(texts))
        print(f"novelty: {copied} of {len(texts)} items exist verbatim in the training set", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from charrnn import checkpoint as ckpt
    from charrnn.evaluation import EvalConfig, eval_run
    from charrnn.load import LoadConfig

    source = knobs.from_args(LoadConfig, args)
    source.check()
    config = knobs.from_args(EvalConfig, args)
    config.check()  # every flag before the run is read
    if get_task(ckpt.read_meta(ckpt.resolve(source.run, source.checkpoint)).get("task")).labelled:
        from charrnn.labelled_eval import eval_labelled

        print("\n".join(eval_labelled(source.run, config, source.checkpoint, source.device).lines))
        return 0
    r = eval_run(source.run, config, source.checkpoint, source.device)
    print(f"loss        {r.loss:.4f} nats/char")
    print(f"bpc         {r.bpc:.4f} bits/char")
    print(f"perplexity  {r.perplexity:.4f}")
    if r.static_loss is not None:  # --dynamic: the three lines above adapted as they read; this one did not
        gain = r.static_loss - r.loss
        print(f"static      {r.static_loss:.4f} nats/char, the same stream not adapting (--dynamic gains {gain:.4f})")
    print(f"characters  {r.chars:,} scored")
    if r.items:
        print(
            f"items       {r.items:,} scored, {r.loss_per_item:.4f} nats/item (each item's end counts as a character)"
        )
    if r.unknown:
        shown = ", ".join(f"{ch!r} x{n}" for ch, n in sorted(r.unknown.items(), key=lambda kv: -kv[1])[:20])
        print(f"unknown     {r.unknown_count:,} characters outside the vocabulary, not scored: {shown}")
    return 0


def _labeller(args, command: str, tasks: tuple[str, ...]):
    from charrnn.load import LoadConfig
    from charrnn.predict import ApplyConfig, Labeller, read_texts

    config, load = knobs.from_args(ApplyConfig, args), knobs.from_args(LoadConfig, args)
    load.check()
    config.check()
    return config, read_texts(config), Labeller.load(load, command, tasks)


def _report_skipped(labeller) -> None:
    if labeller.skipped:
        shown = ", ".join(f"{c!r} x{n}" for c, n in sorted(labeller.skipped.items(), key=lambda kv: -kv[1])[:20])
        print(f"note: characters outside the model's vocabulary were skipped: {shown}", file=sys.stderr)


def cmd_classify(args) -> int:
    import numpy as np

    config, texts, labeller = _labeller(args, "classify", ("classify",))
    probs = labeller.classify(texts)
    for text, p in zip(texts, probs):
        top = np.argsort(-p)[: config.top]
        print(f"{text}\t" + "  ".join(f"{labeller.labels[i]} {p[i]:.3f}" for i in top))
    _report_skipped(labeller)
    return 0


def cmd_tag(args) -> int:
    config, texts, labeller = _labeller(args, "tag", ("tag", "truecase"))
    if labeller.task == "truecase":
        print("\n".join(labeller.truecase(texts)))
    else:
        for text, tags in zip(texts, labeller.tag(texts)):
            print(f"{text}\t{tags}")
    _report_skipped(labeller)
    return 0


def cmd_viz(args) -> int:
    from charrnn.inspection.viz import VizConfig, viz
    from charrnn.load import LoadConfig

    source = knobs.from_args(LoadConfig, args)
    source.check()
    out = viz(source.run, knobs.from_args(VizConfig, args), source.checkpoint, source.device)
    print(f"Wrote {out}; open it in a browser.", file=sys.stderr)
    return 0


def cmd_plot(args) -> int:
    from charrnn.inspection.plot import PlotConfig, plot_runs

    config = knobs.from_args(PlotConfig, args)
    config.check()
    out = plot_runs(config.runs, config.out, config.title)
    print(f"Wrote {out}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from charrnn.inspection.serve import ServeConfig, serve
    from charrnn.load import LoadConfig

    source = knobs.from_args(LoadConfig, args)
    source.check()
    serve(source.run, knobs.from_args(ServeConfig, args), source.checkpoint, source.device)
    return 0


def cmd_export(args) -> int:
    from charrnn.export.common import ExportConfig

    config = knobs.from_args(ExportConfig, args)
    config.check()
    if config.verify is not None:
        from charrnn.export.check import check_export

        print(check_export(config.verify))
        return 0
    if config.onnx:  # fail before writing anything when the ONNX packages are missing
        from charrnn.export.onnx_export import require_onnx

        require_onnx()
    if config.html:
        from charrnn.export.html import export_html

        out = export_html(config.run, config.html, config.checkpoint, config.precision)
        print(f"Wrote {out} ({out.stat().st_size / 1e6:.2f} MB); open it in any browser.", file=sys.stderr)
    if config.onnx:
        from charrnn.export.onnx_export import export_onnx

        out = export_onnx(config.run, config.onnx, config.checkpoint)
        print(
            f"Wrote {out} ({out.stat().st_size / 1e6:.2f} MB); see examples/onnx_sample.py to run it.", file=sys.stderr
        )
    return 0


def cmd_card(args) -> int:
    from charrnn.export.card import CardConfig, write_card
    from charrnn.load import LoadConfig

    config, load = knobs.from_args(CardConfig, args), knobs.from_args(LoadConfig, args)
    config.check()
    load.check()
    out = write_card(load.run, config, load.checkpoint)
    print(f"Wrote {out}", file=sys.stderr)
    return 0


def cmd_hello(args) -> int:
    from charrnn.reference.hello import HelloConfig, hello, report

    c = knobs.from_args(HelloConfig, args)
    print(report(hello(c.hidden_size, c.steps, c.lr, c.seed), c.hidden_size, c.lr))
    return 0


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "classify": cmd_classify,
    "tag": cmd_tag,
    "hello": cmd_hello,
    "viz": cmd_viz,
    "plot": cmd_plot,
    "serve": cmd_serve,
    "export": cmd_export,
    "card": cmd_card,
}
