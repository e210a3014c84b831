"""`charrnn sample RUN --interactive`: a prompt loop over one loaded model.

Each line typed is a prime (`\\n` in it stands for a newline; an empty line starts
after a newline, as `charrnn sample` does without --prime), and the continuation is
streamed as it is written. Lines that start with ":" change the settings; they are
SampleConfig's knobs, checked as the CLI checks its flags:

    :temperature 0.5   :length 200   :seed 3   :seed random   :top-k 10   :top-p 0.9
    :beam 4   :length-alpha 0.7   :stop TEXT   :stop   :settings   :help   :quit

Without a fixed seed each continuation draws a fresh one and prints it, so a text can
be made again with `:seed N`. Ctrl-C while a continuation is written stops it; at the
prompt, Ctrl-C or Ctrl-D (end of input) ends the loop, with exit status 0.
"""

from __future__ import annotations

import dataclasses
import secrets
import sys

from charrnn.errors import CharRNNError
from charrnn.sampling.generate import SampleConfig, generate, pick_stepper

PROMPT = "> "
SETTINGS = ("temperature", "length", "seed", "top_k", "top_p", "beam", "length_alpha", "stop")
HELP = """Type a prime and press Enter to continue it (\\n = a newline; an empty line starts afresh).
Commands:
  :temperature T    softmax temperature, 0 = always the most likely character
  :length N         characters per continuation
  :seed N           the same seed gives the same text; ':seed random' draws one each time
  :top-k K, :top-p P, :beam N, :length-alpha A, :stop TEXT   as the flags of charrnn sample
  :settings         show the settings
  :help             this text
  :quit             leave (so do Ctrl-D and Ctrl-C at the prompt)"""


def set_knob(config: SampleConfig, name: str, value: str) -> SampleConfig:
    """A copy of `config` with knob `name` (dashes or underscores) set from text, checked."""
    field = name.replace("-", "_")
    if field not in SETTINGS:
        raise CharRNNError(f"unknown command :{name}; :help lists them")
    if field in ("seed", "stop") and value in ("", "random", "none", "off"):
        parsed = None
    elif field == "stop":
        parsed = value.replace("\\n", "\n")
    else:
        kind = {"temperature": float, "top_p": float, "length_alpha": float}.get(field, int)
        try:
            parsed = kind(value)
        except ValueError:
            what = "a number" if kind is float else "an integer"
            raise CharRNNError(f":{name} takes {what}, not {value!r}") from None
    new = dataclasses.replace(config, **{field: parsed})
    new.check()
    return new


def describe(config: SampleConfig) -> str:
    return "  ".join(f"{k.replace('_', '-')}={getattr(config, k)!r}" for k in SETTINGS)


def interactive(model, vocab, config: SampleConfig, out=None) -> int:
    """Run the loop on stdin until :quit, Ctrl-D or Ctrl-C; returns the exit status (0)."""
    out = out or sys.stdout
    config.check()
    try:
        import readline  # noqa: F401 - input() gains line editing and history
    except ImportError:  # not on every platform
        pass
    stepper = pick_stepper(model)  # built once; each continuation primes it afresh

    def write(text: str) -> None:
        out.write(text)
        out.flush()

    write("charrnn: type a prime and press Enter; :help lists the commands; Ctrl-D ends.\n")
    while True:
        try:
            line = input(PROMPT)
        except (EOFError, KeyboardInterrupt):
            write("\nbye\n")
            return 0
        command, _, value = line.partition(" ")
        if command in (":quit", ":q", ":exit"):
            write("bye\n")
            return 0
        try:
            if command in (":help", ":h", ":?"):
                write(HELP + "\n")
            elif command == ":settings":
                write(describe(config) + "\n")
            elif command.startswith(":") and len(command) > 1:
                config = set_knob(config, command[1:], value.strip() if command != ":stop" else value)
            else:
                _continue(stepper, vocab, config, line.replace("\\n", "\n"), write)
        except CharRNNError as e:
            write(f"error: {e}\n")
        except KeyboardInterrupt:  # Ctrl-C while writing: back to the prompt
            write("\n[stopped]\n")
            stepper = pick_stepper(model)  # the interrupted one may be half-way through a step


def _continue(stepper, vocab, config: SampleConfig, prime: str, write) -> None:
    """Write one continuation of `prime`, streamed, then the seed it drew (if it drew one)."""
    run = dataclasses.replace(config, prime=prime, interactive=False)
    if run.seed is None and not run.beam:
        run.seed = secrets.randbelow(2**31)  # drawn here, so that it can be shown
    generate(stepper, vocab, run, on_text=write)
    write("\n" if run.seed == config.seed or run.beam else f"\n[seed {run.seed}]\n")
