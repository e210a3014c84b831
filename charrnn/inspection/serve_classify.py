"""`charrnn serve` on a classifier run (task classify): the label distribution as the user types.

A classifier reads a text one character at a time and has a label distribution after
every character (predict.Labeller.prefix_probabilities): the page asks for it at each
keystroke and draws the most likely labels for the whole text, and how the top one's
probability moved letter by letter.

    GET  /               static/classify.html (plain HTML/JS, no CDN)
    POST /api/classify   {"text": "Dostoevsky", "top": 5}   (top: optional, 1..C, default 5)
                         -> {"labels": [the C labels, in the model's order],
                             "chars":  [the T characters read, one a step (a byte, for a
                                        bytes vocabulary: a character can take several)],
                             "steps":  [[p_1 .. p_C] after each of them],   (T, C)
                             "top":    [[label, p], ...] for the whole text, most likely first,
                             "skipped": the characters outside the vocabulary, not read (as
                                        `charrnn classify` skips them)}

The text is limited by --max-prime. An empty text (or one with no known character) reads
nothing: no steps, and the uniform distribution that Labeller.classify gives it.
"""

from __future__ import annotations

import asyncio

import numpy as np

from charrnn.data.vocab import describe_chars
from charrnn.errors import CharRNNError
from charrnn.inspection.serve import BadRequest, Playground, read_json
from charrnn.knobs import check
from charrnn.predict import ApplyConfig, Labeller

PAGE = "classify.html"
FIELDS = ("text", "top")  # of a request body: ApplyConfig's knobs that a page may send
TOP = 5  # labels in "top" when a request leaves it out


def parse_classify(body: object, pg: Playground) -> ApplyConfig:
    """The ApplyConfig of a /api/classify body (its knobs' own checks, narrowed by the
    server's limits), or BadRequest saying what is wrong."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    if unknown := sorted(set(body) - set(FIELDS)):
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(FIELDS)}")
    if body.get("text") is None:
        raise BadRequest('give the text to classify: {"text": "..."}')
    top = body.get("top", min(TOP, len(pg.labels)))
    if isinstance(top, float) and top.is_integer():  # JSON has one kind of number: 3.0 is as good as 3
        top = int(top)
    config = ApplyConfig(text=body["text"], top=top)
    try:
        check(config, as_field=True, tighter={"top": {"le": len(pg.labels)}})
    except CharRNNError as e:
        raise BadRequest(str(e)) from None
    if len(config.text) > pg.config.max_prime:
        raise BadRequest(f"text has {len(config.text)} characters; the limit is {pg.config.max_prime}", 413)
    try:
        config.text.encode("utf-8")
    except UnicodeEncodeError:  # JSON may carry a lone surrogate ("\ud800"), which no text holds
        raise BadRequest("text is not valid Unicode: it holds a lone surrogate") from None
    return config


def read_chars(vocab, text: str) -> list[str]:
    """The character each step reads: one a character in the vocabulary (the rest are skipped),
    or, with a bytes vocabulary, one a byte of each character's UTF-8."""
    if vocab.encoding == "bytes":
        return [c for c in text for _ in c.encode("utf-8")]
    skipped = set(vocab.unknown(text))
    return [c for c in text if c not in skipped]


def classify_text(pg: Playground, text: str, top: int) -> dict:
    """The /api/classify answer for `text`: the label distribution after each character read."""
    # A Labeller per request: it keeps a count of skipped characters, which requests must not share.
    labeller = Labeller(pg.model, pg.vocab, pg.labels, "classify")
    steps = labeller.prefix_probabilities(text)  # (T, C)
    whole = steps[-1] if len(steps) else labeller.classify([text])[0]  # (C,)
    order = np.argsort(-whole, kind="stable")[:top]
    skipped = pg.vocab.unknown(text)
    return {
        "labels": list(pg.labels),
        "chars": read_chars(pg.vocab, text),
        "steps": steps.tolist(),
        "top": [[pg.labels[i], float(whole[i])] for i in order],
        "skipped": describe_chars(skipped) if skipped else "",
    }


async def classify_endpoint(request, pg: Playground):
    """POST /api/classify, on the worker pool; 400 on a run that is not a classifier."""
    from starlette.responses import JSONResponse

    try:
        if pg.task.name != "classify":
            raise BadRequest(f"this is a {pg.task.name} model: it has no labels to show; POST to /api/generate")
        config = parse_classify(await read_json(request), pg)
    except BadRequest as e:
        return JSONResponse({"error": str(e)}, status_code=e.status)
    loop = asyncio.get_running_loop()
    answer = await loop.run_in_executor(pg.pool, classify_text, pg, config.text, config.top)
    return JSONResponse(answer)
