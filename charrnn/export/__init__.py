"""Share a model outside charrnn: an HTML page that writes in any browser, an ONNX step
graph for other runtimes, and a model card (README.md) for the run folder.

    from charrnn.export import export_html, export_onnx, write_card, check_export

    export_html("runs/mine", "mine.html")      # self-contained: open it from disk
    export_onnx("runs/mine", "mine.onnx")      # needs pip install 'charrnn[export]'
    print(check_export("mine.onnx"))           # verifies the SHA-256 recorded inside
    write_card("runs/mine")                    # runs/mine/README.md and runs/mine/loss.png

The submodules import their heavy dependencies (torch, onnx) where used.
"""

from importlib import import_module

_API = {
    "ExportConfig": "charrnn.export.common",
    "export_html": "charrnn.export.html",
    "load_html": "charrnn.export.html",
    "build_page": "charrnn.export.html",
    "export_onnx": "charrnn.export.onnx_export",
    "load_onnx": "charrnn.export.onnx_export",
    "check_export": "charrnn.export.check",
    "CardConfig": "charrnn.export.card",
    "write_card": "charrnn.export.card",
}

__all__ = list(_API)


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'charrnn.export' has no attribute {name!r}")
    return getattr(import_module(_API[name]), name)
