"""The ONNX step graph in onnxruntime against PyTorch, its metadata, damage detection,
and examples/onnx_sample.py run with neither torch nor charrnn importable."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.errors import CharRNNError
from export_support import VARIANTS, export_model

ort = pytest.importorskip("onnxruntime", reason="ONNX tests NOT run: pip install -e '.[export]'")
pytest.importorskip("onnxscript", reason="ONNX tests NOT run: pip install -e '.[export]'")

from charrnn.export.check import check_export  # noqa: E402
from charrnn.export.common import write_atomic  # noqa: E402
from charrnn.export.onnx_export import build_onnx, load_onnx  # noqa: E402

EXAMPLE = Path(__file__).parents[1] / "examples" / "onnx_sample.py"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{cell: (model, vocab, path)}: one export per cell (each takes seconds), shared by the tests."""
    folder, out = tmp_path_factory.mktemp("onnx"), {}
    for cell in VARIANTS:
        model, vocab = export_model(cell, scale=2.0, head=1.0)  # saturated states, logits of a trained model's size
        meta = {"step": 42, "metrics": {"best_val_loss": 1.5}}
        path = write_atomic(folder / f"{cell}.onnx", build_onnx(model, vocab, meta).SerializeToString())
        out[cell] = (model, vocab, path)
    return out


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("cell", list(VARIANTS))
def test_onnx_matches_pytorch_over_100_steps(exported, cell, batch):
    model, vocab, path = exported[cell]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["ids", "h", "c"][: 3 if cell == "lstm" else 2]
    assert [o.name for o in session.get_outputs()] == ["logits"] + [n + "_next" for n in names[1:]]
    rng = np.random.default_rng(batch)
    state = model.init_state(batch)
    ort_state = [s.numpy() for s in state]
    worst = 0.0
    with torch.no_grad():
        for _ in range(100):
            ids = rng.integers(0, vocab.size, batch)
            logits, *ort_state = session.run(None, {"ids": ids, **dict(zip(names[1:], ort_state))})
            want, state = model.step(torch.from_numpy(ids), state)
            for a, b in zip([logits, *ort_state], [want, *state]):
                assert a.shape == tuple(b.shape)
                worst = max(worst, float(np.abs(a - b.numpy()).max()))
    assert worst < 1e-5, f"largest difference {worst:.2e}"
    assert np.abs(ort_state[0]).max() > 0.5  # the state moved far from zero: the test is not trivial


def test_onnx_metadata_makes_the_file_self_contained(exported):
    model, vocab, path = exported["lstm"]
    proto, loaded_vocab, config, props = load_onnx(path)
    assert loaded_vocab == vocab and config == model.config.to_json()
    assert props["charrnn_task"] == "next-char" and json.loads(props["charrnn_step"]) == 42
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert json.loads(meta["charrnn_vocab"])["chars"] == "".join(vocab.chars)
    assert {n.op_type for n in proto.graph.node} >= {"LSTM", "Gather", "MatMul"}  # ONNX's own LSTM operator
    line = check_export(path)
    assert "SHA-256 verified" in line and "LSTM 2x12" in line


def test_damaged_onnx_fails_clearly(exported, tmp_path):
    model, vocab, path = exported["gru"]
    data = path.read_bytes()
    weight = model.rnn.weight_hh_l1.detach().numpy().tobytes()[:64]  # stored verbatim as raw_data
    at = data.index(weight) + 8
    flipped = tmp_path / "flipped.onnx"
    flipped.write_bytes(data[:at] + bytes([data[at] ^ 0x40]) + data[at + 1 :])
    with pytest.raises(CharRNNError, match="damaged.*SHA-256"):
        load_onnx(flipped)
    for name, content in [("cut.onnx", data[: len(data) // 2]), ("noise.onnx", bytes(range(256)) * 8)]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CharRNNError, match="damaged"):
            check_export(tmp_path / name)


def reference_sample(model, vocab, prime: str, length: int, temperature: float, seed: int) -> str:
    """The example's loop with PyTorch's step in place of onnxruntime's."""
    rng, ids, text, state = np.random.default_rng(seed), vocab.encode(prime).tolist(), prime, None
    with torch.no_grad():
        for _ in range(length):
            for i in ids:
                logits, state = model.step(torch.tensor([i]), state)
            p = np.exp((logits[0].double().numpy() - logits[0].max().item()) / temperature)
            ids = [rng.choice(vocab.size, p=p / p.sum())]
            text += vocab.chars[ids[0]]
    return text


def test_example_samples_with_onnxruntime_alone(exported):
    model, vocab, path = exported["lstm"]
    # torch and charrnn are made unimportable in the child: the example must need neither.
    code = (
        "import runpy, sys; sys.modules['torch'] = sys.modules['charrnn'] = None; "
        f"sys.argv = ['onnx_sample.py', {str(path)!r}, 'He said', '60', '0.9', '3']; "
        f"runpy.run_path({str(EXAMPLE)!r}, run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout[:-1] == reference_sample(model, vocab, "He said", 60, 0.9, 3)


def test_export_refuses_a_model_of_another_task():
    model, vocab = export_model("rnn")
    with pytest.raises(CharRNNError, match="supports only the next-char task; this run's task is 'classify'"):
        build_onnx(model, vocab, {"task": "classify"})
