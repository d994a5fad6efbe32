"""Generated modules are Keras 3 code, not TensorFlow code: they give parity on
the torch and jax backends too. (The rest of the suite runs on tensorflow.)

Keras picks its backend once per process, so each backend runs in a subprocess:
one per backend for all the cases, because importing torch and Keras costs
5-8 s a process. Each case checks the converted model against PyTorch, then
saves it with the module's export(format="keras") and checks that the reloaded
model gives the same output: the custom layers must deserialize on every
backend, not just build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

BACKENDS = ["torch", "jax"]

# seed_cnn: the basics; resnet18 and squeezenet1_1: the custom pooling layers;
# gru_classifier and bilstm_tagger: recurrent layers, fed token ids.
CASES = {
    "seed_cnn": ("examples.seed:SeedCNN", [2, 3, 32, 32]),
    "resnet18": ("torchvision.models:resnet18", [1, 3, 224, 224]),
    "squeezenet1_1": ("torchvision.models:squeezenet1_1", [1, 3, 224, 224]),
    "gru_classifier": ("examples.sequence:GRUClassifier", "tokens"),
    "bilstm_tagger": ("examples.sequence:BiLSTMTagger", "tokens"),
}

# argv: the cases as JSON, a scratch folder, the report file. A case that
# raises is reported with its traceback and the next one still runs.
SCRIPT = """
import json, sys, traceback
from pathlib import Path
from compiler import frameworks
frameworks.import_torch_first()  # torchvision after keras (which loads TF) would crash
import numpy as np
import keras
from compiler import parity

# model.predict behind model(x)'s signature: the backend's compiled path
# (jax.jit, tf.function), where model(x) runs op by op.
class Compiled:
    def __init__(self, model):
        self.model = model
    def __call__(self, x, training=False):
        return self.model.predict(x, verbose=0)

cases, scratch, report_path = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
reports = {}
for name, (factory, shape) in cases.items():
    try:
        torch_model = parity.randomize_(parity.build(factory), seed=0)
        checkpoint = parity.save_checkpoint(torch_model, scratch / f"{name}.safetensors")
        module = parity.import_generated(f"generated/{name}.py")
        keras_model = module.convert(checkpoint)
        module.export(keras_model, scratch / f"{name}.keras", format="keras")
        reloaded = keras.saving.load_model(scratch / f"{name}.keras", safe_mode=True)
        if shape == "tokens":
            vocab = torch_model.embedding.num_embeddings
            x, _ = parity.random_tokens(4, 16, vocab, seed=1)
            run = parity.keras_sequence_output
        else:
            x = parity.random_input(tuple(shape), seed=1)
            run = parity.keras_output
        expected = parity.torch_output(torch_model, x)
        actual = run(keras_model, x)
        reports[name] = {
            "error": parity.max_abs_error(expected, actual),
            "compiled_error": parity.max_abs_error(expected, run(Compiled(keras_model), x)),
            "reloaded_error": parity.max_abs_error(actual, run(reloaded, x)),
            "scale": float(np.abs(expected).max()),
        }
    except Exception:
        reports[name] = {"traceback": traceback.format_exc()}
Path(report_path).write_text(
    json.dumps({"backend": keras.backend.backend(), "cases": reports})
)
"""


@pytest.fixture(scope="module")
def backend_report(tmp_path_factory):
    """backend -> its subprocess's report on every case (run once per backend)."""
    reports = {}

    def report(backend: str) -> dict:
        if backend not in reports:
            scratch = tmp_path_factory.mktemp(backend)
            path = scratch / "report.json"
            env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
            result = subprocess.run(
                [
                    sys.executable,
                    "-X",
                    "faulthandler",  # a segfault then names the import that did it
                    "-c",
                    SCRIPT,
                    json.dumps(CASES),
                    str(scratch),
                    str(path),
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=env,
                timeout=600,
            )
            reports[backend] = (
                json.loads(path.read_text())
                if result.returncode == 0 and path.exists()
                else {
                    "crashed": f"exit status {result.returncode}\n"
                    + result.stderr[-6000:]
                }
            )
        return reports[backend]

    return report


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_parity_on_another_backend(backend, name, backend_report):
    report = backend_report(backend)
    assert "crashed" not in report, f"{backend} backend process:\n{report['crashed']}"
    # A KERAS_BACKEND or keras.json that won over ours would make this a
    # second tensorflow run that passes for the wrong reason.
    assert report["backend"] == backend
    case = report["cases"][name]
    assert "traceback" not in case, f"{name} on {backend}:\n{case['traceback']}"
    print(backend, name, case)
    tolerance = 1e-4 * max(1.0, case["scale"])
    assert case["error"] <= tolerance, (name, backend, case)
    assert case["compiled_error"] <= tolerance, (name, backend, case)
    # Same weights, same backend: the .keras file must reproduce the model.
    assert case["reloaded_error"] == 0.0, (name, backend, case)
