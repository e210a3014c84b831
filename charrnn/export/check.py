"""`charrnn export --verify FILE`: verify an export against the SHA-256 recorded inside it."""

from __future__ import annotations

from pathlib import Path

from charrnn.errors import CharRNNError


def check_export(path: str | Path) -> str:
    """One line on what a verified .html or .onnx export holds; a CharRNNError if it is damaged."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CharRNNError(f"no such file: {path}")
    with open(path, "rb") as f:
        head = f.read(64).lstrip().lower()
    if path.suffix.lower() in (".html", ".htm") or head.startswith((b"<!doctype html", b"<html")):
        from charrnn.export.html import describe_html

        return describe_html(path)
    from charrnn.export.onnx_export import describe_onnx

    return describe_onnx(path)
