"""`charrnn plot`: training and validation loss curves of one or more runs, as a PNG.

Reads each run's metrics.jsonl (losses there are nats per character) and draws bits
per character against the optimizer step (left) and against wall-clock training
time (right). Uses matplotlib's Agg canvas directly, not pyplot: no display, no
global figure state, so it runs headless and from any thread.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.errors import CharRNNError
from charrnn.knobs import REQUIRED, Checked, knob

LN2 = math.log(2)


@dataclass
class PlotConfig(Checked):
    runs: list[str] = knob(
        REQUIRED,
        "run folders; several are drawn on one plot for comparison",  # noqa: RUF009
        positional=True,
        nonempty=True,
        metavar="RUN",
    )
    out: str = knob("curve.png", "where to write the PNG", nonempty=True)
    title: str | None = knob(None, "the plot's title; default: the run names")


@dataclass
class Curves:
    """One run's losses in bits per character; each series is (steps, times, bpc)."""

    name: str
    train: tuple[list[int], list[float], list[float]] = field(default_factory=lambda: ([], [], []))
    val: tuple[list[int], list[float], list[float]] = field(default_factory=lambda: ([], [], []))


def read_curves(run: str | Path) -> Curves:
    """The train_loss and val_loss records of `run`'s metrics.jsonl, in bits per character."""
    run = Path(run).expanduser()
    path = run / "metrics.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise CharRNNError(f"{run} has no metrics.jsonl; give a run folder that charrnn train wrote")
    curves = Curves(run.name if run.is_dir() else run.parent.name)
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a crash can leave the last line half written
        for key, series in (("train_loss", curves.train), ("val_loss", curves.val)):
            value = rec.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value) and "step" in rec:
                series[0].append(rec["step"])
                series[1].append(rec.get("time", math.nan))
                series[2].append(value / LN2)
    if not curves.train[0] and not curves.val[0]:
        raise CharRNNError(f"{path} holds no train_loss or val_loss records yet")
    return curves


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds > 2 * 3600:
        return 3600.0, "hours"
    if seconds > 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def figure(all_curves: list[Curves], title: str | None = None):
    """A matplotlib Figure of the curves: bpc against step (left) and against time (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    longest = max((t for c in all_curves for t in c.train[1] + c.val[1] if math.isfinite(t)), default=1.0)
    scale, unit = _time_unit(longest)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for i, c in enumerate(all_curves):
        for series, style, label in ((c.train, "-", "train"), (c.val, "o--", "validation")):
            steps, times, bpc = series
            if not steps:
                continue
            kw = {
                "color": f"C{i % 10}",
                "label": f"{c.name} {label}",
                "markersize": 4,
                "linewidth": 1.2 if style == "-" else 1.5,
            }
            by_step.plot(steps, bpc, style, **kw)
            by_time.plot([t / scale for t in times], bpc, style, **kw)
    by_step.set_xlabel("step")
    by_time.set_xlabel(f"training time ({unit})")
    by_step.set_ylabel("loss (bits per character)")
    for ax in (by_step, by_time):
        ax.grid(True, alpha=0.3)
    by_time.legend(fontsize="small", loc="upper right")
    fig.suptitle(title or ("loss of " + ", ".join(c.name for c in all_curves)))
    return fig


def plot_runs(runs: list[str | Path], out: str | Path = "curve.png", title: str | None = None, dpi: int = 120) -> Path:
    """Draw the curves of `runs` into the PNG `out`; returns its path."""
    if not runs:
        raise CharRNNError("give at least one run folder")
    all_curves = [read_curves(r) for r in runs]
    names = [c.name for c in all_curves]
    if len(set(names)) < len(names):  # two runs called "demo" in different folders: use the paths
        for c, r in zip(all_curves, runs):
            c.name = str(r)
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure(all_curves, title).savefig(out, dpi=dpi)
    return out
