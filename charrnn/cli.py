"""`charrnn` command line: glue over the Python API, nothing more.

Every flag and argument is a knob of a config dataclass (see knobs.py), so its help,
default, type and constraint live next to the code that uses it, and each command
checks its configs before it reads any data or loads any model.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
from dataclasses import dataclass

from charrnn import knobs
from charrnn.errors import CharRNNError, os_error
from charrnn.knobs import knob

DESCRIPTION = "Character-level RNN, LSTM and GRU language models: train on any text, then write like it."


@dataclass
class TrainStart(knobs.Checked):
    """The flags of `charrnn train` that say how to start, not what the run is."""

    preset: str | None = knob(
        None,
        "start from a preset's settings (charrnn/presets/NAME.json); flags given override it",
        choices=knobs.preset_names,
    )
    resume: bool = knob(False, "continue the run in --out from its last checkpoint")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag gets one line, as every other error does (--help shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from charrnn.checkpoint import LoadConfig
    from charrnn.evaluation import EvalConfig
    from charrnn.export.card import CardConfig
    from charrnn.export.common import ExportConfig
    from charrnn.inspection.plot import PlotConfig
    from charrnn.inspection.serve import ServeConfig
    from charrnn.inspection.viz import VizConfig
    from charrnn.reference.hello import HelloConfig
    from charrnn.sampling.generate import SampleConfig
    from charrnn.training.config import TrainConfig

    parser = Parser(prog="charrnn", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = [
        (
            "train",
            "train a model on a text",
            "Train a model; the run folder --out gets checkpoints and metrics.",
            [TrainStart, TrainConfig],
        ),
        (
            "sample",
            "generate text from a trained model",
            "Generate text from a run folder or checkpoint.",
            [LoadConfig, SampleConfig],
        ),
        (
            "eval",
            "score a text: loss, bits per character, perplexity",
            "Score a text with a trained model.",
            [LoadConfig, EvalConfig],
        ),
        (
            "hello",
            'the article\'s "hello" example, in the NumPy reference engine',
            'Train a tiny vanilla RNN to predict "ello" from "hell" and print its scores before and after.',
            [HelloConfig],
        ),
        (
            "viz",
            "an HTML report of neuron activations and predictions on a text",
            (
                "Write one self-contained HTML file: the text coloured by a neuron's activation, "
                "neurons ranked, and the model's top-5 guesses at every character."
            ),
            [LoadConfig, VizConfig],
        ),
        (
            "plot",
            "a PNG of training and validation loss curves",
            "Plot bits per character against step and against training time, from metrics.jsonl.",
            [PlotConfig],
        ),
        (
            "serve",
            "a local web playground: generate, inspect predictions and neurons",
            "Serve a web page that generates text as you watch and shows what the model saw.",
            [LoadConfig, ServeConfig],
        ),
        (
            "export",
            "share a model: an HTML page that writes in any browser, or an ONNX graph",
            (
                "Write a run's model as one self-contained HTML page (no server, no CDN) and/or as an ONNX step graph "
                "with its vocabulary inside; or verify such a file (--verify)."
            ),
            [ExportConfig],
        ),
        (
            "card",
            "write a model card (README.md, loss.png) into a run folder",
            (
                "Write README.md into the run folder: training data and its SHA-256, config and budget, measured loss, "
                "bpc and speed, the loss curve, three samples, how to use it."
            ),
            [LoadConfig, CardConfig],
        ),
    ]
    for name, help_, description, configs in commands:
        p = sub.add_parser(name, help=help_, description=description)
        for cls in configs:
            knobs.add_flags(p, cls)
    return parser


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
    return config


def cmd_train(args, argv: list[str]) -> int:
    from charrnn.training.distributed import launched, run_torchrun
    from charrnn.training.trainer import train

    config, start = train_config_from_args(args), knobs.from_args(TrainStart, args)
    config.check()  # every flag, before any data is read, and once rather than in each of nproc workers
    if config.nproc and not launched():
        # This process becomes torchrun, which starts nproc copies of this same command
        # (where --nproc is ignored) and forwards Ctrl-C and SIGTERM to them.
        return run_torchrun(config.nproc, argv[argv.index("train") + 1 :])
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
    val = (
        f", validation loss {result.val_loss:.4f} nats ({result.val_loss / math.log(2):.4f} bpc)"
        if result.val_loss
        else ""
    )
    print(f"Trained {result.step} steps{val}. Sample with: charrnn sample {result.out}", file=sys.stderr)
    return 0


def cmd_sample(args) -> int:
    from charrnn.checkpoint import LoadConfig
    from charrnn.sampling.generate import SampleConfig, sample
    from charrnn.sampling.output import prepare_stdout

    config = knobs.from_args(SampleConfig, args)
    config.check()  # before the model is loaded
    model, vocab, meta = knobs.from_args(LoadConfig, args).load()
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
        from charrnn.sampling.novelty import items_for_run, sample_novel

        seen = items_for_run(meta)
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

        ids, shown = prime_ids(vocab, prime_text(config), config.unknown)
        skip = len(vocab.decode(ids)) if shown else 0  # the prime is the user's: only the continuation is measured
        for i, text in enumerate(texts):
            print(f"novelty of sample {i + 1}: {index.measure(text[skip:]).line()}", file=sys.stderr)
    if seen is not None:
        copied = sum(seen.items_seen(texts))
        print(f"novelty: {copied} of {len(texts)} items exist verbatim in the training set", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from charrnn.checkpoint import LoadConfig
    from charrnn.evaluation import EvalConfig, eval_run

    source = knobs.from_args(LoadConfig, args)
    source.check()
    r = eval_run(source.run, knobs.from_args(EvalConfig, args), source.checkpoint, source.device)
    print(f"loss        {r.loss:.4f} nats/char")
    print(f"bpc         {r.bpc:.4f} bits/char")
    print(f"perplexity  {r.perplexity:.4f}")
    print(f"characters  {r.chars:,} scored")
    if r.items:
        print(
            f"items       {r.items:,} scored, {r.loss_per_item:.4f} nats/item (each item's end counts as a character)"
        )
    if r.unknown:
        shown = ", ".join(f"{ch!r} x{n}" for ch, n in sorted(r.unknown.items(), key=lambda kv: -kv[1])[:20])
        print(f"unknown     {r.unknown_count:,} characters outside the vocabulary, not scored: {shown}")
    return 0


def cmd_viz(args) -> int:
    from charrnn.checkpoint import LoadConfig
    from charrnn.inspection.viz import VizConfig, viz

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
    from charrnn.checkpoint import LoadConfig
    from charrnn.inspection.serve import ServeConfig, serve

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
    from charrnn.checkpoint import LoadConfig
    from charrnn.export.card import CardConfig, write_card

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


def reference_markdown() -> str:
    """Every subcommand and flag as Markdown tables: the README's CLI reference is this text."""
    lines = []
    for name, sub in build_parser()._subparsers._group_actions[0].choices.items():
        lines += [f"### `charrnn {name}`", "", sub.description or "", "", "| flag | meaning |", "|---|---|"]
        for a in sub._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            flag = ", ".join(f"`{o}`" for o in a.option_strings) or f"`{a.dest.upper()}`"
            if a.choices:
                flag += " " + "\\|".join(str(c) for c in a.choices)
            lines.append(f"| {flag} | {a.help.replace('|', '/')} |")
        lines.append("")
    return "\n".join(lines)


COMMANDS = {
    "train": cmd_train,
    "sample": cmd_sample,
    "eval": cmd_eval,
    "hello": cmd_hello,
    "viz": cmd_viz,
    "plot": cmd_plot,
    "serve": cmd_serve,
    "export": cmd_export,
    "card": cmd_card,
}


class Terminated(BaseException):
    """SIGTERM outside the training loop (which catches it itself to save and stop)."""


def _on_sigterm(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), "")  # for messages before the parser has run
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        args = build_parser().parse_args(argv)
        command = args.command
        return cmd_train(args, argv) if command == "train" else COMMANDS[command](args)
    except CharRNNError as e:
        print(f"charrnn {command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"charrnn {command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"charrnn {command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except BrokenPipeError:  # `charrnn sample ... | head`
        return 0
    except OSError as e:  # one the code did not expect: still one line, never a traceback
        print(f"charrnn {command}: error: {os_error(e, f'complete charrnn {command}')}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
