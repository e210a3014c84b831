"""`charrnn export RUN --onnx FILE`: the step function as an ONNX graph, for other runtimes.

The graph is CharRNN.step, exported by PyTorch's own exporter (torch.onnx.export, the
torch.export-based one; the recurrent layers become ONNX's RNN / LSTM / GRU operators):

    inputs   ids  (B,) int64            the current character of each of B streams
             h    (L, B, H) float32     the state: h, and c for lstm (zeros to start)
             c    (L, B, H) float32
    outputs  logits  (B, V) float32     the next character's logits (softmax for probabilities)
             h_next  (L, B, H) float32  the state after this character, in the inputs' order
             c_next  (L, B, H) float32

B is dynamic. The file is self-contained: its metadata (metadata_props) hold the
vocabulary (charrnn_vocab: {"encoding", "size", "chars"}; id = position in chars) and
the model config (charrnn_model), as JSON, and the SHA-256 of the graph and the other
metadata (charrnn_sha256), which load_onnx() checks. examples/onnx_sample.py samples
with onnxruntime and NumPy alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import warnings
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.export.common import check_exportable, damaged, task_of, write_atomic

FORMAT, VERSION = "charrnn-onnx", 1
HASH_KEY = "charrnn_sha256"
NEEDS = "ONNX export needs the onnx, onnxruntime and onnxscript packages: pip install 'charrnn[export]'"


def require_onnx():
    """The onnx module, or a one-line error that says what to install."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx.export's translator)
    except ImportError:
        raise CharRNNError(NEEDS) from None
    return onnx


def state_names(cell: str) -> list[str]:
    return ["h", "c"] if cell == "lstm" else ["h"]


def _step_module(model):
    """CharRNN.step with the state as separate tensors: ONNX inputs and outputs are flat."""
    import torch

    class Step(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, ids, h, c=None):  # named arguments: torch.export takes no *args
            logits, new_state = self.model.step(ids, (h,) if c is None else (h, c))
            return (logits, *new_state)

    return Step().eval()


def content_hash(proto) -> str:
    """SHA-256 of the graph (weights included) and of every metadata entry but the hash itself."""
    props = sorted((p.key, p.value) for p in proto.metadata_props if p.key != HASH_KEY)
    h = hashlib.sha256(proto.graph.SerializeToString(deterministic=True))
    h.update(json.dumps(props).encode("utf-8"))
    return h.hexdigest()


def build_onnx(model, vocab, meta: dict):
    """The onnx.ModelProto of `model`'s step function, with charrnn's metadata and hash."""
    import torch

    onnx = require_onnx()
    check_exportable(meta, "ONNX")
    c = model.config
    names = state_names(c.cell)
    model = model.to("cpu").float().eval()
    example = (torch.zeros(2, dtype=torch.long), *model.init_state(2))  # B = 2: a size torch.export keeps dynamic
    batch = torch.export.Dim("B")
    quiet = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the exporter logs every optional translator it skips
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), torch.no_grad():
            warnings.simplefilter("ignore")  # deprecations inside torch.export, not ours to fix
            program = torch.onnx.export(
                _step_module(model),
                example,
                dynamo=True,
                verbose=False,
                input_names=["ids", *names],
                output_names=["logits", *[n + "_next" for n in names]],
                dynamic_shapes=({0: batch}, *[{1: batch} for _ in names]),
            )
    except Exception as e:  # the exporter's errors are long; keep the first line
        raise CharRNNError(f"torch.onnx.export failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    finally:
        logger.setLevel(level)
    proto = program.model_proto
    metrics = meta.get("metrics") or {}
    entries = {
        "charrnn_format": FORMAT,
        "charrnn_version": str(VERSION),
        "charrnn_task": task_of(meta),
        "charrnn_model": json.dumps(c.to_json()),
        "charrnn_vocab": json.dumps(vocab.to_json(), ensure_ascii=False),
        "charrnn_step": json.dumps(meta.get("step")),
        "charrnn_best_val_loss": json.dumps(metrics.get("best_val_loss")),
        "charrnn_io": "ids (B,) int64 and state "
        + ", ".join(f"{n} (L, B, H)" for n in names)
        + " -> logits (B, V) and "
        + ", ".join(n + "_next" for n in names)
        + "; state starts at zeros",
    }
    onnx.helper.set_model_props(proto, entries)
    proto.producer_name, proto.doc_string = "charrnn", f"charrnn {c.cell} step function: {entries['charrnn_io']}"
    digest = content_hash(proto)  # before the entry that holds it exists
    entry = proto.metadata_props.add()
    entry.key, entry.value = HASH_KEY, digest
    return proto


def export_onnx(run: str | Path, out: str | Path, which: str = "best") -> Path:
    """Write the ONNX step graph of `run`'s `which` checkpoint to `out`, atomically; returns its path."""
    require_onnx()
    from charrnn.load import load_model

    model, vocab, meta = load_model(run, which)
    return write_atomic(out, build_onnx(model, vocab, meta).SerializeToString())


def load_onnx(path: str | Path):
    """(onnx.ModelProto, vocab, model config dict, metadata dict) of a verified export."""
    from charrnn.data.vocab import Vocab

    onnx = require_onnx()
    path = Path(path).expanduser()
    if not path.is_file():
        raise CharRNNError(f"no such file: {path}")
    how = "export it again from the run"
    try:
        proto = onnx.load_model_from_string(path.read_bytes())
    except Exception:  # protobuf's DecodeError, or a truncated message
        raise damaged(path, "not a readable ONNX file", how) from None
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("charrnn_format") != FORMAT:
        raise damaged(path, "no charrnn metadata in it: a truncated file, or not a charrnn export", how)
    if int(props.get("charrnn_version", 0)) > VERSION:
        raise CharRNNError(f"{path} was written by a newer charrnn; upgrade charrnn")
    if props.get(HASH_KEY) != content_hash(proto):
        raise damaged(path, "its SHA-256 differs from the one recorded inside it", how)
    try:
        onnx.checker.check_model(proto)
    except Exception as e:
        raise damaged(path, f"the ONNX checker refuses it: {str(e).splitlines()[0]}", how) from None
    return proto, Vocab.from_json(json.loads(props["charrnn_vocab"])), json.loads(props["charrnn_model"]), props


def describe_onnx(path: str | Path) -> str:
    """One line on a verified ONNX export (for `charrnn export --verify`)."""
    proto, vocab, c, props = load_onnx(path)
    ops = sorted({n.op_type for n in proto.graph.node} & {"RNN", "LSTM", "GRU"}) or ["MatMul"]
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    shape = f"{c['cell'].upper()} {c['layers']}x{c['hidden_size']}, {vocab.size} characters"
    return (
        f"{path}: a charrnn ONNX step graph, SHA-256 verified; {shape}, task {props['charrnn_task']}, "
        f"opset {opset}, cells as {'/'.join(ops)}"
    )
