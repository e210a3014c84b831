"""Config fields that carry their own help and constraint, the flags made from them, and the one check.

Each knob is declared once, in the dataclass of the module that owns it, with everything a value
must satisfy:

    batch_size: int = knob(64, "B: number of parallel text streams per batch", ge=1)
    grad_clip: float = knob(5.0, "clip gradients to this global L2 norm", gt=0, off=(0, "off"))

The type is the field's annotation (int, float, str, bool, list[str] or list[int]; "| None" allows None).
`add_flags` turns the field into the flag --batch-size with that help, default, type and choices,
and `check(config)` enforces the declaration wherever a config comes from (flags, a preset, Python,
a web request), with one line that names the flag: "--grad-clip must be > 0 (or 0 = off), got -5".
A rule between knobs (say, --val-fraction + --test-fraction < 1) is the config's `rules()`.
Presets are JSON files of the same field names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import numbers
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from charrnn.errors import CharRNNError

REQUIRED = dataclasses.MISSING  # knob(REQUIRED, ...): no default; the flag must be given
MAX_SEED = 2**63 - 1  # the largest seed every generator we seed accepts


@dataclasses.dataclass(frozen=True)
class Knob:
    """What a knob's value must be, besides its type."""

    help: str
    choices: tuple | Callable[[], tuple] | None = None  # a callable is asked when needed (preset names)
    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    off: tuple[Any, str] | None = None  # a special value outside the range, and its meaning: (0, "no limit")
    finite: bool = True  # a float must not be nan or +-inf
    pattern: tuple[str, str] | None = None  # a str must match the regex whole: (regex, how to say it)
    nonempty: bool = False  # "" (or an empty list) is refused
    increasing: bool = False  # a list[int] must be strictly increasing (its bounds hold for each element)
    flag: bool = True  # False: set by code, not from the command line (vocab_size)
    positional: bool = False  # an argument (RUN), not a --flag
    metavar: str | None = None  # the placeholder in the usage; default: the field's name in capitals

    def allowed(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices

    def bounds(self, kind: str) -> tuple:
        """(lo, lo_open, hi, hi_open); an integer's open bound is said as a closed one (> 0 is >= 1)."""
        lo, lo_open = (self.gt, True) if self.gt is not None else (self.ge, False)
        hi, hi_open = (self.lt, True) if self.lt is not None else (self.le, False)
        if kind == "int" and lo is not None and lo_open:
            lo, lo_open = math.floor(lo) + 1, False
        if kind == "int" and hi is not None and hi_open:
            hi, hi_open = math.ceil(hi) - 1, False
        return lo, lo_open, hi, hi_open

    def range_text(self, kind: str) -> str:
        """The allowed range in words: "in [0, 1)", ">= 1", or "" when there is none."""
        lo, lo_open, hi, hi_open = self.bounds(kind)
        if lo is not None and hi is not None:
            return f"in {'(' if lo_open else '['}{_show(lo)}, {_show(hi)}{')' if hi_open else ']'}"
        if lo is not None:
            return f"{'>' if lo_open else '>='} {_show(lo)}"
        if hi is not None:
            return f"{'<' if hi_open else '<='} {_show(hi)}"
        return ""

    def help_text(self, kind: str, default: Any) -> str:
        """The help with the range, the special value and the default: "... (> 0, or 0 = off; default: 5.0)"."""
        limits = self.range_text("int" if kind == "list[int]" else kind)
        limits = f"each {limits}" if kind == "list[int]" and limits else limits
        limits += ", strictly increasing" if self.increasing else ""
        if self.off is not None:
            limits += f", or {_show(self.off[0])} = {self.off[1]}"
        shown = default not in (None, "", REQUIRED) and kind != "bool"
        parts = [p for p in (limits, f"default: {default}" if shown else "") if p]
        return self.help + (f" ({'; '.join(parts)})" if parts else "")

    def problem(self, value: Any, kind: str, optional: bool) -> str | None:
        """What is wrong with `value` ("must be >= 1, got 0"), or None if it is allowed."""
        if value is None and optional:
            return None
        if not _has_kind(value, kind):
            return f"must be {_KIND_WORDS[kind]}, got {_show(value)}"
        if kind == "float" and self.finite and not _finite(value):
            return f"must be a finite number, got {_show(value)}"
        if self.off is not None and value == self.off[0]:
            return None
        if (allowed := self.allowed()) is not None and value not in allowed:
            return f"must be one of {', '.join(map(str, allowed))}, got {_show(value)}"
        if self.pattern is not None and not re.fullmatch(self.pattern[0], value):
            return f"must be {self.pattern[1]}, got {_show(value)}"
        if self.nonempty and (len(value) == 0 or (kind == "list[str]" and "" in value)):
            return "must not be empty"
        if kind in ("int", "float") and self._outside(value):
            off = f" (or {_show(self.off[0])} = {self.off[1]})" if self.off is not None else ""
            return f"must be {self.range_text(kind)}{off}, got {_show(value)}"
        if kind == "list[int]" and any(self._outside(v) for v in value):
            return f"must each be {self.range_text('int')}, got {_show(value)}"
        if kind == "list[int]" and self.increasing and any(a >= b for a, b in zip(value, value[1:])):
            return f"must be strictly increasing, got {_show(value)}"
        return None

    def _outside(self, value) -> bool:
        return (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "list[str]": "a list of strings",
    "list[int]": "a list of integers",
}
_FLAG_TYPES = {"int": int, "float": float, "str": str, "list[str]": str, "list[int]": int}


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):  # True is an int to Python, never to a knob
        return False
    if kind == "int":
        return isinstance(value, numbers.Integral)
    if kind == "float":
        return isinstance(value, numbers.Real)
    if kind == "str":
        return isinstance(value, str)
    item = str if kind == "list[str]" else numbers.Integral
    return isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)


def _finite(value) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and value > 2**32 and value & (value + 1) == 0:
        return f"2**{value.bit_length()} - 1"  # MAX_SEED, readably
    return repr(value) if isinstance(value, str) else str(value)


def knob(default: Any, help: str, **rules) -> dataclasses.Field:
    """A dataclass field with its help and constraint attached (see `Knob` for the rules)."""
    return _field(default, Knob(help, **rules))


def _field(default: Any, declaration: Knob) -> dataclasses.Field:
    meta = {"knob": declaration}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: default.copy(), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def like(cls, name: str, default: Any = REQUIRED, why: str = "") -> dataclasses.Field:
    """The knob `name` of `cls` for another command: the same flag, meaning and constraint.
    Its default may differ only with a reason, which is added to the help."""
    f = {f.name: f for f in dataclasses.fields(cls)}[name]
    if default is REQUIRED:
        default = f.default
    elif default != f.default and not why:
        raise TypeError(f"like({cls.__name__}, {name!r}): a different default needs a why")
    declaration = f.metadata["knob"]
    return _field(default, dataclasses.replace(declaration, help=declaration.help + (f"; {why}" if why else "")))


def kind(field: dataclasses.Field) -> tuple[str, bool]:
    """(type, optional) of a knob: ("int", False) for `int`, ("str", True) for `str | None`."""
    t = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", str(field.type))
    parts = [p.strip() for p in t.split("|")]
    base = [p for p in parts if p != "None"]
    if len(base) != 1 or base[0] not in _KIND_WORDS:
        raise TypeError(f"knob {field.name}: type {t} is not one of {', '.join(_KIND_WORDS)} (or that | None)")
    return base[0], "None" in parts


def _nested(field: dataclasses.Field):
    """The config class of a nested-config field (TrainConfig.data), else None."""
    if field.default_factory is not dataclasses.MISSING and isinstance(field.default_factory, type):
        return field.default_factory if dataclasses.is_dataclass(field.default_factory) else None
    return None


def display_name(field: dataclasses.Field, as_field: bool = False) -> str:
    """How errors name a knob: --grad-clip, RUN, or (for code and web requests) grad_clip."""
    declaration = field.metadata["knob"]
    if as_field or not declaration.flag:
        return field.name
    if declaration.positional:
        return declaration.metavar or field.name.upper()
    return "--" + field.name.replace("_", "-")


def check(config, as_field: bool = False, tighter: dict[str, dict] | None = None) -> None:
    """Raise CharRNNError, in one line naming the knob, at the first value of `config` (nested
    configs included) outside its declaration; then apply the configs' `rules()`.

    as_field: name knobs as fields (top_k), for callers that are not the command line.
    tighter: a caller's own narrower limits, e.g. {"length": {"ge": 1, "le": 1000}} for a server.
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        declaration = f.metadata.get("knob")
        if declaration is None:
            if not dataclasses.is_dataclass(value):
                raise TypeError(f"{type(config).__name__}.{f.name} is neither a knob nor a nested config")
            check(value, as_field)
            continue
        if tighter and f.name in tighter:
            declaration = dataclasses.replace(declaration, **tighter[f.name])
        if problem := declaration.problem(value, *kind(f)):
            raise CharRNNError(f"{display_name(f, as_field)} {problem}")
    if hasattr(config, "rules"):
        config.rules()


class Checked:
    """A config whose check() enforces its knobs' declarations (nested configs included), then rules()."""

    def check(self) -> None:
        check(self)

    def rules(self) -> None:
        """Constraints between knobs that no single declaration can say; none unless a config adds some."""


def add_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """Add an argument for each knob of dataclass `cls` (recursing into nested configs).

    Defaults are suppressed in the namespace, so the caller can tell what the user
    actually typed (for presets and --resume); the help shows the real default. Each
    argparse action keeps its declaration as `action.knob`, so tests can walk them.
    """
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if (sub := _nested(f)) is not None:
            add_flags(parser, sub, skip)
            continue
        declaration = f.metadata["knob"]
        if not declaration.flag:
            continue
        k, _ = kind(f)
        help_ = declaration.help_text(k, f.default)
        name = "--" + f.name.replace("_", "-")
        if k == "bool":
            action = parser.add_argument(name, action="store_true", default=argparse.SUPPRESS, help=help_)
        elif declaration.positional:
            optional = not (f.default is REQUIRED and f.default_factory is REQUIRED)  # RUN or nothing: nargs "?"
            nargs = "+" if k == "list[str]" else "?" if optional else None
            extra = {"default": argparse.SUPPRESS} if optional else {}
            action = parser.add_argument(
                f.name, type=str, nargs=nargs, metavar=declaration.metavar or f.name.upper(), help=help_, **extra
            )
        else:
            choices = declaration.allowed()
            action = parser.add_argument(
                name,
                nargs="*" if k == "list[int]" else None,  # the flag alone: the empty list
                type=_FLAG_TYPES[k],
                choices=choices,
                default=argparse.SUPPRESS,
                required=f.default is REQUIRED and f.default_factory is REQUIRED,
                metavar=None if choices else f.name.upper(),
                help=help_,
            )
        action.knob, action.kind = declaration, k


def from_args(cls, args: argparse.Namespace):
    """A `cls` holding the knobs the user gave (argparse leaves out the others, see add_flags)."""
    values = vars(args)
    required = {
        f.name: values[f.name]
        for f in dataclasses.fields(cls)
        if f.default is REQUIRED and f.default_factory is REQUIRED
    }
    config = cls(**required)
    apply(config, values)
    return config


def kinds(cls) -> dict[str, str]:
    """The type of each knob of `cls` by name: {"length": "int", ...}."""
    return {f.name: kind(f)[0] for f in dataclasses.fields(cls) if "knob" in f.metadata}


def apply(config, values: dict) -> None:
    """Set knobs by name on `config` and its nested configs, in place."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            apply(value, values)
        elif f.name in values:
            setattr(config, f.name, values[f.name])


def preset_names() -> tuple[str, ...]:
    names = (p.name[:-5] for p in resources.files("charrnn").joinpath("presets").iterdir() if p.name.endswith(".json"))
    return tuple(sorted(names))


def load_preset(name: str) -> dict:
    """The knob values of a preset (charrnn/presets/NAME.json), without its description."""
    if name not in preset_names():
        raise CharRNNError(f"unknown --preset {name!r}: choose one of {', '.join(preset_names())}")
    values = json.loads(resources.files("charrnn").joinpath("presets", f"{name}.json").read_text())
    return {k: v for k, v in values.items() if not k.startswith("_")}
