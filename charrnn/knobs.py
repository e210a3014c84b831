"""Config fields that carry their own help, and the flags made from them.

Each knob is declared once, in the dataclass of the module that owns it:

    batch_size: int = knob(64, "B: streams read in parallel")

and becomes the flag --batch-size with that help text and default, so a flag, its
config field and the code's parameter always share one name. Presets are JSON files
of the same field names.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from importlib import resources
from typing import Any

from charrnn.errors import CharRNNError


def knob(default: Any, help: str, choices: tuple | None = None, flag: bool = True):
    """A dataclass field with its help text (and allowed values) attached."""
    meta = {"help": help, "choices": choices, "flag": flag}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


_TYPES = {"int": int, "float": float, "str": str}


def _flag_type(field: dataclasses.Field):
    name = str(field.type).replace(" | None", "").replace("Optional[", "").rstrip("]")
    return _TYPES.get(name, str)


def add_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """Add a --flag for each knob of dataclass `cls` (recursing into nested configs).

    Defaults are suppressed in the namespace, so the caller can tell what the user
    actually typed (for presets and --resume); the help shows the real default.
    """
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(f.default_factory() if f.default_factory is not dataclasses.MISSING else None):
            add_flags(parser, f.default_factory().__class__, skip)
            continue
        meta = f.metadata
        if not meta.get("flag", False):
            continue
        default = f.default
        name = "--" + f.name.replace("_", "-")
        if str(f.type) == "bool":
            parser.add_argument(name, action="store_true", default=argparse.SUPPRESS, help=meta["help"])
            continue
        help_ = meta["help"] + (f" (default: {default})" if default not in (None, "") else "")
        parser.add_argument(name, type=_flag_type(f), choices=meta.get("choices"), default=argparse.SUPPRESS,
                            metavar=None if meta.get("choices") else f.name.upper(), help=help_)  # fmt: skip


def check_model_shape(config, cells) -> None:
    """The checks both engines' ModelConfig share (torch-free, so the NumPy engine can use it)."""
    if config.cell not in cells:
        raise CharRNNError(f"unknown --cell {config.cell!r}: choose one of {', '.join(cells)}")
    for name in ("layers", "hidden_size", "vocab_size"):
        if getattr(config, name) < 1:
            raise CharRNNError(f"--{name.replace('_', '-')} must be at least 1")
    if config.embedding_size < 0:
        raise CharRNNError("--embedding-size must be 0 (one-hot) or positive")


def field_names(cls) -> set[str]:
    """All knob names of `cls`, nested configs included."""
    names = set()
    for f in dataclasses.fields(cls):
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        names |= field_names(sub.__class__) if dataclasses.is_dataclass(sub) else {f.name}
    return names


def apply(config, values: dict) -> None:
    """Set knobs by name on `config` and its nested configs, in place."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            apply(value, values)
        elif f.name in values:
            setattr(config, f.name, values[f.name])


def preset_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("charrnn").joinpath("presets").iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> dict:
    """The knob values of a preset (charrnn/presets/NAME.json), without its description."""
    if name not in preset_names():
        raise CharRNNError(f"unknown --preset {name!r}: choose one of {', '.join(preset_names())}")
    values = json.loads(resources.files("charrnn").joinpath("presets", f"{name}.json").read_text())
    return {k: v for k, v in values.items() if not k.startswith("_")}
