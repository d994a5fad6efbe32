"""Generated modules are Keras 3 code, not TensorFlow code: they give parity on
the torch backend too. (The rest of the suite runs on tensorflow.)

Keras picks its backend once per process, so each backend runs in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# seed_cnn: the basics; resnet18 and squeezenet1_1: the custom pooling layers;
# gru_classifier and bilstm_tagger: recurrent layers, fed token ids.
CASES = {
    "seed_cnn": ("examples.seed:SeedCNN", [2, 3, 32, 32]),
    "resnet18": ("torchvision.models:resnet18", [1, 3, 224, 224]),
    "squeezenet1_1": ("torchvision.models:squeezenet1_1", [1, 3, 224, 224]),
    "gru_classifier": ("examples.sequence:GRUClassifier", "tokens"),
    "bilstm_tagger": ("examples.sequence:BiLSTMTagger", "tokens"),
}

SCRIPT = """
import json, sys
import numpy as np
from compiler import parity
name, factory, shape, checkpoint = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
torch_model = parity.randomize_(parity.build(factory), seed=0)
parity.save_checkpoint(torch_model, checkpoint)
module = parity.import_generated(f"generated/{name}.py")
keras_model = module.convert(checkpoint)
if shape == "tokens":
    vocab = torch_model.embedding.num_embeddings
    x, _ = parity.random_tokens(4, 16, vocab, seed=1)
    expected = parity.torch_output(torch_model, x)
    actual = parity.keras_sequence_output(keras_model, x)
else:
    x = parity.random_input(tuple(shape), seed=1)
    expected = parity.torch_output(torch_model, x)
    actual = parity.keras_output(keras_model, x)
import keras
print(json.dumps({"backend": keras.backend.backend(),
                  "error": parity.max_abs_error(expected, actual),
                  "scale": float(np.abs(expected).max())}))
"""


@pytest.mark.parametrize("name", sorted(CASES))
def test_parity_on_the_torch_backend(name, tmp_path):
    factory, shape = CASES[name]
    env = {**os.environ, "KERAS_BACKEND": "torch", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SCRIPT,
            name,
            factory,
            json.dumps(shape),
            str(tmp_path / f"{name}.safetensors"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(name, report)
    assert report["backend"] == "torch"
    assert report["error"] <= 1e-4 * max(1.0, report["scale"])
