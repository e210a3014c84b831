"""`charrnn serve`: a local web playground over a trained model (Starlette + uvicorn).

    GET  /               the playground page (static/playground.html, plain HTML/JS)
    GET  /static/...     its script and styles (the same trace.js the viz report inlines)
    GET  /api/model      the model's shape, the request limits and the defaults
    POST /api/generate   {"prime", "length", "temperature", "top_k", "top_p", "seed", "beam"}
                         -> NDJSON, one object a line, streamed as it is written:
                            {"seed": S}  then  {"text": "..."} ...  then
                            {"done": true, "text": FULL, "trace": trace_payload[, "novelty": {...}]}
                         (with "beam" > 0 the text comes in one piece, at the end: the best
                         beam is known only then; with --novelty, "novelty" tells what of
                         the generated part was copied from the training text)

Concurrency: the model's weights are loaded once and only read; every request gets
its own stepper (its own hidden state) and its own seeded random generator through
the public sampling API, on a pool of worker threads. So a request gives the same
text for the same seed whatever else runs beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources

from charrnn import knobs
from charrnn.data.vocab import describe_chars
from charrnn.errors import CharRNNError
from charrnn.inspection.trace import trace, trace_payload
from charrnn.knobs import Checked, knob
from charrnn.sampling.generate import SampleConfig, prime_ids, sample

MAX_BODY = 64 * 1024  # bytes of a request body
DEFAULTS = {"prime": "", "length": 200, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "seed": None, "beam": 0}


@dataclass
class ServeConfig(Checked):
    host: str = knob(
        "127.0.0.1",
        "address to listen on; 127.0.0.1 = this machine only, 0.0.0.0 = every network (careful)",
        nonempty=True,
    )
    port: int = knob(8000, "TCP port to listen on", ge=1, le=65535, off=(0, "a free port the system picks"))
    max_length: int = knob(1000, "the most characters one request may generate", ge=1)
    max_prime: int = knob(1000, "the most characters of prime text one request may send", ge=1)
    max_temperature: float = knob(5.0, "the highest temperature a request may ask for", gt=0)
    workers: int = knob(4, "generations run at once; more requests wait their turn", ge=1)
    max_beam: int = knob(8, "the most beams a beam-search request may ask for", ge=1, off=(0, "no beam search"))
    novelty: bool = knob(
        False,
        "report with every generation the longest stretch copied from the run's training "
        "text and the share of its 20-character windows found there (indexes the training "
        "text at start)",
    )


class BadRequest(Exception):
    """A request outside the limits: answered with its status and message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _Cancelled(Exception):
    """The client went away: stop generating."""


def request_defaults(config: ServeConfig) -> dict:
    """What a request leaves out, within this server's limits."""
    return {
        **DEFAULTS,
        "length": min(DEFAULTS["length"], config.max_length),
        "temperature": min(DEFAULTS["temperature"], config.max_temperature),
    }


def parse_request(body: object, config: ServeConfig, vocab_size: int) -> SampleConfig:
    """The SampleConfig of a /api/generate body, or BadRequest saying what is wrong.

    The values are checked against SampleConfig's own declarations (as `charrnn sample`
    checks its flags), narrowed by this server's limits.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if unknown := sorted(set(body) - set(DEFAULTS)):
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(DEFAULTS))}")
    if body.get("beam") and not config.max_beam:
        raise BadRequest("this server does no beam search (it was started with --max-beam 0)")
    kinds = knobs.kinds(SampleConfig)
    # JSON has one kind of number: 3.0 is as good an integer as 3.
    whole = {k: int(v) for k, v in body.items() if kinds[k] == "int" and isinstance(v, float) and v.is_integer()}
    sc = SampleConfig(**{**request_defaults(config), **body, **whole})
    limits = {
        "length": {"ge": 1, "le": config.max_length},
        "temperature": {"le": config.max_temperature},
        "top_k": {"le": vocab_size},
        "beam": {"le": config.max_beam},
    }
    try:
        knobs.check(sc, as_field=True, tighter=limits)
    except CharRNNError as e:
        raise BadRequest(str(e)) from None
    if len(sc.prime) > config.max_prime:
        raise BadRequest(f"prime has {len(sc.prime)} characters; the limit is {config.max_prime}", 413)
    if sc.seed is None:
        sc.seed = secrets.randbelow(2**31)  # chosen here so the page can show it and the text can be made again
    return sc


class Playground:
    """The model (shared, read-only), the limits, and the work one request does."""

    def __init__(self, model, vocab, config: ServeConfig, name: str = "model", novelty=None):
        config.check()
        self.model, self.vocab, self.config, self.name = model.eval(), vocab, config, name
        self.novelty = novelty  # a charrnn.sampling.novelty.NoveltyIndex, or None
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="charrnn-gen")

    def info(self) -> dict:
        c, s = self.model.config, self.config
        return {
            "name": self.name,
            "cell": c.cell,
            "layers": c.layers,
            "hidden_size": c.hidden_size,
            "vocab_size": self.vocab.size,
            "encoding": self.vocab.encoding,
            "limits": {
                "length": s.max_length,
                "prime": s.max_prime,
                "temperature": s.max_temperature,
                "top_k": self.vocab.size,
                "beam": s.max_beam,
                "body_bytes": MAX_BODY,
            },
            "defaults": {k: v for k, v in request_defaults(s).items() if k != "seed"},
            "novelty": self.novelty is not None,
        }

    def check_prime(self, sc: SampleConfig) -> None:
        if missing := self.vocab.unknown(sc.prime):
            raise BadRequest(f"the prime has characters outside the model's vocabulary: {describe_chars(missing)}")

    def generate(self, sc: SampleConfig, emit, cancelled: threading.Event) -> None:
        """Generate (streaming each piece to emit), then emit the trace of the whole text."""

        def on_text(piece: str) -> None:
            if cancelled.is_set():
                raise _Cancelled
            emit({"text": piece})

        text = sample(self.model, self.vocab, sc, on_text)[0]
        ids, shown = prime_ids(self.vocab, sc.prime, "error")
        # Read exactly what the sampler read: with no prime it started after a hidden context.
        context = None if shown else ids
        tr = trace(self.model, self.vocab.encode(text, "skip"), context)
        done = {"done": True, "text": text, "trace": trace_payload(tr, self.vocab)}
        if self.novelty is not None:  # of the generated part: the prime is the user's
            n = self.novelty.measure(text[len(self.vocab.decode(ids)) if shown else 0 :])
            done["novelty"] = {"longest": n.longest, "stretch": n.stretch, "windows": n.windows, "copied": n.copied}
        emit(done)


def create_app(model, vocab, config: ServeConfig | None = None, name: str = "model", novelty=None):
    """The Starlette app of the playground for a loaded model (novelty: a NoveltyIndex, for --novelty)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    pg = Playground(model, vocab, config or ServeConfig(), name, novelty)
    static = resources.files("charrnn.inspection").joinpath("static")

    async def index(request):
        return HTMLResponse(static.joinpath("playground.html").read_text(encoding="utf-8"))

    async def model_info(request):
        return JSONResponse(pg.info())

    async def generate(request):
        try:
            sc = await _read_request(request, pg)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except CharRNNError as e:  # a check inside the sampling API: still the client's request
            return JSONResponse({"error": str(e)}, status_code=400)
        return StreamingResponse(_stream(pg, sc), media_type="application/x-ndjson")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pg.pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/", index),
        Route("/api/model", model_info),
        Route("/api/generate", generate, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.playground = pg
    return app


async def _read_request(request, pg: Playground) -> SampleConfig:
    """The SampleConfig of a request, or BadRequest: no body, however malformed, raises anything else."""
    length = request.headers.get("content-length") or "0"
    if not length.isdigit():
        raise BadRequest("the Content-Length header must be a number of bytes")
    if int(length) > MAX_BODY:
        raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
    raw = b""
    async for chunk in request.stream():  # a chunked body has no content-length: count as it comes
        raw += chunk
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and media != "application/json":
        raise BadRequest(f"send the body as JSON with Content-Type: application/json, not {media or 'none'!r}", 415)
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, an integer over 4,300 digits, deep nesting
        raise BadRequest(f"the body must be JSON ({type(e).__name__}: {str(e)[:100]})") from None
    try:
        sc = parse_request(body, pg.config, pg.vocab.size)
    except (ArithmeticError, ValueError, TypeError, RecursionError) as e:  # e.g. a number too large for a float
        raise BadRequest(f"a field of the body cannot be used: {type(e).__name__}: {str(e)[:100]}") from None
    pg.check_prime(sc)
    return sc


async def _stream(pg: Playground, sc: SampleConfig):
    """NDJSON lines of one generation, run on the worker pool and handed over through a queue."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    cancelled = threading.Event()
    end = object()

    def emit(item) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def work() -> None:
        try:
            pg.generate(sc, emit, cancelled)
        except _Cancelled:
            pass
        except Exception as e:  # noqa: BLE001 - told to the client in the stream: the status line has already gone
            emit({"error": f"{type(e).__name__}: {e}"})
        finally:
            emit(end)

    yield json.dumps({"seed": sc.seed}) + "\n"
    pg.pool.submit(work)
    try:
        while (item := await queue.get()) is not end:
            yield json.dumps(item, ensure_ascii=False) + "\n"
    finally:
        cancelled.set()  # the client left early (or we are done): the worker stops at its next character


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


def serve(run: str, config: ServeConfig, which: str = "best", device: str = "cpu") -> None:
    """Load `run` and serve the playground until interrupted."""
    import uvicorn

    from charrnn.checkpoint import LoadConfig

    config.check()
    model, vocab, meta = LoadConfig(str(run), which, str(device)).load()
    novelty = None
    if config.novelty:
        from charrnn.sampling.novelty import index_for_run

        novelty = index_for_run(meta, log=lambda line: print(line, flush=True))
    app = create_app(model, vocab, config, name=str(run), novelty=novelty)
    sock = free_socket(config.host, config.port)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"charrnn playground for {run} on http://{host}:{sock.getsockname()[1]}/ (Ctrl+C stops it)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
