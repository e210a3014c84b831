"""`charrnn export RUN --html FILE`: one HTML file that writes text in any browser.

The page is static/page.html with the engine (static/charrnn.js) and the model
inlined: no server, no CDN, no build step; it opens from disk or from any static host.
The model sits in two script elements that the browser does not run:

    <script type="application/json" id="charrnn-manifest">  config, vocabulary, task, the
                                                            tensors' names, shapes and offsets,
                                                            the weights' SHA-256
    <script type="text/plain" id="charrnn-weights">         the weights: one little-endian
                                                            buffer, base64

Precision: float32 by default. The page then computes charrnn's own next-character
probabilities (tests check 1e-4; they agree to 6e-7 on the tiny preset's model), and a
2x256 LSTM with 65 characters stays under 5 MB (3.5 MB of weights, 4/3 of that in
base64). --precision float16 halves the file, for bigger models, at the price of moving
the probabilities by about 1e-4 to 1e-3 (2.3e-4 at most on that model after a minute of
training): every weight is rounded to 11 significant bits.

Damage: `<meta name="charrnn-sha256">` holds the SHA-256 of the whole file as written,
with that hex replaced by zeros, so load_html() notices any changed byte. The page itself
checks the weights against the manifest's SHA-256 (where the browser offers
crypto.subtle: file:// and https://) and their length (everywhere).
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import re
from importlib import resources
from pathlib import Path

import numpy as np

from charrnn.errors import CharRNNError
from charrnn.export.common import PRECISIONS, check_exportable, damaged, sha256_hex, task_of, write_atomic
from charrnn.inspection.viz import json_for_script

FORMAT, VERSION = "charrnn-html", 1
ZEROS = "0" * 64
_SHA = re.compile(rb'<meta name="charrnn-sha256" content="([0-9a-f]{64})">')
_BLOCK = r'<script type="{kind}" id="charrnn-{name}">(.*?)</script>'


def static_text(name: str) -> str:
    return resources.files("charrnn.export").joinpath("static", name).read_text(encoding="utf-8")


def weight_tensors(model) -> dict[str, np.ndarray]:
    """The tensors the page needs, float32, in state_dict order. A tied head is the
    embedding (the page reads embedding.weight for both), so it is stored once."""
    out = {}
    for name, t in model.state_dict().items():
        if name == "head.weight" and model.config.tie_weights:
            continue
        out[name] = t.detach().to("cpu").float().numpy()
    return out


def pack_weights(tensors: dict[str, np.ndarray], precision: str) -> tuple[bytes, list]:
    """(one little-endian buffer, [[name, shape, offset in elements], ...])."""
    dtype = np.dtype("<f4" if precision == "float32" else "<f2")
    index, parts, offset = [], [], 0
    for name, a in tensors.items():
        index.append([name, list(a.shape), offset])
        parts.append(np.ascontiguousarray(a, dtype=dtype).tobytes())
        offset += a.size
    return b"".join(parts), index


def build_page(model, vocab, meta: dict, precision: str = "float32", title: str = "charrnn model") -> str:
    """The page's HTML, with its own SHA-256 recorded inside."""
    if precision not in PRECISIONS:
        raise CharRNNError(f"unknown --precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    check_exportable(meta, "HTML")
    if model.config.cutoffs:
        raise CharRNNError(
            "the HTML page runs a full softmax; this model has an adaptive one (--cutoffs): export --onnx, "
            "or train one with a full softmax (the flag --cutoffs alone, or --tie-weights)"
        )
    data, index = pack_weights(weight_tensors(model), precision)
    c = model.config
    metrics = meta.get("metrics") or {}
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "task": task_of(meta),
        "model": c.to_json(),
        "vocab": vocab.to_json(),
        "precision": precision,
        "tensors": index,
        "weights_bytes": len(data),
        "weights_sha256": sha256_hex(data),
        "step": meta.get("step"),
        "best_val_loss": metrics.get("best_val_loss"),
    }
    loss = manifest["best_val_loss"]
    about = (
        f"{c.cell.upper()}, {c.layers} layer(s) of {c.hidden_size} units, {vocab.size} characters"
        + (f"; validation loss {loss:.3f} nats/char" if loss else "")
        + f"; weights in {precision}, {len(data) / 1e6:.1f} MB"
    )
    parts = {
        "TITLE": html_lib.escape(title),
        "ABOUT": html_lib.escape(about),
        "SHA": ZEROS,
        "ENGINE": static_text("charrnn.js"),
        "MANIFEST": json_for_script(manifest),
        "WEIGHTS": base64.b64encode(data).decode("ascii"),
    }
    # One pass, so a placeholder-like string inside the script or the data stays as it is.
    page = re.sub(r"__([A-Z]+)__", lambda m: parts.get(m.group(1), m.group(0)), static_text("page.html"))
    return page.replace(f'content="{ZEROS}"', f'content="{sha256_hex(page.encode("utf-8"))}"', 1)


def export_html(run: str | Path, out: str | Path, which: str = "best", precision: str = "float32") -> Path:
    """Write the page of `run`'s `which` checkpoint to `out`, atomically; returns its path."""
    from charrnn.load import load_model

    model, vocab, meta = load_model(run, which)
    return write_atomic(out, build_page(model, vocab, meta, precision, f"charrnn: {Path(run).name}").encode("utf-8"))


def _block(text: str, kind: str, name: str, path: Path) -> str:
    m = re.search(_BLOCK.format(kind=re.escape(kind), name=name), text, re.S)
    if m is None:
        raise damaged(path, f"its {name} block is missing", "export it again")
    return m.group(1)


def read_page(path: str | Path) -> tuple[dict, bytes]:
    """(manifest, weight bytes) of a page, after checking its SHA-256."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CharRNNError(f"no such file: {path}")
    raw = path.read_bytes()
    m = _SHA.search(raw)
    if m is None:
        raise CharRNNError(f"{path} is not a charrnn HTML export (no charrnn-sha256 in it), or its head is damaged")
    if sha256_hex(raw.replace(m.group(0), m.group(0).replace(m.group(1), ZEROS.encode()), 1)) != m.group(1).decode():
        raise damaged(path, "its SHA-256 differs from the one recorded inside it", "export it again from the run")
    text = raw.decode("utf-8")
    manifest = json.loads(_block(text, "application/json", "manifest", path))  # "<\\/" is JSON for "</"
    if manifest.get("format") != FORMAT or manifest.get("version", 0) > VERSION:
        what = f"format {manifest.get('format')}, version {manifest.get('version')}"
        raise CharRNNError(f"{path} is not a charrnn HTML export this charrnn can read ({what}); upgrade charrnn")
    return manifest, base64.b64decode(_block(text, "text/plain", "weights", path))


def load_html(path: str | Path):
    """(model, vocab, manifest) from a page, with the weights the page runs (float16 ones widened)."""
    import torch

    from charrnn.data.vocab import Vocab
    from charrnn.engines.model import CharRNN, ModelConfig

    manifest, data = read_page(path)
    dtype = np.dtype("<f4" if manifest["precision"] == "float32" else "<f2")
    flat = np.frombuffer(data, dtype=dtype).astype(np.float32)
    weights = {n: torch.from_numpy(flat[o : o + int(np.prod(s))].reshape(s).copy()) for n, s, o in manifest["tensors"]}
    model = CharRNN(ModelConfig.from_json(manifest["model"]))
    if model.config.tie_weights:
        weights["head.weight"] = weights["embedding.weight"]
    model.load_state_dict(weights)
    return model.eval(), Vocab.from_json(manifest["vocab"]), manifest


def describe_html(path: str | Path) -> str:
    """One line on a verified page (for `charrnn export --verify`)."""
    manifest, data = read_page(path)
    c = manifest["model"]
    return (
        f"{path}: a charrnn HTML page, SHA-256 verified; {c['cell'].upper()} {c['layers']}x{c['hidden_size']}, "
        f"{manifest['vocab']['size']} characters, task {manifest['task']}, weights {manifest['precision']} "
        f"({len(data):,} bytes)"
    )
