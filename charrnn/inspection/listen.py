"""Listening sockets for `charrnn serve`, and a server in a background thread (tests, scripts, notebooks)."""

from __future__ import annotations

import errno
import socket
import threading

from charrnn.errors import CharRNNError


def free_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening socket on host:port (port 0: a free one the system picks)."""
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        raise CharRNNError(f"cannot listen on {host}:{port}: {e.strerror or e}; {_bind_fix(e)}") from None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # from now on connections wait in the backlog until the server accepts them
    except OSError as e:
        sock.close()
        raise CharRNNError(f"cannot listen on {host}:{port}: {e.strerror or e}; {_bind_fix(e)}") from None
    return sock


def _bind_fix(e: OSError) -> str:
    """What to change when a socket cannot be bound: the port, or the host."""
    if e.errno == errno.EADDRINUSE:
        return "the port is in use: pick another --port"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "ports below 1024 need root: pick a --port from 1024 up"
    return "this machine has no such address: pick another --host, such as 127.0.0.1 or 0.0.0.0"


class BackgroundServer:
    """Run an app with uvicorn in a thread (tests, scripts, notebooks): `with BackgroundServer(app) as url:`."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = free_socket(host, port)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        h, p = self.sock.getsockname()[:2]
        self.url = f"http://{'[' + h + ']' if ':' in h else h}:{p}"

    def __enter__(self) -> str:
        self.thread.start()
        for _ in range(500):  # up to 10 s for uvicorn to start
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.02)
        if not self.server.started:
            raise RuntimeError("the server did not start")
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
