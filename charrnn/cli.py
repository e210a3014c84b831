"""`charrnn` command line: glue over the Python API, nothing more.

Every flag and argument is a knob of a config dataclass (see knobs.py), so its help,
default, type and constraint live next to the code that uses it, and each command
checks its configs before it reads any data or loads any model.
"""

from __future__ import annotations

import argparse
import signal
import sys

from charrnn import knobs
from charrnn.commands import COMMANDS, TrainStart, cmd_train, train_config_from_args  # noqa: F401  (re-exported)
from charrnn.errors import CharRNNError, os_error, out_of_memory

DESCRIPTION = "Character-level RNN, LSTM and GRU language models: train on any text, then write like it."


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag gets one line, as every other error does (--help shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from charrnn import __version__
    from charrnn.evaluation import EvalConfig
    from charrnn.export.card import CardConfig
    from charrnn.export.common import ExportConfig
    from charrnn.inspection.plot import PlotConfig
    from charrnn.inspection.serve import ServeConfig
    from charrnn.inspection.viz import VizConfig
    from charrnn.load import LoadConfig
    from charrnn.predict import ApplyConfig
    from charrnn.reference.hello import HelloConfig
    from charrnn.sampling.generate import SampleConfig
    from charrnn.training.config import TrainConfig

    parser = Parser(prog="charrnn", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"charrnn {__version__}")
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
            "classify",
            "label a text with a classifier (--task classify)",
            "Print the most likely labels of a text, or of every line of --data, with their probabilities.",
            [LoadConfig, ApplyConfig],
        ),
        (
            "tag",
            "tag every character of a text (--task tag), or restore its capitals (--task truecase)",
            "Print the tags of a text, or of every line of --data; a truecase model prints the text with capitals.",
            [LoadConfig, ApplyConfig],
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
            (
                "Plot the loss in bits per character (per label or tag for a classify, tag or truecase run) "
                "against step and against training time, from metrics.jsonl."
            ),
            [PlotConfig],
        ),
        (
            "serve",
            "a local web playground: generate, inspect predictions and neurons; or classify as you type",
            "Serve a web page that generates text as you watch and shows what the model saw; for a classifier "
            "run, one that shows the label probabilities after every character as you type.",
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
    # card loads the model on the CPU whatever --device says (three short samples need no GPU),
    # so it does not offer the flag; tag prints every character's tag, so --top (classify's
    # "how many labels") would do nothing there
    skip = {"card": ("device",), "tag": ("top",)}
    for name, help_, description, configs in commands:
        p = sub.add_parser(name, help=help_, description=description)
        for cls in configs:
            knobs.add_flags(p, cls, skip.get(name, ()))
    return parser


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
    except (MemoryError, RuntimeError) as e:
        # Sizes too big for this machine (numpy raises MemoryError, PyTorch a RuntimeError). Nothing is
        # lost: a run folder keeps its last saved checkpoint, and one that never saved is removed.
        if (oom := out_of_memory(e, command)) is None:
            raise
        print(f"charrnn {command}: error: {oom}", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
