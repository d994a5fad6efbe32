"""What a user sees when a checkpoint does not fit the generated module."""

from __future__ import annotations

import numpy as np
import pytest

from compiler import parity
from tests.conftest import GENERATED


@pytest.fixture(scope="module")
def seed_cnn():
    return parity.import_generated(GENERATED / "seed_cnn.py")


@pytest.fixture
def state_dict():
    model = parity.randomize_(parity.build("examples.seed:SeedCNN"), seed=0)
    return {k: v.numpy() for k, v in model.state_dict().items()}


def _load_error(module, state_dict) -> str:
    model = module.build_model()
    before = [w.numpy().copy() for w in model.weights]
    with pytest.raises(module.WeightLoadError) as caught:
        module.load_weights(model, state_dict)
    # Nothing was assigned before the error.
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, model.weights))
    return str(caught.value)


def test_missing_key(seed_cnn, state_dict):
    del state_dict["conv2.bias"]
    assert _load_error(seed_cnn, state_dict) == (
        "state dict does not fit specs/seed_cnn.yaml:\n"
        "  missing key 'conv2.bias' for conv2/bias (specs/seed_cnn.yaml:13)"
    )


def test_unexpected_key(seed_cnn, state_dict):
    state_dict["head.weight"] = np.zeros((3, 3), np.float32)
    assert _load_error(seed_cnn, state_dict) == (
        "state dict does not fit specs/seed_cnn.yaml:\n"
        "  unexpected key 'head.weight': no layer reads it (specs/seed_cnn.yaml ignore:)"
    )


def test_shape_mismatch(seed_cnn, state_dict):
    state_dict["fc.weight"] = np.zeros((10, 512), np.float32)
    assert _load_error(seed_cnn, state_dict) == (
        "state dict does not fit specs/seed_cnn.yaml:\n"
        "  key 'fc.weight' for fc/kernel has shape (10, 512), expected (10, 2048) "
        "(specs/seed_cnn.yaml:25)"
    )


def test_every_problem_is_listed_at_once(seed_cnn, state_dict):
    del state_dict["conv1.weight"]
    state_dict["conv1.bias"] = np.zeros((15,), np.float32)
    state_dict["extra"] = np.zeros((1,), np.float32)
    message = _load_error(seed_cnn, state_dict)
    assert message.count("\n  ") == 3
    assert "missing key 'conv1.weight'" in message
    assert "key 'conv1.bias' for conv1/bias has shape (15,), expected (16,)" in message
    assert "unexpected key 'extra'" in message


def test_torch_tensors_load_directly(seed_cnn):
    """load_weights also takes model.state_dict() as it is (CPU tensors)."""
    torch_model = parity.randomize_(parity.build("examples.seed:SeedCNN"), seed=4)
    keras_model = seed_cnn.build_model()
    seed_cnn.load_weights(keras_model, torch_model.state_dict())
    x = parity.random_input((2, 3, 32, 32), seed=0)
    error = parity.max_abs_error(
        parity.torch_output(torch_model, x), parity.keras_output(keras_model, x)
    )
    assert error <= 1e-5


def test_unknown_checkpoint_format(seed_cnn, tmp_path):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"")
    with pytest.raises(
        seed_cnn.WeightLoadError, match=r"unknown checkpoint format '\.h5'"
    ):
        seed_cnn.read_checkpoint(path)
