"""fold_batchnorm: BatchNormalization folded into the conv or Dense before it.

The folded model must give PyTorch's numbers (same input, same checkpoint) and
have no BatchNormalization layer left where folding is exact; everywhere else
(an activation in between, a conv read twice, a conv that is an output) the
BatchNormalization must stay a layer.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.harness import compare, compile_inline

EXACT = 1e-5  # float32 noise on these small models stays far below this


class ConvBNNet(nn.Module):
    """Every foldable pairing: conv without and with bias, depthwise with a
    multiplier, a BN without affine weights, Dense + BatchNorm1d."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=True)
        self.bn2 = nn.BatchNorm2d(8, eps=1e-3)
        self.dw = nn.Conv2d(8, 16, 3, padding=1, groups=8, bias=False)
        self.dw_bn = nn.BatchNorm2d(16, affine=False)
        self.fc = nn.Linear(16 * 4 * 4, 10)
        self.fc_bn = nn.BatchNorm1d(10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.dw_bn(self.dw(x)))
        x = torch.permute(x, (0, 2, 3, 1)).flatten(1)  # NHWC flatten: Keras's order
        return self.fc_bn(self.fc(x))


def _spec(fold: bool) -> str:
    return f"""\
        spec: 1
        name: convbn
        fold_batchnorm: {str(fold).lower()}
        inputs:
          x: {{shape: [4, 4, 3]}}
        layers:
          - {{name: conv1, keras: Conv2D, torch: conv1, args: {{filters: 8, kernel_size: 3, padding: same, use_bias: false}}}}
          - {{name: bn1, keras: BatchNormalization, torch: bn1}}
          - {{name: relu1, keras: ReLU}}
          - {{name: conv2, keras: Conv2D, torch: conv2, args: {{filters: 8, kernel_size: 3, padding: same}}}}
          - {{name: bn2, keras: BatchNormalization, torch: bn2, args: {{epsilon: 0.001}}}}
          - {{name: relu2, keras: ReLU}}
          - {{name: dw, keras: DepthwiseConv2D, torch: dw, args: {{kernel_size: 3, padding: same, depth_multiplier: 2, use_bias: false}}}}
          - {{name: dw_bn, keras: BatchNormalization, torch: dw_bn, args: {{center: false, scale: false}}}}
          - {{name: relu3, keras: ReLU}}
          - {{name: flat, keras: Flatten}}
          - {{name: fc, keras: Dense, torch: fc, args: {{units: 10}}}}
          - {{name: fc_bn, keras: BatchNormalization, torch: fc_bn}}
        outputs: [fc_bn]
        """


def test_folded_model_matches_pytorch_and_has_no_batchnorm(tmp_path):
    folded = compare(tmp_path, _spec(True), ConvBNNet(), (2, 3, 4, 4), name="folded")
    kept = compare(tmp_path, _spec(False), ConvBNNet(), (2, 3, 4, 4), name="kept")
    scale = abs(folded.expected).max()
    print(f"folded {folded.error:.3g}, kept {kept.error:.3g} (max |y| {scale:.3g})")
    assert folded.error <= EXACT * scale and kept.error <= EXACT * scale

    layers = [(layer.name, layer.keras) for layer in folded.generated.module.layers]
    assert "BatchNormalization" not in {keras for _, keras in layers}
    assert [n for n, _ in layers] == [
        *("conv1", "relu1", "conv2", "relu2", "dw", "relu3", "flat", "fc")
    ]
    # The output keeps the spec's name; the Keras layer computing it is fc.
    assert folded.generated.module.outputs == ("fc",)
    assert folded.generated.module.output_names == ("fc_bn",)
    # A conv without bias gains one (Keras's default use_bias=True).
    source = folded.generated.source
    assert "use_bias" not in source.split("def build_model")[1].split("def ")[0]
    # The loader names each BatchNormalization key it folds, with its spec line.
    assert "# folded in: dw_bn <- dw_bn (spec line 14)" in source
    assert "channel_axes=2" in source  # depthwise: output channel = (C, M)
    kept_kinds = [layer.keras for layer in kept.generated.module.layers]
    assert kept_kinds.count("BatchNormalization") == 4


class SequenceBN(nn.Module):
    """A grouped Conv1d and a Dense on (steps, features), each with a BN."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(4, 6, 3, padding=1, groups=2)
        self.bn = nn.BatchNorm1d(6)
        self.fc = nn.Linear(6, 5)
        self.fc_bn = nn.BatchNorm1d(5)

    def forward(self, x):  # (N, 4, 7)
        x = torch.relu(self.bn(self.conv(x))).transpose(1, 2)  # (N, 7, 6)
        y = self.fc(x)
        return self.fc_bn(y.transpose(1, 2))  # (N, 5, 7): Keras's (N, 7, 5)


def test_grouped_conv1d_and_dense_on_a_sequence_fold_exactly(tmp_path):
    text = """\
        spec: 1
        name: seqbn
        fold_batchnorm: true
        inputs:
          x: {shape: [7, 4]}
        layers:
          - {name: conv, keras: Conv1D, torch: conv, args: {filters: 6, kernel_size: 3, padding: same, groups: 2}}
          - {name: bn, keras: BatchNormalization, torch: bn}
          - {name: relu, keras: ReLU}
          - {name: fc, keras: Dense, torch: fc, args: {units: 5}}
          - {name: fc_bn, keras: BatchNormalization, torch: fc_bn}
        outputs: [fc_bn]
        """
    model = SequenceBN()
    result = compare(tmp_path, text, model, (2, 4, 7))
    kinds = [layer.keras for layer in result.generated.module.layers]
    assert kinds == ["Conv1D", "ReLU", "Dense"]
    assert result.error <= EXACT * abs(result.expected).max()


def test_a_wrong_epsilon_still_shows_after_folding(tmp_path):
    """The control: the folded weights depend on the spec's epsilon, so a wrong
    one is measurably wrong on the same input (the test above can fail)."""
    wrong = _spec(True).replace("args: {epsilon: 0.001}", "args: {epsilon: 0.5}")
    result = compare(tmp_path, wrong, ConvBNNet(), (2, 3, 4, 4))
    assert result.error > 1e-2 * abs(result.expected).max()


NOT_FOLDABLE = {
    # An activation between them: BN(relu(conv(x))) is not affine in the kernel.
    "activation": """\
      - {name: conv, keras: Conv2D, torch: conv, args: {filters: 4, kernel_size: 1, activation: relu}}
      - {name: bn, keras: BatchNormalization, torch: bn}
    outputs: [bn]""",
    # The conv's own output is read elsewhere too.
    "read twice": """\
      - {name: conv, keras: Conv2D, torch: conv, args: {filters: 3, kernel_size: 1}}
      - {name: bn, keras: BatchNormalization, torch: bn}
      - {name: add, keras: Add, inputs: [conv, bn]}
    outputs: [add]""",
    # The conv is an output itself.
    "output": """\
      - {name: conv, keras: Conv2D, torch: conv, args: {filters: 4, kernel_size: 1}}
      - {name: bn, keras: BatchNormalization, torch: bn}
    outputs: [conv, bn]""",
    # No weighted layer before it.
    "after an input": """\
      - {name: bn, keras: BatchNormalization, torch: bn, inputs: [x]}
    outputs: [bn]""",
}


@pytest.mark.parametrize("case", sorted(NOT_FOLDABLE))
def test_batchnorm_stays_a_layer_where_folding_is_not_exact(case, tmp_path):
    text = f"""\
    spec: 1
    name: kept
    fold_batchnorm: true
    inputs:
      x: {{shape: [4, 4, 3]}}
    layers:
{NOT_FOLDABLE[case]}
    """
    module = compile_inline(tmp_path, text).module
    assert "bn" in [layer.name for layer in module.layers]
    assert all(layer.folded is None for layer in module.layers)


def test_fold_batchnorm_must_be_a_boolean(tmp_path):
    from compiler.errors import SpecError

    text = _spec(True).replace("fold_batchnorm: true", "fold_batchnorm: 'yes'")
    with pytest.raises(SpecError) as info:
        compile_inline(tmp_path, text)
    assert "fold_batchnorm" in str(info.value)
