"""Each transform: its shape functions agree with the numpy it renders, and it means what it says."""

from __future__ import annotations

import numpy as np
import pytest

from compiler import transforms
from compiler.transforms import (
    AddRow,
    Chunk,
    ConvKernel,
    Gates,
    Permute,
    Reshape,
    SplitAxis,
    Stack,
    Sum,
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


# --- sequence-model transforms ---------------------------------------------


@pytest.mark.parametrize(
    "transform, shape",
    [
        (Chunk(1, 3), (12, 5)),
        (Chunk(2, 3), (12,)),
        (Gates((1, 0, 2)), (5, 12)),
        (Gates((1, 0, 2)), (2, 12)),
        (SplitAxis(1, 4), (6, 12)),
        (SplitAxis(0, 4), (12,)),
    ],
)
def test_sequence_transforms_render_what_their_shapes_say(transform, shape):
    test_rendered_numpy_matches_shape_functions(transform, shape)


def test_chunk_is_torch_chunk():
    weight = rng.standard_normal((12, 5))
    for index in range(3):
        np.testing.assert_array_equal(
            run(Chunk(index, 3), weight), np.split(weight, 3)[index]
        )


def test_gates_reorders_gru_blocks_on_the_last_axis():
    units = 4
    reset, update, new = (np.full((3, units), v) for v in (1.0, 2.0, 3.0))
    kernel = np.concatenate([reset, update, new], axis=-1)  # PyTorch order, transposed
    keras_kernel = run(Gates((1, 0, 2)), kernel)
    np.testing.assert_array_equal(
        keras_kernel, np.concatenate([update, reset, new], axis=-1)
    )


def test_split_axis_gives_heads_of_consecutive_features():
    weight = np.arange(12.0)
    np.testing.assert_array_equal(
        run(SplitAxis(0, 3), weight), [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    )


@pytest.mark.parametrize(
    "combiner, expected",
    [(Sum(), lambda a, b: a + b), (Stack(), lambda a, b: np.stack([a, b]))],
)
def test_combiners_render_numpy_that_combines(combiner, expected):
    a, b = rng.standard_normal(6), rng.standard_normal(6)
    expr = combiner.combine(['sd["a"]', 'sd["b"]'])
    result = eval(expr, {"np": np}, {"sd": {"a": a, "b": b}})  # noqa: S307
    np.testing.assert_array_equal(result, expected(a, b))
    assert result.shape == combiner.forward_many([a.shape, b.shape])
    assert combiner.backward_many(result.shape, 2) == (a.shape, a.shape)


def test_add_row_adds_one_row_to_every_row_of_the_table():
    """BERT without token_type_ids: position table + token type 0's row."""
    table, rows = rng.standard_normal((5, 3)), rng.standard_normal((2, 3))
    add = AddRow(0, 2)
    expr = add.combine(['sd["positions"]', 'sd["types"]'])
    result = eval(expr, {"np": np}, {"sd": {"positions": table, "types": rows}})  # noqa: S307
    np.testing.assert_array_equal(result, table + rows[0])
    assert add.backward_many((5, 3), 2) == ((5, 3), (2, 3))
    assert add.forward_many([(5, 3), (2, 3)]) == (5, 3)
    with pytest.raises(TransformError, match=r"needs rows of shape \(2, 3\)"):
        add.forward_many([(5, 3), (2, 4)])
    with pytest.raises(TransformError, match="two keys"):
        add.backward_many((5, 3), 3)
    with pytest.raises(TransformError, match="0 <= row < rows"):
        transforms.parse({"add_row": [2, 2]})
    assert transforms.parse({"add_row": [1, 2]}) == AddRow(1, 2)


@pytest.mark.parametrize(
    "sources, chain, message",
    [
        (2, (), "must combine them"),
        (2, (Transpose(), Sum()), "must combine them"),
        (1, (Sum(),), "give from: a list"),
        (2, (Sum(), Stack()), "only the first"),
        (1, (Transpose(), Chunk(0, 2)), "first transform of a single key"),
    ],
)
def test_chain_rules_for_combining_and_chunking(sources, chain, message):
    with pytest.raises(TransformError, match=message):
        transforms.check_chain(sources, chain)


@pytest.mark.parametrize(
    "item, message",
    [
        ({"chunk": [3, 3]}, "0 <= index < parts"),
        ({"chunk": [0]}, r"chunk takes \[index, parts\]"),
        ({"gates": [0, 0, 1]}, "not a reordering"),
        ({"split_axis": [-1, 2]}, "axis >= 0"),
    ],
)
def test_bad_sequence_transform_forms(item, message):
    with pytest.raises(TransformError, match=message):
        transforms.parse(item)
