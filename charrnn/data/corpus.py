"""Read a corpus, encode it once into a cached id array, and split it (data/layout.py batches it).

A corpus is a file, a folder (its text files, recursively, in sorted order) or a
glob. Encoding streams the files in chunks twice: once to find the vocabulary and
once to write the ids, as the smallest unsigned type that holds them, into a cache
file that training then memory-maps. Neither the text nor a Python list of ids is
ever held whole in memory, so a corpus of several GB trains in a few hundred MB.
"""

from __future__ import annotations

import codecs
import contextlib
import glob
import hashlib
import json
import os
import shlex
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from charrnn.data.vocab import ENCODINGS, Vocab, describe_chars
from charrnn.errors import CharRNNError, os_error
from charrnn.knobs import Checked, knob

ITEM_KINDS = ("lines", "paragraphs", "files")  # --items: see data/items.py

_ASCII = bytes(range(128))
CHUNK_BYTES = 16 << 20  # read 16 MB at a time: big enough to be fast, small enough for any machine
BUNDLED = "tinyshakespeare.txt"
CACHE_VERSION = 2  # 2: meta.json records the ids of each file


class NotUTF8(CharRNNError):
    """A text file that is not UTF-8. Its fix depends on the command: train can read any file
    with --encoding bytes, but eval and the like read text in the model's encoding, so for them
    (can_read_bytes=False) converting the file is the only fix."""

    def __init__(self, path: Path, offset: int, can_read_bytes: bool = True):
        self.path, self.offset = Path(path), offset
        # iconv needs the file's real encoding; Latin-1 is the usual one (and a safe guess to show)
        out = self.path.with_name(f"{self.path.stem}.utf8{self.path.suffix}")
        iconv = f"iconv -f latin1 -t utf-8 {shlex.quote(str(path))} > {shlex.quote(str(out))}"
        convert = f"convert it to UTF-8 (if it is Latin-1: {iconv})"
        if can_read_bytes:
            fix = f"{convert} or pass --encoding bytes to read any file as bytes"
        else:
            fix = f"this model reads UTF-8 text: {convert}"
        super().__init__(f"{path} is not valid UTF-8 (byte offset {offset}); {fix}")

    def for_model(self) -> NotUTF8:
        """The same error for a command whose encoding is the model's, with no --encoding flag."""
        return NotUTF8(self.path, self.offset, can_read_bytes=False)


@dataclass
class DataConfig(Checked):
    data: str | None = knob(
        None,
        "the text to train on: a file, a folder (its files, recursively, sorted) or a glob; "
        "default: the bundled Tiny Shakespeare",
        nonempty=True,
    )
    encoding: str = knob(
        "utf-8", "utf-8: a vocabulary of the characters seen; bytes: 256 byte values, for any file", choices=ENCODINGS
    )
    val_fraction: float = knob(0.1, "fraction of the corpus, taken from its end, held out for validation", ge=0, lt=1)
    test_fraction: float = knob(
        0.0, "fraction of the corpus, after the validation part, held out as a test set", ge=0, lt=1
    )
    cache_dir: str | None = knob(
        None, "folder for encoded corpora; default: $CHARRNN_CACHE or ~/.cache/charrnn", nonempty=True
    )
    items: str | None = knob(
        None,
        "read the text as separate items: lines, paragraphs (split at blank lines) or "
        "files; each starts from a fresh state and ends with an end symbol the model learns, "
        "so samples are whole items; default: one long text",
        choices=ITEM_KINDS,
    )

    def rules(self) -> None:
        if self.val_fraction + self.test_fraction >= 1:
            raise CharRNNError("--val-fraction and --test-fraction must sum to less than 1, to leave text to train on")


def bundled_corpus() -> Path:
    return Path(str(resources.files("charrnn") / "corpora" / BUNDLED))


def resolve_files(spec: str | None, encoding: str = "utf-8") -> list[Path]:
    """The files a --data value names, in the order they are concatenated."""
    if spec is None:
        return [bundled_corpus()]
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
        if encoding != "bytes":
            files = [p for p in files if not _looks_binary(p)]
    elif path.exists():  # a FIFO, a device such as /dev/zero, a socket: no end, or no text
        raise CharRNNError(
            f"--data {spec} is not a regular file (a FIFO, a device or a socket); give a text file, a folder or a glob"
        )
    elif any(ch in spec for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(os.path.expanduser(spec), recursive=True) if Path(p).is_file())
    else:
        raise CharRNNError(f"no such file or folder: {spec}")
    if not files:
        raise CharRNNError(f"no text files found in {spec}")
    return files


def _hidden(rel: Path) -> bool:
    return any(part.startswith(".") for part in rel.parts)


def _looks_binary(path: Path) -> bool:
    with open(path, "rb") as f:
        return b"\0" in f.read(8192)


def _chunks(path: Path, encoding: str):
    """Yield (raw bytes, decoded text or None for ASCII) chunk by chunk, checking UTF-8.

    ASCII chunks skip decoding altogether: their bytes are their code points.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    offset = 0
    with open(path, "rb") as f:
        while True:
            raw = f.read(CHUNK_BYTES)
            final = not raw
            if encoding == "bytes" or (not final and raw.isascii() and not decoder.getstate()[0]):
                if final:
                    return
                yield raw, None
            else:
                pending = len(decoder.getstate()[0])
                try:
                    text = decoder.decode(raw, final=final)
                except UnicodeDecodeError as e:
                    at = offset - pending + e.start
                    raise NotUTF8(path, at) from None
                if final:
                    return
                yield raw, text
            offset += len(raw)


def scan_vocab(files: list[Path], encoding: str) -> Vocab:
    """Pass 1: the vocabulary of the corpus (and a UTF-8 check of every byte)."""
    if encoding == "bytes":
        return Vocab.bytes_vocab()
    # Everything here runs at C speed on raw bytes. ASCII characters: deleting the
    # bytes already seen (bytes.translate) leaves only new ones to look at. Other
    # characters: deleting all ASCII bytes leaves the other characters' UTF-8
    # sequences, still valid UTF-8 (the chunk was checked), usually few, to decode.
    seen = bytearray()
    chars: set[str] = set()
    for path in files:
        others = codecs.getincrementaldecoder("utf-8")("strict")  # carries characters cut by chunk ends
        for raw, text in _chunks(path, encoding):
            seen.extend(set(raw.translate(None, bytes(seen))))
            if text is not None:
                chars.update(others.decode(raw.translate(None, _ASCII)))
    chars.update(chr(b) for b in seen if b < 128)
    return Vocab.from_chars(chars)


def encode_files(
    files: list[Path], vocab: Vocab, out: Path, unknown: str = "error"
) -> tuple[list[int], dict[str, int]]:
    """Pass 2: write the ids of the corpus to `out`.

    Returns how many ids were written for each file (items mode `files` cuts there)
    and, with unknown="skip", how often each character outside the vocabulary was met
    (and dropped).
    """
    counts, dropped = [], {}
    with open(out, "wb") as f:
        for path in files:
            counts.append(0)
            for raw, text in _chunks(path, vocab.encoding):
                if text is None:  # bytes mode, or an ASCII chunk: bytes are code points
                    b = np.frombuffer(raw, dtype=np.uint8)
                    ids = b if vocab.encoding == "bytes" else vocab.codepoints_to_ids(b)
                else:
                    ids = vocab.codepoints_to_ids(np.frombuffer(text.encode("utf-32-le"), dtype="<u4"))
                if vocab.encoding != "bytes" and (ids < 0).any():
                    chunk = text if text is not None else raw.decode("ascii")
                    if unknown != "skip":
                        unknown_chars = describe_chars(vocab.unknown(chunk))
                        raise CharRNNError(f"{path} holds characters outside the vocabulary: {unknown_chars}")
                    for ch in vocab.unknown(chunk):
                        dropped[ch] = dropped.get(ch, 0) + chunk.count(ch)
                    ids = ids[ids >= 0]
                f.write(ids.astype(vocab.dtype, copy=False).tobytes())
                counts[-1] += len(ids)
    return counts, dropped


def _cache_root(cache_dir: str | None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    if os.environ.get("CHARRNN_CACHE"):
        return Path(os.environ["CHARRNN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "charrnn"


@dataclass
class Corpus:
    """The encoded corpus: ids memory-mapped from the cache, and its vocabulary."""

    ids: np.ndarray  # (N,) uint8/16/32, memory-mapped
    vocab: Vocab
    files: list[Path]
    dropped: dict[str, int]  # characters outside a given vocabulary, and how often they were dropped
    file_ids: list[int]  # ids of each file, in order: where one file ends and the next begins
    cache: Path  # the cache folder of these ids (indexes built over them may live beside)

    def split(self, val_fraction: float, test_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(train, val, test) views: train first, then validation, then test, in corpus order."""
        n = len(self.ids)
        n_val, n_test = int(n * val_fraction), int(n * test_fraction)
        n_train = n - n_val - n_test
        return self.ids[:n_train], self.ids[n_train : n_train + n_val], self.ids[n_train + n_val :]


def _cache_folder(config: DataConfig, files: list[Path], extra: list) -> Path:
    key = hashlib.sha256(json.dumps([CACHE_VERSION, config.encoding, *extra]).encode())
    for p in files:
        st = p.stat()
        key.update(f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return _cache_root(config.cache_dir) / key.hexdigest()[:24]


def _read_meta(folder: Path) -> dict | None:
    path = folder / "meta.json"
    return json.loads(path.read_text()) if path.exists() else None


def load_corpus(config: DataConfig, vocab: Vocab | None = None, unknown: str = "error") -> Corpus:
    """Encode the corpus (or reuse its cache) and memory-map its ids.

    Without `vocab` the vocabulary is the corpus's own. With it (resume, eval) the
    ids are encoded with that vocabulary; characters outside it are an error, or with
    unknown="skip" dropped and counted.
    """
    config.check()
    files = resolve_files(config.data, config.encoding)
    folder = _cache_folder(config, files, [])  # the corpus's own vocabulary
    meta = _read_meta(folder)
    if vocab is not None and (meta is None or Vocab.from_json(meta["vocab"]) != vocab):
        folder = _cache_folder(config, files, [vocab.to_json(), unknown])
        meta = _read_meta(folder)
    if meta is None:
        if vocab is None:
            vocab = scan_vocab(files, config.encoding)
        if vocab.size == 0:
            raise CharRNNError(f"the corpus {config.data or BUNDLED} is empty; give a file with some text in it")
        meta = _encode_into(folder, files, vocab, unknown)
    if meta["n"] == 0 and meta.get("dropped"):
        raise CharRNNError(
            f"none of the characters of {config.data} is in the model's vocabulary (it holds only "
            f"{describe_chars(meta['dropped'])}); give a text in the model's alphabet"
        )
    if meta["n"] == 0:
        raise CharRNNError(f"the corpus {config.data or BUNDLED} is empty; give a file with some text in it")
    ids = np.memmap(folder / "ids.bin", dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["n"],))
    return Corpus(ids, Vocab.from_json(meta["vocab"]), files, meta.get("dropped", {}), meta["file_ids"], folder)


def _encode_into(folder: Path, files: list[Path], vocab: Vocab, unknown: str) -> dict:
    """Write ids.bin, then meta.json (last: its presence means the cache is complete); return the meta."""
    tmp, tmp_meta = folder / f"ids.bin.tmp{os.getpid()}", folder / f"meta.json.tmp{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        counts, dropped = encode_files(files, vocab, tmp, unknown)
        os.replace(tmp, folder / "ids.bin")
        meta = {
            "vocab": vocab.to_json(),
            "n": sum(counts),
            "dtype": vocab.dtype.name,
            "dropped": dropped,
            "files": [str(p) for p in files],
            "file_ids": counts,
        }
        tmp_meta.write_text(json.dumps(meta))
        os.replace(tmp_meta, folder / "meta.json")
    except OSError as e:
        for path in (tmp, tmp_meta):
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
        if e.filename and Path(e.filename) in files:
            raise os_error(e, "read the corpus") from None
        raise os_error(e, f"write the encoded corpus to the cache {folder.parent}", hint=" with --cache-dir") from None
    return meta
