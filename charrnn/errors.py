"""The one exception type users see.

Anything the user can fix (a bad path, bad flags, text the vocabulary cannot
encode) raises CharRNNError with a one-line message that says what to do. The CLI
prints it without a traceback; the Python API lets it propagate.
"""


class CharRNNError(Exception):
    """A problem with the user's input or configuration, with a one-line fix."""
