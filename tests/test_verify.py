"""`torch2keras verify`: PyTorch vs the generated Keras model, layer by layer.

Every test runs the real command (cli.main) on a real checkpoint file made
from seeded random weights, and reads what a user reads: the table, the
verdict, the exit code, the JSON report.
"""

from __future__ import annotations

import json
import math
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from compiler import build, cli, ir, parity, verify
from examples.seed import SeedLinear
from tests.conftest import SPECS

SEED_MODELS = {
    "seed_linear": "examples.seed:SeedLinear",
    "seed_conv": "examples.seed:SeedConv",
    "seed_cnn": "examples.seed:SeedCNN",
}


def _checkpoint(factory: str, path, seed: int = 7):
    return parity.save_checkpoint(parity.randomize_(parity.build(factory), seed), path)


def _project(tmp_path, name: str, text: str):
    """A spec in a project of its own, so its lines are `specs/NAME.yaml:LINE`."""
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text("")
    spec = project / "specs" / f"{name}.yaml"
    spec.write_text(text)
    return spec


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def _verify(capsys, *args):
    status = cli.main(["verify", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _table_rows(out: str) -> list[list[str]]:
    """The table's rows, each split into columns (header and verdict left out)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("keras layer"))
    end = lines.index("", start)
    return [line.split() for line in lines[start + 1 : end]]


# --- passing -------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize("name", sorted(SEED_MODELS))
def test_verify_passes_on_seed_specs_and_lists_every_paired_layer(
    name, suffix, tmp_path, capsys
):
    checkpoint = _checkpoint(SEED_MODELS[name], tmp_path / f"{name}{suffix}")
    status, out, err = _verify(
        capsys, SPECS / f"{name}.yaml", "--checkpoint", checkpoint
    )
    assert status == 0, out + err

    module = build.generate(SPECS / f"{name}.yaml").module
    paired = [layer for layer in module.layers if layer.torch]
    assert paired, "every seed spec pairs at least one layer"
    rows = _table_rows(out)
    # One row per paired layer in graph order, then one per final output.
    assert [row[:3] for row in rows] == [
        [layer.name, layer.torch, f"specs/{name}.yaml:{layer.line}"] for layer in paired
    ] + [[f"{out_name}", "(output)", "forward()"] for out_name in module.output_names]
    assert all(row[-1] == "ok" for row in rows)
    assert out.splitlines()[-1].startswith(
        f"verify: OK: {len(rows)} comparisons within tolerance"
    )


def test_verify_passes_on_resnet18_with_nothing_skipped(tmp_path, capsys):
    """Blocks, custom pooling, AdaptiveAvgPool2d's (N, C, 1, 1) vs (N, C), and
    fold_batchnorm: every BN is compared at the conv it is folded into."""
    checkpoint = _checkpoint("torchvision.models:resnet18", tmp_path / "r18.pt")
    status, out, err = _verify(
        capsys,
        SPECS / "resnet18.yaml",
        "--checkpoint",
        checkpoint,
        "--input-shape",
        "1,3,224,224",
    )
    assert status == 0, out + err
    rows = _table_rows(out)
    folded = [row for row in rows if row[3:6] == ["-", "-", "folded"]]
    compared = [row for row in rows if row not in folded]
    assert all("ok" in row and "skip" not in row for row in compared), out
    # 20 convs, each with its BN folded in: the conv row is "folded", the BN row
    # compares the conv's Keras output against PyTorch's BN.
    assert len(folded) == 20
    assert [
        "layer4_1_conv2+layer4_1_bn2",
        "layer4.1.bn2",
        "specs/resnet18.yaml:25",
    ] in [row[:3] for row in rows]


def test_verify_feeds_several_inputs_in_spec_order(tmp_path, capsys):
    # "x" before "a": Keras orders a dict of inputs by name, PyTorch by position.
    spec = _project(
        tmp_path,
        "cat",
        "spec: 1\nname: cat\n"
        "inputs:\n  x: {shape: [4]}\n  a: {shape: [3]}\n"
        "layers:\n  - {name: cat, keras: Concatenate, inputs: [x, a]}\n"
        "outputs: [cat]\n",
    )
    checkpoint = parity.save_checkpoint(CatTwo(), tmp_path / "empty.pt")
    status, out, err = _verify(
        capsys,
        spec,
        "--checkpoint",
        checkpoint,
        "--model",
        "tests.test_verify:CatTwo",
        "--input-shape",
        "3,4",
        "--input-shape",
        "3,3",
    )
    assert status == 0, out + err
    assert "x float32 keras (3, 4) / pytorch (3, 4); a float32 keras (3, 3)" in out


class CatTwo(nn.Module):
    def forward(self, x, a):
        return torch.cat([x, a], dim=-1)


class TwoHeads(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x), torch.relu(x)


def test_several_outputs_are_compared_by_position(tmp_path, capsys):
    text = (
        "spec: 1\nname: heads\nsource:\n  model: tests.test_verify:TwoHeads\n"
        "inputs:\n  x: {shape: [4]}\n"
        "layers:\n"
        "  - {name: r, keras: ReLU, inputs: [x]}\n"
        "  - {name: s, keras: Activation, args: {activation: sigmoid}, inputs: [x]}\n"
        "outputs: [OUTPUTS]\n"
    )
    checkpoint = parity.save_checkpoint(TwoHeads(), tmp_path / "empty.pt")
    spec = _project(tmp_path, "heads", text.replace("OUTPUTS", "s, r"))
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 0, out + err
    assert [row[:3] for row in _table_rows(out)] == [
        ["s", "(output)", "forward()[0]"],
        ["r", "(output)", "forward()[1]"],
    ]
    # Swapped in the spec: both outputs are compared against the wrong head.
    spec = _project(tmp_path, "heads", text.replace("OUTPUTS", "r, s"))
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 1
    assert [row[-1] for row in _table_rows(out)] == ["FAIL", "FAIL"]


# --- failing: the first divergence is named --------------------------------------


def test_missing_unflatten_names_fc_as_first_divergence(tmp_path, capsys):
    """seed_cnn.yaml without its `unflatten`: the seed article's flatten-order bug."""
    text = (SPECS / "seed_cnn.yaml").read_text()
    head, _, _ = text.partition("    weights:")
    spec = _project(tmp_path, "seed_cnn", head + "outputs: [fc]\n")
    fc_line = _line_of(head, "- name: fc")
    checkpoint = _checkpoint("examples.seed:SeedCNN", tmp_path / "seed_cnn.pt", seed=3)
    report = tmp_path / "report.json"

    status, out, err = _verify(
        capsys, spec, "--checkpoint", checkpoint, "--json", report
    )
    assert status == 1, out + err
    assert "warning[W500]" in err  # the compiler's own lint, shown as compile shows it
    assert (
        f"first divergence: layer 'fc' (PyTorch fc) at specs/seed_cnn.yaml:{fc_line}"
        in out
    )
    rows = json.loads(report.read_text())["rows"]
    names = [row["keras"] for row in rows]
    fc = names.index("fc")
    assert names[:fc] == ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2"]
    assert all(row["result"] == "ok" for row in rows[:fc])
    assert rows[fc]["result"] == "FAIL"
    assert rows[fc]["spec_line"] == f"specs/seed_cnn.yaml:{fc_line}"


SMALL_SPEC = """\
spec: 1
name: small
source:
  model: examples.small:SmallConvBN
inputs:
  image: {shape: [8, 8, 3]}
layers:
  - {name: conv, keras: Conv2D, args: {filters: 8, kernel_size: 3, padding: same}, torch: conv}
  - {name: bn, keras: BatchNormalization, BN_ARGS torch: bn}
  - {name: relu, keras: ReLU, torch: relu}
outputs: [relu]
"""


@pytest.mark.parametrize(
    "bn_args, fails", [("args: {epsilon: 0.1},", True), ("", False)]
)
def test_wrong_batchnorm_epsilon_is_named(bn_args, fails, tmp_path, capsys):
    text = SMALL_SPEC.replace("BN_ARGS", bn_args)
    spec = _project(tmp_path, "small", text)
    checkpoint = _checkpoint("examples.small:SmallConvBN", tmp_path / "small.pt")
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    rows = {row[0]: row for row in _table_rows(out)}
    assert rows["conv"][-1] == "ok"
    if fails:  # epsilon 0.1 instead of PyTorch's 1e-5
        assert status == 1, out + err
        assert rows["bn"][-1] == "FAIL"
        bn_line = _line_of(text, "name: bn")
        assert out.splitlines()[-1].startswith(
            f"first divergence: layer 'bn' (PyTorch bn) at specs/small.yaml:{bn_line}: "
            "max abs err"
        )
    else:  # the control: the same model and checkpoint, the compiler's default
        assert status == 0, out + err
        assert rows["bn"][-1] == "ok"


def test_wrong_epsilon_of_a_folded_batchnorm_is_named(tmp_path, capsys):
    """fold_batchnorm: the conv's Keras output now computes conv + BN, so it is
    compared against PyTorch's bn; PyTorch's conv output has no Keras twin."""
    text = "fold_batchnorm: true\n" + SMALL_SPEC.replace(
        "BN_ARGS", "args: {epsilon: 0.1},"
    )
    spec = _project(tmp_path, "small", text)
    checkpoint = _checkpoint("examples.small:SmallConvBN", tmp_path / "small.pt")
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 1, out + err
    rows = {row[0]: row for row in _table_rows(out)}
    assert rows["conv"][1:3] == ["conv", f"specs/small.yaml:{_line_of(text, 'conv,')}"]
    assert rows["conv"][3:6] == ["-", "-", "folded"]
    bn_line = _line_of(text, "name: bn")
    assert rows["conv+bn"][1:3] == ["bn", f"specs/small.yaml:{bn_line}"]
    assert rows["conv+bn"][-1] == "FAIL"
    assert out.splitlines()[-1].startswith(
        f"first divergence: layer 'conv+bn' (PyTorch bn) at specs/small.yaml:{bn_line}"
    )
    assert "; 1 folded (no Keras tensor to compare)" in out


def test_a_folded_output_is_named_as_the_spec_names_it(tmp_path, capsys):
    """The output is the BatchNormalization fc_bn, folded into fc: its row says
    fc_bn at fc_bn's line, and the numbers are fc's (which compute both)."""
    from tests.test_fold import _spec

    text = textwrap.dedent(_spec(True)).replace(
        "fold_batchnorm: true\n",
        "fold_batchnorm: true\nsource:\n  model: tests.test_fold:ConvBNNet\n",
    )
    spec = _project(tmp_path, "convbn", text)
    checkpoint = _checkpoint("tests.test_fold:ConvBNNet", tmp_path / "c.pt")
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 0, out + err
    (output,) = [row for row in _table_rows(out) if row[1] == "(output)"]
    line = _line_of(text, "name: fc_bn")
    assert output[0] == "fc_bn" and output[3] == f"specs/convbn.yaml:{line}"
    assert output[-1] == "ok"


def test_json_report(tmp_path, capsys):
    checkpoint = _checkpoint("examples.seed:SeedConv", tmp_path / "c.safetensors")
    report = tmp_path / "out" / "report.json"
    status, out, _ = _verify(
        capsys,
        SPECS / "seed_conv.yaml",
        "--checkpoint",
        checkpoint,
        "--json",
        report,
        "--seed",
        "5",
        "--atol",
        "2e-5",
        "--rtol",
        "0",
        "--input-shape",
        "3,3,32,32",
    )
    assert status == 0
    text = report.read_text()
    # Strict JSON (no NaN/Infinity literals), and nothing but the report left behind.
    data = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert sorted(p.name for p in report.parent.iterdir()) == ["report.json"]
    assert data["spec"] == "specs/seed_conv.yaml"
    assert data["model"] == "examples.seed:SeedConv"
    assert (data["seed"], data["atol"], data["rtol"]) == (5, 2e-5, 0.0)
    assert data["inputs"] == [
        {
            "name": "image",
            "dtype": "float32",
            "keras_shape": [3, 32, 32, 3],
            "torch_shape": [3, 3, 32, 32],
        }
    ]
    assert [(r["kind"], r["keras"], r["torch"], r["result"]) for r in data["rows"]] == [
        ("layer", "conv", "conv", "ok"),
        ("output", "conv", "forward()", "ok"),
    ]
    for row in data["rows"]:
        assert 0 <= row["max_abs_err"] <= row["tolerance"] == 2e-5
    assert data["verdict"]["ok"] is True
    assert data["verdict"]["compared"] == 2
    assert data["verdict"]["first_divergence"] is None
    # The same verdict the table ends with.
    assert out.splitlines()[-1] == data["verdict"]["summary"][-1]


# --- NaN, notes, unusual pairings --------------------------------------------------


class NaNOutputLinear(SeedLinear):
    """SeedLinear whose forward() puts a NaN into its output: PyTorch side only."""

    def forward(self, x):
        out = self.fc(x).clone()
        out[0, 0] = float("nan")
        return out


def test_nan_on_one_side_fails(tmp_path, capsys):
    checkpoint = _checkpoint("examples.seed:SeedLinear", tmp_path / "l.pt")
    status, out, err = _verify(
        capsys,
        SPECS / "seed_linear.yaml",
        "--checkpoint",
        checkpoint,
        "--model",
        "tests.test_verify:NaNOutputLinear",
    )
    assert status == 1, out + err
    rows = _table_rows(out)
    assert rows[0][:2] == ["fc", "fc"] and rows[0][-1] == "ok"  # fc itself is fine
    assert "FAIL  PyTorch has 1 NaN where the other side differs" in out
    assert "first divergence: output 'fc' (PyTorch forward())" in out


@pytest.mark.parametrize(
    "expected, actual, ok",
    [
        ([1.0, 2.0], [1.0, 2.0 + 1e-4], True),  # 1e-4 <= 1e-5 + 1e-4 * 2
        ([1.0, 2.0], [1.0, 2.0 + 3e-4], False),
        ([1.0, 2.0], [1.0, math.inf], False),  # Inf on the Keras side only
        ([1.0, math.nan], [1.0, 2.0], False),
        ([1.0, math.nan], [1.0, math.inf], False),  # different non-finite values
        ([-math.inf, 1.0], [-math.inf, 1.0], True),  # a mask's -inf on both sides
        ([0.0, 0.0], [0.0, 0.0], True),
    ],
)
def test_compare(expected, actual, ok):
    result = verify.compare(np.array(expected), np.array(actual), atol=1e-5, rtol=1e-4)
    assert result.ok is ok


class _Pair(nn.Module):
    def forward(self, x):
        return x, x


class Quirky(nn.Module):
    """A module reused in forward(), one that returns a tuple, an in-place ReLU.

    The in-place ReLU overwrites conv's output tensor after conv's hook saw it:
    verify must compare the value conv returned, not what it became.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.pair = _Pair()

    def forward(self, x):
        x, _ = self.pair(self.act(self.conv(x)))
        return self.act(x)


QUIRKY_SPEC = """\
spec: 1
name: quirky
source:
  model: tests.test_verify:Quirky
inputs:
  image: {shape: [6, 6, 3]}
layers:
  - {name: conv, keras: Conv2D, args: {filters: 3, kernel_size: 3, padding: same}, torch: conv}
  - {name: relu_a, keras: ReLU}
  - {name: same, keras: Activation, args: {activation: linear}, torch: pair}
  - {name: relu_b, keras: ReLU, torch: act}
outputs: [relu_b]
"""


def test_tuple_outputs_are_skipped_and_reused_modules_noted(tmp_path, capsys):
    spec = _project(tmp_path, "quirky", QUIRKY_SPEC)
    checkpoint = _checkpoint("tests.test_verify:Quirky", tmp_path / "q.pt")
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 0, out + err
    lines = {}
    for line in out.splitlines():
        if line:  # the layer's row, not its "(output)" row further down
            lines.setdefault(line.split()[0], line)
    assert lines["conv"].endswith("ok")
    assert lines["same"].endswith("skip  PyTorch module returns a tuple, not a tensor")
    assert lines["relu_b"].endswith(
        "ok  called 2 times in forward(); compared the last call"
    )
    assert out.splitlines()[-1].endswith("; 1 skipped")


def test_pairing_with_a_module_the_model_lacks(tmp_path, capsys):
    text = QUIRKY_SPEC.replace("torch: pair", "torch: pear")
    spec = _project(tmp_path, "quirky", text)
    checkpoint = _checkpoint("tests.test_verify:Quirky", tmp_path / "q.pt")
    status, _, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 1
    line = _line_of(text, "torch: pear")
    assert err == (
        f"error: specs/quirky.yaml:{line}: layer 'same' pairs with PyTorch module "
        "'pear', which tests.test_verify:Quirky does not have\n"
    )


def test_integer_inputs_get_ids_every_embedding_accepts():
    model = nn.ModuleDict({"a": nn.Embedding(7, 2), "b": nn.Embedding(5, 2)})
    assert verify.id_range(model) == 5
    assert verify.id_range(nn.Linear(2, 2)) == verify.DEFAULT_ID_RANGE
    module = type("M", (), {"inputs": (ir.Input("ids", (50,), "int64", 1),)})
    (ids,) = verify.random_inputs(module, [(4, 50)], seed=0, ids=5)
    assert ids.dtype == np.int64 and ids.shape == (4, 50)
    assert ids.min() == 0 and ids.max() == 4


# --- errors a user sees ---------------------------------------------------------


def test_missing_model_is_a_usage_error(tmp_path, capsys):
    text = (SPECS / "seed_linear.yaml").read_text()
    text = text.replace("source:\n  model: examples.seed:SeedLinear\n", "")
    spec = _project(tmp_path, "seed_linear", text)
    checkpoint = _checkpoint("examples.seed:SeedLinear", tmp_path / "l.pt")
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 2
    assert out == ""
    assert err == (
        "error: specs/seed_linear.yaml has no source.model: name the PyTorch model "
        "with --model package.module:callable\n"
    )
    # --model supplies it.
    status, out, err = _verify(
        capsys, spec, "--checkpoint", checkpoint, "--model", "examples.seed:SeedLinear"
    )
    assert status == 0, out + err


def test_usage_and_setup_errors(tmp_path, capsys):
    spec = SPECS / "seed_linear.yaml"
    checkpoint = _checkpoint("examples.seed:SeedLinear", tmp_path / "l.pt")
    wrong = _checkpoint("examples.seed:SeedConv", tmp_path / "conv.pt")

    assert _verify(capsys, spec, "--checkpoint", tmp_path / "nope.pt") == (
        2,
        "",
        f"{tmp_path / 'nope.pt'}: error: no such checkpoint file\n",
    )
    status, _, err = _verify(
        capsys, spec, "--checkpoint", checkpoint, "--model", "examples.seed:Nope"
    )
    assert status == 2
    assert "cannot build the PyTorch model 'examples.seed:Nope' (--model)" in err
    status, _, err = _verify(
        capsys, spec, "--checkpoint", checkpoint, "--input-shape", "2,11"
    )
    assert status == 2
    x_line = _line_of(spec.read_text(), "x: {shape")
    assert (
        "--input-shape 2,11 is (2, 11) in Keras layout, but input 'x' is declared "
        f"(10,) (batch omitted) at specs/seed_linear.yaml:{x_line}" in err
    )
    status, _, err = _verify(capsys, spec, "--checkpoint", wrong)
    assert status == 1
    assert f"{wrong} does not fit the PyTorch model examples.seed:SeedLinear" in err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["verify", str(spec), "--checkpoint", str(checkpoint), "--atol", "-1"])
    assert exit_.value.code == 2


def test_spec_errors_are_diagnostics(tmp_path, capsys):
    text = (SPECS / "seed_linear.yaml").read_text().replace("Dense", "Dnese")
    spec = _project(tmp_path, "seed_linear", text)
    checkpoint = _checkpoint("examples.seed:SeedLinear", tmp_path / "l.pt")
    status, out, err = _verify(capsys, spec, "--checkpoint", checkpoint)
    assert status == 1
    assert out == ""
    assert "error[E203]: unknown Keras layer type 'Dnese'" in err


def test_help_states_the_tolerance(capsys):
    with pytest.raises(SystemExit):
        cli.main(["verify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "ATOL + RTOL * max |pytorch output|" in text
    assert "absolute tolerance (default: 1e-05)" in text
    assert "(default: 0.0001)" in text


@pytest.mark.parametrize(
    "name, factory",
    [
        ("gru_classifier", "examples.sequence:GRUClassifier"),
        ("transformer_encoder", "examples.sequence:TransformerEncoderModel"),
        ("bert_small", "examples.sequence:bert_small"),  # returns a ModelOutput
    ],
)
def test_verify_passes_on_sequence_specs(name, factory, tmp_path, capsys):
    checkpoint = _checkpoint(factory, tmp_path / f"{name}.safetensors")
    status, out, err = _verify(
        capsys, SPECS / f"{name}.yaml", "--checkpoint", checkpoint
    )
    assert status == 0, out + err
    rows = _table_rows(out)
    outputs = [row for row in rows if "(output)" in row]
    assert len(outputs) == len(build.generate(SPECS / f"{name}.yaml").module.outputs)
    assert all("ok" in row for row in outputs)


@pytest.mark.parametrize(
    "factory, shape, dtype",
    [
        ("examples.seed:SeedCNN", "2,3,32,32", "float32"),
        ("torchvision.models:resnet18", "1,3,224,224", "float32"),
        ("torchvision.models:mobilenet_v2", "1,3,224,224", "float32"),
        ("examples.sequence:GRUClassifier", "4,16", "int64"),
        # Token ids and attention_mask (and token_type_ids): one shape each.
        ("examples.sequence:TransformerEncoderModel", "4,16 4,16", "int64"),
        ("examples.sequence:bert_small", "4,16 4,16 4,16", "int64"),
    ],
    ids=[
        "seed_cnn",
        "resnet18",
        "mobilenet_v2",
        "gru_classifier",
        "transformer_encoder",
        "bert_small",
    ],
)
def test_scaffold_then_compile_then_verify(factory, shape, dtype, tmp_path, capsys):
    """The authoring workflow through the CLI, with zero hand edits."""
    shapes = [arg for s in shape.split() for arg in ("--input-shape", s)]
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    spec = project / "specs" / "drafted.yaml"
    draft = ["scaffold", factory, *shapes, "--input-dtype", dtype]
    assert cli.main([*draft, "-o", str(spec)]) == 0
    assert cli.main(["compile", str(spec)]) == 0
    assert (project / "generated" / "drafted.py").is_file()
    checkpoint = _checkpoint(factory, tmp_path / "weights.safetensors")
    capsys.readouterr()
    status, out, err = _verify(
        capsys,
        spec,
        "--checkpoint",
        checkpoint,
        "--model",
        factory,
        *shapes,
    )
    assert status == 0, out + err
    rows = _table_rows(out)
    assert len(rows) > 3 and all("FAIL" not in row for row in rows)


def test_square_sequence_output_is_not_compared_transposed():
    """(N, T, F) with T == F fits both layouts: the closer one is used."""
    from compiler.verify import _in_torch_layout

    rng = np.random.default_rng(0)
    sequence = rng.standard_normal((2, 5, 5)).astype(np.float32)
    aligned, note = _in_torch_layout(sequence, sequence.copy())
    np.testing.assert_array_equal(aligned, sequence)
    assert "ambiguous" in note
    channels_first = rng.standard_normal((2, 5, 5)).astype(np.float32)
    aligned, _ = _in_torch_layout(channels_first, np.moveaxis(channels_first, 1, -1))
    np.testing.assert_array_equal(aligned, channels_first)
