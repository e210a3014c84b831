import json
import math

import numpy as np
import pytest

from charrnn.cli import main
from charrnn.errors import CharRNNError
from charrnn.inspection.plot import figure, plot_runs, read_curves


def write_metrics(folder, records, tail=""):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return folder


RECORDS = [
    {"step": 10, "epoch": 0.1, "time": 1.5, "train_loss": 4.0, "lr": 0.002},
    {"step": 10, "time": 1.6, "val_loss": 3.5, "val_bpc": 3.5 / math.log(2)},
    {"step": 15, "event": "nan", "loss": "nan", "rolled_back_to": 10, "lr_scale": 0.5},
    {"step": 20, "epoch": 0.2, "time": 3.0, "train_loss": 3.0, "lr": 0.002},
    {"step": 20, "time": 3.2, "val_loss": 2.8, "val_bpc": 2.8 / math.log(2)},
]


def test_read_curves_converts_nats_to_bits_and_skips_other_lines(tmp_path):
    run = write_metrics(tmp_path / "a", RECORDS, tail='{"step": 30, "tra')  # a crash mid-line
    c = read_curves(run)
    assert c.name == "a"
    assert c.train[0] == [10, 20] and c.train[1] == [1.5, 3.0]
    np.testing.assert_allclose(c.train[2], [4.0 / math.log(2), 3.0 / math.log(2)])
    assert c.val[0] == [10, 20] and c.val[1] == [1.6, 3.2]
    np.testing.assert_allclose(c.val[2], [r["val_bpc"] for r in RECORDS if "val_bpc" in r])


def test_figure_draws_every_run_against_step_and_time(tmp_path):
    a = read_curves(write_metrics(tmp_path / "a", RECORDS))
    b = read_curves(write_metrics(tmp_path / "b", [{"step": 5, "time": 400.0, "train_loss": 2.0}]))
    fig = figure([a, b])
    by_step, by_time = fig.axes
    labels = [line.get_label() for line in by_step.lines]
    assert labels == ["a train", "a validation", "b train"]
    np.testing.assert_allclose(by_step.lines[1].get_ydata(), a.val[2])
    np.testing.assert_allclose(by_step.lines[0].get_xdata(), [10, 20])
    assert by_time.get_xlabel() == "training time (minutes)"  # 400 s is past two minutes
    np.testing.assert_allclose(by_time.lines[2].get_xdata(), [400.0 / 60])


def test_plot_cli_writes_png(tmp_path):
    a = write_metrics(tmp_path / "x" / "run", RECORDS)
    b = write_metrics(tmp_path / "y" / "run", RECORDS[:2])
    out = tmp_path / "curve.png"
    assert main(["plot", str(a), str(b), "--out", str(out)]) == 0
    import matplotlib.image

    img = matplotlib.image.imread(out)
    assert img.shape[0] > 300 and img.shape[1] > 800
    assert img[..., :3].std() > 0.05  # something is drawn, not a blank canvas


def test_plot_errors(tmp_path, capsys):
    with pytest.raises(CharRNNError, match="no metrics.jsonl"):
        plot_runs([tmp_path])
    write_metrics(tmp_path / "empty", [{"step": 1, "event": "nan"}])
    with pytest.raises(CharRNNError, match="no train_loss"):
        read_curves(tmp_path / "empty")
    assert main(["plot", str(tmp_path / "nope"), "--out", str(tmp_path / "c.png")]) == 2
    assert capsys.readouterr().err.startswith("charrnn plot: error:")


def drawn_ylabel(monkeypatch, argv) -> str:
    """The y-axis label of the figure `charrnn plot` saves (the PNG's text cannot be read back)."""
    from matplotlib.figure import Figure

    saved = []
    with monkeypatch.context() as m:
        real = Figure.savefig
        m.setattr(Figure, "savefig", lambda fig, *a, **kw: saved.append(fig) or real(fig, *a, **kw))
        assert main(argv) == 0
    return saved[0].axes[0].get_ylabel()


def test_a_classifier_run_is_plotted_in_bits_per_label(tmp_path, monkeypatch):
    from test_tasks import names_folder

    run = tmp_path / "cls"
    flags = f"--task classify --data {names_folder(tmp_path)} --out {run} --val-fraction 0.2 --hidden-size 16"
    flags += " --layers 1 --embedding-size 8 --batch-size 4 --max-steps 4 --eval-every 2 --log-every 1"
    assert main(["train", *flags.split(), "--threads", "1", "--quiet"]) == 0
    out = str(tmp_path / "c.png")
    assert drawn_ylabel(monkeypatch, ["plot", str(run), "--out", out]) == "loss (bits per label)"
    assert drawn_ylabel(monkeypatch, ["plot", str(run / "metrics.jsonl"), "--out", out]) == "loss (bits per label)"
    chars = write_metrics(tmp_path / "chars", RECORDS)  # no checkpoint.json: a next-char run
    assert drawn_ylabel(monkeypatch, ["plot", str(chars), "--out", out]) == "loss (bits per character)"
    both = drawn_ylabel(monkeypatch, ["plot", str(chars), str(run), "--out", out])
    assert both == "loss (bits per character or label)"
    for task, unit in (("tag", "tag"), ("truecase", "tag"), ("generate", "character"), (None, "character")):
        (chars / "last").mkdir(exist_ok=True)
        (chars / "last" / "checkpoint.json").write_text(json.dumps({"task": task}))
        assert read_curves(chars).unit == unit, task
