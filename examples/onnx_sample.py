"""Sample from a charrnn ONNX export with onnxruntime and NumPy alone: no torch, no charrnn.

    charrnn export runs/mine --onnx mine.onnx
    python examples/onnx_sample.py mine.onnx "ROMEO:" 300 0.8 1    # file, prime, length, temperature, seed

For a UTF-8 vocabulary (the default; a --encoding bytes model has no "chars").
The step graph's inputs are ids (B,) and the state (L, B, H), starting at zeros; its
outputs are the logits (B, V) and the next state, in the inputs' order.
"""

import json
import sys

import numpy as np
import onnxruntime as ort

path = sys.argv[1]
prime = sys.argv[2] if len(sys.argv) > 2 else "\n"  # at least one character, from the vocabulary
length = int(sys.argv[3]) if len(sys.argv) > 3 else 300
temperature = float(sys.argv[4]) if len(sys.argv) > 4 else 0.8
seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0

session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
meta = session.get_modelmeta().custom_metadata_map  # the vocabulary and config travel inside the file
chars, config = json.loads(meta["charrnn_vocab"])["chars"], json.loads(meta["charrnn_model"])
state = {i.name: np.zeros((config["layers"], 1, config["hidden_size"]), np.float32) for i in session.get_inputs()[1:]}
rng, ids, text = np.random.default_rng(seed), [chars.index(c) for c in prime], prime
for _ in range(length):
    for i in ids:  # the prime first, then each new character
        logits, *new_state = session.run(None, {"ids": np.array([i]), **state})
        state = dict(zip(state, new_state))
    p = np.exp((logits[0].astype(np.float64) - logits[0].max()) / temperature)  # softmax at the temperature
    ids = [rng.choice(len(chars), p=p / p.sum())]
    text += chars[ids[0]]
print(text)
