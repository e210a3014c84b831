"""Helpers of the fault-injection tests: real mounts where the tests run as root, simulations elsewhere,
and CLI runs in forked processes that can be killed at any moment.

Mounts (a small tmpfs that fills up, a read-only bind mount) are real where the tests run as
root and `mount` works (CI does); elsewhere, or with CHARRNN_NO_MOUNT=1, the same errors are
raised by patching the functions that write files (simulate_errno).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path


def _mount(*args: str) -> bool:
    if os.environ.get("CHARRNN_NO_MOUNT") == "1" or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def tmpfs(path: Path, size_kb: int):
    """A tmpfs of size_kb mounted at `path`; yields whether it could be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    ok = _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(path))
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def read_only(path: Path):
    """`path` bind-mounted read-only onto itself; yields whether that worked."""
    ok = _mount("--bind", str(path), str(path))
    if ok and not _mount("-o", "remount,ro,bind", str(path)):
        subprocess.run(["umount", str(path)], check=True)
        ok = False
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path, leave_bytes: int) -> Path:
    """Fill the file system of `path` with a file, leaving about `leave_bytes` free."""
    st = os.statvfs(path)
    filler = path / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave_bytes))
    return filler


def simulate_errno(monkeypatch, root: Path, code: int, after_bytes: int = 0) -> None:
    """Make writes under `root` fail with OSError(code), as a read-only (EROFS) or full (ENOSPC) disk would.

    Opening a file to write, making a folder and renaming fail at once for EROFS; for ENOSPC
    a written file fails once `after_bytes` bytes have gone into files under root."""
    root, written = str(root), [0]

    def mine(path) -> bool:
        return str(os.fspath(path)).startswith(root) if isinstance(path, (str, Path)) else False

    def fail(path):
        raise OSError(code, os.strerror(code), str(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir
    real_rename, real_replace = os.rename, os.replace

    class Full:
        def __init__(self, f, path):
            self.f, self.path = f, path

        def write(self, data):
            written[0] += len(data)
            if written[0] > after_bytes:
                fail(self.path)
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *a, **k):
        writing = any(c in mode for c in "wax+")
        if writing and mine(path) and code == errno.EROFS:
            fail(path)
        f = real_open(path, mode, *a, **k)
        return Full(f, path) if writing and mine(path) else f

    def fake_os_open(path, flags, *a, **k):
        if mine(path) and code == errno.EROFS and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(path)
        return real_os_open(path, flags, *a, **k)

    def guard(real):
        def fake(src, *a, **k):
            if mine(src) and code == errno.EROFS:
                fail(src)
            return real(src, *a, **k)

        return fake

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)  # pathlib's read_text and write_text
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", guard(real_mkdir))
    monkeypatch.setattr(os, "rename", guard(real_rename))
    monkeypatch.setattr(os, "replace", guard(real_replace))


# -- killable CLI runs ---------------------------------------------------------------------


def _run_cli(argv: list[str]) -> None:
    from charrnn.cli import main

    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the process ends with it
    sys.exit(main(argv))


def forkserver():
    """A multiprocessing context whose children fork from a server that has already imported
    torch and charrnn: each CLI run then starts in milliseconds instead of seconds."""
    ctx = multiprocessing.get_context("forkserver")
    # torch._dynamo: the first optimizer imports it, which takes seconds; the others: what the CLI's parser imports.
    ctx.set_forkserver_preload(
        [
            "torch",
            "torch._dynamo",
            "charrnn.cli",
            "charrnn.training.trainer",
            "charrnn.sampling.generate",
            "charrnn.inspection.serve",
            "charrnn.inspection.viz",
            "fault_support",
        ]
    )
    return ctx


def start_cli(ctx, argv: list[str]):
    """`charrnn ARGV` in a forked process (output discarded); returns the started Process."""
    p = ctx.Process(target=_run_cli, args=([str(a) for a in argv],))
    p.start()
    return p
