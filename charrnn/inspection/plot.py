"""`charrnn plot`: training and validation loss curves of one or more runs, as a PNG.

Reads each run's metrics.jsonl (losses there are nats per target: per character for
a model that writes text, per label or tag for a classify, tag or truecase run) and
draws them in bits against the optimizer step (left) and against wall-clock training
time (right). Uses matplotlib's Agg canvas directly, not pyplot: no display, no
global figure state, so it runs headless and from any thread.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from charrnn import checkpoint as ckpt
from charrnn.errors import CharRNNError
from charrnn.knobs import REQUIRED, Checked, knob
from charrnn.tasks import TASKS

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
    """One run's losses in bits per `unit`; each series is (steps, times, bits)."""

    name: str
    unit: str = "character"  # what one loss is over: character, label or tag (the run's task)
    train: tuple[list[int], list[float], list[float]] = field(default_factory=lambda: ([], [], []))
    val: tuple[list[int], list[float], list[float]] = field(default_factory=lambda: ([], [], []))


def read_curves(run: str | Path) -> Curves:
    """The train_loss and val_loss records of `run`'s metrics.jsonl, in bits per character."""
    run = Path(run).expanduser()
    path = run / "metrics.jsonl" if run.is_dir() else run
    if not path.is_file():
        raise CharRNNError(f"{run} has no metrics.jsonl; give a run folder that charrnn train wrote")
    folder = run if run.is_dir() else run.parent
    curves = Curves(folder.name, unit_of(folder))
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


def unit_of(run: Path) -> str:
    """What one loss of `run` is over, from the task in its checkpoint.json: character for a
    model that writes text, label for classify, tag for tag and truecase."""
    try:  # the task alone, read as it is: a checkpoint that fails read_meta's checks still has one
        task = json.loads((ckpt.resolve(run) / ckpt.META).read_text()).get("task") or "next-char"
    except (CharRNNError, OSError, ValueError, AttributeError):  # no checkpoint (yet), or not JSON
        task = "next-char"
    if task in TASKS and not TASKS[task].generates:
        return "label" if task == "classify" else "tag"
    return "character"  # metrics.jsonl alone: a run from before tasks, or one without a checkpoint yet


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds > 2 * 3600:
        return 3600.0, "hours"
    if seconds > 120:
        return 60.0, "minutes"
    return 1.0, "seconds"


def figure(all_curves: list[Curves], title: str | None = None):
    """A matplotlib Figure of the curves: bits per character (or label, or tag) against step (left)
    and against time (right)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    longest = max((t for c in all_curves for t in c.train[1] + c.val[1] if math.isfinite(t)), default=1.0)
    scale, unit = _time_unit(longest)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    by_step, by_time = fig.subplots(1, 2, sharey=True)
    for i, c in enumerate(all_curves):
        for series, style, label in ((c.train, "-", "train"), (c.val, "o--", "validation")):
            steps, times, bits = series
            if not steps:
                continue
            kw = {
                "color": f"C{i % 10}",
                "label": f"{c.name} {label}",
                "markersize": 4,
                "linewidth": 1.2 if style == "-" else 1.5,
            }
            by_step.plot(steps, bits, style, **kw)
            by_time.plot([t / scale for t in times], bits, style, **kw)
    by_step.set_xlabel("step")
    by_time.set_xlabel(f"training time ({unit})")
    units = list(dict.fromkeys(c.unit for c in all_curves))  # in order, once each
    by_step.set_ylabel(f"loss (bits per {' or '.join(units)})")
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
