"""`charrnn serve`: a local web playground over a trained model (Starlette + uvicorn).

    GET  /               the playground page (static/playground.html, plain HTML/JS); for a
                         classifier run, the classifier page (serve_classify.py)
    GET  /static/...     its script and styles (the same trace.js the viz report inlines)
    GET  /api/model      the model's shape, task and labels, the request limits and the defaults
    POST /api/generate   {"prime", "length", "temperature", "top_k", "top_p", "seed", "beam", "label"}
                         -> NDJSON, one object a line, streamed as it is written:
                            {"seed": S}  then  {"text": "..."} ...  then
                            {"done": true, "text": FULL, "trace": trace_payload[, "novelty": {...}]}
                         (with "beam" > 0 the text comes in one piece, at the end: the best
                         beam is known only then; with --novelty, "novelty" tells what of
                         the generated part was copied from the training text; "label":
                         what a generate run writes for, one of /api/model's "labels")
    POST /api/classify   a classifier's label distribution after every character (serve_classify.py)

A run serves the endpoint of its task; the other one answers 400 saying which to use. Tag
and truecase runs are refused at start: `charrnn tag` applies them.

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
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources

from charrnn import knobs
from charrnn.data.vocab import describe_chars
from charrnn.errors import CharRNNError
from charrnn.inspection.listen import BackgroundServer, free_socket  # noqa: F401  (BackgroundServer: re-exported)
from charrnn.inspection.trace import trace, trace_payload
from charrnn.knobs import Checked, knob
from charrnn.sampling.generate import SampleConfig, prime_ids, sample
from charrnn.tasks import require

SERVED = ("next-char", "generate", "classify")  # the tasks serve shows: generation and classifiers

MAX_BODY = 64 * 1024  # bytes of a request body
# label: a generate run's; it writes for this label, one of /api/model's "labels".
DEFAULTS = {
    "prime": "",
    "length": 200,
    "temperature": 0.8,
    "top_k": 0,
    "top_p": 1.0,
    "seed": None,
    "beam": 0,
    "label": None,
}


@dataclass
class ServeConfig(Checked):
    host: str = knob(
        "127.0.0.1",
        "address to listen on; 127.0.0.1 = this machine only, 0.0.0.0 = every network (careful)",
        nonempty=True,
    )
    port: int = knob(8000, "TCP port to listen on", ge=1, le=65535, off=(0, "a free port the system picks"))
    max_length: int = knob(1000, "the most characters one request may generate", ge=1)
    max_prime: int = knob(1000, "the most characters of prime text (or of text to classify) one request may send", ge=1)
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

    def __init__(self, model, vocab, config: ServeConfig, name: str = "model", novelty=None, meta=None):
        config.check()
        self.model, self.vocab, self.config, self.name = model.eval(), vocab, config, name
        self.novelty = novelty  # a charrnn.sampling.novelty.NoveltyIndex, or None
        self.task = require(meta or {}, "serve", SERVED)  # meta: the run's checkpoint.json (None: next-char)
        self.labels = tuple((meta or {}).get("labels", ()))  # C labels of a classifier (or a generate run)
        self.pool = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="charrnn-gen")

    def info(self) -> dict:
        c, s = self.model.config, self.config
        return {
            "name": self.name,
            "task": self.task.name,
            "labels": list(self.labels),
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
        if self.vocab.labels and sc.label is None:
            raise BadRequest(f"this model writes for a label: give label, one of {', '.join(self.vocab.labels)}")
        if sc.label is not None:
            self.vocab.label_id(sc.label)  # an unknown label: CharRNNError listing the known ones

    def generate(self, sc: SampleConfig, emit, cancelled: threading.Event) -> None:
        """Generate (streaming each piece to emit), then emit the trace of the whole text."""

        def on_text(piece: str) -> None:
            if cancelled.is_set():
                raise _Cancelled
            emit({"text": piece})

        text = sample(self.model, self.vocab, sc, on_text)[0]
        ids, shown = prime_ids(self.vocab, sc.prime, "error", sc.label)
        # Read exactly what the sampler read: it started after a hidden context (a newline, the
        # end of an item, a label's symbol) unless the prime alone was all it read.
        context = ids[: len(ids) - len(self.vocab.encode(sc.prime))]
        tr = trace(self.model, self.vocab.encode(text, "skip"), context)
        done = {"done": True, "text": text, "trace": trace_payload(tr, self.vocab)}
        if self.novelty is not None:  # of the generated part: the prime is the user's
            n = self.novelty.measure(text[len(self.vocab.decode(ids)) if shown else 0 :])
            done["novelty"] = {"longest": n.longest, "stretch": n.stretch, "windows": n.windows, "copied": n.copied}
        emit(done)


def create_app(model, vocab, config: ServeConfig | None = None, name: str = "model", novelty=None, meta=None):
    """The Starlette app of the playground for a loaded model (novelty: a NoveltyIndex, for --novelty;
    meta: the run's checkpoint.json, whose task picks the page; None: a next-char model)."""
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from charrnn.inspection.serve_classify import PAGE, classify_endpoint

    pg = Playground(model, vocab, config or ServeConfig(), name, novelty, meta)
    static = resources.files("charrnn.inspection").joinpath("static")
    page = PAGE if pg.task.name == "classify" else "playground.html"

    async def index(request):
        return HTMLResponse(static.joinpath(page).read_text(encoding="utf-8"))

    async def model_info(request):
        return JSONResponse(pg.info())

    async def generate(request):
        try:
            if not pg.task.generates:
                raise BadRequest(f"this is a {pg.task.name} model: it writes no text; POST to /api/classify")
            sc = await _read_request(request, pg)
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except CharRNNError as e:  # a check inside the sampling API: still the client's request
            return JSONResponse({"error": str(e)}, status_code=400)
        return StreamingResponse(_stream(pg, sc), media_type="application/x-ndjson")

    async def classify(request):
        return await classify_endpoint(request, pg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pg.pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/", index),
        Route("/api/model", model_info),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/classify", classify, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.playground = pg
    return app


async def read_json(request) -> object:
    """The JSON body of a request ({} when empty), or BadRequest: no body, however malformed, raises anything else."""
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
        return json.loads(raw or b"{}")
    except (ValueError, RecursionError) as e:  # bad JSON or UTF-8, an integer over 4,300 digits, deep nesting
        raise BadRequest(f"the body must be JSON ({type(e).__name__}: {str(e)[:100]})") from None


async def _read_request(request, pg: Playground) -> SampleConfig:
    """The SampleConfig of a /api/generate request, or BadRequest."""
    body = await read_json(request)
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


def serve(run: str, config: ServeConfig, which: str = "best", device: str = "cpu") -> None:
    """Load `run` and serve the playground until interrupted."""
    import uvicorn

    from charrnn.load import LoadConfig

    config.check()
    model, vocab, meta = LoadConfig(str(run), which, str(device)).load()
    task = require(meta, "serve", SERVED)  # before anything is indexed or bound
    if config.novelty and not task.generates:
        raise CharRNNError(f"--novelty measures generated text, and a {task.name} model writes none: leave it out")
    novelty = None
    if config.novelty:
        from charrnn.sampling.novelty import index_for_run

        novelty = index_for_run(meta, log=lambda line: print(line, flush=True))
    app = create_app(model, vocab, config, name=str(run), novelty=novelty, meta=meta)
    sock = free_socket(config.host, config.port)
    host = f"[{config.host}]" if ":" in config.host else config.host
    what = "classifier" if task.name == "classify" else "playground"
    print(f"charrnn {what} for {run} on http://{host}:{sock.getsockname()[1]}/ (Ctrl+C stops it)", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
