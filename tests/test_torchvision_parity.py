"""Parity for the torchvision CNN specs, on 224x224 images.

The PyTorch reference is built from torchvision with random weights (no
download), its BatchNorm statistics and affine parameters randomised, saved
to a checkpoint file and converted with the committed generated module. The
SAME input goes through both; the logits must agree within
1e-4 x max(1, max |logit|) (float32 noise grows with magnitude).
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from compiler import parity
from tests.conftest import GENERATED, SPECS

# Each has specs/<name>.yaml whose source.model is a torchvision factory.
MODELS = [
    "resnet18",
    "resnet50",
    "vgg11_bn",
    "squeezenet1_1",
    "mobilenet_v2",
    "efficientnet_b0",
    "mobilenet_v3_small",
]


@pytest.mark.parametrize("name", MODELS)
def test_torchvision_model_matches(name, tmp_path):
    factory = yaml.safe_load((SPECS / f"{name}.yaml").read_text())["source"]["model"]
    torch_model = parity.randomize_(parity.build(factory), seed=0)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / f"{name}.safetensors")
    keras_model = parity.import_generated(GENERATED / f"{name}.py").convert(checkpoint)

    x = parity.random_input((2, 3, 224, 224), seed=1)
    expected = parity.torch_output(torch_model, x)
    actual = parity.keras_output(keras_model, x)
    error = parity.max_abs_error(expected, actual)
    scale = max(1.0, float(np.abs(expected).max()))
    print(
        f"{name}: max abs error {error:.3g}, max |logit| {np.abs(expected).max():.3g}"
    )
    assert np.abs(expected).max() > 0.1
    assert error <= 1e-4 * scale
    # Layout is fixed once, in the weights: no run-time transposes or lambdas.
    layer_types = {type(layer).__name__ for layer in keras_model.layers}
    assert not layer_types & {"Permute", "Lambda", "Reshape"}, layer_types


def test_resnet50_spec_is_short():
    """Blocks keep a real architecture readable: 16 bottlenecks are 4 lines."""
    lines = (SPECS / "resnet50.yaml").read_text().splitlines()
    assert len(lines) <= 150
    assert sum("block: bottleneck" in line for line in lines) == 4
