"""Compile a spec written inside a test, convert a PyTorch model with it, compare.

For small, focused parity tests (one trap, one layer) that do not deserve a
spec in specs/.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from compiler import build, parity, write


@dataclass
class Comparison:
    expected: np.ndarray
    actual: np.ndarray
    error: float
    generated: build.Generated


def compile_inline(
    tmp_path: Path, spec_text: str, name: str = "inline"
) -> build.Generated:
    """Write `spec_text` as specs/NAME.yaml of a fresh project, compile and write it."""
    project = tmp_path / name
    (project / "specs").mkdir(parents=True, exist_ok=True)
    (project / "pyproject.toml").write_text("")
    spec = project / "specs" / f"{name}.yaml"
    spec.write_text(textwrap.dedent(spec_text))
    generated = build.generate(spec)
    write.write_atomic(generated.output_path, generated.source)
    return generated


def compare(
    tmp_path: Path,
    spec_text: str,
    torch_model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    seed: int = 0,
    name: str = "inline",
) -> Comparison:
    """Randomise `torch_model`, save it, convert it with the spec, run both on one input."""
    generated = compile_inline(tmp_path, spec_text, name)
    parity.randomize_(torch_model.eval(), seed=seed)
    checkpoint = parity.save_checkpoint(torch_model, tmp_path / f"{name}.safetensors")
    keras_model = parity.import_generated(generated.output_path).convert(checkpoint)
    x = parity.random_input(input_shape, seed=seed + 1)
    expected = parity.torch_output(torch_model, x)
    actual = parity.keras_output(keras_model, x)
    return Comparison(
        expected, actual, parity.max_abs_error(expected, actual), generated
    )
