"""`torch2keras verify`: run PyTorch and the generated Keras model on the same input.

The spec is compiled in memory (nothing is written) and its generated source is
imported, so what is verified is exactly the code `compile` would write: one
checkpoint goes into the Keras model through that module's own
`read_checkpoint` + `load_weights`, and into the PyTorch model through
`load_state_dict(strict=True)`. Both models get the same seeded input, and
verify compares the final outputs and every layer the spec pairs with a
PyTorch module (`torch: PATH`), in graph order. The first layer out of
tolerance is the one to look at: every layer after it inherits its error.

This module imports torch, then keras (see compiler/frameworks.py for why the
order matters). The CLI imports it only inside the `verify` subcommand, so the
compile path never loads a framework.
"""

from __future__ import annotations

import json
import linecache
import os
import sys
import types
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter

from . import build, frameworks, ir, write  # noqa: E402
from .errors import SpecError  # noqa: E402

frameworks.import_torch_first()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from . import parity  # noqa: E402

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
DEFAULT_BATCH = 2
# Integer inputs get ids in [0, N): N is the smallest nn.Embedding's
# num_embeddings, so every id is valid for every table, or this without one.
DEFAULT_ID_RANGE = 10


class VerifyError(Exception):
    """verify could not compare the models; the message says what and where."""

    def __init__(self, message: str, exit_code: int = EXIT_FINDINGS):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Row:
    """One comparison: a paired layer, or one of the model's final outputs."""

    kind: str  # "layer" or "output"
    keras: str  # Keras layer (or spec input) name
    torch: str  # PyTorch module path, or "forward()" for the final output
    spec_line: str  # "specs/x.yaml:LINE"
    result: str  # "ok", "FAIL", "skip", or "folded" (no Keras tensor to compare)
    max_abs_err: float | None  # None where nothing was compared
    max_rel_err: float | None  # max abs err / max |pytorch output|
    tolerance: float | None  # atol + rtol * max |pytorch output|
    note: str = ""


@dataclass(frozen=True)
class InputInfo:
    name: str
    dtype: str
    keras_shape: tuple[int, ...]  # with batch
    torch_shape: tuple[int, ...]


@dataclass(frozen=True)
class Report:
    spec: str
    model: str
    checkpoint: str
    inputs: tuple[InputInfo, ...]
    seed: int
    id_range: int | None  # None when no input is integer
    atol: float
    rtol: float
    rows: tuple[Row, ...]

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if row.result == "FAIL"]

    @property
    def ok(self) -> bool:
        return not self.failures


# --- comparing two arrays ---------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    ok: bool
    max_abs_err: float
    max_rel_err: float
    tolerance: float
    note: str = ""


def compare(expected: np.ndarray, actual: np.ndarray, atol: float, rtol: float):
    """PyTorch's `expected` against Keras's `actual` (same shape, same layout).

    Within tolerance when max |expected - actual| <= atol + rtol * max |expected|.
    A NaN or Inf on one side where the other differs (finite, or another
    non-finite value) fails; matching non-finite values (an attention mask's
    -inf on both sides) agree, and the error is taken over the finite rest.
    """
    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    finite = np.isfinite(expected) & np.isfinite(actual)
    notes = []
    if not finite.all():
        both_nan = np.isnan(expected) & np.isnan(actual)
        agree = both_nan | (expected == actual)
        disagree = ~finite & ~agree
        if disagree.any():
            sides = [
                f"{name} has {_non_finite_kinds(values[disagree])}"
                for name, values in (("PyTorch", expected), ("Keras", actual))
                if not np.isfinite(values[disagree]).all()
            ]
            note = f"{'; '.join(sides)} where the other side differs"
            return Comparison(False, float("inf"), float("inf"), float("nan"), note)
        notes.append(f"{int((~finite).sum())} matching NaN/Inf values")
    difference = np.abs(expected[finite] - actual[finite])
    max_abs = float(np.max(difference, initial=0.0))
    scale = float(np.max(np.abs(expected[finite]), initial=0.0))
    tolerance = atol + rtol * scale
    if scale > 0:
        max_rel = max_abs / scale
    else:
        max_rel = 0.0 if max_abs == 0 else float("inf")
    return Comparison(
        max_abs <= tolerance, max_abs, max_rel, tolerance, "; ".join(notes)
    )


def _non_finite_kinds(values: np.ndarray) -> str:
    kinds = [("NaN", np.isnan(values)), ("Inf", np.isinf(values))]
    return " and ".join(
        f"{int(mask.sum())} {kind}" for kind, mask in kinds if mask.any()
    )


def _in_torch_layout(torch_out: np.ndarray, keras_out: np.ndarray):
    """Keras's output laid out like PyTorch's, or None with the reason it cannot be.

    Rank >= 3 (batch included) moves channels from last to axis 1. Where only
    the unmoved shape fits (a Dense over a sequence: channels last on both
    sides), it is compared as is, and the note says so.
    """
    if keras_out.ndim >= 3:
        moved = np.moveaxis(keras_out, -1, 1)
        if keras_out.ndim == 3 and moved.shape == torch_out.shape == keras_out.shape:
            # (N, T, F) with T == F: the shapes cannot tell a Conv1D's
            # channels-last output from a sequence (rank 4 is always an image
            # map). Compare both ways; the closer one is the layout.
            as_is = np.abs(keras_out.astype(np.float64) - torch_out).max(initial=0)
            channels = np.abs(moved.astype(np.float64) - torch_out).max(initial=0)
            if as_is <= channels:
                return keras_out, "layout ambiguous (square); compared as is"
            return moved, "layout ambiguous (square); compared channels first"
        if moved.shape == torch_out.shape:
            return moved, ""
        if keras_out.shape == torch_out.shape:
            return keras_out, "same layout on both sides (channels last)"
    elif keras_out.shape == torch_out.shape:
        return keras_out, ""
    if torch_out.ndim == 4 and torch_out.shape[2:] == (1, 1):
        # AdaptiveAvgPool2d(1) keeps (N, C, 1, 1) where GlobalAveragePooling2D
        # gives (N, C): the same numbers.
        if keras_out.shape == torch_out.shape[:2]:
            return keras_out.reshape(torch_out.shape), "PyTorch keeps 1x1 spatial axes"
    layout = " (channels last)" if keras_out.ndim >= 3 else ""
    return None, (
        f"shapes differ: PyTorch {tuple(torch_out.shape)}, "
        f"Keras {tuple(keras_out.shape)}{layout}"
    )


def _row(kind, keras_name, torch_name, line, torch_out, keras_out, atol, rtol):
    aligned, note = _in_torch_layout(torch_out, keras_out)
    if aligned is None:
        # An intermediate pairing that cannot be lined up is reported, not
        # guessed at; a final output that cannot is a failure.
        result = "skip" if kind == "layer" else "FAIL"
        return Row(kind, keras_name, torch_name, line, result, None, None, None, note)
    comparison = compare(torch_out, aligned, atol, rtol)
    notes = "; ".join(n for n in (note, comparison.note) if n)
    return Row(
        kind,
        keras_name,
        torch_name,
        line,
        "ok" if comparison.ok else "FAIL",
        comparison.max_abs_err,
        comparison.max_rel_err,
        comparison.tolerance,
        notes,
    )


# --- the two models -----------------------------------------------------------


def import_source(source: str, name: str, filename: str) -> types.ModuleType:
    """Run generated source (our own, compiled just now) as a fresh module."""
    module = types.ModuleType(name)
    module.__file__ = filename
    # Tracebacks through the generated code then show its lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


@contextmanager
def _importable(folders: Sequence[Path]) -> Iterator[None]:
    """Let `examples.seed:SeedCNN` import from the spec's project, as tests do."""
    saved = list(sys.path)
    sys.path[:0] = [str(f) for f in folders if str(f) not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved


def build_torch_model(factory: str, where: str, folders: Sequence[Path]) -> nn.Module:
    module_name, colon, attribute = factory.partition(":")
    if not (colon and module_name and attribute):
        raise VerifyError(
            f"{where} {factory!r} is not 'package.module:callable'", EXIT_USAGE
        )
    try:
        with _importable(folders):
            model = parity.build(factory)
    except Exception as exc:
        raise VerifyError(
            f"cannot build the PyTorch model {factory!r} ({where}): "
            f"{type(exc).__name__}: {exc}",
            EXIT_USAGE,
        ) from exc
    if not isinstance(model, nn.Module):
        raise VerifyError(
            f"{factory!r} ({where}) returned {type(model).__name__}, not an nn.Module",
            EXIT_USAGE,
        )
    return model


def _tensor(array: np.ndarray) -> torch.Tensor:
    # torch.from_numpy shares memory and warns on read-only arrays (np.load).
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def load_checkpoint(generated, keras_model, torch_model, checkpoint: Path, factory):
    """One read through the generated module's reader, loaded into both models."""
    try:
        state_dict = generated.read_checkpoint(checkpoint)
    except Exception as exc:
        raise VerifyError(f"{checkpoint}: cannot read checkpoint: {exc}") from exc
    try:
        torch_model.load_state_dict(
            {key: _tensor(np.asarray(value)) for key, value in state_dict.items()},
            strict=True,
        )
    except RuntimeError as exc:
        raise VerifyError(
            f"{checkpoint} does not fit the PyTorch model {factory}: {exc}"
        ) from exc
    try:
        generated.load_weights(keras_model, state_dict)
    except generated.WeightLoadError as exc:
        raise VerifyError(f"{checkpoint}: {exc}") from exc


class _Recorder:
    """Forward hooks that keep each named module's last output."""

    def __init__(self, model: nn.Module, paths: Sequence[str]):
        self.outputs: dict[str, object] = {}
        self.calls: Counter[str] = Counter()
        self._handles = [
            model.get_submodule(path).register_forward_hook(self._hook(path))
            for path in paths
        ]

    def _hook(self, path: str):
        def hook(module, args, output):
            self.calls[path] += 1
            if isinstance(output, torch.Tensor):
                # A copy: a later in-place op (ReLU(inplace=True)) would
                # otherwise overwrite the value seen here.
                output = output.detach().clone()
            self.outputs[path] = output

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
        tensor = tensor.float()
    return tensor.numpy()


# --- inputs -------------------------------------------------------------------


def torch_layout(shape: Sequence[int]) -> tuple[int, ...]:
    """Keras shape with batch -> PyTorch shape: rank >= 3 moves channels to axis 1."""
    shape = tuple(shape)
    return (shape[0], shape[-1], *shape[1:-1]) if len(shape) >= 3 else shape


def keras_layout(shape: Sequence[int]) -> tuple[int, ...]:
    shape = tuple(shape)
    return (shape[0], *shape[2:], shape[1]) if len(shape) >= 3 else shape


def input_shapes(
    module: ir.Module, given: Sequence[Sequence[int]] | None
) -> list[tuple[int, ...]]:
    """Keras-layout shapes with batch, one per spec input, checked against the spec."""
    if not given:
        return [(DEFAULT_BATCH, *spec_input.shape) for spec_input in module.inputs]
    if len(given) != len(module.inputs):
        names = ", ".join(i.name for i in module.inputs)
        raise VerifyError(
            f"{len(given)} --input-shape given, but the spec has "
            f"{len(module.inputs)} input(s) ({names}): give one per input, in order",
            EXIT_USAGE,
        )
    shapes = []
    for shape, spec_input in zip(given, module.inputs):
        keras_shape = keras_layout(shape)
        if len(shape) < 1 or keras_shape[1:] != spec_input.shape:
            raise VerifyError(
                f"--input-shape {','.join(map(str, shape))} is {keras_shape} in Keras "
                f"layout, but input {spec_input.name!r} is declared "
                f"{spec_input.shape} (batch omitted) at "
                f"{module.spec_path}:{spec_input.line}",
                EXIT_USAGE,
            )
        shapes.append(keras_shape)
    return shapes


def id_range(model: nn.Module) -> int:
    sizes = [
        m.num_embeddings
        for m in model.modules()
        if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
    ]
    return min(sizes) if sizes else DEFAULT_ID_RANGE


def random_inputs(
    module: ir.Module, shapes: Sequence[tuple[int, ...]], seed: int, ids: int
) -> list[np.ndarray]:
    """Seeded values per spec input, Keras layout; PyTorch gets the same values."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec_input, shape in zip(module.inputs, shapes):
        dtype = spec_input.dtype
        if dtype in ("int32", "int64"):
            values = rng.integers(0, ids, size=shape, dtype=dtype)
        elif dtype == "bool":
            values = rng.random(shape) < 0.5
        else:
            values = rng.standard_normal(shape, dtype=np.float32)
            if dtype == "float16":
                values = values.astype(np.float16)
            elif dtype == "bfloat16":
                # numpy has no bfloat16: round here, so both sides get these values.
                values = torch.from_numpy(values).bfloat16().float().numpy()
        arrays.append(values)
    return arrays


def _torch_input(array: np.ndarray, dtype: str) -> torch.Tensor:
    moved = np.moveaxis(array, -1, 1) if array.ndim >= 3 else array
    tensor = torch.from_numpy(np.ascontiguousarray(moved))
    return tensor.bfloat16() if dtype == "bfloat16" else tensor


# --- verify -------------------------------------------------------------------


def verify(
    generated: build.Generated,
    checkpoint: Path,
    *,
    model: str | None,
    input_shapes_given: Sequence[Sequence[int]] | None,
    atol: float,
    rtol: float,
    seed: int,
    ids: int | None,
) -> Report:
    """Compare the PyTorch model and the spec's generated Keras model, layer by layer."""
    module = generated.module
    spec = module.spec_path
    where = "--model" if model else f"source.model in {spec}"
    factory = model or module.source_model
    if not factory:
        raise VerifyError(
            f"{spec} has no source.model: name the PyTorch model with "
            "--model package.module:callable",
            EXIT_USAGE,
        )
    shapes = input_shapes(module, input_shapes_given)
    root = build.project_root(generated.spec_path)
    torch_model = build_torch_model(factory, where, [root, Path.cwd()])

    paired = pairings(module)
    missing = [pair for pair in paired if not _has_module(torch_model, pair.torch)]
    if missing:
        raise VerifyError(
            "\n".join(
                f"{spec}:{pair.line}: layer {pair.spec_name!r} pairs with PyTorch "
                f"module {pair.torch!r}, which {factory} does not have"
                for pair in missing
            )
        )

    generated_module = import_source(
        generated.source, f"torch2keras_verify_{module.name}", f"<generated {spec}>"
    )
    keras_model = generated_module.build_model()
    load_checkpoint(generated_module, keras_model, torch_model, checkpoint, factory)

    integer = any(i.dtype in ("int32", "int64") for i in module.inputs)
    ids = (ids or id_range(torch_model)) if integer else None
    arrays = random_inputs(module, shapes, seed, ids or 0)

    torch_result, recorder = _run_torch(torch_model, module, arrays, paired)
    keras_values = _run_keras(keras_model, module, arrays, paired)
    rows = [
        *_layer_rows(paired, recorder, keras_values, spec, atol, rtol),
        *_output_rows(module, torch_result, keras_values, atol, rtol),
    ]
    infos = tuple(
        InputInfo(i.name, i.dtype, shape, torch_layout(shape))
        for i, shape in zip(module.inputs, shapes)
    )
    return Report(
        spec, factory, str(checkpoint), infos, seed, ids, atol, rtol, tuple(rows)
    )


@dataclass(frozen=True)
class Pairing:
    """One PyTorch module and the Keras layer whose output should equal its own."""

    label: str  # the keras layer column
    keras: str | None  # None: folded away, no Keras tensor stands for it
    torch: str
    line: int
    spec_name: str  # the spec layer that names the PyTorch module
    note: str = ""


def pairings(module) -> list[Pairing]:
    """Every `torch:` pairing of the spec, in graph order.

    A BatchNormalization folded into the conv before it (fold_batchnorm) is
    compared at the conv's Keras output, which now computes conv + BN; the
    PyTorch conv's own output has no Keras counterpart and is listed as folded.
    """
    found = []
    for layer in module.layers:
        norm = layer.folded
        if norm is None:
            if layer.torch:
                found.append(
                    Pairing(layer.name, layer.name, layer.torch, layer.line, layer.name)
                )
            continue
        if layer.torch:
            note = f"{norm.name} is folded into this layer: compared after it"
            found.append(
                Pairing(layer.name, None, layer.torch, layer.line, layer.name, note)
            )
        if norm.torch:
            label = f"{layer.name}+{norm.name}"
            found.append(Pairing(label, layer.name, norm.torch, norm.line, norm.name))
    return found


def _layer_rows(paired, recorder, keras_values, spec, atol, rtol) -> list[Row]:
    """One row per pairing, in graph order."""
    rows = []
    for pair in paired:
        line = f"{spec}:{pair.line}"
        calls = recorder.calls[pair.torch]
        output = recorder.outputs.get(pair.torch)
        if pair.keras is None:
            rows.append(
                Row(
                    "layer",
                    pair.label,
                    pair.torch,
                    line,
                    "folded",
                    None,
                    None,
                    None,
                    pair.note,
                )
            )
        elif calls == 0:
            note = "PyTorch module was not called by forward()"
            rows.append(_skip(pair.label, pair.torch, line, note))
        elif not isinstance(output, torch.Tensor):
            note = f"PyTorch module returns a {type(output).__name__}, not a tensor"
            rows.append(_skip(pair.label, pair.torch, line, note))
        else:
            torch_out, keras_out = _numpy(output), keras_values[pair.keras]
            row = _row(
                "layer", pair.label, pair.torch, line, torch_out, keras_out, atol, rtol
            )
            if calls > 1:  # a module reused in forward(): only its last call is kept
                note = f"called {calls} times in forward(); compared the last call"
                row = replace(row, note="; ".join(n for n in (row.note, note) if n))
            rows.append(row)
    return rows


def _output_rows(module, torch_result, keras_values, atol, rtol) -> list[Row]:
    """One row per spec output, against forward()'s tensor or tuple (or a
    transformers ModelOutput), by position."""
    lines = {layer.name: layer.line for layer in module.layers}
    lines.update({i.name: i.line for i in module.inputs})
    folded = [layer.folded for layer in module.layers if layer.folded]
    lines.update({norm.name: norm.line for norm in folded})
    single = isinstance(torch_result, torch.Tensor)
    if single:
        results = [torch_result]
    elif isinstance(torch_result, (tuple, list)):
        results = list(torch_result)
    elif hasattr(torch_result, "to_tuple"):
        # transformers' ModelOutput: its set fields, in order, as a tuple.
        results = list(torch_result.to_tuple())
    else:
        results = []
    rows = []
    # Rows name outputs as the spec does; the values are those of the Keras
    # layer computing each (a block's last layer, or the conv a folded
    # BatchNormalization output lives in).
    for index, (name, spec_name) in enumerate(zip(module.outputs, module.output_names)):
        label = "forward()" if single else f"forward()[{index}]"
        line = f"{module.spec_path}:{lines.get(spec_name, lines[name])}"
        result = results[index] if index < len(results) else None
        if not isinstance(result, torch.Tensor):
            note = f"forward() returned {_describe(torch_result)}, not a tensor here"
            rows.append(
                Row("output", spec_name, label, line, "FAIL", None, None, None, note)
            )
        else:
            row = _row(
                "output",
                spec_name,
                label,
                line,
                _numpy(result),
                keras_values[name],
                atol,
                rtol,
            )
            rows.append(row)
    return rows


def _has_module(model: nn.Module, path: str) -> bool:
    try:
        model.get_submodule(path)
    except AttributeError:
        return False
    return True


def _skip(keras_name, torch_name, line, note) -> Row:
    return Row("layer", keras_name, torch_name, line, "skip", None, None, None, note)


def _describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _run_torch(torch_model, module, arrays, paired):
    tensors = [_torch_input(a, i.dtype) for a, i in zip(arrays, module.inputs)]
    recorder = _Recorder(torch_model, sorted({pair.torch for pair in paired}))
    try:
        with torch.no_grad():
            result = torch_model(*tensors)
    except Exception as exc:
        shapes = ", ".join(str(tuple(t.shape)) for t in tensors)
        raise VerifyError(
            f"the PyTorch model failed on input(s) of shape {shapes}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    finally:
        recorder.remove()
    return result, recorder


def _run_keras(keras_model, module, arrays, paired) -> dict[str, np.ndarray]:
    """Every paired layer's and every final output's value, from one probe model."""
    by_name = {tensor.name: tensor for tensor in keras_model.inputs}
    wanted = list(
        dict.fromkeys([p.keras for p in paired if p.keras] + list(module.outputs))
    )
    tensors = [
        by_name[name] if name in by_name else keras_model.get_layer(name).output
        for name in wanted
    ]
    probe = keras.Model(inputs=keras_model.inputs, outputs=tensors)
    values = dict(zip((i.name for i in module.inputs), arrays))
    feed = [values[tensor.name] for tensor in keras_model.inputs]
    try:
        results = probe(feed, training=False)
    except Exception as exc:
        raise VerifyError(
            f"the Keras model failed: {type(exc).__name__}: {exc}"
        ) from exc
    if len(wanted) == 1:  # Keras unwraps a one-element list of outputs
        results = [results]
    return {
        name: keras.ops.convert_to_numpy(value) for name, value in zip(wanted, results)
    }


# --- reporting ----------------------------------------------------------------

HEADER = ("keras layer", "pytorch module", "spec line", "max abs err", "max rel err")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}"


def format_report(report: Report) -> str:
    """The table (one row per comparison, graph order), then the verdict."""
    inputs = "; ".join(
        f"{i.name} {i.dtype} keras {i.keras_shape} / pytorch {i.torch_shape}"
        for i in report.inputs
    )
    lines = [
        f"verify {report.spec} against {report.model} with {report.checkpoint}",
        f"input (seed {report.seed}): {inputs}"
        + (f"; integer ids in [0, {report.id_range})" if report.id_range else ""),
        "",
    ]
    table = [HEADER + ("result",)] + [
        (
            row.keras + (" (output)" if row.kind == "output" else ""),
            row.torch,
            row.spec_line,
            _number(row.max_abs_err),
            _number(row.max_rel_err),
            row.result + (f"  {row.note}" if row.note else ""),
        )
        for row in report.rows
    ]
    widths = [max(len(cells[i]) for cells in table) for i in range(len(HEADER))]
    for cells in table:
        padded = [
            cell.rjust(width) if i in (3, 4) else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths))
        ]
        lines.append("  ".join([*padded, cells[-1]]).rstrip())
    lines.append("")
    lines += verdict_lines(report)
    return "\n".join(lines)


def verdict_lines(report: Report) -> list[str]:
    compared = [row for row in report.rows if row.result in ("ok", "FAIL")]
    skipped = sum(row.result == "skip" for row in report.rows)
    folded = sum(row.result == "folded" for row in report.rows)
    rule = f"max abs err <= {report.atol:g} + {report.rtol:g} * max |pytorch|"
    tail = f"; {skipped} skipped" if skipped else ""
    tail += f"; {folded} folded (no Keras tensor to compare)" if folded else ""
    if report.ok:
        return [
            f"verify: OK: {len(compared)} comparisons within tolerance ({rule}){tail}"
        ]
    first = report.failures[0]
    what = "output" if first.kind == "output" else "layer"
    if first.max_abs_err is not None and np.isfinite(first.max_abs_err):
        detail = (
            f"max abs err {first.max_abs_err:.3g} > tolerance {first.tolerance:.3g}"
        )
        detail += f" ({first.note})" if first.note else ""
    else:
        detail = first.note
    return [
        f"verify: FAIL: {len(report.failures)} of {len(compared)} comparisons "
        f"out of tolerance ({rule}){tail}",
        f"first divergence: {what} {first.keras!r} (PyTorch {first.torch}) "
        f"at {first.spec_line}: {detail}",
    ]


def _finite_or_none(value):
    return value if value is None or np.isfinite(value) else None


def report_dict(report: Report) -> dict:
    """The report as JSON-ready data: the same rows and verdict as the table."""
    rows = [
        {
            **asdict(row),
            "max_abs_err": _finite_or_none(row.max_abs_err),
            "max_rel_err": _finite_or_none(row.max_rel_err),
            "tolerance": _finite_or_none(row.tolerance),
        }
        for row in report.rows
    ]
    first = next((r for r, row in zip(rows, report.rows) if row.result == "FAIL"), None)
    return {
        "spec": report.spec,
        "model": report.model,
        "checkpoint": report.checkpoint,
        "inputs": [asdict(i) for i in report.inputs],
        "seed": report.seed,
        "id_range": report.id_range,
        "atol": report.atol,
        "rtol": report.rtol,
        "rows": rows,
        "verdict": {
            "ok": report.ok,
            "compared": sum(row.result in ("ok", "FAIL") for row in report.rows),
            "failed": len(report.failures),
            "skipped": sum(row.result == "skip" for row in report.rows),
            "folded": sum(row.result == "folded" for row in report.rows),
            "first_divergence": first,
            "summary": verdict_lines(report),
        },
    }


def main(args) -> int:
    """The `verify` subcommand (arguments parsed by compiler/cli.py)."""
    spec, checkpoint = Path(args.spec), Path(args.checkpoint)
    for path, what in ((spec, "spec"), (checkpoint, "checkpoint")):
        if not path.is_file():
            print(f"{path}: error: no such {what} file", file=sys.stderr)
            return EXIT_USAGE
    try:
        generated = build.generate(spec)
    except SpecError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return EXIT_FINDINGS
    for warning in generated.warnings:
        print(warning, file=sys.stderr)
    try:
        report = verify(
            generated,
            checkpoint,
            model=args.model,
            input_shapes_given=args.input_shape,
            atol=args.atol,
            rtol=args.rtol,
            seed=args.seed,
            ids=args.id_range,
        )
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(format_report(report))
    if args.json:
        text = json.dumps(report_dict(report), indent=2, allow_nan=False) + "\n"
        write.write_atomic(Path(args.json), text)
    return EXIT_OK if report.ok else EXIT_FINDINGS
