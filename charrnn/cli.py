"""`charrnn` command line: glue over the Python API, nothing more.

Every flag is a knob of a config dataclass (see config.py), so its help text and
default live next to the code that uses it.
"""

from __future__ import annotations

import argparse
import math
import sys

from charrnn import knobs
from charrnn.errors import CharRNNError

DESCRIPTION = "Character-level RNN, LSTM and GRU language models: train on any text, then write like it."


def build_parser() -> argparse.ArgumentParser:
    from charrnn.sampling.generate import SampleConfig
    from charrnn.training.config import TrainConfig
    from charrnn.inspection.serve import ServeConfig
    from charrnn.inspection.viz import VizConfig
    from charrnn.export.card import CardConfig
    from charrnn.export.common import ExportConfig

    parser = argparse.ArgumentParser(prog="charrnn", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model on a text", description="Train a model; the run folder --out gets checkpoints and metrics.")
    p.add_argument("--preset", choices=knobs.preset_names(), default=argparse.SUPPRESS,
                   help="start from a preset's settings (charrnn/presets/NAME.json); flags given override it")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    knobs.add_flags(p, TrainConfig)

    p = sub.add_parser("sample", help="generate text from a trained model", description="Generate text from a run folder or checkpoint.")
    p.add_argument("run", help="a run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder (default: best)")
    p.add_argument("--device", default="cpu", help="where to run the model: cpu, cuda or mps (default: cpu)")
    knobs.add_flags(p, SampleConfig)

    p = sub.add_parser("eval", help="score a text: loss, bits per character, perplexity", description="Score a text with a trained model.")
    p.add_argument("run", help="a run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--data", required=True, help="the text to score: a file, a folder or a glob")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder (default: best)")
    p.add_argument("--batch-size", type=int, default=32, help="streams scored in parallel (default: 32)")
    p.add_argument("--seq-len", type=int, default=256, help="characters per chunk; the state carries across chunks (default: 256)")
    p.add_argument("--device", default="cpu", help="where to run the model: cpu, cuda or mps (default: cpu)")
    p.add_argument("--cache-dir", default=None, help="folder for encoded corpora (default: $CHARRNN_CACHE or ~/.cache/charrnn)")

    p = sub.add_parser("hello", help='the article\'s "hello" example, in the NumPy reference engine',
                       description='Train a tiny vanilla RNN to predict "ello" from "hell" and print its scores before and after.')  # fmt: skip
    p.add_argument("--hidden-size", type=int, default=3, help="hidden units of the RNN (default: 3, as in the article)")
    p.add_argument("--steps", type=int, default=100, help="training steps of Adam (default: 100)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the initial weights (default: 0)")

    p = sub.add_parser("viz", help="an HTML report of neuron activations and predictions on a text",
                       description="Write one self-contained HTML file: the text coloured by a neuron's activation, "
                                   "neurons ranked, and the model's top-5 guesses at every character.")  # fmt: skip
    p.add_argument("run", help="a run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder (default: best)")
    p.add_argument("--device", default="cpu", help="where to run the model: cpu, cuda or mps (default: cpu)")
    knobs.add_flags(p, VizConfig)

    p = sub.add_parser("plot", help="a PNG of training and validation loss curves",
                       description="Plot bits per character against step and against training time, from metrics.jsonl.")  # fmt: skip
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders; several are drawn on one plot for comparison")
    p.add_argument("--out", default="curve.png", help="where to write the PNG (default: curve.png)")
    p.add_argument("--title", default=None, help="the plot's title (default: the run names)")

    p = sub.add_parser("serve", help="a local web playground: generate, inspect predictions and neurons",
                       description="Serve a web page that generates text as you watch and shows what the model saw.")  # fmt: skip
    p.add_argument("run", help="a run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder (default: best)")
    p.add_argument("--device", default="cpu", help="where to run the model: cpu, cuda or mps (default: cpu)")
    knobs.add_flags(p, ServeConfig)

    p = sub.add_parser("export", help="share a model: an HTML page that writes in any browser, or an ONNX graph",
                       description="Write a run's model as one self-contained HTML page (no server, no CDN) and/or as "
                                   "an ONNX step graph with its vocabulary inside; or verify such a file (--check).")  # fmt: skip
    p.add_argument("run", nargs="?", default=None, help="a run folder (its best checkpoint) or a checkpoint folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder (default: best)")
    knobs.add_flags(p, ExportConfig)

    p = sub.add_parser("card", help="write a model card (README.md, loss.png) into a run folder",
                       description="Write README.md into the run folder: training data and its SHA-256, config and "
                                   "budget, measured loss, bpc and speed, the loss curve, three samples, how to use it.")  # fmt: skip
    p.add_argument("run", help="a run folder")
    p.add_argument("--checkpoint", choices=("best", "last"), default="best", help="which checkpoint of a run folder (default: best)")
    knobs.add_flags(p, CardConfig)
    return parser


def train_config_from_args(args: argparse.Namespace):
    """defaults <- preset <- flags; on --resume, the run's saved config <- the flags allowed to change."""
    from charrnn.training.config import TrainConfig, resumed_config

    given = {k: v for k, v in vars(args).items() if k not in ("command", "preset", "resume")}
    if args.resume:
        return resumed_config(given.pop("out", TrainConfig().out), given)
    config = TrainConfig()
    if hasattr(args, "preset"):
        knobs.apply(config, knobs.load_preset(args.preset))
    knobs.apply(config, given)
    return config


def cmd_train(args, argv: list[str]) -> int:
    from charrnn.training.distributed import launched, run_torchrun
    from charrnn.training.trainer import train

    config = train_config_from_args(args)
    if config.nproc and not launched():
        config.validate()  # a bad flag fails here, once, rather than in each of nproc workers
        # This process becomes torchrun, which starts nproc copies of this same command
        # (where --nproc is ignored) and forwards Ctrl-C and SIGTERM to them.
        return run_torchrun(config.nproc, argv[argv.index("train") + 1 :])
    result = train(config, resume=args.resume)
    if not result.is_main:
        return 0
    if result.interrupted:
        how = " --nproc N (any N that divides --batch-size)" if launched() else ""
        print(f"Stopped at step {result.step}; saved {result.out / 'last'}. "
              f"Resume with: charrnn train --out {result.out} --resume{how}", file=sys.stderr)  # fmt: skip
        return 0
    val = f", validation loss {result.val_loss:.4f} nats ({result.val_loss / math.log(2):.4f} bpc)" if result.val_loss else ""
    print(f"Trained {result.step} steps{val}. Sample with: charrnn sample {result.out}", file=sys.stderr)
    return 0


def cmd_sample(args) -> int:
    from charrnn.checkpoint import load_model
    from charrnn.sampling.generate import SampleConfig, sample

    config = SampleConfig()
    knobs.apply(config, vars(args))
    model, vocab, _ = load_model(args.run, args.checkpoint, args.device)
    stream = config.num_samples == 1

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    texts = sample(model, vocab, config, on_text=write if stream else None)
    if stream:
        write("\n")
    else:
        for i, text in enumerate(texts):
            write(f"{'' if i == 0 else chr(10)}--- sample {i + 1} ---\n{text}\n")
    return 0


def cmd_eval(args) -> int:
    from charrnn.evaluation import eval_run

    r = eval_run(args.run, args.data, args.checkpoint, args.batch_size, args.seq_len, args.device, args.cache_dir)
    print(f"loss        {r.loss:.4f} nats/char")
    print(f"bpc         {r.bpc:.4f} bits/char")
    print(f"perplexity  {r.perplexity:.4f}")
    print(f"characters  {r.chars:,} scored")
    if r.unknown:
        shown = ", ".join(f"{ch!r} x{n}" for ch, n in sorted(r.unknown.items(), key=lambda kv: -kv[1])[:20])
        print(f"unknown     {r.unknown_count:,} characters outside the vocabulary, not scored: {shown}")
    return 0


def cmd_viz(args) -> int:
    from charrnn.inspection.viz import VizConfig, viz

    config = VizConfig()
    knobs.apply(config, vars(args))
    out = viz(args.run, config, args.checkpoint, args.device)
    print(f"Wrote {out}; open it in a browser.", file=sys.stderr)
    return 0


def cmd_plot(args) -> int:
    from charrnn.inspection.plot import plot_runs

    out = plot_runs(args.runs, args.out, args.title)
    print(f"Wrote {out}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    from charrnn.inspection.serve import ServeConfig, serve

    config = ServeConfig()
    knobs.apply(config, vars(args))
    serve(args.run, config, args.checkpoint, args.device)
    return 0


def cmd_export(args) -> int:
    from charrnn.export.common import ExportConfig

    config = ExportConfig()
    knobs.apply(config, vars(args))
    config.validate(args.run)
    if config.check is not None:
        from charrnn.export.check import check_export

        print(check_export(config.check))
        return 0
    if config.onnx:  # fail before writing anything when the ONNX packages are missing
        from charrnn.export.onnx_export import require_onnx

        require_onnx()
    if config.html:
        from charrnn.export.html import export_html

        out = export_html(args.run, config.html, args.checkpoint, config.precision)
        print(f"Wrote {out} ({out.stat().st_size / 1e6:.2f} MB); open it in any browser.", file=sys.stderr)
    if config.onnx:
        from charrnn.export.onnx_export import export_onnx

        out = export_onnx(args.run, config.onnx, args.checkpoint)
        print(f"Wrote {out} ({out.stat().st_size / 1e6:.2f} MB); see examples/onnx_sample.py to run it.", file=sys.stderr)
    return 0


def cmd_card(args) -> int:
    from charrnn.export.card import CardConfig, write_card

    config = CardConfig()
    knobs.apply(config, vars(args))
    out = write_card(args.run, config, args.checkpoint)
    print(f"Wrote {out}", file=sys.stderr)
    return 0


def cmd_hello(args) -> int:
    from charrnn.reference.hello import hello, report

    print(report(hello(args.hidden_size, args.steps, args.lr, args.seed), args.hidden_size, args.lr))
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


COMMANDS = {"train": cmd_train, "sample": cmd_sample, "eval": cmd_eval, "hello": cmd_hello,
            "viz": cmd_viz, "plot": cmd_plot, "serve": cmd_serve, "export": cmd_export, "card": cmd_card}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        return cmd_train(args, argv) if args.command == "train" else COMMANDS[args.command](args)
    except CharRNNError as e:
        print(f"charrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"charrnn {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `charrnn sample ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
