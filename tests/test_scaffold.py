"""scaffold: trace a PyTorch model, draft a spec, compile it, and match PyTorch.

Every parity test here uses the draft exactly as scaffold wrote it, with zero
hand edits: draft -> compile -> convert a randomised checkpoint -> compare.
Ops scaffold cannot map must come out as placeholders that validate rejects,
naming the op and its module path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compiler import cli, fold, load, parity, resolve, scaffold, schema
from tests.harness import compile_inline

# --- models defined here, for the rules the torchvision models do not reach ---


class Zoo(nn.Module):
    """One of most things scaffold maps, on a 32x32 image."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # pad + valid
        self.even = nn.Conv2d(8, 8, 4, padding=1)  # even kernel: pad + valid
        self.dilated = nn.Conv2d(8, 8, 3, padding=2, dilation=2, bias=False)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(16, eps=1e-3, momentum=0.01)
        self.act = nn.LeakyReLU(0.2)
        self.pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)  # 8 -> 4, not 3
        self.avg = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
        self.branch = nn.Conv2d(16, 8, 1)
        self.gelu = nn.GELU()
        self.adapt = nn.AdaptiveAvgPool2d(2)  # 4x4 -> 2x2: AveragePooling2D
        self.fc1 = nn.Linear(24 * 2 * 2, 32)
        self.ln = nn.LayerNorm(32, eps=1e-6)
        self.drop = nn.Dropout(0.1)
        self.fc2 = nn.Linear(32, 10)
        self.unused = nn.Linear(3, 3)  # never called: its keys go to ignore:

    def forward(self, x):
        x = self.stem(x)
        x.relu_()  # in place: what reads x afterwards reads the ReLU
        x = self.even(x)
        x = self.dilated(x) + x
        x = torch.sigmoid(self.grouped(x)) * x
        x = self.act(self.bn(self.depthwise(x)))
        x = self.pool(x)
        y = self.gelu(self.branch(self.avg(x)))
        x = torch.cat([x, y], dim=1)
        x = x * torch.sigmoid(x.mean((2, 3), keepdim=True))
        x = torch.flatten(self.adapt(x), 1)  # a (24, 2, 2) map: unflatten
        x = self.drop(F.silu(self.fc1(x)))
        return F.softmax(self.fc2(self.ln(x)), dim=1)


class Signal(nn.Module):
    """Conv1d on a (channels, length) sequence, channels-last in Keras."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(4, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.act1 = nn.PReLU(8)  # one alpha per channel
        self.conv2 = nn.Conv1d(8, 8, 3, groups=2)
        self.act2 = nn.PReLU()  # one alpha for all
        self.fc = nn.Linear(8 * 18, 5)

    def forward(self, x):
        x = self.act1(self.bn(self.conv1(x)))
        x = self.act2(self.conv2(x)).flatten(1)  # a (8, 18) map: unflatten
        return self.fc(x)


class ConvNeXtLike(nn.Module):
    """torchvision's ConvNeXt parts: LayerNorm2d (a permute, F.layer_norm with
    the module's own weights, a permute back) and CNBlock (its layer scale is
    a parameter the block multiplies by)."""

    def __init__(self):
        super().__init__()
        from torchvision.models.convnext import CNBlock, LayerNorm2d

        self.stem = nn.Conv2d(3, 16, 4, stride=4)
        self.norm = LayerNorm2d(16, eps=1e-6)
        self.block = CNBlock(16, layer_scale=0.5, stochastic_depth_prob=0.0)
        self.head = nn.Linear(16, 5)

    def forward(self, x):
        x = self.block(self.norm(self.stem(x)))
        return self.head(x.mean((2, 3)))


class Tokens(nn.Module):
    """Integer ids: Embedding output is (length, features) in both frameworks."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8 * 6, 3)
        self.conv = nn.Conv1d(8, 4, 3, padding=1)
        self.conv_fc = nn.Linear(4 * 6, 3)

    def forward(self, ids):
        x = self.norm(self.embed(ids))
        flat = self.fc(x.reshape(x.size(0), -1))  # same order in both frameworks
        # (N, 6, 8) -> (N, 8, 6): channels-first, which Keras's (6, 8) already is.
        y = F.relu(self.conv(x.transpose(1, 2)))
        return flat + self.conv_fc(y.flatten(1))  # a (4, 6) map: unflatten


class Channels(nn.Module):
    """Permutes and reshapes that only move channels, or only merge positions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm(8)
        self.mix = nn.Linear(8, 8)
        self.token = nn.Linear(8, 5)
        self.head = nn.Linear(36 * 5, 4)

    def forward(self, x):
        x = self.conv(x)
        # ConvNeXt style: channels last for LayerNorm and Linear, then back.
        x = x + self.mix(self.norm(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        # ViT style: (N, C, H, W) -> (N, C, H*W) -> (N, H*W, C) tokens.
        tokens = x.reshape(x.size(0), 8, 36).transpose(1, 2)
        return self.head(self.token(tokens).flatten(1))


class Sorter(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=1).values


class Gate(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))

    def forward(self, x):
        if x.sum() > 0:
            return x * self.scale.view(1, 4, 1, 1)
        return x


class Unmappable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = Sorter()
        self.gate = Gate()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.head(self.conv(x))
        x = self.gate(x) - 1
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Reuse(nn.Module):
    """A weightless module called twice, and a weighted one (shared weights)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.conv(x))
        return self.relu(self.conv(x))


class StackedGRU(nn.Module):
    """A 2-layer GRU without biases, read through h_n[-1]: layer 1 returns its
    sequence to layer 2, which returns its last step."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.gru = nn.GRU(8, 6, num_layers=2, bias=False, batch_first=True)
        self.fc = nn.Linear(6, 3)

    def forward(self, ids):
        _, h_n = self.gru(self.embed(ids))
        return self.fc(h_n[-1])


class CellState(nn.Module):
    """RNN reads scaffold cannot map: an LSTM's c_n, an inner layer's h_n, and
    h_n[-1] of a bidirectional GRU (its backward direction alone)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.lstm = nn.LSTM(8, 6, num_layers=2, batch_first=True)
        self.bigru = nn.GRU(8, 6, bidirectional=True, batch_first=True)

    def forward(self, ids):
        x = self.embed(ids)
        _, (h_n, c_n) = self.lstm(x)
        _, h = self.bigru(x)
        return c_n[-1] + h_n[0] + h[-1]


# --- helpers -------------------------------------------------------------------


def draft(factory, shape, model=None, dtype="float32", name=None):
    return scaffold.draft(
        factory, [shape], [dtype], name=name, model=model, path="draft.yaml"
    )


def convert(tmp_path, text, torch_model, name):
    """Compile the draft as written, convert a randomised checkpoint with it."""
    generated = compile_inline(tmp_path, text, name)
    parity.randomize_(torch_model, seed=0)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / f"{name}.safetensors")
    return parity.import_generated(generated.output_path).convert(checkpoint)


def assert_matches(torch_model, keras_model, x, relative):
    expected = parity.torch_output(torch_model, x)
    actual = parity.keras_output(keras_model, x)
    error = parity.max_abs_error(expected, actual)
    scale = max(1.0, float(np.abs(expected).max()))
    print(f"max abs error {error:.3g}, max |output| {np.abs(expected).max():.3g}")
    assert np.abs(expected).max() > 0.01
    assert error <= relative * scale


# --- scaffold -> compile -> parity, with zero hand edits ----------------------

MODELS = [
    ("examples.seed:SeedCNN", (1, 3, 32, 32), 1e-5),
    ("examples.seed:SeedConv", (1, 3, 32, 32), 1e-5),
    ("examples.seed:SeedLinear", (1, 10), 1e-5),
    ("torchvision.models:resnet18", (1, 3, 224, 224), 1e-4),
    ("torchvision.models:mobilenet_v2", (1, 3, 224, 224), 1e-4),
    ("torchvision.models:squeezenet1_1", (1, 3, 224, 224), 1e-4),
    ("torchvision.models:mobilenet_v3_small", (1, 3, 224, 224), 1e-4),
    ("torchvision.models:efficientnet_b0", (1, 3, 224, 224), 1e-4),
]


@pytest.mark.parametrize(
    "factory, shape, relative", MODELS, ids=[m[0].split(":")[1] for m in MODELS]
)
def test_scaffolded_spec_matches_pytorch(factory, shape, relative, tmp_path):
    result = draft(factory, shape)
    # Nothing unmapped, and validate has nothing to say: no error, no warning.
    assert result.unmapped == ()
    assert result.diagnostics == ()
    torch_model = parity.build(factory)
    keras_model = convert(tmp_path, result.text, torch_model, "drafted")
    assert_matches(torch_model, keras_model, parity.random_input(shape, 1), relative)


@pytest.mark.parametrize(
    "model, shape",
    [
        (Zoo, (1, 3, 32, 32)),
        (Signal, (1, 4, 20)),
        (Channels, (1, 3, 6, 6)),
        (ConvNeXtLike, (1, 3, 16, 16)),
    ],
    ids=["zoo", "1d", "channels", "convnext"],
)
def test_mapping_rules_match_pytorch(model, shape, tmp_path):
    result = draft(f"tests.test_scaffold:{model.__name__}", shape, model())
    assert result.unmapped == ()
    assert result.diagnostics == ()
    torch_model = model().eval()
    keras_model = convert(tmp_path, result.text, torch_model, "drafted")
    assert_matches(torch_model, keras_model, parity.random_input(shape, 1), 1e-5)


def test_zoo_draft_reads_like_a_hand_written_spec():
    text = draft("tests.test_scaffold:Zoo", (1, 3, 32, 32), Zoo()).text
    lines = text.splitlines()
    assert lines[0].startswith("# Drafted by torch2keras")
    assert (
        "#   torch2keras scaffold tests.test_scaffold:Zoo --input-shape 1,3,32,32"
        in lines
    )
    expected = [
        "  - {name: stem_pad, keras: ZeroPadding2D, args: {padding: 1}}",
        "  - {name: stem, keras: Conv2D, torch: stem, args: {filters: 8, "
        "kernel_size: 3, strides: 2}}",
        "  - {name: relu, keras: ReLU}",
        "  - {name: dilated, keras: Conv2D, torch: dilated, args: {filters: 8, "
        "kernel_size: 3, padding: same, dilation_rate: 2, use_bias: false}}",
        "  - {name: add, keras: Add, inputs: [dilated, even]}",
        "  - {name: depthwise, keras: DepthwiseConv2D, torch: depthwise, args: "
        "{kernel_size: 3, strides: 2, depth_multiplier: 2}}",
        "  - {name: bn, keras: BatchNormalization, torch: bn, args: "
        "{epsilon: 0.001, momentum: 0.99}}",
        "  - {name: pool, keras: TorchMaxPooling2D, torch: pool, args: "
        "{pool_size: 3, strides: 2, ceil_mode: true}}",
        "  - {name: cat, keras: Concatenate, inputs: [pool, gelu]}",
        "  - {name: mean, keras: GlobalAveragePooling2D, args: {keepdims: true}}",
        "  - {name: adapt, keras: AveragePooling2D, torch: adapt, args: "
        "{pool_size: 2}}",
        "      kernel: {from: fc1.weight, transform: [{unflatten: [24, 2, 2]}, "
        "transpose]}",
        "  - {name: ln, keras: LayerNormalization, torch: ln, args: {epsilon: 1e-06}}",
        "  - {name: softmax, keras: Softmax}",
        "  - unused.weight",
        "  - unused.bias",
    ]
    for line in expected:
        assert line in lines
    # A draft with BatchNorm offers fold_batchnorm, commented out; uncommented,
    # the BN after the depthwise conv folds into it.
    assert "# fold_batchnorm: true" in lines
    folded = text.replace("# fold_batchnorm: true", "fold_batchnorm: true")
    doc = load.load("zoo.yaml", folded.encode())
    module = fold.fold_batchnorm(resolve.resolve(doc, schema.validate(doc))[0])
    assert [layer.name for layer in module.layers if layer.folded] == ["depthwise"]


def test_integer_ids_match_pytorch(tmp_path):
    result = draft("tests.test_scaffold:Tokens", (1, 6), Tokens(), dtype="int64")
    assert result.diagnostics == ()  # in particular, no flatten-order warning
    assert "  ids: {shape: [6], dtype: int64}" in result.text
    assert "      kernel: {from: fc.weight, transform: [transpose]}" in result.text
    assert (
        "      kernel: {from: conv_fc.weight, transform: [{unflatten: [4, 6]}, "
        "transpose]}" in result.text
    )
    torch_model = Tokens().eval()
    keras_model = convert(tmp_path, result.text, torch_model, "tokens")
    ids = np.random.default_rng(1).integers(0, 50, size=(2, 6))
    expected = torch_model(torch.from_numpy(ids)).detach().numpy()
    actual = np.asarray(keras_model(ids, training=False))
    assert parity.max_abs_error(expected, actual) <= 1e-5


SEQUENCE_MODELS = [
    ("examples.sequence:GRUClassifier", None),
    ("examples.sequence:BiLSTMTagger", None),
    ("tests.test_scaffold:StackedGRU", StackedGRU),
]


@pytest.mark.parametrize(
    "factory, model", SEQUENCE_MODELS, ids=[m[0].split(":")[1] for m in SEQUENCE_MODELS]
)
def test_recurrent_models_match_pytorch(factory, model, tmp_path):
    """nn.GRU / nn.LSTM on int64 token ids: the tuple they return is read
    through getitem, h_n[-1] is the last layer's last step."""
    torch_model = model().eval() if model else parity.build(factory)
    result = draft(factory, (4, 16), torch_model, dtype="int64", name="recurrent")
    assert result.unmapped == ()
    assert result.diagnostics == ()
    keras_model = convert(tmp_path, result.text, torch_model, "recurrent")
    vocab = torch_model.embed.num_embeddings if model else 1000
    ids, _ = parity.random_tokens(4, 16, vocab, seed=5)
    expected = parity.torch_output(torch_model, ids)
    actual = parity.keras_sequence_output(keras_model, ids)
    assert np.abs(expected).max() > 0.01
    assert parity.max_abs_error(expected, actual) <= 1e-4


def test_recurrent_drafts_read_like_the_hand_written_specs():
    gru = draft("examples.sequence:GRUClassifier", (4, 16), dtype="int64").text
    assert "  - {name: gru, keras: GRU, torch: gru, args: {units: 64}}" in gru
    lstm = draft("examples.sequence:BiLSTMTagger", (4, 16), dtype="int64").text
    lines = lstm.splitlines()
    assert (
        "  - {name: lstm_l0, keras: Bidirectional, torch: lstm, args: {layer: LSTM, "
        "units: 48, return_sequences: true}}" in lines
    )
    assert (
        "  - {name: lstm_l1, keras: Bidirectional, torch: lstm, args: {layer: LSTM, "
        "units: 48, return_sequences: true, torch_layer: 1}}" in lines
    )
    stacked = draft("tests.test_scaffold:StackedGRU", (4, 16), StackedGRU(), "int64")
    assert (
        "  - {name: gru_l1, keras: GRU, torch: gru, args: {units: 6, use_bias: false, "
        "torch_layer: 1}}" in stacked.text.splitlines()
    )


# --- what scaffold cannot map -------------------------------------------------


def test_unmappable_ops_become_placeholders_that_validate_names(
    tmp_path, monkeypatch, capsys
):
    result = draft("tests.test_scaffold:Unmappable", (1, 3, 8, 8), Unmappable())
    lines = result.text.splitlines()
    placeholders = [
        line for line in lines if line.startswith("  - ") and "UNMAPPED" in line
    ]
    assert placeholders == [
        "  - {name: head_sort, keras: 'UNMAPPED torch.sort in head.forward'}",
        "  - {name: head_getattr, keras: 'UNMAPPED getattr in head.forward'}",
        "  - {name: gate, keras: 'UNMAPPED module gate (tests.test_scaffold.Gate)', "
        "torch: gate}",
        "  - {name: sub, keras: 'UNMAPPED operator.sub in forward'}",
    ]
    # Each says why, above it; the layers around them are still drafted.
    assert "  # UNMAPPED: it returns 2 values, not one tensor." in result.text
    assert "  # UNMAPPED: torch.fx cannot trace its forward (TraceError:" in result.text
    assert "  - {name: fc, keras: Dense, torch: fc, args: {units: 2}}" in result.text

    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "unmappable.yaml").write_text(result.text)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["validate", "specs/unmappable.yaml"]) == cli.EXIT_FINDINGS
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 4
    assert errors[0].startswith(
        "specs/unmappable.yaml:17:30: error[E205]: scaffold found no Keras layer for "
        "torch.sort in head.forward: replace this placeholder with a Keras layer "
        "type the spec language allows"
    )
    assert "E205]: scaffold found no Keras layer for module gate (" in errors[2]
    assert (
        "E205]: scaffold found no Keras layer for operator.sub in forward" in errors[3]
    )


def test_shared_weights_and_reused_modules():
    text = draft("tests.test_scaffold:Reuse", (1, 4, 5, 5), Reuse()).text
    lines = text.splitlines()
    # verify compares a module's last call: only that layer pairs with it.
    assert "  - {name: relu, keras: ReLU}" in lines
    assert "  - {name: relu_1, keras: ReLU, torch: relu}" in lines
    # The second call of a weighted module cannot map its keys a second time.
    assert (
        "  - {name: conv_1, keras: 'UNMAPPED module conv (torch.nn.Conv2d)'}" in lines
    )
    assert "  # UNMAPPED: it is called a second time (shared weights)" in text


def test_flatten_returned_channels_first_is_a_placeholder():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    result = draft("torch.nn:Sequential", (1, 3, 5, 5), model, name="seq")
    assert result.unmapped and "forward() returns" in result.unmapped[0]
    # Module names that start with a digit become valid spec names.
    assert "  - {name: layer_0, keras: Conv2D, torch: '0', args:" in result.text


def test_untraceable_forward_is_an_error():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(scaffold.ScaffoldError, match=r"torch.fx cannot trace Branchy"):
        draft("tests:Branchy", (1, 3), Branchy())


# --- the command line ---------------------------------------------------------


def test_cli_writes_once_and_replaces_only_with_force(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["scaffold", "examples.seed:SeedCNN", "--input-shape", "1,3,32,32"]
    assert cli.main(argv) == cli.EXIT_OK
    assert capsys.readouterr().out == "wrote specs/seed_cnn.yaml: 8 layers\n"
    spec = tmp_path / "specs" / "seed_cnn.yaml"
    text = spec.read_text()
    assert (
        "#   torch2keras scaffold examples.seed:SeedCNN --input-shape 1,3,32,32\n"
        in (text)
    )
    assert "  x: {shape: [32, 32, 3]}  # Keras layout: channels last\n" in text

    spec.write_text("# mine\n")
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "specs/seed_cnn.yaml exists; pass --force" in capsys.readouterr().err
    assert spec.read_text() == "# mine\n"
    assert cli.main([*argv, "--force"]) == cli.EXIT_OK
    assert spec.read_text() == text
    assert sorted(p.name for p in spec.parent.iterdir()) == ["seed_cnn.yaml"]

    # The draft compiles as it is.
    (tmp_path / "pyproject.toml").write_text("")
    assert cli.main(["compile", "specs/seed_cnn.yaml"]) == cli.EXIT_OK


def test_cli_reports_unmapped_ops_and_exits_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["scaffold", "tests.test_scaffold:Unmappable", "--input-shape", "1,3,8,8"]
    assert cli.main([*argv, "-o", "u.yaml"]) == cli.EXIT_FINDINGS
    captured = capsys.readouterr()
    assert captured.out == "wrote u.yaml: 7 layers, 4 UNMAPPED\n"
    assert captured.err.count("error[E205]") == 4
    assert (tmp_path / "u.yaml").is_file()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--input-shape", "1,3,x"], "--input-shape '1,3,x': give PyTorch's shape"),
        (["--input-shape", "1,10", "--name", "1st"], "--name '1st' is not a valid"),
    ],
)
def test_cli_usage_errors(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["scaffold", "examples.seed:SeedLinear", *argv]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_model_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["scaffold", "examples.seed:NoSuchModel", "--input-shape", "1,10"]
    assert cli.main(argv) == cli.EXIT_FINDINGS
    assert "module 'examples.seed' has no 'NoSuchModel'" in capsys.readouterr().err
    argv = ["scaffold", "examples.seed:SeedLinear", "--input-shape", "1,7"]
    assert cli.main(argv) == cli.EXIT_FINDINGS
    assert "running SeedLinear on an input of shape (1, 7) failed" in (
        capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


def test_unmappable_recurrent_reads_become_placeholders():
    result = draft("tests.test_scaffold:CellState", (4, 16), CellState(), "int64")
    lines = result.text.splitlines()
    # The LSTM and the GRU are still drafted (the LSTM returns its sequence:
    # forward() reads no h_n[-1]); each read no Keras layer gives is a
    # placeholder naming the getitem and the module whose result it reads.
    assert (
        "  - {name: lstm_l1, keras: LSTM, torch: lstm, args: {units: 6, "
        "return_sequences: true, torch_layer: 1}}" in lines
    )
    assert [line for line in lines if "UNMAPPED operator" in line] == [
        "  - {name: lstm_getitem, keras: 'UNMAPPED operator.getitem in lstm.forward'}",
        "  - {name: lstm_getitem_1, keras: 'UNMAPPED operator.getitem in "
        "lstm.forward', inputs: [lstm_getitem]}",
        "  - {name: lstm_getitem_2, keras: 'UNMAPPED operator.getitem in "
        "lstm.forward', inputs: [lstm_l1]}",
        "  - {name: bigru_getitem, keras: 'UNMAPPED operator.getitem in "
        "bigru.forward', inputs: [bigru]}",
    ]
    why = [line.partition(": ")[2].partition(": ")[2] for line in result.unmapped]
    assert why == [
        "it reads c_n, the LSTM's final cell state, which the Keras LSTM layer "
        "here does not return",
        "its input comes from an unmapped op of unknown shape",  # c_n[-1]
        "it reads h_n[0]; scaffold maps the last layer's h_n[-1] of a "
        "unidirectional LSTM/GRU, and `output`",
        "for a bidirectional layer h_n[-1] is the backward direction alone, and "
        "Bidirectional returns both directions' last steps concatenated",
    ]
    assert sum(d.code == "E205" for d in result.diagnostics) == 4


# --- attention: nn.MultiheadAttention, nn.TransformerEncoder(Layer), BertModel --


class Attention(nn.Module):
    """nn.MultiheadAttention called as a module (its tuple read through [0]),
    as self-attention and with queries other than its keys and values, and
    one nn.TransformerEncoderLayer called on its own, all given the padding
    mask forward() computes from a 1-for-tokens attention_mask."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.cross = nn.MultiheadAttention(16, 4, batch_first=True)
        self.layer = nn.TransformerEncoderLayer(
            16, 4, 32, batch_first=True, norm_first=True, activation=nn.GELU()
        )
        self.head = nn.Linear(16, 3)

    def forward(self, ids, attention_mask):
        x = self.embed(ids)
        padding = attention_mask == 0
        attended, _ = self.attn(x, x, x, key_padding_mask=padding, need_weights=False)
        attended = self.cross(attended, x, x, key_padding_mask=padding)[0]
        return self.head(self.layer(x + attended, src_key_padding_mask=padding))


class BertClassifier(nn.Module):
    """A BertModel inside a model: its ModelOutput read by attribute."""

    def __init__(self):
        super().__init__()
        from examples.sequence import bert_small

        self.bert = bert_small()
        self.classifier = nn.Linear(128, 3)

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.bert(
            input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        )
        return self.classifier(out.pooler_output)


class BertNoTypes(nn.Module):
    """BERT called as most code calls it: ids and mask, no token_type_ids."""

    def __init__(self):
        super().__init__()
        from examples.sequence import bert_small

        self.bert = bert_small()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids, attention_mask=attention_mask)[0]


class AttentionMisuse(nn.Module):
    """Attention calls scaffold cannot map, each for a reason it names."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.inverted = nn.MultiheadAttention(8, 2, batch_first=True)
        self.causal = nn.MultiheadAttention(8, 2, batch_first=True)
        self.weights = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, ids, attention_mask):
        x = self.embed(ids)
        # True for tokens: the inverse of what key_padding_mask means.
        a, _ = self.inverted(x, x, x, key_padding_mask=attention_mask == 1)
        causal = torch.ones(6, 6, dtype=torch.bool).triu(1)
        b, _ = self.causal(x, x, x, attn_mask=causal)
        _, w = self.weights(x, x, x)
        return a + b, w


def _draft_tokens(factory, inputs, model=None):
    """Draft a model of `inputs` int64 (4, 16) inputs; assert it drafts whole."""
    result = scaffold.draft(
        factory, [(4, 16)] * inputs, ["int64"], model=model, path="draft.yaml"
    )
    assert result.unmapped == ()
    assert result.diagnostics == ()
    return result


def _token_inputs(names, vocab, seed=5):
    """Token ids with padding (id 0, mask 0) in every row but the first, and,
    for BERT, two segments."""
    ids, mask = parity.random_tokens(4, 16, vocab, seed=seed)
    assert (mask == 0).any()  # padded positions are part of the comparison
    arrays = [ids, mask, np.broadcast_to(np.arange(16) >= 8, ids.shape) * 1]
    return {name: np.ascontiguousarray(a) for name, a in zip(names, arrays)}


def _assert_sequence_parity(torch_model, keras_model, inputs, outputs):
    """Compare each PyTorch output with the Keras output of that name; return
    the Keras outputs with the mask all ones, to show the mask is applied."""
    with torch.no_grad():
        result = torch_model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    if isinstance(result, torch.Tensor):
        result = (result,)
    elif isinstance(result, dict):  # a ModelOutput: its tensors, in order
        result = tuple(result.values())
    actual = _keras_outputs(keras_model, inputs, outputs)
    for expected, name in zip(result, outputs):
        expected = expected.numpy()
        error = parity.max_abs_error(expected, actual[name])
        scale = max(1.0, float(np.abs(expected).max()))
        print(f"{name}: max abs error {error:.3g}, max |output| {scale:.3g}")
        assert np.abs(expected).max() > 0.01
        assert error <= 1e-4 * scale, name
    unmasked = dict(inputs, attention_mask=np.ones_like(inputs["attention_mask"]))
    return actual, _keras_outputs(keras_model, unmasked, outputs)


def _keras_outputs(keras_model, inputs, outputs):
    """The Keras model's outputs by the spec's output names."""
    actual = parity.keras_sequence_output(keras_model, inputs)
    return actual if isinstance(actual, dict) else {outputs[0]: actual}


ENCODERS = [
    ("examples.sequence:TransformerEncoderModel", ["ids", "attention_mask"], None),
    (
        "examples.sequence:transformer_encoder_prenorm",
        ["ids", "attention_mask"],
        None,
    ),
    ("tests.test_scaffold:Attention", ["ids", "attention_mask"], Attention),
    (
        "examples.sequence:bert_small",
        ["input_ids", "attention_mask", "token_type_ids"],
        None,
    ),
    (
        "tests.test_scaffold:BertClassifier",
        ["input_ids", "attention_mask", "token_type_ids"],
        BertClassifier,
    ),
    ("tests.test_scaffold:BertNoTypes", ["input_ids", "attention_mask"], BertNoTypes),
]


@pytest.mark.parametrize(
    "factory, names, model", ENCODERS, ids=[e[0].split(":")[1] for e in ENCODERS]
)
def test_attention_models_match_pytorch(factory, names, model, tmp_path):
    """Transformer encoders and BERT on int64 token ids with padding: the draft
    compiles as written, and converts a seeded random checkpoint that matches
    PyTorch within 1e-4 relative, padded positions included."""
    torch_model = model().eval() if model else parity.build(factory)
    result = _draft_tokens(factory, len(names), torch_model)
    assert [line.split(":")[0].strip() for line in _input_lines(result.text)] == names
    outputs = _yaml_list(result.text, "outputs: ")
    keras_model = convert(tmp_path, result.text, torch_model, "attention")
    vocab = 50 if model is Attention else 1000
    inputs = _token_inputs(names, vocab)
    masked, unmasked = _assert_sequence_parity(
        torch_model, keras_model, inputs, outputs
    )
    # The mask reaches every attention layer: without it the outputs change.
    first = outputs[0]
    assert parity.max_abs_error(masked[first], unmasked[first]) > 1e-2


def _input_lines(text):
    lines = text.splitlines()
    start, end = lines.index("inputs:"), lines.index("layers:")
    return [line for line in lines[start + 1 : end] if not line.startswith("  #")]


def _yaml_list(text, prefix):
    (line,) = [line for line in text.splitlines() if line.startswith(prefix)]
    return line[len(prefix) :].strip("[]").split(", ")


def test_attention_drafts_read_like_the_hand_written_specs():
    encoder = _draft_tokens("examples.sequence:TransformerEncoderModel", 2).text
    lines = encoder.splitlines()
    # The padding mask forward() computes (attention_mask == 0) is the inverse
    # of Keras's: the Keras mask is the input itself, reshaped.
    assert (
        "  - {name: mask, keras: Reshape, inputs: [attention_mask], args: "
        "{target_shape: [1, 16]}}" in lines
    )
    assert (
        "  - {name: encoder_layers_1_self_attn, keras: MultiHeadAttention, torch: "
        "encoder.layers.1.self_attn, inputs: [encoder_layers_0_norm2, "
        "encoder_layers_0_norm2, mask], args: {num_heads: 4, key_dim: 16, "
        "attention_mask: true}}" in lines
    )
    prenorm = _draft_tokens("examples.sequence:transformer_encoder_prenorm", 2).text
    layers = [
        line.split(",")[0]
        for line in prenorm.splitlines()
        if line.startswith("  - {name: encoder_layers_0_")
    ]
    assert [line.rpartition("_layers_0_")[2] for line in layers] == [
        "norm1",
        "self_attn",
        "add1",
        "norm2",
        "linear1",
        "activation",
        "linear2",
        "add2",
    ]
    assert (
        "encoder_layers_0_activation, keras: Activation, args: {activation: gelu}"
        in prenorm
    )
    bert = _draft_tokens("examples.sequence:bert_small", 3).text
    assert _yaml_list(bert, "outputs: ") == [
        "encoder_layer_1_output_LayerNorm",
        "pooler",
    ]
    for line in [
        "  - {name: embeddings_position_embeddings, keras: PositionEmbedding, torch: "
        "embeddings.position_embeddings, inputs: [input_ids], args: {input_dim: 64, "
        "output_dim: 128}}",
        "      query/kernel: {from: encoder.layer.0.attention.self.query.weight, "
        "transform: [transpose, {split_axis: [1, 2]}]}",
        "  - {name: pooler_first_token, keras: Cropping1D, args: {cropping: [0, 15]}}",
        "  - {name: embeddings_LayerNorm, keras: LayerNormalization, torch: "
        "embeddings.LayerNorm, args: {epsilon: 1e-12}}",
    ]:
        assert line in bert.splitlines()


class PadOne(nn.Module):
    """RoBERTa-style padding id 1: `ids == 1` is its padding mask. On 0/1 ids it
    looks like `ids == 0` inverted twice over; Keras would mask id 0 instead."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.attention = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, ids):
        x = self.embed(ids)
        return self.attention(x, x, x, key_padding_mask=ids == 1)[0]


def test_a_padding_id_other_than_zero_is_a_placeholder():
    result = scaffold.draft(
        "tests:PadOne", [(2, 6)], ["int64"], model=PadOne(), path="draft.yaml"
    )
    assert len(result.unmapped) == 1
    assert (
        "on a 0..3 ids its mask is not True (or -inf) where input ids is 0"
        in result.unmapped[0]
    )


def test_unmappable_attention_calls_become_placeholders():
    result = scaffold.draft(
        "tests.test_scaffold:AttentionMisuse",
        [(2, 6), (2, 6)],
        ["int64"],
        model=AttentionMisuse(),
        path="draft.yaml",
    )
    why = {line.partition(":")[0]: line for line in result.unmapped}
    assert (
        "on a 0..3 attention_mask its mask is not True (or -inf) where input "
        in (why["inverted"])
    )
    assert "it is given attn_mask" in why["causal"]
    assert "it reads the attention weights" in why["weights_getitem"]
    # The attention whose output is read is still drafted, paired.
    assert "torch: weights, inputs: [embed, embed]" in result.text
    assert sum(d.code == "E205" for d in result.diagnostics) == len(result.unmapped)
    # What reads an unmapped attention call reads its one placeholder.
    assert "  - {name: add, keras: Add, inputs: [inverted, causal]}" in result.text


def test_bert_given_position_ids_is_a_placeholder_that_says_why():
    """Any argument besides ids, mask and token types changes what BertModel
    computes (position_ids, head_mask, ...): refused by name, never ignored."""

    class Positions(nn.Module):
        def __init__(self):
            super().__init__()
            from examples.sequence import bert_small

            self.bert = bert_small()

        def forward(self, input_ids, attention_mask, token_type_ids):
            positions = torch.zeros_like(input_ids)  # every token at position 0
            return self.bert(
                input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=positions,
            )[0]

    result = scaffold.draft(
        "tests:Positions", [(2, 16)] * 3, ["int64"], model=Positions(), path="d.yaml"
    )
    # (torch.zeros_like is a placeholder of its own.)
    assert (
        "bert: module bert (transformers.models.bert.modeling_bert.BertModel): "
        "it is given position_ids; scaffold maps input_ids, attention_mask and "
        "token_type_ids"
    ) in result.unmapped


def test_bert_without_token_type_ids_adds_type_0_to_the_position_table():
    """Without token_type_ids BERT adds token type 0's row at every position:
    the draft folds it into the position table (add_row) instead of a layer.
    (The parity test above shows the numbers agree; token type tables are
    randomised, so a row left out would not.)"""
    text = _draft_tokens("tests.test_scaffold:BertNoTypes", 2, BertNoTypes()).text
    assert (
        "      embeddings: {from: [bert.embeddings.position_embeddings.weight, "
        "bert.embeddings.token_type_embeddings.weight], transform: "
        "[{add_row: [0, 2]}]}" in text.splitlines()
    )
    assert "keras: Add, inputs: [bert_embeddings_word_embeddings, " in text
    assert "token_type_embeddings, keras: Embedding" not in text
    # forward() reads [0] alone: the pooler is not drafted (Keras would leave
    # it out of the model), and its keys are ignored, by name.
    assert "pooler" not in text.split("outputs:")[0].split("layers:")[1]
    assert "  - bert.pooler.dense.weight" in text.splitlines()
