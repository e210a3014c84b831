import base64
import json
import math
import re

import numpy as np
import pytest

from charrnn.cli import main
from charrnn.errors import CharRNNError
from charrnn.inspection.viz import VizConfig, build_report, viz
from viz_support import TEXT, naive_steps, save_run, tiny_model


def embedded(page: str) -> dict:
    """The data a report carries, read back the way a browser would."""
    m = re.search(r'<script type="application/json" id="charrnn-trace">(.*?)</script>', page, re.DOTALL)
    assert m, "the report has no embedded trace"
    return json.loads(m.group(1))


def f32(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4")


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_report_numbers_are_the_models_own(cell):
    model, vocab = tiny_model(cell, layers=2, hidden_size=10)
    page, _ = build_report(model, vocab, TEXT, "t")
    data = embedded(page)
    ids = vocab.encode(TEXT)
    T = len(ids)
    states, probs = naive_steps(model, ids)  # (K, L, T, H), (T, V) from model.step
    kinds = ["hidden", "cell"] if cell == "lstm" else ["hidden"]
    assert [(g["kind"], g["layer"]) for g in data["groups"]] == [(k, l) for k in kinds for l in (1, 2)]
    for g in data["groups"]:
        values = f32(g["data"]).reshape(g["size"], T)  # neuron-major
        ref = states[kinds.index(g["kind"]), g["layer"] - 1].T  # (H, T)
        np.testing.assert_allclose(values, ref, rtol=0, atol=1e-6)
        assert g["min"] == pytest.approx(ref.min(), abs=1e-6) and g["max"] == pytest.approx(ref.max(), abs=1e-6)
        assert set(g["scores"]) == {"variance", "in quotes", "position in line", "bracket depth", "start of word"}
    assert data["labels"] == list(TEXT)
    assert data["has_first"] is False  # no context: nothing predicted the first character
    top_ids = np.array(data["top_ids"])[1:]  # row t + 1: the guesses after reading character t
    top_probs = f32(data["top_probs"]).reshape(T + 1, 5)[1:]
    ref_top = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(top_ids, ref_top)
    np.testing.assert_allclose(top_probs, np.take_along_axis(probs, ref_top, 1), rtol=1e-6)
    assert data["surprisal"][0] is None
    for t in range(1, T):
        assert data["surprisal"][t] == pytest.approx(-math.log2(probs[t - 1, ids[t]]), rel=1e-9)
    assert [data["vocab"][i] for i in top_ids[0]] == [vocab.chars[i] for i in ref_top[0]]


def test_report_is_self_contained_and_script_safe():
    text = 'a </script><script>alert(1)</script> "__DATA__" b\n'
    model, vocab = tiny_model("lstm", text=text)
    page, _ = build_report(model, vocab, text, "x </title>")
    assert not re.search(r"<(script|link|img|iframe)[^>]*\b(src|href)=", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page and "@import" not in page and "url(" not in page
    assert page.count("</script>") == 2  # the data's own "</script>" cannot end the element
    assert "".join(embedded(page)["labels"]) == text
    assert "<title>charrnn: x &lt;/title&gt;</title>" in page


def test_viz_cli_writes_report_and_cuts_long_text(tmp_path, capsys):
    model, vocab = tiny_model("gru")
    run = save_run(tmp_path / "run", model, vocab)
    src = tmp_path / "in.txt"
    src.write_text(TEXT * 3)
    out = tmp_path / "r" / "report.html"
    assert main(["viz", str(run), "--data", str(src), "--out", str(out), "--max-chars", "40"]) == 0
    data = embedded(out.read_text())
    assert "".join(data["labels"]) == (TEXT * 3)[:40]
    assert "the first 40 of" in out.read_text()


def test_viz_bad_input_is_one_line_error(tmp_path, capsys):
    model, vocab = tiny_model("rnn")
    run = save_run(tmp_path / "run", model, vocab)
    assert main(["viz", str(run), "--out", str(tmp_path / "r.html")]) == 2
    assert main(["viz", str(run), "--data", str(tmp_path / "missing.txt")]) == 2
    assert main(["viz", str(run), "--text", "ZZZ", "--unknown", "error"]) == 2
    assert main(["viz", str(run), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("charrnn viz: error:") for line in err)
    with pytest.raises(CharRNNError, match="empty"):
        viz(str(run), VizConfig(text="ZZZ", out=str(tmp_path / "r.html")))
