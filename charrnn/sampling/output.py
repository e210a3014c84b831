"""Writing generated text to stdout without crashing on its encoding.

A model writes whatever characters its training text held, but Python encodes
stdout with the locale's encoding: under LANG=C (without Python's UTF-8 coercion),
PYTHONIOENCODING=ascii or a Latin-1 terminal, print() raises UnicodeEncodeError at
the first character outside it. So, before writing:

- to a pipe or a file, stdout is switched to UTF-8: what lands there is valid UTF-8
  whatever the locale says, which is what the text is and what tools read;
- to a terminal, its encoding is kept (UTF-8 bytes on a Latin-1 terminal show as
  garbage), characters it cannot show are written as "?", and `prepare_stdout`
  returns a one-line note saying what to set.
"""

from __future__ import annotations

import codecs
import sys

from charrnn.data.vocab import Vocab


def _encoding(stream) -> str:
    try:
        return codecs.lookup(stream.encoding or "ascii").name
    except LookupError:
        return "ascii"


def cannot_show(vocab: Vocab, encoding: str) -> list[str]:
    """The vocabulary's characters that `encoding` cannot encode (bytes vocabularies: any non-ASCII one may come)."""
    if vocab.encoding == "bytes":
        return [] if encoding == "utf-8" else ["\ufffd"]
    return [c for c in vocab.chars if not _encodes(c, encoding)]


def _encodes(char: str, encoding: str) -> bool:
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def prepare_stdout(vocab: Vocab, stream=None) -> str | None:
    """Make `stream` (default sys.stdout) able to take any text the model writes; return
    a note for the user when some characters will be shown as "?" (a terminal), else None."""
    stream = stream or sys.stdout
    encoding = _encoding(stream)
    if encoding == "utf-8" or not hasattr(stream, "reconfigure"):
        return None
    if not stream.isatty():
        stream.reconfigure(encoding="utf-8", errors="replace")  # "replace": a lone surrogate is all that could fail
        return None
    stream.reconfigure(errors="replace")
    missing = cannot_show(vocab, encoding)
    if not missing:
        return None
    what = (
        "the model's non-ASCII characters"
        if vocab.encoding == "bytes"
        else (f"{len(missing)} of the model's characters, such as {''.join(missing[:5])!a}")
    )
    return (
        f"note: this terminal's encoding ({encoding}) cannot show {what}; they are written as '?'. "
        "Set LANG=C.UTF-8 (or PYTHONIOENCODING=utf-8) to see them."
    )
