"""Each transform: its shape functions agree with the numpy it renders, and it means what it says."""

from __future__ import annotations

import numpy as np
import pytest

from compiler import transforms
from compiler.transforms import (
    ConvKernel,
    Permute,
    Reshape,
    TransformError,
    Transpose,
    Unflatten,
)

rng = np.random.default_rng(0)


def run(transform, array):
    """Evaluate the rendered expression on `array` (our own rendering, in a test)."""
    out_shape = transform.forward(array.shape)
    expr = transform.render("w", out_shape)
    return eval(expr, {"np": np}, {"w": array})  # noqa: S307


@pytest.mark.parametrize(
    "transform, shape",
    [
        (Transpose(), (5, 7)),
        (Permute((2, 0, 1)), (2, 3, 4)),
        (Reshape((6, 4)), (2, 3, 4)),
        (ConvKernel(), (16, 3, 5, 7)),
        (ConvKernel(), (8, 4, 3)),
        (Unflatten((4, 2, 3)), (10, 24)),
    ],
)
def test_rendered_numpy_matches_shape_functions(transform, shape):
    array = rng.standard_normal(shape)
    result = run(transform, array)
    assert result.shape == transform.forward(shape)
    back = transform.backward(result.shape)
    assert back is None or back == shape


def test_conv_kernel_is_oihw_to_hwio():
    weight = rng.standard_normal((16, 3, 5, 7))
    np.testing.assert_array_equal(
        run(ConvKernel(), weight), weight.transpose(2, 3, 1, 0)
    )
    weight_1d = rng.standard_normal((8, 4, 3))
    np.testing.assert_array_equal(
        run(ConvKernel(), weight_1d), weight_1d.transpose(2, 1, 0)
    )


def test_unflatten_makes_a_linear_read_keras_flatten_order():
    channels, height, width, out = 4, 2, 3, 5
    feature_map = rng.standard_normal((channels, height, width))
    torch_flat = feature_map.reshape(-1)  # PyTorch: x.view(N, -1) on NCHW
    keras_flat = feature_map.transpose(1, 2, 0).reshape(-1)  # Keras Flatten on NHWC
    weight = rng.standard_normal((out, channels * height * width))
    reordered = run(Unflatten((channels, height, width)), weight)
    np.testing.assert_allclose(reordered @ keras_flat, weight @ torch_flat)
    assert not np.allclose(weight @ keras_flat, weight @ torch_flat)  # the naive port


@pytest.mark.parametrize(
    "item, message",
    [
        ({"permute": [0, 0, 1]}, "not a permutation"),
        ({"transpose": [1, 0]}, "transpose takes no argument"),
        ("permute", "permute needs an argument"),
        ({"reshape": [2, "x"]}, "list of integers"),
        ({"unflatten": [12]}, "[C, H, W]"),
        ({"a": 1, "b": 2}, "one-key mapping"),
    ],
)
def test_bad_forms_are_rejected(item, message):
    with pytest.raises(
        TransformError, match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        transforms.parse(item)


def test_unknown_name_is_a_key_error():
    with pytest.raises(KeyError):
        transforms.parse("tranpose")


@pytest.mark.parametrize(
    "transform, shape, message",
    [
        (Permute((1, 0)), (2, 3, 4), "rank-2"),
        (Reshape((5,)), (2, 3), "cannot reshape"),
        (ConvKernel(), (3, 4), "rank-3 or higher"),
        (Unflatten((4, 2, 3)), (10, 23), "covers 24 input features"),
    ],
)
def test_shape_mismatches_are_rejected(transform, shape, message):
    with pytest.raises(TransformError, match=message):
        transform.forward(shape)
