"""`charrnn viz`: one self-contained HTML file that shows what a model sees in a text.

The report is the trace of activations.py (every neuron's activation and the
next-character distribution at every position) rendered by static/trace.js. The
script, the styles and the data are all inlined, so the file opens from disk in
any browser, offline: no external scripts, fonts or CDNs.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from charrnn.errors import CharRNNError, os_error
from charrnn.inspection.trace import trace, trace_payload
from charrnn.knobs import Checked, knob
from charrnn.tasks import GENERATING, require


@dataclass
class VizConfig(Checked):
    text: str | None = knob(None, "the text to read, given inline (instead of --data)")
    data: str | None = knob(None, "the text to read: a file (UTF-8)", nonempty=True)
    out: str = knob("report.html", "where to write the HTML report", nonempty=True)
    max_chars: int = knob(
        2000, "read at most this many characters of the text: the report stores every neuron at every position", ge=1
    )
    unknown: str = knob("skip", "characters outside the vocabulary: skip them, or error", choices=("error", "skip"))

    def rules(self) -> None:
        if (self.text is None) == (self.data is None):
            raise CharRNNError("give exactly one of --data FILE or --text STRING")


def static_text(name: str) -> str:
    """A file of charrnn/static, shared by the report and the playground."""
    return resources.files("charrnn.inspection").joinpath("static", name).read_text(encoding="utf-8")


def read_text(config: VizConfig) -> str:
    if config.text is not None:
        return config.text
    path = Path(config.data).expanduser()
    if path.is_dir():
        raise CharRNNError(f"--data {path} is a folder; give one text file")
    if not path.is_file():
        raise CharRNNError(f"--data {path}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CharRNNError(f"--data {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def json_for_script(data: dict) -> str:
    """JSON safe inside <script>: '</' cannot close the element ('<\\/' is the same JSON string)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("</", "<\\/")


def render_report(payload: dict, title: str, meta: str) -> str:
    """The report's HTML: the template with the styles, the renderer and the data inlined."""
    parts = {
        "TITLE": html.escape(title),
        "META": html.escape(meta),
        "CSS": static_text("trace.css"),
        "JS": static_text("trace.js"),
        "DATA": json_for_script(payload),
    }
    # One pass, so a placeholder-like string inside the text or the script stays as it is.
    return re.sub(r"__(TITLE|META|CSS|JS|DATA)__", lambda m: parts[m.group(1)], static_text("report.html"))


def build_report(model, vocab, text: str, title: str, max_chars: int = 2000, unknown: str = "skip") -> tuple[str, dict]:
    """(HTML, payload) of the report on `text` read by `model`."""
    cut = text[:max_chars]
    ids = vocab.encode(cut, unknown)
    if len(ids) == 0:
        raise CharRNNError("the text is empty (after dropping characters outside the vocabulary)")
    payload = trace_payload(trace(model, ids), vocab)
    c = model.config
    bits = [s for s in payload["surprisal"] if s is not None]
    meta = (
        f"{c.cell.upper()}, {c.layers} layer(s) of {c.hidden_size} units; {len(ids)} positions"
        + (f" (the first {max_chars} of {len(text)} characters)" if len(text) > max_chars else "")
        + (f"; mean surprisal {sum(bits) / len(bits):.3f} bits/char" if bits else "")
    )
    return render_report(payload, title, meta), payload


def viz(run: str, config: VizConfig, which: str = "best", device: str = "cpu") -> Path:
    """Write the report for `run` as `config` says; returns its path."""
    from charrnn.load import LoadConfig

    config.check()
    out = Path(config.out).expanduser()
    if out.is_dir():
        raise CharRNNError(f"--out {out} is a folder; give a file name, such as {out / 'report.html'}")
    model, vocab, meta = LoadConfig(str(run), which, str(device)).load()
    require(meta, "viz", GENERATING)
    page, _ = build_report(model, vocab, read_text(config), f"inside {run}", config.max_chars, config.unknown)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as e:
        raise os_error(e, f"write the report {out}") from None
    return out
