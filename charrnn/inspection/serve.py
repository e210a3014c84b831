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
import json
import secrets
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources

from charrnn.inspection.trace import trace, trace_payload
from charrnn.knobs import knob
from charrnn.errors import CharRNNError
from charrnn.sampling.generate import SampleConfig, prime_ids, sample

MAX_BODY = 64 * 1024  # bytes of a request body
MAX_SEED = 2**63 - 1


@dataclass
class ServeConfig:
    host: str = knob("127.0.0.1", 'address to listen on; 127.0.0.1 = this machine only, 0.0.0.0 = every network (careful)')
    port: int = knob(8000, 'TCP port to listen on')
    max_length: int = knob(1000, 'the most characters one request may generate')
    max_prime: int = knob(1000, 'the most characters of prime text one request may send')
    max_temperature: float = knob(5.0, 'the highest temperature a request may ask for')
    workers: int = knob(4, 'generations run at once; more requests wait their turn')
    max_beam: int = knob(8, 'the most beams a beam-search request may ask for; 0 = no beam search')
    novelty: bool = knob(False, "report with every generation the longest stretch copied from the run's training text and the share of its 20-character windows found there (indexes the training text at start)")

    def validate(self) -> None:
        if not 0 <= self.port < 65536:
            raise CharRNNError("--port must be in 0..65535")
        for name in ("max_length", "max_prime", "workers"):
            if getattr(self, name) < 1:
                raise CharRNNError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_beam < 0:
            raise CharRNNError("--max-beam must be 0 (no beam search) or more")
        if not self.max_temperature > 0:
            raise CharRNNError("--max-temperature must be positive")


class BadRequest(Exception):
    """A request outside the limits: answered with its status and message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _Cancelled(Exception):
    """The client went away: stop generating."""


def _number(body: dict, name: str, kind: type, default, lo, hi):
    value = body.get(name, default)
    if value is None and name == "seed":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise BadRequest(f"{name} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
    if not lo <= value <= hi:
        raise BadRequest(f"{name} must be in [{lo}, {hi}], got {value}")
    return kind(value)


def parse_request(body: object, config: ServeConfig, vocab_size: int) -> SampleConfig:
    """The SampleConfig of a /api/generate body, or BadRequest saying what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    known = {"prime", "length", "temperature", "top_k", "top_p", "seed", "beam"}
    if unknown := sorted(set(body) - known):
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    prime = body.get("prime", "")
    if not isinstance(prime, str):
        raise BadRequest("prime must be a string")
    if len(prime) > config.max_prime:
        raise BadRequest(f"prime has {len(prime)} characters; the limit is {config.max_prime}", 413)
    sc = SampleConfig(
        prime=prime,
        length=_number(body, "length", int, 200, 1, config.max_length),
        temperature=_number(body, "temperature", float, 0.8, 0.0, config.max_temperature),
        top_k=_number(body, "top_k", int, 0, 0, vocab_size),
        top_p=_number(body, "top_p", float, 1.0, 0.0, 1.0),
        seed=_number(body, "seed", int, None, 0, MAX_SEED),
        beam=_number(body, "beam", int, 0, 0, config.max_beam),
    )
    if sc.top_p <= 0:
        raise BadRequest("top_p must be in (0, 1]; 1 = off")
    if sc.seed is None:
        sc.seed = secrets.randbelow(2**31)  # chosen here so the page can show it and the text can be made again
    return sc


class Playground:
    """The model (shared, read-only), the limits, and the work one request does."""

    def __init__(self, model, vocab, config: ServeConfig, name: str = "model", novelty=None):
        config.validate()
        self.model, self.vocab, self.config, self.name = model.eval(), vocab, config, name
        self.novelty = novelty  # a charrnn.sampling.novelty.NoveltyIndex, or None
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="charrnn-gen")

    def info(self) -> dict:
        c, s = self.model.config, self.config
        return {
            "name": self.name, "cell": c.cell, "layers": c.layers, "hidden_size": c.hidden_size,
            "vocab_size": self.vocab.size, "encoding": self.vocab.encoding,
            "limits": {"length": s.max_length, "prime": s.max_prime, "temperature": s.max_temperature,
                       "top_k": self.vocab.size, "beam": s.max_beam, "body_bytes": MAX_BODY},
            "defaults": {"prime": "", "length": 200, "temperature": 0.8, "top_k": 0, "top_p": 1.0, "beam": 0},
            "novelty": self.novelty is not None,
        }  # fmt: skip

    def check_prime(self, sc: SampleConfig) -> None:
        if missing := self.vocab.unknown(sc.prime):
            raise BadRequest(f"the prime has characters outside the model's vocabulary: {''.join(missing)!r}")

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
    if int(request.headers.get("content-length") or 0) > MAX_BODY:
        raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
    raw = b""
    async for chunk in request.stream():  # a chunked body has no content-length: count as it comes
        raw += chunk
        if len(raw) > MAX_BODY:
            raise BadRequest(f"the request body is over {MAX_BODY} bytes", 413)
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None
    sc = parse_request(body, pg.config, pg.vocab.size)
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
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)  # from now on connections wait in the backlog until the server accepts them
    except OSError as e:
        sock.close()
        raise CharRNNError(f"cannot listen on {host}:{port}: {e.strerror}; pick another --port") from None
    return sock


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

    from charrnn.checkpoint import load_model

    config.validate()
    model, vocab, meta = load_model(run, which, device)
    novelty = None
    if config.novelty:
        from charrnn.sampling.novelty import index_for_run

        novelty = index_for_run(meta, log=lambda line: print(line, flush=True))
    app = create_app(model, vocab, config, name=str(run), novelty=novelty)
    sock = free_socket(config.host, config.port)
    host = f"[{config.host}]" if ":" in config.host else config.host
    print(f"charrnn playground for {run} on http://{host}:{sock.getsockname()[1]}/ (Ctrl+C stops it)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
