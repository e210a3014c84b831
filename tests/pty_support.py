"""A program on a pseudo-terminal, for the tests of what a person sees in a terminal."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time


class Terminal:
    """A child process on a pseudo-terminal: type into it, read what it shows."""

    def __init__(self, argv: list[str], env: dict):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: its stdin, stdout and stderr are the terminal
            os.execve(sys.executable, [sys.executable, *argv], env)
        self.seen = b""

    def expect(self, marker: str, timeout: float = 60) -> str:
        """Read until `marker` shows; return what came before it and consume both. Newlines are
        \\n in both (the terminal shows \\r\\n)."""
        want, end = marker.replace("\n", "\r\n").encode(), time.monotonic() + timeout
        while want not in self.seen:
            left = end - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise AssertionError(f"{marker!r} did not show within {timeout} s; the screen: {self.seen!r}")
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:  # the child has gone and closed the terminal
                chunk = b""
            if not chunk:
                raise AssertionError(f"the program ended before {marker!r} showed; the screen: {self.seen!r}")
            self.seen += chunk
        before, self.seen = self.seen.split(want, 1)
        return before.decode("utf-8", "replace").replace("\r\n", "\n")

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def exit_code(self, timeout: float = 30) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:  # drain, so the child never blocks on a full terminal
                if select.select([self.fd], [], [], 0.05)[0]:
                    self.seen += os.read(self.fd, 65536)
            except OSError:
                pass
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, signal.SIGKILL)
        raise AssertionError("the program did not end")
