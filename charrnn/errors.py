"""The one exception type users see.

Anything the user can fix (a bad path, bad flags, text the vocabulary cannot
encode, a full disk) raises CharRNNError with a one-line message that says what to
do. The CLI prints it without a traceback; the Python API lets it propagate.
"""

from __future__ import annotations

import errno

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
