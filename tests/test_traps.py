"""PyTorch vs Keras traps: for each, the naive Keras spelling is measurably wrong
on the same input, and the spelling the compiler asks for is exact.

Each test runs both spellings of one small model through the real pipeline
(spec -> generated module -> checkpoint file -> Keras) against PyTorch.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compiler import parity
from tests.harness import compare

EXACT = 1e-5  # float32 noise on these small models stays far below this
WRONG = 1e-3  # a trap's error is at least this


def spec(input_shape, layers, outputs="[out]"):
    return f"""\
        spec: 1
        name: trap
        inputs:
          x: {{shape: {list(input_shape)}}}
        layers:
        {layers}
        outputs: {outputs}
        """


def test_same_padding_with_stride_2_is_asymmetric(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1))
    naive = compare(
        tmp_path,
        spec(
            (16, 16, 3),
            "  - {name: out, keras: Conv2D, torch: '0', args: "
            "{filters: 8, kernel_size: 3, strides: 2, padding: same}}",
        ),
        model,
        (2, 3, 16, 16),
        name="naive",
    )
    assert [w.code for w in naive.generated.warnings] == ["W501"]
    right = compare(
        tmp_path,
        spec(
            (16, 16, 3),
            """\
          - {name: pad, keras: ZeroPadding2D, args: {padding: 1}}
                  - {name: out, keras: Conv2D, torch: '0', args: {filters: 8, kernel_size: 3, strides: 2}}""",
        ),
        model,
        (2, 3, 16, 16),
        name="right",
    )
    print(f"same: {naive.error:.3g}, explicit padding: {right.error:.3g}")
    assert naive.error > WRONG and right.error <= EXACT
    assert right.generated.warnings == ()


def test_max_pool_padding_is_minus_infinity(tmp_path):
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1))
    shape = (2, 4, 9, 9)  # random normal input: negative values at the borders
    naive = compare(
        tmp_path,
        spec(
            (9, 9, 4),
            """\
          - {name: pad, keras: ZeroPadding2D, args: {padding: 1}}
                  - {name: out, keras: MaxPooling2D, args: {pool_size: 3, strides: 2}}""",
        ),
        model,
        shape,
        name="naive",
    )
    right = compare(
        tmp_path,
        spec(
            (9, 9, 4),
            "  - {name: out, keras: TorchMaxPooling2D, torch: '0', "
            "args: {pool_size: 3, strides: 2, padding: 1}}",
        ),
        model,
        shape,
        name="right",
    )
    print(f"zero padding: {naive.error:.3g}, -inf padding: {right.error:.3g}")
    assert naive.error > WRONG and right.error <= EXACT


def test_ceil_mode_rounds_the_output_size_up(tmp_path):
    model = nn.Sequential(nn.MaxPool2d(3, stride=2, ceil_mode=True))
    naive = compare(
        tmp_path,
        spec(
            (14, 14, 4),
            "  - {name: out, keras: MaxPooling2D, args: {pool_size: 3, strides: 2}}",
        ),
        model,
        (2, 4, 14, 14),
        name="naive",
    )
    assert naive.actual.shape[-1] == 6 and naive.expected.shape[-1] == 7
    assert naive.error == float("inf")  # shapes differ
    right = compare(
        tmp_path,
        spec(
            (14, 14, 4),
            "  - {name: out, keras: TorchMaxPooling2D, torch: '0', "
            "args: {pool_size: 3, strides: 2, ceil_mode: true}}",
        ),
        model,
        (2, 4, 14, 14),
        name="right",
    )
    assert right.actual.shape == right.expected.shape and right.error <= EXACT


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_average_pool_count_include_pad(tmp_path, count_include_pad):
    model = nn.Sequential(
        nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=count_include_pad)
    )
    right = compare(
        tmp_path,
        spec(
            (8, 8, 4),
            "  - {name: out, keras: TorchAveragePooling2D, torch: '0', args: "
            f"{{pool_size: 3, strides: 1, padding: 1, count_include_pad: {str(count_include_pad).lower()}}}}}",
        ),
        model,
        (2, 4, 8, 8),
        name="right",
    )
    assert right.error <= EXACT
    if (
        count_include_pad
    ):  # PyTorch's default; Keras "same" divides by real elements only
        naive = compare(
            tmp_path,
            spec(
                (8, 8, 4),
                "  - {name: out, keras: AveragePooling2D, "
                "args: {pool_size: 3, strides: 1, padding: same}}",
            ),
            model,
            (2, 4, 8, 8),
            name="naive",
        )
        assert naive.error > WRONG


def test_batch_norm_epsilon_is_pytorchs(tmp_path):
    model = nn.Sequential(nn.BatchNorm2d(6))
    naive = compare(
        tmp_path,
        spec(
            (5, 5, 6),
            "  - {name: out, keras: BatchNormalization, torch: '0', args: {epsilon: 0.001}}",
        ),
        model,
        (2, 6, 5, 5),
        name="naive",
    )
    right = compare(
        tmp_path,
        spec((5, 5, 6), "  - {name: out, keras: BatchNormalization, torch: '0'}"),
        model,
        (2, 6, 5, 5),
        name="right",
    )
    print(f"Keras epsilon: {naive.error:.3g}, PyTorch epsilon: {right.error:.3g}")
    assert naive.error > WRONG / 10 and right.error <= EXACT
    # The generated code states the epsilon even though the spec did not.
    assert "epsilon=1e-05" in right.generated.source


def test_softmax_over_channels_is_the_last_axis(tmp_path):
    model = nn.Sequential(nn.Softmax(dim=1))
    naive = compare(
        tmp_path,
        spec((4, 4, 5), "  - {name: out, keras: Softmax, args: {axis: 1}}"),
        model,
        (2, 5, 4, 4),
        name="naive",
    )
    right = compare(
        tmp_path,
        spec((4, 4, 5), "  - {name: out, keras: Softmax}"),
        model,
        (2, 5, 4, 4),
        name="right",
    )
    assert naive.error > WRONG and right.error <= EXACT


@pytest.mark.parametrize(
    "module, activation",
    [
        (nn.GELU(), "gelu"),
        (nn.Hardswish(), "hard_silu"),
        (nn.Hardsigmoid(), "hard_sigmoid"),
        (nn.SiLU(), "silu"),
        (nn.ReLU6(), "relu6"),
        (nn.Sigmoid(), "sigmoid"),
    ],
)
def test_activations_match_pytorch_formulas(tmp_path, module, activation):
    result = compare(
        tmp_path,
        spec(
            (16,),
            f"  - {{name: out, keras: Activation, args: {{activation: {activation}}}}}",
        ),
        nn.Sequential(module),
        (4, 16),
    )
    assert result.error <= EXACT


def test_activation_traps_are_real():
    """The formulas a naive port might take really differ from PyTorch's."""
    x = torch.linspace(-4, 4, 101)
    tanh_gelu = nn.GELU(approximate="tanh")(x)
    assert (tanh_gelu - nn.GELU()(x)).abs().max() > 10 * EXACT  # ~5e-4
    old_keras_hard_sigmoid = torch.clamp(0.2 * x + 0.5, 0, 1)  # Keras 2's formula
    assert (old_keras_hard_sigmoid - nn.Hardsigmoid()(x)).abs().max() > WRONG


def test_adaptive_avg_pool_flatten_is_global_average_pooling(tmp_path):
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    result = compare(
        tmp_path,
        spec((6, 6, 5), "  - {name: out, keras: GlobalAveragePooling2D, torch: '0'}"),
        model,
        (2, 5, 6, 6),
    )
    assert result.error <= EXACT


def test_depthwise_convolution_kernel_layout(tmp_path):
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=4))  # depth multiplier 2
    result = compare(
        tmp_path,
        spec(
            (6, 6, 4),
            "  - {name: out, keras: DepthwiseConv2D, torch: '0', args: "
            "{kernel_size: 3, padding: same, depth_multiplier: 2}}",
        ),
        model,
        (2, 4, 6, 6),
    )
    assert result.error <= EXACT


def test_grouped_convolution_kernel_layout(tmp_path):
    model = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1, groups=2))
    result = compare(
        tmp_path,
        spec(
            (6, 6, 4),
            "  - {name: out, keras: Conv2D, torch: '0', args: "
            "{filters: 6, kernel_size: 3, padding: same, groups: 2}}",
        ),
        model,
        (2, 4, 6, 6),
    )
    assert result.error <= EXACT


def test_dropout_is_identity_at_inference(tmp_path):
    model = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))
    result = compare(
        tmp_path,
        spec(
            (8,),
            """\
          - {name: fc, keras: Dense, args: {units: 8}, torch: '0'}
                  - {name: out, keras: Dropout, args: {rate: 0.5}}""",
        ),
        model,
        (4, 8),
    )
    assert result.error <= EXACT
    np.testing.assert_array_less(0.1, np.abs(result.expected).max())


def test_transposed_convolution_padding_crops_the_output(tmp_path):
    """ConvTranspose2d(padding=1) crops 1 from each side of the full output."""
    model = nn.Sequential(nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1))
    result = compare(
        tmp_path,
        spec(
            (5, 5, 4),
            """\
          - {name: up, keras: Conv2DTranspose, torch: '0', args: {filters: 3, kernel_size: 4, strides: 2}}
                  - {name: out, keras: Cropping2D, args: {cropping: 1}}""",
        ),
        model,
        (2, 4, 5, 5),
    )
    assert result.actual.shape == result.expected.shape == (2, 3, 10, 10)
    assert result.error <= EXACT


def test_transposed_convolution_output_padding(tmp_path):
    model = nn.Sequential(
        nn.ConvTranspose2d(4, 3, 3, stride=2, padding=1, output_padding=1)
    )
    result = compare(
        tmp_path,
        spec(
            (5, 5, 4),
            """\
          - {name: up, keras: Conv2DTranspose, torch: '0', args: {filters: 3, kernel_size: 3, strides: 2, output_padding: 1}}
                  - {name: out, keras: Cropping2D, args: {cropping: 1}}""",
        ),
        model,
        (2, 4, 5, 5),
    )
    assert result.actual.shape == result.expected.shape == (2, 3, 10, 10)
    assert result.error <= EXACT


def test_reshape_leaves_the_pytorch_shape_open(tmp_path):
    """After a reshape the compiler cannot know the PyTorch shape: the loader
    checks the element count through the reshape itself, not a fixed shape."""
    model = nn.Sequential(nn.Linear(4, 8))
    result = compare(
        tmp_path,
        spec(
            (4,),
            """\
          - name: out
                    keras: Dense
                    torch: '0'
                    args: {units: 8}
                    weights:
                      kernel: {from: 0.weight, transform: [{reshape: [8, 4]}, transpose]}""",
        ),
        model,
        (3, 4),
    )
    assert '"0.weight": (None, ("out/kernel",)' in result.generated.source
    assert result.error <= EXACT


def test_module_paths_may_contain_hyphens(tmp_path):
    """torchvision's regnet names blocks "block1-0": a valid PyTorch path."""
    model = nn.Sequential()
    model.add_module("block1-0", nn.Linear(4, 6))
    result = compare(
        tmp_path,
        spec((4,), "  - {name: out, keras: Dense, torch: block1-0, args: {units: 6}}"),
        model,
        (3, 4),
    )
    assert '"block1-0.weight"' in result.generated.source
    assert result.error <= EXACT


def test_prelu_has_one_alpha_per_channel(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.PReLU(5))
    result = compare(
        tmp_path,
        spec(
            (6, 6, 3),
            """\
          - {name: conv, keras: Conv2D, torch: '0', args: {filters: 5, kernel_size: 3, padding: same}}
                  - {name: out, keras: PReLU, torch: '1', args: {shared_axes: [1, 2]}}""",
        ),
        model,
        (2, 3, 6, 6),
    )
    assert result.error <= EXACT
    # Negative slopes really differ per channel (randomised), so this is a real test.
    assert len(set(model[1].weight.tolist())) == 5


def test_prelu_with_one_shared_alpha(tmp_path):
    """nn.PReLU() (PyTorch's default): one alpha for every channel and position."""
    model = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.PReLU())
    result = compare(
        tmp_path,
        spec(
            (6, 6, 3),
            """\
          - {name: conv, keras: Conv2D, torch: '0', args: {filters: 5, kernel_size: 3, padding: same}}
                  - {name: out, keras: PReLU, torch: '1', args: {shared_axes: [1, 2, 3]}}""",
        ),
        model,
        (2, 3, 6, 6),
    )
    assert result.error <= EXACT
    alpha = model[1].weight.item()
    assert alpha != 0.25  # randomised away from the default, so it is really read
    assert (result.expected < 0).any()  # and negative inputs reach it


def test_concatenate_axis_counts_the_batch_axis_as_keras_does(tmp_path):
    """Keras's axis 1 is the first axis after the batch: height in NHWC."""

    class Stack(nn.Module):
        def forward(self, x):
            return torch.cat([x, x * 2], dim=2)  # NCHW height

    result = compare(
        tmp_path,
        spec(
            (4, 6, 3),
            """\
          - {name: double, keras: Add, inputs: [x, x]}
                  - {name: out, keras: Concatenate, inputs: [x, double], args: {axis: 1}}""",
        ),
        Stack(),
        (2, 3, 4, 6),
    )
    assert result.actual.shape == result.expected.shape == (2, 3, 8, 6)
    assert result.error <= EXACT


@pytest.mark.parametrize(
    "padding, kernel, stride, output_padding",
    [
        ("valid", 1, 2, None),
        ("valid", 2, 3, None),
        ("valid", 4, 2, None),
        ("same", 3, 2, 1),
        ("same", 4, 2, 1),
        ("same", 3, 2, None),
        ("valid", 3, 2, 1),
        ("valid", 2, 3, 0),
    ],
)
def test_conv_transpose_shape_inference_agrees_with_keras(
    tmp_path, padding, kernel, stride, output_padding
):
    import keras

    from tests.harness import compile_inline

    args = {"filters": 2, "kernel_size": kernel, "strides": stride, "padding": padding}
    if output_padding is not None:
        args["output_padding"] = output_padding
    generated = compile_inline(
        tmp_path,
        spec(
            (5, 5, 3),
            f"  - {{name: out, keras: Conv2DTranspose, torch: up, args: {args}}}",
        ),
    )
    inferred = generated.module.layers[-1].output_shape
    actual = keras.layers.Conv2DTranspose(**args).compute_output_shape((None, 5, 5, 3))
    assert (None, *inferred) == tuple(actual)


def test_leaky_relu_states_its_slope(tmp_path):
    """Keras's "leaky_relu" activation uses slope 0.2, PyTorch's 0.01: the
    activation name is refused, ReLU(negative_slope) is exact."""
    from compiler.errors import SpecError

    with pytest.raises(SpecError, match="Input should be"):
        compare(
            tmp_path,
            spec(
                (8,),
                "  - {name: out, keras: Activation, args: {activation: leaky_relu}}",
            ),
            nn.Sequential(nn.LeakyReLU()),
            (4, 8),
            name="named",
        )
    result = compare(
        tmp_path,
        spec((8,), "  - {name: out, keras: ReLU, args: {negative_slope: 0.01}}"),
        nn.Sequential(nn.LeakyReLU()),
        (4, 8),
    )
    assert result.error <= EXACT


def test_same_padding_lint_only_where_keras_pads_asymmetrically(tmp_path):
    from tests.harness import compile_inline

    generated = compile_inline(
        tmp_path,
        spec(
            (16, 16, 4),
            """\
          - {name: one, keras: Conv2D, torch: a, args: {filters: 4, kernel_size: 1, strides: 2, padding: same}}
                  - {name: three, keras: Conv2D, torch: b, args: {filters: 4, kernel_size: 3, strides: 2, padding: same}}
                  - {name: pool, keras: MaxPooling2D, args: {pool_size: 3, strides: 2, padding: same}}
                  - {name: out, keras: AveragePooling2D, args: {pool_size: 3, strides: 1, padding: same}}""",
        ),
    )
    flagged = [(w.code, w.message.split("'")[1]) for w in generated.warnings]
    # A 1x1 conv pads nothing; the others pad unevenly, or average differently.
    assert flagged == [("W501", "three"), ("W501", "pool"), ("W501", "out")]


def test_float16_biases_are_summed_in_float32(tmp_path):
    """LSTM bias = bias_ih + bias_hh: added after widening, not in float16."""
    from tests.harness import compile_inline

    generated = compile_inline(
        tmp_path,
        spec((5, 3), "  - {name: out, keras: LSTM, torch: lstm, args: {units: 2}}"),
    )
    module = parity.import_generated(generated.output_path)
    rng = np.random.default_rng(0)
    state_dict = {
        "lstm.weight_ih_l0": rng.standard_normal((8, 3)).astype(np.float16),
        "lstm.weight_hh_l0": rng.standard_normal((8, 2)).astype(np.float16),
        "lstm.bias_ih_l0": (rng.standard_normal(8) * 5).astype(np.float16),
        "lstm.bias_hh_l0": (rng.standard_normal(8) * 5).astype(np.float16),
    }
    model = module.build_model()
    module.load_weights(model, state_dict)
    exact = state_dict["lstm.bias_ih_l0"].astype(np.float32) + state_dict[
        "lstm.bias_hh_l0"
    ].astype(np.float32)
    bias = next(w for w in model.weights if w.path.endswith("bias"))
    np.testing.assert_array_equal(bias.numpy(), exact)
