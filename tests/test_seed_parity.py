"""Parity for the seed article's three models.

Each test saves seeded random PyTorch weights to a real checkpoint file,
converts it with the committed generated module, feeds the SAME input to both
(NCHW for PyTorch, transposed to NHWC for Keras) and bounds the largest
difference.
"""

from __future__ import annotations

import numpy as np
import pytest

from compiler import build, parity, write
from tests.conftest import GENERATED, SPECS

# The seed models are small: float32 noise stays far below this.
TOLERANCE = 1e-5

CASES = {
    "seed_linear": ("examples.seed:SeedLinear", (4, 10)),
    "seed_conv": ("examples.seed:SeedConv", (4, 3, 32, 32)),
    "seed_cnn": ("examples.seed:SeedCNN", (4, 3, 32, 32)),
}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors", ".npz"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_module_matches_pytorch(name, suffix, tmp_path):
    factory, input_shape = CASES[name]
    torch_model = parity.randomize_(parity.build(factory), seed=7)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / f"{name}{suffix}")

    module = parity.import_generated(GENERATED / f"{name}.py")
    keras_model = module.convert(checkpoint)

    x = parity.random_input(input_shape, seed=11)
    expected = parity.torch_output(torch_model, x)
    actual = parity.keras_output(keras_model, x)
    error = parity.max_abs_error(expected, actual)
    print(
        f"{name}{suffix}: max abs error {error:.3g}, max |output| {np.abs(expected).max():.3g}"
    )
    assert np.abs(expected).max() > 0.1  # the comparison is not between two zeros
    assert error <= TOLERANCE


def _naive_seed_cnn(tmp_path):
    """seed_cnn.yaml without its `unflatten`: the article's layer-by-layer port."""
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "pyproject.toml").write_text("")
    text = (SPECS / "seed_cnn.yaml").read_text()
    head, _, _ = text.partition("    weights:")
    naive = project / "specs" / "seed_cnn.yaml"
    naive.write_text(head + "outputs: [fc]\n")
    return build.generate(naive)


def test_naive_flatten_port_is_wrong_and_ours_is_right(tmp_path):
    """The seed article's example 3 bug: Dense kernel copied with only a transpose."""
    naive = _naive_seed_cnn(tmp_path)
    # The compiler warns about exactly this mistake, at the Dense's torch: line.
    assert [w.code for w in naive.warnings] == ["W500"]
    assert "unflatten: [32, 8, 8]" in naive.warnings[0].message
    write.write_atomic(naive.output_path, naive.source)

    torch_model = parity.randomize_(parity.build("examples.seed:SeedCNN"), seed=3)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / "seed_cnn.pt")
    x = parity.random_input((4, 3, 32, 32), seed=5)
    expected = parity.torch_output(torch_model, x)

    naive_keras = parity.import_generated(naive.output_path).convert(checkpoint)
    ours = parity.import_generated(GENERATED / "seed_cnn.py").convert(checkpoint)
    naive_error = parity.max_abs_error(expected, parity.keras_output(naive_keras, x))
    our_error = parity.max_abs_error(expected, parity.keras_output(ours, x))
    print(f"naive port: {naive_error:.3g}; with unflatten: {our_error:.3g}")
    assert naive_error > 100 * TOLERANCE
    assert our_error <= TOLERANCE


def test_cli_of_generated_module_saves_a_loadable_keras_file(
    tmp_path, capsys, monkeypatch
):
    import keras

    torch_model = parity.randomize_(parity.build("examples.seed:SeedConv"), seed=1)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / "seed_conv.safetensors")
    module = parity.import_generated(GENERATED / "seed_conv.py")
    assert module.main([str(checkpoint), "-o", str(tmp_path / "seed_conv.keras")]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[0] == f"read 2 tensors from {checkpoint}"
    assert said[-1] == f"saved {tmp_path / 'seed_conv.keras'}"
    assert module.main([str(checkpoint), "-o", str(tmp_path / "q.keras"), "-q"]) == 0
    assert capsys.readouterr().out == ""

    # A slow load reports its progress (here every assignment is "slow").
    monkeypatch.setattr(module._Progress.__init__, "__defaults__", (0.0,))
    assert module.main([str(checkpoint), "-o", str(tmp_path / "p.keras")]) == 0
    said = capsys.readouterr().out.splitlines()
    assert said[1:3] == [
        "  1/2 weights loaded (0 s)",
        "  2/2 weights loaded (0 s)",
    ]

    reloaded = keras.saving.load_model(tmp_path / "seed_conv.keras", safe_mode=True)
    x = parity.random_input((2, 3, 32, 32), seed=2)
    error = parity.max_abs_error(
        parity.torch_output(torch_model, x), parity.keras_output(reloaded, x)
    )
    assert error <= TOLERANCE
