"""The generated CLI exports SavedModel and TFLite too; each artifact is
reloaded and checked against PyTorch on the same input."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from compiler import parity
from tests.conftest import GENERATED

# seed_cnn: the basics; squeezenet1_1: a custom layer (TorchMaxPooling2D).
CASES = {
    "seed_cnn": ("examples.seed:SeedCNN", (2, 3, 32, 32)),
    "squeezenet1_1": ("torchvision.models:squeezenet1_1", (1, 3, 224, 224)),
}


def _run_tflite(path, x: np.ndarray) -> np.ndarray:
    interpreter = tf.lite.Interpreter(model_path=str(path))
    (input_detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(input_detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], x)
    interpreter.invoke()
    (output_detail,) = interpreter.get_output_details()
    return interpreter.get_tensor(output_detail["index"])


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_exported_artifact_matches_pytorch(name, fmt, tmp_path):
    factory, shape = CASES[name]
    torch_model = parity.randomize_(parity.build(factory), seed=2)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / f"{name}.safetensors")
    module = parity.import_generated(GENERATED / f"{name}.py")
    output = tmp_path / (f"{name}.tflite" if fmt == "tflite" else name)
    assert module.main([str(checkpoint), "-o", str(output), "--format", fmt]) == 0

    x = parity.random_input(shape, seed=3)
    expected = parity.torch_output(torch_model, x)
    keras_layout = parity.channels_last(x)
    if fmt == "savedmodel":
        loaded = tf.saved_model.load(str(output))  # keep it: it owns the variables
        actual = loaded.serve(keras_layout).numpy()
    else:
        actual = _run_tflite(output, keras_layout)
    error = parity.max_abs_error(expected, actual)
    print(f"{name} {fmt}: max abs error {error:.3g}")
    assert error <= 1e-4 * max(1.0, float(np.abs(expected).max()))
