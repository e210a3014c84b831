"""Checkpoints: plain data, self-contained, written atomically, checked when read.

A run folder holds (run_folder.py owns the folder itself: its lock, clean-up and metrics)

    runs/NAME/
      metrics.jsonl            every logged figure, one JSON object a line
      last/                    the latest state (what --resume continues)
      best/                    the lowest validation loss so far (what sample/eval use)

and each checkpoint folder holds

      model.safetensors        the weights, named as CharRNN's state_dict
      checkpoint.json          format, engine, task, model config, vocabulary, step, metrics,
                               the training and data configs, the SHA-256 and size of each
                               file beside it ("files"), and the SHA-256 of its own content
                               ("meta_sha256", over the rest written canonically)
      trainer.pt               (last/ only) optimizer, schedule, RNG states, data position and
                               hidden state: tensors, numbers and dicts only, so it loads
                               with torch.load(..., weights_only=True). Nothing is pickled.

Sampling needs only model.safetensors and checkpoint.json: no dataset, no GPU.

A checkpoint is written into a temporary folder beside its destination, flushed to
disk, and swapped in by rename, so a crash at any moment leaves either the old
checkpoint or the new one whole. If the crash falls between the two renames of the
swap, the old one is still found under its `.old` name and loading falls back to it.
A failed write (a full disk) removes the temporary folder and leaves the old one as it was.

Reading checks what was written: each file's size and SHA-256 against checkpoint.json,
the vocabulary against the model's size, the tensors against the model's shapes. A
damaged file gets a one-line error that names it and, when the run's other checkpoint
(best or last) is intact, says so. Checkpoints written before the hashes still load.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from charrnn.data.vocab import Vocab
from charrnn.errors import CharRNNError, os_error

# torch is imported where used, so that the NumPy engine can read and write checkpoints without it.

FORMAT = "charrnn-checkpoint"
VERSION = 1
WEIGHTS, META, TRAINER = "model.safetensors", "checkpoint.json", "trainer.pt"


class _Damaged(Exception):
    """A checkpoint file that cannot be trusted: which file, and why (turned into a CharRNNError)."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"{path} is damaged ({why})")
        self.path = path


# -- writing ---------------------------------------------------------------------------


def save_checkpoint(folder: Path, weights: dict, meta: dict, trainer_state: dict | None = None) -> None:
    """Atomically (re)write the checkpoint `folder`. `meta` must hold "model" and "vocab".
    `weights` maps names to torch tensors, or to NumPy arrays (the reference engine).

    On a failed write (full disk, read-only file system) the previous checkpoint in
    `folder` is left whole and a CharRNNError says so."""
    folder = Path(folder)
    blobs = {WEIGHTS: _weights_bytes(weights)}
    if trainer_state is not None:
        blobs[TRAINER] = _torch_bytes(trainer_state)
    files = {name: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)} for name, data in blobs.items()}
    meta = {"format": FORMAT, "version": VERSION, **meta, "files": files}
    blobs[META] = json.dumps({**meta, "meta_sha256": _meta_hash(meta)}, indent=1).encode()
    tmp = folder.parent / f".{folder.name}.tmp{os.getpid()}"
    old = folder.parent / f".{folder.name}.old"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name, data in blobs.items():
            _write(tmp / name, data)
        if folder.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
        _fsync_dir(folder.parent)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        there = (folder / META).exists() or (old / META).exists()
        kept = "the previous checkpoint there is intact" if there else "none was there before"
        raise os_error(e, f"save the checkpoint {folder} ({kept})") from None


def _meta_hash(meta: dict) -> str:
    """SHA-256 of checkpoint.json's own content (less this field), written canonically so that
    reading it back and writing it again gives the same bytes."""
    content = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _weights_bytes(weights: dict) -> bytes:
    if all(isinstance(v, np.ndarray) for v in weights.values()):
        from safetensors.numpy import save as save_numpy

        return save_numpy({k: np.ascontiguousarray(v) for k, v in weights.items()})
    from safetensors.torch import save

    # Clone to plain contiguous CPU tensors: safetensors refuses shared storage (tied weights).
    return save({k: v.detach().to("cpu").contiguous().clone() for k, v in weights.items()})


def _torch_bytes(state: dict) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


# -- finding -----------------------------------------------------------------------------


def resolve(path: str | Path, which: str = "best") -> Path:
    """The checkpoint folder that a run folder or checkpoint path names.

    A run folder gives its `which` checkpoint (best, falling back to last, or last).
    """
    path = Path(path).expanduser()
    if (path / META).exists():
        return path
    if path.name in ("last", "best") and (path.parent / f".{path.name}.old" / META).exists():
        return path.parent / f".{path.name}.old"  # a crash fell inside the swap
    order = [which, "last"] if which == "best" else [which]
    for name in order:
        for cand in (path / name, path / f".{name}.old"):
            if (cand / META).exists():
                return cand
    if not path.exists():
        raise CharRNNError(f"no such run folder or checkpoint: {path}")
    if not path.is_dir():
        raise CharRNNError(f"{path} is a file; give the run folder (the one that holds best/ and last/)")
    if which == "last" and (path / "best" / META).exists():
        raise CharRNNError(
            f"{path} has best/ but no last/ (the run stopped before its first complete save): sample or "
            "eval it with --checkpoint best; --resume has nothing to continue, so to train, run the same "
            "command without --resume to start again"
        )
    raise CharRNNError(f"{path} holds no checkpoint (looked for {' or '.join(order)}/{META}); train first")


def has_checkpoint(run: str | Path) -> bool:
    """Whether `run` holds a run that --resume can continue (a last/ checkpoint).

    A folder with best/ alone (stopped before its first complete save) does not: a new
    run may start there, and replaces best/ at its first save."""
    run = Path(run)
    return any((run / name / META).exists() for name in ("last", ".last.old"))


def _other(folder: Path) -> tuple[str, Path] | None:
    """The run's other checkpoint (best for last, last for best), if there is one."""
    name = folder.name.strip(".").removesuffix(".old")
    if name not in ("best", "last"):
        return None
    other = "last" if name == "best" else "best"
    for cand in (folder.parent / other, folder.parent / f".{other}.old"):
        if (cand / META).exists():
            return other, cand
    return None


def advice(folder: Path) -> str:
    found = _other(folder)
    if found is None or not intact(found[1]):
        return "; restore it from a backup or train again"
    which, path = found
    tail = " (it holds no training state, so --resume cannot continue from it)" if which == "best" else ""
    return f"; {path} is intact: use it with --checkpoint {which}{tail}"


def _reported(fn):
    """Turn _Damaged into a one-line CharRNNError that says what else is intact."""

    def wrapper(folder, *args, **kwargs):
        try:
            return fn(Path(folder), *args, **kwargs)
        except _Damaged as d:
            raise CharRNNError(f"{d}{advice(Path(folder))}") from None

    wrapper.__doc__, wrapper.__name__ = fn.__doc__, fn.__name__
    return wrapper


# -- reading and checking --------------------------------------------------------------------


def _read_meta(folder: Path) -> dict:
    path = folder / META
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise _Damaged(path, "it is missing") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Damaged(path, f"not valid JSON: {e}; truncated or overwritten?") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CharRNNError(f"{folder} is not a charrnn checkpoint")
    if "meta_sha256" in meta and meta["meta_sha256"] != _meta_hash(meta):  # absent: written before the hashes
        raise _Damaged(path, "its content differs from what was written: a damaged byte, or an edit")
    if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
        raise CharRNNError(f"{folder} was written by a newer charrnn (format {meta.get('version')}); upgrade charrnn")
    if isinstance(meta.get("model"), dict) and "vocab_size" in meta["model"]:
        _check_vocab(path, meta)
    return meta


def _check_vocab(path: Path, meta: dict) -> None:
    try:
        vocab = Vocab.from_json(meta["vocab"])
        declared = meta["vocab"].get("size", vocab.size)
        expected = meta["model"]["vocab_size"]
    except (KeyError, TypeError, AttributeError, CharRNNError) as e:
        raise _Damaged(path, f"its vocabulary cannot be read: {type(e).__name__} {e}") from None
    if not vocab.size == declared == expected:
        why = f"its vocabulary has {vocab.size} characters but says {declared} and the model has {expected}"
        raise _Damaged(path, why)


def _read_file(folder: Path, name: str, meta: dict) -> bytes:
    """The bytes of `name`, checked against the size and SHA-256 that checkpoint.json recorded."""
    path = folder / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Damaged(path, "it is missing") from None
    record = (meta.get("files") or {}).get(name)
    if record is None:  # a checkpoint written before the hashes: nothing to compare with
        return data
    if len(data) != record.get("bytes"):
        raise _Damaged(path, f"it has {len(data):,} bytes but {record.get('bytes'):,} were written; truncated?")
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise _Damaged(path, f"its SHA-256 differs from the one recorded in {META} when it was written")
    return data


def _parse_weights(path: Path, data: bytes, numpy: bool) -> dict:
    from safetensors import SafetensorError

    try:
        if numpy:
            from safetensors.numpy import load as load_numpy

            return load_numpy(data)
        from safetensors.torch import load

        return load(data)
    except SafetensorError as e:
        raise _Damaged(path, f"not a valid safetensors file: {e}") from None


def intact(folder: str | Path) -> bool:
    """Whether the checkpoint `folder` reads back whole: its JSON, the files' hashes, the weights' header."""
    folder = Path(folder)
    try:
        meta = _read_meta(folder)
        for name in meta.get("files") or {WEIGHTS: None}:
            data = _read_file(folder, name, meta)
            if name == WEIGHTS:
                _parse_weights(folder / name, data, numpy=True)
    except (_Damaged, CharRNNError, OSError):
        return False
    return True


@_reported
def read_meta(folder: Path) -> dict:
    """checkpoint.json of `folder`, checked: JSON, format, version, and the vocabulary's size."""
    return _read_meta(folder)


@_reported
def load_weights(folder: Path, numpy: bool = False) -> dict:
    """The weights of `folder` as CPU torch tensors (NumPy arrays with numpy=True), checked against their hash."""
    data = _read_file(folder, WEIGHTS, _read_meta(folder))
    return _parse_weights(folder / WEIGHTS, data, numpy)


@_reported
def load_trainer_state(folder: Path) -> dict:
    """trainer.pt of `folder`, checked against its hash and loaded with weights_only=True: a file
    that holds anything but tensors, numbers and dicts is refused, never run."""
    import pickle

    import torch

    if not (folder / TRAINER).exists():
        raise CharRNNError(f"{folder} has no {TRAINER}, so it cannot be resumed")
    data = _read_file(folder, TRAINER, _read_meta(folder))
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _Damaged(
            folder / TRAINER,
            "it holds objects other than tensors, numbers and dicts, so it was refused "
            "without running them; it was not written by charrnn",
        ) from None
    except (RuntimeError, EOFError, ValueError) as e:
        raise _Damaged(folder / TRAINER, f"not a valid PyTorch file: {str(e).splitlines()[0][:120]}") from None


@_reported
def load_into(folder: Path, model, meta: dict) -> None:
    """Fill `model` with folder's weights, checked against checkpoint.json and the model's shapes."""
    weights = _parse_weights(folder / WEIGHTS, _read_file(folder, WEIGHTS, meta), numpy=False)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:  # missing or unexpected names, or a tensor of the wrong shape
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e))
        raise _Damaged(folder / WEIGHTS, f"its tensors do not fit the model in {META}: {first[:200]}") from None
