"""`charrnn export --verify FILE`: verify an export against the SHA-256 recorded inside it."""

from __future__ import annotations

from pathlib import Path

from charrnn.errors import CharRNNError


def check_export(path: str | Path) -> str:
    """One line on what a verified .html or .onnx export holds; a CharRNNError if it is damaged,
    or is not an export at all."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CharRNNError(f"no such file: {path}")
    with open(path, "rb") as f:
        raw = f.read(64)
    head, suffix = raw.lstrip().lower(), path.suffix.lower()
    if suffix in (".html", ".htm") or head.startswith((b"<!doctype html", b"<html")):
        from charrnn.export.html import describe_html

        return describe_html(path)
    # An ONNX file is a protobuf ModelProto whose first field, ir_version (field 1, a varint), is
    # written first: tag byte 0x08. That finds a renamed export; anything else (a PNG, a checkpoint)
    # is not one, and calling it a damaged ONNX file would send the user to export it again.
    if suffix != ".onnx" and not raw.startswith(b"\x08"):
        raise CharRNNError(
            f"{path} is not a charrnn export (an .html page or an .onnx file); give a file that charrnn export wrote"
        )
    from charrnn.export.onnx_export import describe_onnx

    return describe_onnx(path)
