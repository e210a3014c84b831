"""The one exception type users see.

Anything the user can fix (a bad path, bad flags, text the vocabulary cannot
encode, a full disk) raises CharRNNError with a one-line message that says what to
do. The CLI prints it without a traceback; the Python API lets it propagate.
"""

from __future__ import annotations

import errno
import re

# What to do about the operating-system errors a user can fix, by errno.
_OS_FIXES = {
    errno.ENOSPC: "the disk is full: free some space or choose another disk",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another disk",
    errno.EROFS: "choose a place on a writable disk",
    errno.EACCES: "permission denied: choose a place you may write to",
    errno.EPERM: "permission denied: choose a place you may write to",
    errno.ENOTDIR: "a part of the path is a file: choose another path",
    errno.EISDIR: "it is a folder: give a file name",
    errno.ENAMETOOLONG: "the name is too long: choose a shorter path",
    errno.EIO: "the disk reported an I/O error: check the disk",
}


class CharRNNError(Exception):
    """A problem with the user's input or configuration, with a one-line fix."""


def os_error(e: OSError, doing: str, hint: str = "") -> CharRNNError:
    """A one-line CharRNNError for an OSError met while `doing` something ("save the checkpoint X");
    `hint` ends a fix that says to choose another place (" with --cache-dir")."""
    where = f" ({e.filename})" if e.filename and str(e.filename) not in doing else ""
    fix = _OS_FIXES.get(e.errno, "check the path and try again")
    return CharRNNError(f"could not {doing}{where}: {e.strerror or e}; {fix}{hint if 'choose' in fix else ''}")


# The flags that size what each command allocates: what an out-of-memory error tells
# the user to lower (a command not listed gets a general fix).
_SIZE_FLAGS = {
    "train": "--hidden-size, --layers, --embedding-size, --batch-size or --seq-len",
    "hello": "--hidden-size",
    "sample": "--num-samples, --beam or --length",
    "eval": "--batch-size or --seq-len",
    "viz": "--max-chars",
    "card": "--length",
}
_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory")
_UNITS = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def _size(n: int) -> str:
    """Bytes in binary units, as numpy and PyTorch write them: 16000000000000 -> "14.55 TiB"."""
    unit = 0
    while n >= 1024 and unit < len(_UNITS) - 1:
        n, unit = n / 1024, unit + 1
    return f"{n} bytes" if unit == 0 else f"{n:.2f} {_UNITS[unit]}"


def out_of_memory(e: BaseException, command: str) -> CharRNNError | None:
    """A one-line CharRNNError for a failed allocation (numpy's MemoryError, PyTorch's RuntimeError
    "can't allocate memory" on the CPU or "CUDA out of memory"); None for any other error."""
    text = str(e)
    if not isinstance(e, MemoryError) and not any(w in text.lower() for w in _OOM_WORDS):
        return None
    where = "GPU memory" if re.search(r"\b(CUDA|MPS|GPU)\b", text) else "memory"
    # numpy: "Unable to allocate 7.28 TiB for ..."; torch CPU: "you tried to allocate 16000000000000 bytes";
    # torch CUDA: "Tried to allocate 2.00 GiB"
    amount = ""
    if m := re.search(r"allocate (\d+) bytes", text):
        amount = f" (could not allocate {_size(int(m.group(1)))})"
    elif m := re.search(r"allocate (\d+(?:\.\d+)?)\.? ([KMGTPE]?i?B)\b", text):  # numpy writes "182. TiB"
        amount = f" (could not allocate {m.group(1)} {m.group(2)})"
    smaller = _SIZE_FLAGS.get(command)
    fix = f"choose a smaller {smaller}" if smaller else "use a smaller model or less text, or free some memory"
    return CharRNNError(f"out of {where}{amount}; {fix}")
