"""`torch2keras scaffold`: draft a spec from a PyTorch model by tracing it.

    torch2keras scaffold torchvision.models:resnet18 --input-shape 1,3,224,224 -o specs/resnet18.yaml

The model is traced, every tensor's shape is recorded on one example input, and
each traced op becomes one spec layer (sometimes two: a ZeroPadding2D before a
convolution). The draft is a flat layer list, one layer per line, each layer
that comes from a module paired with it (`torch: PATH`). An op with no Keras
layer in the allowlist becomes a placeholder, `keras: "UNMAPPED <op> ..."`,
that `validate` rejects with a message naming the op and where it was called:
nothing is silently dropped. The draft is then run through load, schema and
resolve, and what they say is reported with it.

Why torch.fx (`symbolic_trace`) and not torch.export:
- fx keeps the graph at the level the model's author wrote it. A module call
  stays one `call_module` node naming the module (the spec's `torch:` path),
  and its settings (kernel size, padding, eps, ceil_mode, ...) are read off
  the module object itself; functional code stays `torch.flatten`,
  `operator.add`, `torch.cat`. Each maps onto one Keras layer.
- torch.export lowers everything to ATen ops (`aten.convolution`,
  `_native_batch_norm_legit_no_training`, `addmm`, decomposed activations),
  keeps modules only as metadata, runs dynamo (seconds per model), and would
  force us to reassemble what fx hands over as is.
- fx's weakness is data-dependent control flow (`if x.sum() > 0:`) in
  `forward`. A submodule that fx cannot trace is retried as an opaque leaf and
  becomes one placeholder, so one odd block costs one hand-mapped line, not
  the draft. Only an untraceable top-level `forward` is an error.
- Shapes come from fx's ShapeProp: the traced graph runs once on the example
  input and every node records its output shape and dtype.

Layout: a float input of rank >= 3 is channels-first in PyTorch and
channels-last in Keras (as parity and verify lay it out); every tensor carries
whether Keras holds it that way, which decides conv/pool/concat axes and
whether a Flatten reorders features (then the Dense after it gets an explicit
`unflatten` kernel mapping).

This module imports torch (through frameworks.import_torch_first), never keras.
"""

from __future__ import annotations

import importlib
import keyword
import math
import operator
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__, frameworks, load, resolve, schema
from .errors import Diagnostic, SpecError
from .layers import LAYER_TYPES, ShapeError

frameworks.import_torch_first()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from torch import fx, nn  # noqa: E402
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata  # noqa: E402

DTYPES = {"float32": torch.float32, "int64": torch.int64, "int32": torch.int32}


class ScaffoldError(Exception):
    """The model could not be built, traced or run; the message says why."""


class _Unmappable(Exception):
    """This op has no Keras layer (yet); the message says why, for the draft."""


@dataclass(frozen=True)
class Tensor:
    """A PyTorch tensor, as the drafted Keras graph holds it."""

    layer: str  # the spec layer (or input) whose output it is
    shape: tuple[int, ...] | None  # PyTorch shape, batch omitted; None if unknown
    channels_last: bool = False  # Keras holds it with PyTorch's axis 1 moved last
    # When this is a Flatten of a channels-last (C, H, W) map with H*W > 1: that
    # map's PyTorch shape. Keras's features are then in (H, W, C) order.
    flat_from: tuple[int, ...] | None = None

    @property
    def keras_shape(self) -> tuple[int, ...]:
        if self.channels_last:
            return (*self.shape[1:], self.shape[0])
        return self.shape


@dataclass
class Layer:
    """One drafted spec layer."""

    name: str
    keras: str
    inputs: list[str]
    args: dict[str, Any] = field(default_factory=dict)
    torch: str | None = None
    weights: dict[str, Any] | None = None
    comment: str | None = None  # written above the layer


@dataclass(frozen=True)
class Draft:
    """What scaffold produced: the spec text and what validating it found."""

    text: str
    unmapped: tuple[str, ...]  # one line per placeholder: "name: what"
    diagnostics: tuple[Diagnostic, ...]  # from load/schema/resolve of the draft


# --- building and tracing --------------------------------------------------


def build_model(factory: str) -> nn.Module:
    """`package.module:callable` -> the model in eval mode (no weights are loaded)."""
    module_name, _, attribute = factory.partition(":")
    if not module_name or not attribute:
        raise ScaffoldError(f"{factory!r}: expected package.module:callable")
    # A console script's sys.path starts at its own folder, not the user's.
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScaffoldError(f"cannot import {module_name!r}: {exc}") from None
    if not hasattr(module, attribute):
        raise ScaffoldError(f"module {module_name!r} has no {attribute!r}")
    model = getattr(module, attribute)()
    if not isinstance(model, nn.Module):
        raise ScaffoldError(
            f"{factory} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model.eval()


def _is_stochastic_depth(module: nn.Module) -> bool:
    # torchvision's StochasticDepth is the identity at inference; kept as a leaf
    # it is one Identity layer paired with its module, not a traced function.
    kind = type(module)
    return kind.__name__ == "StochasticDepth" and kind.__module__.startswith(
        "torchvision"
    )


class _Tracer(fx.Tracer):
    """fx's tracer, with extra leaves, remembering which module a failure came from."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaves or _is_stochastic_depth(m):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module raises first
                self.failed_in = self.path_of_module(m)
            raise


def trace(model: nn.Module) -> tuple[fx.GraphModule, dict[str, str]]:
    """fx-trace `model`; submodules fx cannot trace become leaves.

    Returns the graph module and, for each module made a leaf that way, why.
    """
    untraceable: dict[str, str] = {}
    while True:
        tracer = _Tracer(set(untraceable))
        try:
            graph = tracer.trace(model)
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            reason = f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__
            path = tracer.failed_in
            if not path or path in untraceable:
                raise ScaffoldError(
                    f"torch.fx cannot trace {type(model).__name__}.forward ({reason}); "
                    "scaffold needs a forward without data-dependent control flow"
                ) from None
            untraceable[path] = f"torch.fx cannot trace its forward ({reason})"
            continue
        return fx.GraphModule(tracer.root, graph), untraceable


def example_inputs(
    shapes: list[tuple[int, ...]], dtypes: list[str]
) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    examples = []
    for shape, dtype in zip(shapes, dtypes):
        if dtype.startswith("int"):
            # Index 0 is valid for every embedding table.
            examples.append(torch.zeros(shape, dtype=DTYPES[dtype]))
        else:
            examples.append(torch.randn(shape, generator=generator))
    return examples


# --- names -------------------------------------------------------------------


def identifier(text: str) -> str:
    """A PyTorch path or op name -> a valid spec name (see schema._identifier)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", text).lstrip("_") or "layer"
    if name[0].isdigit():
        name = f"layer_{name}"  # nn.Sequential children: "0.conv" -> "layer_0_conv"
    if (
        keyword.iskeyword(name)
        or keyword.issoftkeyword(name)
        or name in schema.RESERVED_NAMES
    ):
        name += "_"
    return name


def _qualified(target: Any) -> str:
    """How a user would spell a traced function: torch.sort, operator.add, ..."""
    try:
        from torch.fx.node import _get_qualified_name

        name = _get_qualified_name(target)
    except Exception:
        name = getattr(target, "__qualname__", None) or repr(target)
    return name.replace("_operator.", "operator.")


def _module_kind(module: nn.Module) -> str:
    kind = type(module)
    if kind.__module__.startswith("torch.nn.modules"):
        return f"torch.nn.{kind.__qualname__}"
    return f"{kind.__module__}.{kind.__qualname__}"


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _int_or_list(values):
    """(3, 3) -> 3, (3, 5) -> [3, 5]: how the committed specs write sizes."""
    values = tuple(values)
    return values[0] if len(set(values)) == 1 else list(values)


def _float(value: float) -> float:
    # 1 - 0.01 is 0.99 to print, not 0.9899999999999999.
    return float(f"{value:.12g}")


# --- the graph walk ------------------------------------------------------------


_FLATTEN_FUNCTIONS = ("flatten", "view", "reshape")
_ALIAS_METHODS = ("contiguous", "clone", "detach")


class _Drafter:
    """Walks the traced graph in order, drafting layers for each node."""

    def __init__(self, gm: fx.GraphModule, untraceable: dict[str, str]):
        self.gm = gm
        self.untraceable = untraceable
        self.layers: list[Layer] = []
        self.inputs: list[tuple[str, tuple[int, ...], str]] = []
        self.outputs: list[str] = []
        self.names: set[str] = set()
        self.values: dict[fx.Node, Any] = {}
        self.unmapped: list[str] = []
        self.used_modules: set[str] = set()  # whose state the draft reads or leaves
        self.batch: int | None = None
        # The last call of each module: only it is paired with a weightless
        # module, since verify compares a module's last output.
        self.last_call: dict[str, fx.Node] = {}
        self.paired_weights: set[str] = set()
        # A flatten node whose work an adaptive pooling before it already did.
        self.fused: dict[fx.Node, Tensor] = {}
        for node in gm.graph.nodes:
            if node.op == "call_module":
                self.last_call[node.target] = node

    # --- helpers ----------------------------------------------------------

    def unique(self, base: str) -> str:
        name, n = identifier(base), 1
        candidate = name
        while candidate in self.names:
            candidate = f"{name}_{n}"
            n += 1
        self.names.add(candidate)
        return candidate

    def meta_shape(self, node: fx.Node) -> tuple[int, ...] | None:
        """The node's PyTorch output shape without the batch axis (None: not a tensor)."""
        meta = node.meta.get("tensor_meta")
        if not isinstance(meta, TensorMetadata):
            return None
        shape = tuple(meta.shape)
        if not shape or shape[0] != self.batch:
            return None
        return shape[1:]

    def where(self, node: fx.Node) -> str:
        """The module whose forward made this call ('' for the model's own)."""
        stack = node.meta.get("nn_module_stack") or {}
        if node.op == "call_module":
            return node.target
        if not stack:
            return ""
        path = list(stack.values())[-1]
        return path[0] if isinstance(path, tuple) else str(path)

    def base_name(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return node.target
        if node.op == "call_method":
            op = node.target
        else:
            op = getattr(node.target, "__name__", "op")
        op = {"iadd": "add", "imul": "mul", "__add__": "add", "__mul__": "mul"}.get(
            op, op
        ).strip("_")
        where = self.where(node)
        return f"{where}.{op}" if where else op

    def describe(self, node: fx.Node) -> str:
        """What PyTorch does at this node, as a placeholder names it."""
        if node.op == "call_module":
            kind = _module_kind(self.gm.get_submodule(node.target))
            return f"module {node.target} ({kind})"
        op = (
            f"Tensor.{node.target}"
            if node.op == "call_method"
            else _qualified(node.target)
        )
        where = self.where(node)
        return f"{op} in {where + '.' if where else ''}forward"

    def tensor(self, value, what: str = "input") -> Tensor:
        if not isinstance(value, Tensor):
            raise _Unmappable(f"its {what} is not a tensor of the drafted graph")
        if value.shape is None:
            raise _Unmappable(f"its {what} comes from an unmapped op of unknown shape")
        return value

    def layer(
        self,
        base: str,
        keras: str,
        inputs: list[Tensor],
        args: dict[str, Any] | None = None,
        *,
        shape: tuple[int, ...],
        channels_last: bool,
        flat_from: tuple[int, ...] | None = None,
        torch_path: str | None = None,
        weights: dict[str, Any] | None = None,
        comment: str | None = None,
    ) -> Tensor:
        """Draft one layer; check its Keras output shape against PyTorch's."""
        args = args or {}
        layer_type = LAYER_TYPES[keras]
        out = Tensor("", shape, channels_last and len(shape) >= 2, flat_from)
        try:
            parsed = layer_type.Args.model_validate(args)
            keras_shape = layer_type.output_shape(
                parsed, [t.keras_shape for t in inputs]
            )
        except (ValidationError, ShapeError) as exc:
            raise _Unmappable(
                f"scaffold drafted {keras} {args}, which fails: {exc}"
            ) from None
        if tuple(keras_shape) != out.keras_shape:
            raise _Unmappable(
                f"scaffold drafted {keras} {args}, which gives {tuple(keras_shape)} "
                f"where PyTorch gives {out.keras_shape} (Keras layout)"
            )
        name = self.unique(base)
        self.layers.append(
            Layer(
                name,
                keras,
                [t.layer for t in inputs],
                args,
                torch_path,
                weights,
                comment,
            )
        )
        return replace(out, layer=name)

    def pair(self, node: fx.Node, keras: str, flat_from=None) -> str | None:
        """The `torch:` of a module's (last) layer, or None where it must not pair."""
        path = node.target
        if LAYER_TYPES[keras].default_rule:
            if path in self.paired_weights:
                raise _Unmappable(
                    "it is called a second time (shared weights); a spec maps each "
                    "PyTorch key once"
                )
            self.paired_weights.add(path)
            return path
        if self.last_call.get(path) is not node:
            return None  # verify compares the module's last call only
        if flat_from is not None:
            return None  # its Keras output is in another feature order
        return path

    # --- the walk -----------------------------------------------------------

    def run(self, dtypes: list[str]) -> None:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        for node, dtype in zip(placeholders, dtypes):
            self.input(node, dtype)
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                continue
            if node.op == "output":
                self.output(node)
            elif node.op == "get_attr":
                # A parameter read in forward() outside a module call: ops on it
                # have no Keras layer and become placeholders.
                self.used_modules.add(node.target)
                self.values[node] = None
            else:
                self.values[node] = self.node(node)

    def input(self, node: fx.Node, dtype: str) -> None:
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape)
        if self.batch is None:
            self.batch = shape[0]
        name = self.unique(node.target)
        # Float inputs of rank >= 3 are images or sequences: channels-last in Keras.
        channels_last = len(shape) >= 3 and not dtype.startswith("int")
        tensor = Tensor(name, shape[1:], channels_last)
        self.inputs.append((name, tensor.keras_shape, dtype))
        self.values[node] = tensor

    def output(self, node: fx.Node) -> None:
        results = node.args[0]
        if isinstance(results, dict):
            results = list(results.values())
        elif not isinstance(results, (tuple, list)):
            results = [results]
        for result in results:
            value = self.values.get(result) if isinstance(result, fx.Node) else None
            if not isinstance(value, Tensor):
                raise ScaffoldError(
                    f"forward() returns {result!r}, which is not a tensor; scaffold "
                    "drafts models that return a tensor or a tuple of tensors"
                )
            if value.flat_from is not None:
                # Keras's features are in (H, W, C) order, PyTorch's in (C, H, W).
                value = self.placeholder(
                    f"{value.layer}.output",
                    f"a flatten of a {value.flat_from} channels-first map returned "
                    "by forward()",
                    "Keras flattens channels-last, so the output's feature order "
                    "differs from PyTorch's",
                    [value],
                    value.shape,
                    None,
                )
            self.outputs.append(value.layer)

    def node(self, node: fx.Node):
        shape = self.meta_shape(node)
        if node.meta.get("tensor_meta") is None:
            return None  # a Python value (x.size(0), x.shape): nothing to draft
        if node in self.fused:
            return self.fused[node]
        if node.op == "call_module":
            self.used_modules.add(node.target)
        layers_before, names_before = len(self.layers), set(self.names)
        try:
            if shape is None:
                raise _Unmappable(
                    "its result is not one tensor with the input's batch axis"
                )
            result = self.map(node, shape)
        except _Unmappable as exc:
            del self.layers[layers_before:]
            self.names = names_before
            torch_path = None
            if node.op == "call_module":
                module = self.gm.get_submodule(node.target)
                if any(True for _ in module.parameters(recurse=False)):
                    torch_path = node.target
            inputs = [
                v
                for v in (self.values.get(a) for a in node.all_input_nodes)
                if isinstance(v, Tensor)
            ]
            result = self.placeholder(
                self.base_name(node),
                self.describe(node),
                str(exc),
                inputs,
                shape,
                torch_path,
            )
        if self.in_place(node):
            # Later readers of the tensor it changed in place see its result.
            self.values[node.all_input_nodes[0]] = result
        return result

    def in_place(self, node: fx.Node) -> bool:
        if not node.all_input_nodes:
            return False
        if node.op == "call_module":
            return bool(getattr(self.gm.get_submodule(node.target), "inplace", False))
        name = node.target if node.op == "call_method" else ""
        name = name or getattr(node.target, "__name__", "")
        dunder = name.startswith("__")
        return bool(node.kwargs.get("inplace")) or (name.endswith("_") and not dunder)

    def placeholder(self, base, what, why, inputs, shape, torch_path) -> Tensor:
        """A layer validate rejects, naming the PyTorch op and where it is."""
        name = self.unique(base)
        self.unmapped.append(f"{name}: {what}: {why}")
        self.layers.append(
            Layer(
                name,
                f"{schema.UNMAPPED} {what}",
                [t.layer for t in inputs],
                {},
                torch_path,
                comment=f"UNMAPPED: {why}.",
            )
        )
        channels_last = (
            bool(shape)
            and len(shape) >= 2
            and (all(t.channels_last for t in inputs) if inputs else True)
        )
        return Tensor(name, shape, channels_last)

    # --- mapping ------------------------------------------------------------

    def map(self, node: fx.Node, shape) -> Tensor:
        # Graph nodes (also inside lists, as torch.cat's) -> what they are here.
        args = fx.node.map_arg(node.args, self.values.get)
        kwargs = fx.node.map_arg(node.kwargs, self.values.get)
        if node.op == "call_module":
            module = self.gm.get_submodule(node.target)
            if node.target in self.untraceable:
                raise _Unmappable(self.untraceable[node.target])
            return self.module(node, module, self.tensor(args[0]), shape)
        return self.function(node, args, kwargs, shape)

    def arg(self, args, kwargs, index: int, name: str, default=None):
        if name in kwargs:
            return kwargs[name]
        return args[index] if index < len(args) else default

    # modules

    def module(self, node, m: nn.Module, x: Tensor, shape) -> Tensor:
        path = node.target
        if x.flat_from is not None and not isinstance(m, _ORDER_AWARE_MODULES):
            raise _Unmappable(
                f"it reads a flatten of a {x.flat_from} channels-first map, whose "
                "feature order Keras does not share"
            )
        if isinstance(m, (nn.Conv2d, nn.Conv1d)):
            return self.conv(node, m, x, shape)
        if isinstance(m, nn.Linear):
            return self.linear(node, m, x, shape)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return self.batch_norm(node, m, x, shape)
        if isinstance(m, nn.LayerNorm):
            return self.layer_norm(node, m, x, shape)
        if isinstance(m, nn.Embedding):
            return self.embedding(node, m, x, shape)
        if isinstance(m, nn.MaxPool2d):
            return self.pool(node, "max", _module_pool_args(m), x, shape, path)
        if isinstance(m, nn.AvgPool2d):
            return self.pool(node, "avg", _module_pool_args(m), x, shape, path)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return self.adaptive_pool(node, "avg", m.output_size, x, shape, path)
        if isinstance(m, nn.AdaptiveMaxPool2d):
            if m.return_indices:
                raise _Unmappable("it returns indices")
            return self.adaptive_pool(node, "max", m.output_size, x, shape, path)
        if isinstance(m, nn.Flatten):
            return self.flatten(node, x, shape, path)
        if isinstance(m, nn.Softmax):
            if m.dim is None:
                raise _Unmappable("Softmax without dim picks its axis implicitly")
            return self.softmax(node, x, m.dim, shape, path)
        if isinstance(m, (nn.Identity,)) or _is_stochastic_depth(m):
            keras = "Identity"
            return self.layer(
                path,
                keras,
                [x],
                shape=shape,
                channels_last=x.channels_last,
                flat_from=x.flat_from,
                torch_path=self.pair(node, keras, x.flat_from),
            )
        if isinstance(m, _DROPOUTS):
            return self.dropout(node, m.p, x, shape, path)
        activation = _activation_module(m)
        if activation is not None:
            keras, args = activation
            return self.layer(
                path,
                keras,
                [x],
                args,
                shape=shape,
                channels_last=x.channels_last,
                flat_from=x.flat_from,
                torch_path=self.pair(node, keras, x.flat_from),
            )
        raise _Unmappable(
            f"no Keras layer in the allowlist does what {type(m).__name__} does"
        )

    def conv(self, node, m, x: Tensor, shape) -> Tensor:
        path = node.target
        rank = 2 if isinstance(m, nn.Conv2d) else 1
        if not x.channels_last or len(x.shape) != rank + 1:
            raise _Unmappable(f"its input {x.shape} is not a channels-first map")
        if m.padding_mode != "zeros":
            raise _Unmappable(f"padding_mode {m.padding_mode!r} is not zero padding")
        kernel, strides, dilation = m.kernel_size, m.stride, m.dilation
        if m.padding == "same":
            padding = "same"
        elif m.padding == "valid":
            padding = (0,) * rank
        else:
            padding = tuple(m.padding)
        # Keras "same" at stride 1 pads dilation*(k-1) in all, the odd pixel at
        # the end, exactly as PyTorch's padding=p does when 2p == dilation*(k-1).
        # At stride > 1 Keras pads asymmetrically: explicit padding, then valid.
        keras_padding, pad = "valid", None
        if padding == "same":
            keras_padding = "same"
        elif any(padding):
            if all(s == 1 for s in strides) and all(
                2 * p == d * (k - 1) for p, k, d in zip(padding, kernel, dilation)
            ):
                keras_padding = "same"
            elif rank == 2:
                pad = _int_or_list(padding)
            else:
                raise _Unmappable(
                    f"Conv1d padding {padding} needs explicit padding, and the "
                    "allowlist has no ZeroPadding1D"
                )
        groups, channels = m.groups, m.in_channels
        if groups > 1 and groups == channels and rank == 2:
            keras = "DepthwiseConv2D"
            args = {"kernel_size": _int_or_list(kernel)}
        else:
            keras = "Conv2D" if rank == 2 else "Conv1D"
            args = {"filters": m.out_channels, "kernel_size": _int_or_list(kernel)}
        if any(s != 1 for s in strides):
            args["strides"] = _int_or_list(strides)
        if keras_padding == "same":
            args["padding"] = "same"
        if keras == "DepthwiseConv2D" and m.out_channels != channels:
            args["depth_multiplier"] = m.out_channels // channels
        if any(d != 1 for d in dilation):
            args["dilation_rate"] = _int_or_list(dilation)
        if keras != "DepthwiseConv2D" and groups > 1:
            args["groups"] = groups
        if m.bias is None:
            args["use_bias"] = False
        if pad is not None:
            padded = (x.shape[0], *(n + 2 * p for n, p in zip(x.shape[1:], padding)))
            comment = None
            if any(s > 1 for s in strides):
                comment = (
                    f"PyTorch pads {_int_or_list(padding)} on every side; Keras "
                    f'"same" with stride {_int_or_list(strides)} would not.'
                )
            x = self.layer(
                f"{path}.pad",
                "ZeroPadding2D",
                [x],
                {"padding": pad},
                shape=padded,
                channels_last=True,
                comment=comment,
            )
        return self.layer(
            path,
            keras,
            [x],
            args,
            shape=shape,
            channels_last=True,
            torch_path=self.pair(node, keras),
        )

    def linear(self, node, m: nn.Linear, x: Tensor, shape) -> Tensor:
        path = node.target
        if x.channels_last:
            raise _Unmappable(
                f"it reads axis {len(x.shape)} of a channels-first {x.shape} tensor, "
                "which Keras holds channels-last"
            )
        args = {"units": m.out_features}
        if m.bias is None:
            args["use_bias"] = False
        weights = comment = None
        if x.flat_from is not None:
            channels, *spatial = x.flat_from
            weights = {
                "kernel": {
                    "from": f"{path}.weight",
                    "transform": [{"unflatten": list(x.flat_from)}, "transpose"],
                }
            }
            comment = (
                f"PyTorch flattened a {tuple(x.flat_from)} map channel-first, Keras "
                f"flattens {(*spatial, channels)} channel-last: reorder the kernel's "
                "input features, then transpose."
            )
        return self.layer(
            path,
            "Dense",
            [x],
            args,
            shape=shape,
            channels_last=False,
            torch_path=self.pair(node, "Dense"),
            weights=weights,
            comment=comment,
        )

    def batch_norm(self, node, m, x: Tensor, shape) -> Tensor:
        if not m.track_running_stats or m.running_mean is None:
            raise _Unmappable(
                "without running statistics it normalises with batch statistics "
                "at inference"
            )
        expected_rank = 3 if isinstance(m, nn.BatchNorm2d) else len(x.shape)
        if len(x.shape) != expected_rank or (len(x.shape) > 1 and not x.channels_last):
            raise _Unmappable(f"its input {x.shape} does not have channels on axis 1")
        args = {}
        # PyTorch's defaults are the layer's (eps 1e-5, Keras momentum 0.9).
        if m.eps != 1e-5:
            args["epsilon"] = _float(m.eps)
        if m.momentum is not None and _float(1 - m.momentum) != 0.9:
            args["momentum"] = _float(1 - m.momentum)  # Keras: 1 - PyTorch's
        if not m.affine:
            args.update(center=False, scale=False)
        return self.layer(
            node.target,
            "BatchNormalization",
            [x],
            args,
            shape=shape,
            channels_last=x.channels_last,
            torch_path=self.pair(node, "BatchNormalization"),
        )

    def layer_norm(self, node, m: nn.LayerNorm, x: Tensor, shape) -> Tensor:
        if len(m.normalized_shape) != 1 or x.channels_last:
            raise _Unmappable(
                f"it normalises over {tuple(m.normalized_shape)} of a "
                f"{'channels-first ' if x.channels_last else ''}{x.shape} tensor; "
                "LayerNormalization here normalises the last Keras axis"
            )
        args = {}
        if m.eps != 1e-5:
            args["epsilon"] = _float(m.eps)
        if m.weight is None:
            args["scale"] = False
        if m.bias is None:
            args["center"] = False
        return self.layer(
            node.target,
            "LayerNormalization",
            [x],
            args,
            shape=shape,
            channels_last=False,
            torch_path=self.pair(node, "LayerNormalization"),
        )

    def embedding(self, node, m: nn.Embedding, x: Tensor, shape) -> Tensor:
        if m.max_norm is not None:
            raise _Unmappable("max_norm renormalises rows as it reads them")
        args = {"input_dim": m.num_embeddings, "output_dim": m.embedding_dim}
        return self.layer(
            node.target,
            "Embedding",
            [x],
            args,
            shape=shape,
            channels_last=False,
            torch_path=self.pair(node, "Embedding"),
        )

    def pool(self, node, kind: str, p: dict, x: Tensor, shape, path) -> Tensor:
        if not x.channels_last or len(x.shape) != 3:
            raise _Unmappable(f"its input {x.shape} is not a channels-first 2-D map")
        if p.get("return_indices"):
            raise _Unmappable("it returns indices")
        if _pair(p.get("dilation", 1)) != (1, 1):
            raise _Unmappable("dilated pooling has no Keras layer")
        if p.get("divisor_override"):
            raise _Unmappable("divisor_override has no Keras layer")
        pool = _pair(p["kernel_size"])
        strides = _pair(p["stride"] or p["kernel_size"])
        padding = _pair(p["padding"])
        floor = tuple(
            (n + 2 * q - k) // s + 1
            for n, k, s, q in zip(x.shape[1:], pool, strides, padding)
        )
        ceil_matters = tuple(shape[1:]) != floor
        args = {"pool_size": _int_or_list(pool)}
        if strides != pool:
            args["strides"] = _int_or_list(strides)
        comment = None
        if kind == "max":
            if any(padding) or p["ceil_mode"]:
                # MaxPool2d pads with -inf and may round up: neither is a
                # ZeroPadding2D + MaxPooling2D.
                keras = "TorchMaxPooling2D"
                if any(padding):
                    args["padding"] = _int_or_list(padding)
                if p["ceil_mode"]:
                    args["ceil_mode"] = True
            else:
                keras = "MaxPooling2D"
        else:
            if ceil_matters:
                raise _Unmappable(
                    "ceil_mode changes its output size, and TorchAveragePooling2D "
                    "has no ceil_mode"
                )
            if any(padding):
                keras = "TorchAveragePooling2D"
                args["padding"] = _int_or_list(padding)
                if not p["count_include_pad"]:
                    args["count_include_pad"] = False
            else:
                keras = "AveragePooling2D"
                if p["ceil_mode"]:
                    comment = "ceil_mode does not change the output size here."
        return self.layer(
            path if node.op == "call_module" else self.base_name(node),
            keras,
            [x],
            args,
            shape=shape,
            channels_last=True,
            torch_path=self.pair(node, keras) if node.op == "call_module" else None,
            comment=comment,
        )

    def adaptive_pool(self, node, kind: str, size, x: Tensor, shape, path) -> Tensor:
        if not x.channels_last or len(x.shape) != 3:
            raise _Unmappable(f"its input {x.shape} is not a channels-first 2-D map")
        height, width = x.shape[1:]
        size = (size, size) if isinstance(size, int) or size is None else tuple(size)
        out = (size[0] or height, size[1] or width)
        base = path if node.op == "call_module" else self.base_name(node)
        pair = node.op == "call_module"
        kind_name = "Average" if kind == "avg" else "Max"
        if out == (1, 1):
            keras = f"Global{kind_name}Pooling2D"
            flatten = self.flatten_after(node, shape)
            if flatten is not None:
                # AdaptiveAvgPool2d(1) + flatten: one global pooling layer.
                result = self.layer(
                    base,
                    keras,
                    [x],
                    shape=(shape[0],),
                    channels_last=False,
                    torch_path=self.pair(node, keras) if pair else None,
                )
                self.fused[flatten] = result
                return result
            return self.layer(
                base,
                keras,
                [x],
                {"keepdims": True},
                shape=shape,
                channels_last=True,
                torch_path=self.pair(node, keras) if pair else None,
            )
        if out == (height, width):
            keras = "Identity"
            comment = (
                f"Adaptive pooling to {out} on a {height}x{width} map: the identity."
            )
            args = {}
        elif height % out[0] == 0 and width % out[1] == 0:
            # Windows tile the map evenly: a plain pooling does the same.
            keras = f"{kind_name}Pooling2D"
            args = {"pool_size": _int_or_list((height // out[0], width // out[1]))}
            comment = None
        else:
            raise _Unmappable(
                f"adaptive pooling of {height}x{width} to {out} uses uneven windows"
            )
        return self.layer(
            base,
            keras,
            [x],
            args,
            shape=shape,
            channels_last=True,
            torch_path=self.pair(node, keras) if pair else None,
            comment=comment,
        )

    def flatten_after(self, node: fx.Node, shape) -> fx.Node | None:
        """The flatten that is this node's only reader, giving (N, C), if any."""
        users = list(node.users)
        if len(users) != 1:
            return None
        user = users[0]
        flattens = (
            user.op == "call_function"
            and user.target is torch.flatten
            or user.op == "call_method"
            and user.target in _FLATTEN_FUNCTIONS
            or user.op == "call_module"
            and isinstance(self.gm.get_submodule(user.target), nn.Flatten)
        )
        if flattens and self.meta_shape(user) == (shape[0],):
            return user
        return None

    def flatten(self, node, x: Tensor, shape, path=None) -> Tensor:
        """flatten / view / reshape: a Flatten, a Reshape, or nothing at all."""
        where = self.where(node)
        base = path or (f"{where}.flatten" if where else "flatten")
        pair = node.op == "call_module"
        if shape == x.shape:
            return x  # a no-op reshape
        if len(shape) == 1 and shape[0] == math.prod(x.shape):
            flat_from = None
            if x.channels_last and math.prod(x.shape[1:]) > 1:
                flat_from = x.shape
            return self.layer(
                base,
                "Flatten",
                [x],
                shape=shape,
                channels_last=False,
                flat_from=flat_from,
                torch_path=self.pair(node, "Flatten", flat_from) if pair else None,
            )
        if not x.channels_last and x.flat_from is None:
            # Row-major on both sides: the same reshape.
            return self.layer(
                path or self.base_name(node),
                "Reshape",
                [x],
                {"target_shape": list(shape)},
                shape=shape,
                channels_last=False,
            )
        raise _Unmappable(
            f"it reshapes a channels-first {x.shape} tensor to {shape}, and Keras "
            "holds that tensor channels-last"
        )

    def softmax(self, node, x: Tensor, dim: int, shape, path=None) -> Tensor:
        axis = _keras_axis(x, dim)
        args = {} if axis == -1 else {"axis": axis}
        pair = node.op == "call_module"
        return self.layer(
            path or self.base_name(node),
            "Softmax",
            [x],
            args,
            shape=shape,
            channels_last=x.channels_last,
            flat_from=x.flat_from,
            torch_path=self.pair(node, "Softmax", x.flat_from) if pair else None,
        )

    def dropout(self, node, p: float, x: Tensor, shape, path=None) -> Tensor:
        pair = node.op == "call_module"
        keras, args = ("Dropout", {"rate": _float(p)}) if p < 1 else ("Identity", {})
        return self.layer(
            path or self.base_name(node),
            keras,
            [x],
            args,
            shape=shape,
            channels_last=x.channels_last,
            flat_from=x.flat_from,
            torch_path=self.pair(node, keras, x.flat_from) if pair else None,
        )

    # functions and methods

    def function(self, node, args, kwargs, shape) -> Tensor:
        target = node.target
        method = target if node.op == "call_method" else None
        base = self.base_name(node)

        if target in _ADD or method in ("add", "add_", "__add__", "__iadd__"):
            if self.arg(args, kwargs, 2, "alpha", 1) != 1:
                raise _Unmappable("add with alpha != 1 has no Keras layer")
            return self.merge(node, "Add", args[:2], shape)
        if target in _MUL or method in ("mul", "mul_", "__mul__", "__imul__"):
            return self.merge(node, "Multiply", args[:2], shape)
        if target in _CAT:
            tensors = self.arg(args, kwargs, 0, "tensors")
            dim = self.arg(args, kwargs, 1, "dim", 0)
            return self.concatenate(node, list(tensors), dim, shape)

        x = self.tensor(args[0] if args else kwargs.get("input"))
        if x.flat_from is not None and not (
            method in _ORDER_AWARE_METHODS or target in _ORDER_AWARE_FUNCTIONS
        ):
            raise _Unmappable(
                f"it reads a flatten of a {x.flat_from} channels-first map, whose "
                "feature order Keras does not share"
            )
        if target in (torch.flatten, torch.reshape) or method in _FLATTEN_FUNCTIONS:
            # Whether it is a Flatten, a Reshape or nothing, the shapes say.
            return self.flatten(node, x, shape)
        if method in _ALIAS_METHODS:
            return x
        if method in ("float", "to", "type_as") and node.meta["tensor_meta"].dtype == (
            torch.float32
        ):
            input_meta = node.all_input_nodes[0].meta.get("tensor_meta")
            if getattr(input_meta, "dtype", None) == torch.float32:
                return x
        activation = _activation_function(node, args, kwargs)
        if activation is not None:
            keras, layer_args = activation
            return self.layer(
                base,
                keras,
                [x],
                layer_args,
                shape=shape,
                channels_last=x.channels_last,
                flat_from=x.flat_from,
            )
        if target in (F.softmax, torch.softmax) or method == "softmax":
            dim = self.arg(args, kwargs, 1, "dim")
            if dim is None:
                raise _Unmappable("softmax without dim picks its axis implicitly")
            return self.softmax(node, x, dim, shape)
        if target in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d):
            if self.arg(args, kwargs, 2, "training", True):
                raise _Unmappable("dropout with training=True is active at inference")
            return self.dropout(node, self.arg(args, kwargs, 1, "p", 0.5), x, shape)
        if _is_stochastic_depth_function(target):
            if self.arg(args, kwargs, 3, "training", True):
                raise _Unmappable("stochastic depth with training=True is active")
            return self.layer(
                base, "Identity", [x], shape=shape, channels_last=x.channels_last
            )
        if target is F.adaptive_avg_pool2d:
            size = self.arg(args, kwargs, 1, "output_size")
            return self.adaptive_pool(node, "avg", size, x, shape, None)
        if target is F.adaptive_max_pool2d:
            if self.arg(args, kwargs, 2, "return_indices", False):
                raise _Unmappable("it returns indices")
            size = self.arg(args, kwargs, 1, "output_size")
            return self.adaptive_pool(node, "max", size, x, shape, None)
        if target in (F.max_pool2d, F.avg_pool2d, torch.max_pool2d, torch.avg_pool2d):
            kind = "max" if target in (F.max_pool2d, torch.max_pool2d) else "avg"
            names = _POOL_PARAMETERS[kind]
            p = {
                n: self.arg(args, kwargs, i + 1, n, d) for i, (n, d) in enumerate(names)
            }
            return self.pool(node, kind, p, x, shape, None)
        if target is torch.mean or method == "mean":
            return self.mean(node, x, args, kwargs, shape)
        raise _Unmappable("no Keras layer in the allowlist does what it does")

    def merge(self, node, keras: str, operands, shape) -> Tensor:
        if len(operands) != 2 or not all(isinstance(t, Tensor) for t in operands):
            raise _Unmappable(
                f"{keras} here combines two tensors of the graph, not a tensor and "
                "a constant or parameter"
            )
        a, b = (self.tensor(t) for t in operands)
        if len(a.shape) != len(b.shape) or (
            len(a.shape) >= 2 and a.channels_last != b.channels_last
        ):
            raise _Unmappable(
                f"its operands {a.shape} and {b.shape} are not laid out alike in Keras"
            )
        if a.flat_from != b.flat_from:
            raise _Unmappable("one operand is a channels-first flatten and one is not")
        return self.layer(
            self.base_name(node),
            keras,
            [a, b],
            shape=shape,
            channels_last=a.channels_last,
            flat_from=a.flat_from,
        )

    def concatenate(self, node, tensors, dim: int, shape) -> Tensor:
        if not all(isinstance(t, Tensor) for t in tensors):
            raise _Unmappable("it joins something that is not a tensor of the graph")
        tensors = [self.tensor(t) for t in tensors]
        first = tensors[0]
        if any(
            len(t.shape) != len(first.shape) or t.channels_last != first.channels_last
            for t in tensors
        ) or any(t.flat_from is not None for t in tensors):
            raise _Unmappable("its inputs are not laid out alike in Keras")
        if len(tensors) == 1:
            return first
        axis = _keras_axis(first, dim)
        args = {} if axis == -1 else {"axis": axis}
        return self.layer(
            self.base_name(node),
            "Concatenate",
            tensors,
            args,
            shape=shape,
            channels_last=first.channels_last,
        )

    def mean(self, node, x: Tensor, args, kwargs, shape) -> Tensor:
        dims = self.arg(args, kwargs, 1, "dim")
        keepdim = self.arg(args, kwargs, 2, "keepdim", False)
        rank = len(x.shape) + 1
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if not x.channels_last or rank != 4 or {d % rank for d in dims} != {2, 3}:
            raise _Unmappable(
                f"a mean over {dims} of a {x.shape} tensor is not a global pooling"
            )
        args = {"keepdims": True} if keepdim else {}
        return self.layer(
            self.base_name(node),
            "GlobalAveragePooling2D",
            [x],
            args,
            shape=shape,
            channels_last=bool(keepdim),
        )


# PyTorch -> Keras tables.

_ADD = (operator.add, operator.iadd, torch.add)
_MUL = (operator.mul, operator.imul, torch.mul)
_CAT = (torch.cat, torch.concat, torch.concatenate)
_DROPOUTS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
# Element-wise modules: a Flatten's feature order passes through them unchanged.
_ORDER_AWARE_MODULES = (
    nn.Linear,
    nn.Identity,
    nn.Flatten,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.ELU,
    nn.SELU,
    nn.Softplus,
    *_DROPOUTS,
)
_ORDER_AWARE_METHODS = (
    "relu",
    "relu_",
    "sigmoid",
    "tanh",
    "flatten",
    "view",
    "reshape",
    *_ALIAS_METHODS,
)
_ORDER_AWARE_FUNCTIONS = (
    torch.flatten,
    torch.reshape,
    F.relu,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.hardswish,
    F.hardsigmoid,
    F.silu,
    F.gelu,
    torch.sigmoid,
    F.sigmoid,
    torch.tanh,
    F.tanh,
    F.elu,
    F.selu,
    F.dropout,
)

_POOL_PARAMETERS = {
    "max": [
        ("kernel_size", None),
        ("stride", None),
        ("padding", 0),
        ("dilation", 1),
        ("ceil_mode", False),
        ("return_indices", False),
    ],
    "avg": [
        ("kernel_size", None),
        ("stride", None),
        ("padding", 0),
        ("ceil_mode", False),
        ("count_include_pad", True),
        ("divisor_override", None),
    ],
}


def _module_pool_args(m) -> dict[str, Any]:
    names = "kernel_size stride padding dilation ceil_mode return_indices".split()
    names += ["count_include_pad", "divisor_override"]
    return {n: getattr(m, n) for n in names if hasattr(m, n)}


def _is_stochastic_depth_function(target) -> bool:
    return getattr(target, "__name__", "") == "stochastic_depth" and getattr(
        target, "__module__", ""
    ).startswith("torchvision")


def _activation_module(m: nn.Module) -> tuple[str, dict] | None:
    """(Keras type, args) for an activation module whose formula Keras has."""
    if isinstance(m, nn.ReLU6):
        return "ReLU", {"max_value": 6}
    if isinstance(m, nn.ReLU):
        return "ReLU", {}
    if isinstance(m, nn.LeakyReLU):
        return "ReLU", {"negative_slope": _float(m.negative_slope)}
    if isinstance(m, nn.GELU):
        if m.approximate != "none":
            raise _Unmappable("Keras's gelu activation is the exact GELU, not tanh's")
        return "Activation", {"activation": "gelu"}
    if isinstance(m, nn.ELU):
        if m.alpha != 1.0:
            raise _Unmappable(f"Keras's elu activation has alpha 1, not {m.alpha}")
        return "Activation", {"activation": "elu"}
    if isinstance(m, nn.Softplus):
        if m.beta != 1.0:
            raise _Unmappable(f"Keras's softplus has beta 1, not {m.beta}")
        return "Activation", {"activation": "softplus"}
    simple = {
        nn.Hardswish: "hard_silu",
        nn.Hardsigmoid: "hard_sigmoid",
        nn.SiLU: "silu",
        nn.Sigmoid: "sigmoid",
        nn.Tanh: "tanh",
        nn.SELU: "selu",
    }
    for kind, activation in simple.items():
        if isinstance(m, kind):
            return "Activation", {"activation": activation}
    return None


def _activation_function(node, args, kwargs) -> tuple[str, dict] | None:
    """(Keras type, args) for a functional activation (F.relu, x.sigmoid(), ...)."""
    target = node.target
    if node.op == "call_method":
        simple = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "tanh": "tanh"}
        if target not in simple:
            return None
        return (
            ("ReLU", {})
            if target.startswith("relu")
            else (
                "Activation",
                {"activation": simple[target]},
            )
        )
    if target in (F.relu, torch.relu, torch.relu_):
        return "ReLU", {}
    if target is F.relu6:
        return "ReLU", {"max_value": 6}
    if target is F.leaky_relu:
        slope = kwargs.get("negative_slope", args[1] if len(args) > 1 else 0.01)
        return "ReLU", {"negative_slope": _float(slope)}
    if target is F.gelu:
        if kwargs.get("approximate", "none") != "none":
            raise _Unmappable("Keras's gelu activation is the exact GELU, not tanh's")
        return "Activation", {"activation": "gelu"}
    if target is F.elu:
        alpha = kwargs.get("alpha", args[1] if len(args) > 1 else 1.0)
        if alpha != 1.0:
            raise _Unmappable(f"Keras's elu activation has alpha 1, not {alpha}")
        return "Activation", {"activation": "elu"}
    simple = {
        F.hardswish: "hard_silu",
        F.hardsigmoid: "hard_sigmoid",
        F.silu: "silu",
        torch.sigmoid: "sigmoid",
        F.sigmoid: "sigmoid",
        torch.tanh: "tanh",
        F.tanh: "tanh",
        F.selu: "selu",
    }
    if target in simple:
        return "Activation", {"activation": simple[target]}
    return None


def _keras_axis(x: Tensor, dim: int) -> int:
    """A PyTorch dim (batch included) -> the Keras axis of the same data."""
    rank = len(x.shape) + 1
    dim = dim % rank
    if dim == 0:
        raise _Unmappable("it works along the batch axis")
    if x.channels_last:
        keras = rank - 1 if dim == 1 else dim - 1
    else:
        keras = dim
    return -1 if keras == rank - 1 else keras


# --- YAML -------------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_NOT_PLAIN = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def _yaml(value) -> str:
    """One value in YAML flow style, quoting any string that would read otherwise."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _NOT_PLAIN:
            return value
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_yaml(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as YAML")


def _block_scalar(value: str) -> str:
    """A string as a block-context value: plain where YAML reads it back as is."""
    if (
        re.fullmatch(r"[A-Za-z_][^\n#'\"]*", value)
        and ": " not in value
        and not value.endswith((":", " "))
        and value.lower() not in _NOT_PLAIN
    ):
        return value
    return _yaml(value)


def _layer_yaml(layer: Layer, previous: str | None) -> list[str]:
    entry: dict[str, Any] = {"name": layer.name, "keras": layer.keras}
    if layer.torch is not None:
        entry["torch"] = layer.torch
    # The default input is the previous layer: name inputs only where it is not.
    if layer.inputs != [previous] or previous is None:
        entry["inputs"] = layer.inputs
    if layer.args:
        entry["args"] = layer.args
    lines = [f"  # {line}" for line in _wrap(layer.comment)] if layer.comment else []
    if not layer.weights:
        return [*lines, f"  - {_yaml(entry)}"]
    # A mapped weight reads better on its own line, as in the committed specs.
    first, *rest = entry.items()
    lines.append(f"  - {first[0]}: {_yaml(first[1])}")
    lines += [f"    {key}: {_yaml(value)}" for key, value in rest]
    lines.append("    weights:")
    lines += [f"      {slot}: {_yaml(spec)}" for slot, spec in layer.weights.items()]
    return lines


def _wrap(text: str, width: int = 84) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def render(
    drafter: _Drafter,
    *,
    input_shapes: list[tuple[int, ...]],
    name: str,
    factory: str,
    command: str,
    model: nn.Module,
    ignore: list[str],
) -> str:
    shapes = " and ".join("x".join(map(str, s)) for s in input_shapes)
    kind = type(model).__name__
    summary = f"{kind} ({factory}), drafted by torch2keras scaffold."
    lines = [
        f"# Drafted by torch2keras {__version__} scaffold from a torch.fx trace of",
        f"# {factory} on a {shapes} input:",
        f"#   {command}",
        "# Review it like code before you compile it: names, comments and blocks",
        "# for repeated structure are yours to improve.",
    ]
    if drafter.unmapped:
        lines.append(
            f"# {len(drafter.unmapped)} layer(s) marked UNMAPPED need a hand mapping; "
            "`torch2keras validate` names each."
        )
    lines += [
        "spec: 1",
        f"name: {_yaml(name)}",
        f"summary: {_block_scalar(summary[:200])}",
        "source:",
        f"  model: {_block_scalar(factory)}",
        "inputs:",
    ]
    for input_name, shape, dtype in drafter.inputs:
        spec: dict[str, Any] = {"shape": list(shape)}
        if dtype != "float32":
            spec["dtype"] = dtype
        layout = (
            "  # Keras layout (channels last), batch omitted"
            if len(shape) >= 2 and dtype == "float32"
            else ""
        )
        lines.append(f"  {input_name}: {_yaml(spec)}{layout}")
    lines.append("layers:")
    previous = drafter.inputs[0][0] if len(drafter.inputs) == 1 else None
    for layer in drafter.layers:
        lines += _layer_yaml(layer, previous)
        previous = layer.name
    lines.append(f"outputs: {_yaml(drafter.outputs)}")
    if ignore:
        lines.append("# Keys of modules forward() never calls on this input.")
        lines.append("ignore:")
        lines += [f"  - {_yaml(key)}" for key in ignore]
    return "\n".join(lines) + "\n"


def _unused_keys(model: nn.Module, used_modules: set[str]) -> list[str]:
    """State-dict keys that belong to no module (or attribute) forward() used."""
    unused = []
    for key in model.state_dict():
        owner = key.rpartition(".")[0]
        parts = key.split(".")
        prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
        if not (prefixes & used_modules) and owner not in used_modules:
            unused.append(key)
    return unused


# --- entry points --------------------------------------------------------------


def default_name(factory: str) -> str:
    """torchvision.models:resnet18 -> resnet18, examples.seed:SeedCNN -> seed_cnn."""
    attribute = factory.rpartition(":")[2]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", attribute)
    return identifier(snake.lower())


def command_line(
    factory: str, shapes, dtypes: list[str], name: str | None, output: str | None
) -> str:
    parts = ["torch2keras scaffold", factory]
    parts += [f"--input-shape {','.join(map(str, s))}" for s in shapes]
    if any(d != "float32" for d in dtypes):
        parts += [f"--input-dtype {d}" for d in dtypes]
    if name:
        parts.append(f"--name {name}")
    if output:
        parts.append(f"-o {output}")
    return " ".join(parts)


def draft(
    factory: str,
    input_shapes: list[tuple[int, ...]],
    input_dtypes: list[str] | None = None,
    *,
    name: str | None = None,
    path: str = "<scaffold>",
    command: str | None = None,
    model: nn.Module | None = None,
) -> Draft:
    """Trace the model `factory` builds and draft its spec (nothing is written).

    `path` is the file name the draft's diagnostics show; `model` replaces
    building one from `factory` (tests pass a model defined on the spot).
    """
    dtypes = list(input_dtypes or ["float32"])
    if len(dtypes) == 1:
        dtypes *= len(input_shapes)
    if len(dtypes) != len(input_shapes):
        raise ScaffoldError(
            f"{len(input_dtypes)} --input-dtype for {len(input_shapes)} inputs"
        )
    for dtype in dtypes:
        if dtype not in DTYPES:
            raise ScaffoldError(
                f"input dtype {dtype!r} is not one of {', '.join(DTYPES)}"
            )
    if model is None:
        model = build_model(factory)
    model = model.eval()
    gm, untraceable = trace(model)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(input_shapes):
        raise ScaffoldError(
            f"{type(model).__name__}.forward takes {len(placeholders)} input(s) "
            f"({', '.join(n.target for n in placeholders)}); give one --input-shape "
            "for each"
        )
    examples = example_inputs(input_shapes, dtypes)
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*examples)
    except Exception as exc:
        shapes = ", ".join(str(tuple(s)) for s in input_shapes)
        raise ScaffoldError(
            f"running {type(model).__name__} on an input of shape {shapes} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None

    drafter = _Drafter(gm, untraceable)
    drafter.run(dtypes)
    name = name or default_name(factory)
    text = render(
        drafter,
        input_shapes=input_shapes,
        name=name,
        factory=factory,
        command=command or command_line(factory, input_shapes, dtypes, name, None),
        model=model,
        ignore=_unused_keys(model, drafter.used_modules),
    )
    return Draft(text, tuple(drafter.unmapped), check(text, path))


def check(text: str, path: str) -> tuple[Diagnostic, ...]:
    """What validate says of the draft: placeholders, and anything scaffold got wrong."""
    try:
        doc = load.load(path, text.encode("utf-8"))
        spec = schema.validate(doc)
        _, warnings = resolve.resolve(doc, spec)
    except SpecError as exc:
        return exc.diagnostics
    return tuple(warnings)


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) < 1 or any(n <= 0 for n in shape):
        raise ScaffoldError(
            f"--input-shape {text!r}: give PyTorch's shape with the batch, e.g. 1,3,224,224"
        )
    return shape


def main(args) -> int:
    """The `scaffold` subcommand (argparse namespace from cli.py); returns the exit code."""
    from . import write
    from .cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, _shown

    try:
        shapes = [parse_shape(text) for text in args.input_shape]
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    name = args.name or default_name(args.model)
    if identifier(name) != name:
        print(
            f"error: --name {name!r} is not a valid spec name (try {identifier(name)!r})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    output = Path(args.output or f"specs/{name}.yaml")
    if output.exists() and not args.force:
        print(
            f"error: {_shown(output)} exists; pass --force to replace it",
            file=sys.stderr,
        )
        return EXIT_USAGE
    dtypes = args.input_dtype or ["float32"]
    command = command_line(args.model, shapes, dtypes, args.name, args.output)
    try:
        result = draft(
            args.model,
            shapes,
            dtypes,
            name=name,
            path=_shown(output),
            command=command,
        )
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    write.write_atomic(output, result.text)
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)
    layers = sum(line.startswith("  - ") for line in result.text.splitlines())
    print(
        f"wrote {_shown(output)}: {layers} layers"
        + (f", {len(result.unmapped)} UNMAPPED" if result.unmapped else "")
    )
    return EXIT_FINDINGS if any(d.is_error for d in result.diagnostics) else EXIT_OK
