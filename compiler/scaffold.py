"""`torch2keras scaffold`: draft a spec from a PyTorch model by tracing it.

    torch2keras scaffold torchvision.models:resnet18 --input-shape 1,3,224,224

The model is traced, every tensor's shape is recorded on one example input, and
each traced op becomes a spec layer (sometimes two: a ZeroPadding2D before a
convolution). The draft is a flat layer list, one layer per line; a layer that
comes from a module is paired with it (`torch: PATH`). An op with no Keras
layer in the allowlist becomes a placeholder, `keras: 'UNMAPPED <op> ...'`,
which `validate` rejects with a message naming the op and where it is called:
nothing is silently dropped. The draft then goes through load, schema and
resolve, and whatever they report is reported with it.

Why torch.fx (`symbolic_trace`) and not torch.export:
- fx keeps the graph at the level the model's author wrote it. A module call
  stays one `call_module` node naming the module (the spec's `torch:` path),
  and its settings (kernel size, padding, eps, ceil_mode, ...) are read off
  the module object itself; functional code stays `torch.flatten`,
  `operator.add`, `torch.cat`. Each maps onto one Keras layer.
- torch.export lowers everything to ATen ops (`aten.convolution`,
  `_native_batch_norm_legit_no_training`, `addmm`, decomposed activations),
  keeps modules only as metadata and runs dynamo (seconds per model): we
  would have to reassemble what fx hands over as is.
- fx's weakness is data-dependent control flow (`if x.sum() > 0:`). A
  submodule fx cannot trace is retried as an opaque leaf and becomes one
  placeholder, so one odd block costs one hand-mapped line, not the draft.
  Only an untraceable top-level `forward` is an error.
- Shapes come from fx's ShapeProp: the traced graph runs once on the example
  input and every node records its output shape and dtype.

Layout: a float input of rank >= 3 is channels-first in PyTorch and
channels-last in Keras (as parity and verify lay it out). Every drafted tensor
records whether Keras holds it that way; that decides conv/pool/concat axes,
and whether a Flatten reorders features (then the Dense reading it gets an
explicit `unflatten` kernel mapping). A permute that only moves the channel
axis to or from the end (ConvNeXt's, or an Embedding's output fed to a Conv1d)
changes that record, not the graph.

Attention is drafted a module at a time, not op by op. nn.MultiheadAttention,
nn.TransformerEncoderLayer and nn.TransformerEncoder are fx leaves already
(torch.nn modules), and the tracer makes Hugging Face's BertModel one (fx
cannot trace its forward: transformers 5 has no fx tracer, and its decorators
and mask builder need real tensors; a BertModel scaffolded on its own is one
call of it, _root_call). Each call becomes the Keras layer sequence the
hand-written specs use, every layer paired with its submodule's path
(_Drafter.encoder_layer, _Drafter.draft_bert). Why not pattern-match BERT's
matmul/softmax subgraph: these modules' forward() carry fast paths, caches
and mask builders that change between PyTorch and transformers releases,
while their submodules and configuration (norm_first, activation, heads,
eps) are the stable contract, and a whole-module expansion maps every key by
construction. The padding mask is the one piece of forward() code between
modules that must be understood: its ops are run on a 0/1 input (0..3 if it
is an integer input, which may be token ids) and must give PyTorch's key
padding mask (True where the input is 0) or, for BERT,
the input's own 1-for-tokens meaning, which is Keras's attention_mask=
(_Drafter.mask_source). What is checked is what the ops compute, not how.

Limits: only tensors with the input's batch axis are mapped; parameters read
in forward() outside a module call (class tokens; a per-channel layer scale
multiplying a map is mapped, as a 1x1 depthwise kernel), shared
weights (a module called twice) and ops with several outputs (chunk, split)
become placeholders, except a batch-first nn.LSTM/GRU's tuple, whose
`output` and last layer's h_n[-1] map (see _Drafter.rnn), and attention's.
Attention maps for batch-first modules on (length, features) tensors, which
means token inputs (a float (batch, length, features) input is taken as a
channels-first 1-D map); with a key padding mask from an input that is 1 for
a token and 0 for padding, or none; not with attn_mask, is_causal, separate
kdim/vdim projections, add_bias_kv or the attention weights read. Attention
written as functions (F.scaled_dot_product_attention, matmul + softmax) is
not recognised: its ops become placeholders. Of Hugging Face models only
BertModel (absolute positions, encoder, no position_ids or head_mask; without
token_type_ids, type 0's row is added to the position table) is drafted. Repeated structure is not folded into blocks.

This module imports torch (through frameworks.import_torch_first), never keras.
"""

from __future__ import annotations

import importlib
import inspect
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

DTYPES = {"float32": torch.float32, "int32": torch.int32, "int64": torch.int64}


class ScaffoldError(Exception):
    """The model could not be built, traced or run; the message says why."""


class _Unmappable(Exception):
    """This op gets a placeholder; the message says why, for the draft."""


@dataclass(frozen=True)
class Tensor:
    """A PyTorch tensor, as the drafted Keras graph holds it."""

    layer: str  # the spec layer (or input) whose output it is
    shape: tuple[int, ...] | None  # PyTorch shape, batch omitted; None: unknown
    channels_last: bool = False  # Keras holds it with PyTorch's axis 1 moved last
    # Set on a Flatten of a channels-last (C, H, W) map with H*W > 1, and on
    # element-wise results of it: that map's PyTorch shape. Keras's features
    # are then in (H, W, C) order, PyTorch's in (C, H, W) order.
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
    shape: tuple[int, ...] | None = None  # Keras output shape, batch omitted


@dataclass(frozen=True)
class _RNNRun:
    """A drafted nn.LSTM/GRU call: what its tuple's parts map to in Keras."""

    module: nn.Module
    # The last Keras layer returns the whole sequence (PyTorch's `output`)
    # when forward() reads it, else its last step (PyTorch's h_n[-1]); the
    # one it does not return is None.
    sequence: Tensor | None
    last: Tensor | None
    why_not_last: str  # why h_n[-1] has no Keras tensor, when `last` is None
    final: Tensor  # the last Keras layer's output, whichever it is

    @property
    def states(self) -> int:
        """h_n's first axis: one row per layer and direction."""
        return self.module.num_layers * (2 if self.module.bidirectional else 1)


@dataclass(frozen=True)
class Draft:
    """What scaffold produced: the spec text and what validating it found."""

    text: str
    unmapped: tuple[str, ...]  # one line per placeholder: "name: what: why"
    diagnostics: tuple[Diagnostic, ...]  # load/schema/resolve of the draft


# --- building and tracing ----------------------------------------------------


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
    # torchvision's StochasticDepth is the identity at inference. As a leaf it
    # is one Identity layer paired with its module, not a traced function call.
    kind = type(module)
    return kind.__name__ == "StochasticDepth" and kind.__module__.startswith(
        "torchvision"
    )


def _is_bert_model(module: nn.Module) -> bool:
    # Hugging Face's BertModel: fx cannot trace its forward (transformers 5
    # has no fx tracer; its decorators and mask builder need real tensors),
    # so it is a leaf, drafted whole by _Drafter.bert.
    kind = type(module)
    return kind.__name__ == "BertModel" and kind.__module__.startswith(
        "transformers.models.bert"
    )


def _composite_kind(module: nn.Module) -> str | None:
    """Which of the modules scaffold drafts whole `module` is, if any (see
    _Drafter.composite): fx keeps torch.nn's as leaves already."""
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, nn.TransformerEncoderLayer):
        return "encoder_layer"
    if isinstance(module, nn.TransformerEncoder):
        return "encoder"
    if _is_bert_model(module):
        return "bert"
    return None


# forward() parameters of those modules that take an attention mask, and what
# it holds: "padding" is PyTorch's key padding mask (True, or -inf added,
# where a key is padding); "attend" is Hugging Face's attention_mask (1 for a
# token, 0 for padding), which is what Keras's attention_mask= takes. Any other
# mask (attn_mask, src_mask, is_causal) must be left at its default.
_MASKS = {
    "attention": {"key_padding_mask": "padding"},
    "encoder_layer": {"src_key_padding_mask": "padding"},
    "encoder": {"src_key_padding_mask": "padding"},
    "bert": {"attention_mask": "attend"},
}
_UNSUPPORTED_MASKS = ("attn_mask", "src_mask", "mask", "is_causal")


@dataclass(frozen=True)
class _Composite:
    """A drafted call of a module scaffold drafts whole: its result's parts."""

    parts: dict[Any, Tensor | str]  # index or attribute -> its tensor, or why none
    returns: tuple[Tensor, ...]  # what forward() returns, as the draft's outputs
    final: Tensor  # what a placeholder for an unmapped part reads


class _Tracer(fx.Tracer):
    """fx's tracer, with extra leaves, remembering which module a failure came from."""

    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.leaves or _is_stochastic_depth(m) or _is_bert_model(m):
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:  # the innermost module raises first
                self.failed_in = self.path_of_module(m)
            raise


def trace(model: nn.Module, inputs: int = 1) -> tuple[fx.GraphModule, dict[str, str]]:
    """fx-trace `model`; a submodule fx cannot trace is made a leaf and retried.

    Returns the graph module and, for each module made a leaf that way, why.
    A model that is itself one of the modules scaffold expands whole (see
    _COMPOSITES) is not traced: the graph is one call of it on `inputs` inputs.
    """
    if _composite_kind(model) is not None:
        return _root_call(model, inputs), {}
    untraceable: dict[str, str] = {}
    while True:
        tracer = _Tracer(set(untraceable))
        try:
            graph = tracer.trace(model)
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            reason = f"{type(exc).__name__}: {first_line}".rstrip(": ")
            path = tracer.failed_in
            if not path or path in untraceable:
                raise ScaffoldError(
                    f"torch.fx cannot trace {type(model).__name__}.forward "
                    f"({reason}); scaffold needs a forward without data-dependent "
                    "control flow"
                ) from None
            untraceable[path] = f"torch.fx cannot trace its forward ({reason})"
            continue
        return fx.GraphModule(tracer.root, graph), untraceable


class _Root(nn.Module):
    """Holds a model scaffold drafts as one known module call (a BertModel,
    whose forward fx cannot trace; an nn.TransformerEncoderLayer). The
    drafter reads the path ROOT as the model itself, so no `torch:` path or
    key gets a prefix."""

    ROOT = "model"

    def __init__(self, model: nn.Module):
        super().__init__()
        self.add_module(self.ROOT, model)


def _root_call(model: nn.Module, inputs: int) -> fx.GraphModule:
    """A graph of one call of `model` on its first `inputs` forward() parameters."""
    parameters = list(inspect.signature(model.forward).parameters.values())
    positional = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) < inputs:
        raise ScaffoldError(
            f"{type(model).__name__}.forward takes {len(positional)} input(s) "
            f"({', '.join(positional)}), not {inputs}"
        )
    graph = fx.Graph()
    placeholders = tuple(graph.placeholder(name) for name in positional[:inputs])
    graph.output(graph.call_module(_Root.ROOT, placeholders))
    gm = fx.GraphModule(_Root(model), graph)
    gm.meta[_ROOT_CALL] = True
    return gm


_ROOT_CALL = "torch2keras_root_call"  # gm.meta key: the graph is _root_call's


def example_inputs(shapes, dtypes: list[str]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    examples = []
    for shape, dtype in zip(shapes, dtypes):
        if dtype == "float32":
            examples.append(torch.randn(shape, generator=generator))
        else:
            # Index 0 is valid for every embedding table.
            examples.append(torch.zeros(shape, dtype=DTYPES[dtype]))
    return examples


# --- names ----------------------------------------------------------------------


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


def default_name(factory: str) -> str:
    """torchvision.models:resnet18 -> resnet18, examples.seed:SeedCNN -> seed_cnn."""
    attribute = factory.rpartition(":")[2]
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", attribute)
    return identifier(snake.lower())


def _name(target: Any) -> str:
    return getattr(target, "__name__", None) or "op"


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


# --- small conversions ----------------------------------------------------------


def _pair(value) -> tuple[int, ...]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _int_or_list(values):
    """(3, 3) -> 3, (3, 5) -> [3, 5]: how the committed specs write sizes."""
    values = tuple(values)
    return values[0] if len(set(values)) == 1 else list(values)


def _float(value: float) -> float:
    # 1 - 0.01 reads 0.99, not 0.9899999999999999.
    return float(f"{value:.12g}")


def _keras_axis(x: Tensor, dim: int) -> int:
    """A PyTorch dim (batch included) -> the Keras axis holding the same data."""
    rank = len(x.shape) + 1
    dim = dim % rank
    if dim == 0:
        raise _Unmappable("it works along the batch axis")
    axis = (rank - 1 if dim == 1 else dim - 1) if x.channels_last else dim
    return -1 if axis == rank - 1 else axis


def _elementwise_module(m: nn.Module) -> tuple[str, dict] | None:
    """(Keras type, args) for a module that maps each value on its own."""
    if isinstance(m, nn.ReLU6):
        return "ReLU", {"max_value": 6}
    if isinstance(m, nn.ReLU):
        return "ReLU", {}
    if isinstance(m, nn.LeakyReLU):
        return "ReLU", {"negative_slope": _float(m.negative_slope)}
    if isinstance(m, nn.GELU):
        return _gelu(m.approximate)
    if isinstance(m, nn.ELU):
        return _elu(m.alpha)
    if isinstance(m, nn.Softplus) and m.beta != 1:
        raise _Unmappable(f"Keras's softplus has beta 1, not {m.beta}")
    if isinstance(m, nn.Identity) or _is_stochastic_depth(m):
        return "Identity", {}
    if isinstance(m, _DROPOUTS):
        return _dropout(m.p)
    for kind, activation in _ACTIVATION_MODULES.items():
        if isinstance(m, kind):
            return "Activation", {"activation": activation}
    return None


def _elementwise_function(node: fx.Node, args, kwargs) -> tuple[str, dict] | None:
    """(Keras type, args) for a function or method that maps each value on its own."""
    target = node.target

    def arg(index, name, default):
        return kwargs.get(name, args[index] if len(args) > index else default)

    if node.op == "call_method":
        target = _METHODS.get(target)
    if target in (F.relu, torch.relu, torch.relu_):
        return "ReLU", {}
    if target is F.relu6:
        return "ReLU", {"max_value": 6}
    if target is F.leaky_relu:
        return "ReLU", {"negative_slope": _float(arg(1, "negative_slope", 0.01))}
    if target is F.gelu:
        return _gelu(kwargs.get("approximate", "none"))
    if target is F.elu:
        return _elu(arg(1, "alpha", 1.0))
    if target in (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d):
        if arg(2, "training", True):
            raise _Unmappable("dropout with training=True is active at inference")
        return _dropout(arg(1, "p", 0.5))
    if _is_stochastic_depth_function(target):
        if arg(3, "training", True):
            raise _Unmappable("stochastic depth with training=True is active")
        return "Identity", {}
    if target in _ACTIVATION_FUNCTIONS:
        return "Activation", {"activation": _ACTIVATION_FUNCTIONS[target]}
    return None


def _layer_norm_args(m: nn.LayerNorm, x: Tensor) -> dict[str, Any]:
    if len(m.normalized_shape) != 1 or x.channels_last:
        raise _Unmappable(
            f"it normalises over {tuple(m.normalized_shape)} of a "
            f"{'channels-first ' if x.channels_last else ''}{x.shape} tensor, "
            "and LayerNormalization here normalises the last Keras axis"
        )
    args: dict[str, Any] = {}
    if m.eps != 1e-5:
        args["epsilon"] = _float(m.eps)
    if m.weight is None:
        args["scale"] = False
    if m.bias is None:
        args["center"] = False
    return args


def _gelu(approximate: str):
    if approximate != "none":
        raise _Unmappable("Keras's gelu activation is the exact GELU, not tanh's")
    return "Activation", {"activation": "gelu"}


def _elu(alpha: float):
    if alpha != 1:
        raise _Unmappable(f"Keras's elu activation has alpha 1, not {alpha}")
    return "Activation", {"activation": "elu"}


def _dropout(p: float):
    # The identity at inference either way; rate 1 is not a valid Keras rate.
    return ("Dropout", {"rate": _float(p)}) if p < 1 else ("Identity", {})


def _permutation(node: fx.Node, args, kwargs, rank: int) -> tuple[int, ...]:
    """The full permutation a permute or transpose call applies (batch included)."""
    if node.target in (torch.transpose, "transpose"):
        first = kwargs.get("dim0", args[1] if len(args) > 1 else None)
        second = kwargs.get("dim1", args[2] if len(args) > 2 else None)
        dims = list(range(rank))
        dims[first % rank], dims[second % rank] = second % rank, first % rank
        return tuple(dims)
    dims = kwargs.get("dims", args[1:])
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]  # x.permute((0, 2, 3, 1))
    return tuple(d % rank for d in dims)


def _reads(node: fx.Node, index) -> list[fx.Node]:
    """The `node[index]` nodes that something reads (fx keeps unread ones)."""
    return [
        user
        for user in node.users
        if user.op == "call_function"
        and user.target is operator.getitem
        and user.args[1] == index
        and user.users
    ]


def _is_last_row(index, rows: int) -> bool:
    """Whether `index` picks h_n's last row (-1, or rows - 1)."""
    return (
        isinstance(index, int)
        and not isinstance(index, bool)
        and index % rows == rows - 1
    )


def _index_text(index) -> str:
    if isinstance(index, slice):
        parts = [index.start, index.stop] + ([index.step] if index.step else [])
        return ":".join("" if p is None else str(p) for p in parts)
    return str(index)


def _is_stochastic_depth_function(target) -> bool:
    return getattr(target, "__name__", "") == "stochastic_depth" and getattr(
        target, "__module__", ""
    ).startswith("torchvision")


_DROPOUTS = (
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
# Keras activation names whose formula is the PyTorch module's or function's.
_ACTIVATION_MODULES = {
    nn.Hardswish: "hard_silu",
    nn.Hardsigmoid: "hard_sigmoid",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.SELU: "selu",
    nn.Softplus: "softplus",  # beta 1; its threshold only avoids overflow
}
_ACTIVATION_FUNCTIONS = {
    F.hardswish: "hard_silu",
    F.hardsigmoid: "hard_sigmoid",
    F.silu: "silu",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    F.selu: "selu",
}
# Tensor methods that are one of the functions above.
_METHODS = {
    "relu": F.relu,
    "relu_": F.relu,
    "sigmoid": torch.sigmoid,
    "sigmoid_": torch.sigmoid,
    "tanh": torch.tanh,
    "tanh_": torch.tanh,
}
_ADD = (operator.add, operator.iadd, torch.add, "add", "add_")
_MUL = (operator.mul, operator.imul, torch.mul, "mul", "mul_")
_CAT = (torch.cat, torch.concat, torch.concatenate)
_RESHAPES = (torch.flatten, torch.reshape, "flatten", "view", "reshape")
_PERMUTES = (torch.permute, torch.transpose, "permute", "transpose")
# Methods that return their input's values unchanged: no layer at all.
_ALIASES = ("contiguous", "clone", "detach")
# Parameters after the input, in order, of F.max_pool2d and F.avg_pool2d.
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
# PyTorch recurrent modules -> the Keras layer type of one of their layers
# (compiler/layers.py reads the keys weight_ih_l{torch_layer}..., for a
# bidirectional one also the _reverse keys, inside Bidirectional).
_RNNS = {nn.LSTM: "LSTM", nn.GRU: "GRU"}
_C_N = (
    "it reads c_n, the LSTM's final cell state, which the Keras LSTM layer here "
    "does not return"
)
# What the resolver's flatten-order lint (W500) looks through.
_ORDER_PRESERVING = ("Dropout", "ReLU", "Activation")


# Hugging Face hidden_act values -> the Keras activation of the same formula
# ("gelu" is the exact, erf GELU; "gelu_new" is tanh's, which Keras lacks).
_HF_ACTIVATIONS = {
    "gelu": "gelu",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
    "tanh": "tanh",
}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _bind(module: nn.Module, node: fx.Node) -> dict[str, Any]:
    """A module call's arguments by forward() parameter name, defaults included."""
    try:
        bound = inspect.signature(module.forward).bind(*node.args, **node.kwargs)
    except TypeError as exc:
        raise _Unmappable(f"its arguments do not fit its forward(): {exc}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


# --- the graph walk ------------------------------------------------------------


class _Drafter:
    """Walks the traced graph in order, drafting the layers of each node."""

    def __init__(self, gm: fx.GraphModule, untraceable: dict[str, str]):
        self.gm = gm
        self.untraceable = untraceable
        self.inputs: list[tuple[str, tuple[int, ...], str]] = []  # name, shape, dtype
        self.layers: list[Layer] = []
        self.outputs: list[str] = []
        self.names: set[str] = set()
        self.values: dict[fx.Node, Tensor | None] = {}
        self.unmapped: list[str] = []
        self.used_modules: set[str] = set()  # modules and attributes forward() read
        self.pruned_keys: set[str] = set()  # keys of drafted layers no output reads
        self.batch: int | None = None
        # verify compares a module's last call: a weightless module called more
        # than once is paired on its last call only.
        self.last_call = {n.target: n for n in gm.graph.nodes if n.op == "call_module"}
        self.paired_weights: set[str] = set()
        # Flatten nodes whose work the global pooling before them already did.
        self.fused: dict[fx.Node, Tensor] = {}
        # An LSTM/GRU returns a tuple: the nodes that hold it or a part of it
        # (the tuple, LSTM's (h_n, c_n), h_n) -> the drafted run and which part.
        self.rnn_parts: dict[fx.Node, tuple[_RNNRun, str]] = {}
        # Calls of modules drafted whole (attention, transformer layers,
        # BertModel) -> their parts; a call that failed -> its placeholder.
        self.composites: dict[fx.Node, _Composite | Tensor] = {}
        # The Reshape to (1, S) of each input a Keras attention mask reads.
        self.masks: dict[str, Tensor] = {}
        # Ops that only compute a mask for those calls: no layers of their own.
        self.root = bool(gm.meta.get(_ROOT_CALL))
        self.mask_only = self.mask_only_nodes()

    def run(self, dtypes: list[str]) -> None:
        placeholders = [n for n in self.gm.graph.nodes if n.op == "placeholder"]
        for node, dtype in zip(placeholders, dtypes):
            self.input(node, dtype)
        for node in self.gm.graph.nodes:
            if node.op == "output":
                self.output(node)
            elif node.op == "get_attr":
                # A parameter read outside a module call: what reads it has no
                # Keras layer and becomes a placeholder.
                self.used_modules.add(node.target)
                self.values[node] = None
            elif node.op != "placeholder":
                self.values[node] = self.node(node)

    def prune(self, model: nn.Module) -> None:
        """Drop the layers no output reads: parts of a module drafted whole that
        forward() never uses (BERT's pooler when only last_hidden_state is
        read). Keras would leave them out of the model, and their weights would
        have nowhere to go; their PyTorch keys go to ignore: instead."""
        by_name = {layer.name: layer for layer in self.layers}
        # Placeholders stay, read or not: each is a finding the user must see.
        placeholders = [n for n, layer in by_name.items() if _is_placeholder(layer)]
        live, stack = set(), [*self.outputs, *placeholders]
        while stack:
            name = stack.pop()
            if name in by_name and name not in live:
                live.add(name)
                stack.extend(by_name[name].inputs)

        def keys(layer: Layer) -> set[str]:
            found = set()
            if layer.torch:
                module = model.get_submodule(layer.torch)
                found.update(f"{layer.torch}.{key}" for key in module.state_dict())
            for mapping in (layer.weights or {}).values():
                sources = mapping["from"]
                found.update([sources] if isinstance(sources, str) else sources)
            return found

        dead = [layer for layer in self.layers if layer.name not in live]
        read = set().union(*(keys(by_name[name]) for name in live))
        self.pruned_keys = set().union(*(keys(layer) for layer in dead)) - read
        self.layers = [layer for layer in self.layers if layer.name in live]

    def input(self, node: fx.Node, dtype: str) -> None:
        shape = tuple(node.meta["tensor_meta"].shape)
        self.batch = self.batch or shape[0]
        # A float input of rank >= 3 is an image or a sequence: channels-last in Keras.
        tensor = Tensor(
            self.unique(node.target), shape[1:], len(shape) >= 3 and dtype == "float32"
        )
        self.inputs.append((tensor.layer, tensor.keras_shape, dtype))
        self.values[node] = tensor

    def output(self, node: fx.Node) -> None:
        results = node.args[0]
        if isinstance(results, dict):
            results = list(results.values())
        elif not isinstance(results, (tuple, list)):
            results = [results]
        expanded = []
        for result in results:
            composite = self.composites.get(result)
            if isinstance(composite, _Composite):
                expanded += composite.returns  # a tuple or ModelOutput, returned whole
            elif isinstance(composite, Tensor):
                expanded.append(composite)
            else:
                expanded.append(result)
        for result in expanded:
            value = result
            if not isinstance(result, Tensor):
                value = self.values.get(result) if isinstance(result, fx.Node) else None
            if value is None:
                raise ScaffoldError(
                    f"forward() returns {result!r}, which is not a tensor; scaffold "
                    "drafts models that return a tensor or a tuple of tensors"
                )
            if value.flat_from is not None:
                value = self.placeholder(
                    f"{value.layer}.output",
                    f"a flatten of a {value.flat_from} channels-first map that "
                    "forward() returns",
                    "Keras flattens channels-last, so this output's feature order "
                    "is not PyTorch's",
                    [value],
                    value.shape,
                )
            self.outputs.append(value.layer)

    def node(self, node: fx.Node) -> Tensor | None:
        """Draft the layers of one op; a placeholder if it cannot be mapped."""
        if "tensor_meta" not in node.meta:
            return None  # a Python value (x.size(0), x.shape): nothing to draft
        if node in self.fused:
            return self.fused[node]
        if node in self.mask_only:
            return None  # drafted as the Keras mask where a module reads it
        if node.op == "call_module":
            self.used_modules.add(node.target)
        shape = self.meta_shape(node)
        layers_before, names_before = len(self.layers), set(self.names)
        paired_before, masks_before = set(self.paired_weights), dict(self.masks)
        try:
            if self.is_rnn(node) or self.reads_rnn(node):
                # Checked before the shape: these return tuples, and h_n is
                # (layers, batch, units), not batch-first.
                result = self.rnn_part(node, shape)
            elif self.is_composite(node) or self.reads_composite(node):
                result = self.composite_part(node, shape)
            elif shape is None:
                raise _Unmappable(self.not_one_tensor(node))
            else:
                result = self.map(node, shape)
        except _Unmappable as exc:
            del self.layers[layers_before:]  # what it drafted before failing
            self.names = names_before
            self.paired_weights = paired_before
            self.masks = masks_before
            inputs = [self.values.get(n) for n in node.all_input_nodes]
            if self.reads_rnn(node):
                # A tuple part has no tensor: the placeholder reads the RNN's
                # last Keras layer, so the draft stays one connected graph.
                inputs = [self.rnn_parts[node.args[0]][0].final]
            if self.reads_composite(node):
                inputs = [self.composites[node.args[0]].final]
            result = self.placeholder(
                self.base_name(node),
                self.describe(node),
                str(exc),
                [t for t in inputs if t is not None],
                shape,
                self.weighted_module(node),
            )
            if self.is_composite(node) and not isinstance(
                node.meta["tensor_meta"], TensorMetadata
            ):
                # A tuple or ModelOutput: what forward() reads of it reads this
                # one placeholder, for the hand mapping that replaces it.
                self.composites[node] = result
        if self.in_place(node):
            # Later readers of the tensor it changed in place read its result.
            self.values[node.all_input_nodes[0]] = result
        return result

    # --- helpers ------------------------------------------------------------

    def unique(self, base: str) -> str:
        name = candidate = identifier(base)
        n = 1
        while candidate in self.names:
            candidate = f"{name}_{n}"
            n += 1
        self.names.add(candidate)
        return candidate

    def meta_shape(self, node: fx.Node) -> tuple[int, ...] | None:
        """The node's PyTorch output shape without the batch axis (None: not one tensor)."""
        meta = node.meta.get("tensor_meta")
        if not isinstance(meta, TensorMetadata):
            return None
        shape = tuple(meta.shape)
        return shape[1:] if shape and shape[0] == self.batch else None

    def not_one_tensor(self, node: fx.Node) -> str:
        meta = node.meta["tensor_meta"]
        if isinstance(meta, TensorMetadata):
            return (
                f"its result {tuple(meta.shape)} does not keep the input's batch "
                f"axis ({self.batch})"
            )
        count = len(meta) if isinstance(meta, (tuple, list, dict)) else "several"
        return f"it returns {count} values, not one tensor"

    def where(self, node: fx.Node) -> str:
        """The module whose forward() made this call ('' for the model's own)."""
        if node.op == "call_module":
            return node.target
        if node.target in (getattr, operator.getitem) and node.args:
            # fx records `.values` or `[0]` where it is used, not where it is
            # written: name it after what it reads.
            return self.where(node.args[0])
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            return ""
        path = list(stack.values())[-1]
        return path[0] if isinstance(path, tuple) else str(path)

    def base_name(self, node: fx.Node) -> str:
        if node.op == "call_module":
            return node.target
        op = node.target if node.op == "call_method" else _name(node.target)
        op = {"iadd": "add", "imul": "mul", "view": "flatten"}.get(op, op).strip("_")
        where = self.where(node)
        return f"{where}.{op}" if where else op

    def describe(self, node: fx.Node) -> str:
        """What PyTorch does at this node, as a placeholder names it."""
        if node.op == "call_module":
            kind = _module_kind(self.gm.get_submodule(node.target))
            return f"module {node.target} ({kind})"
        if node.op == "call_method":
            op = f"Tensor.{node.target}"
        else:
            op = _qualified(node.target)
        where = self.where(node)
        return f"{op} in {where + '.' if where else ''}forward"

    def weighted_module(self, node: fx.Node) -> str | None:
        """A placeholder's `torch:`: the module whose weights a hand mapping needs."""
        if node.op != "call_module" or node.target in self.paired_weights:
            return None  # a second call cannot map the same keys again
        module = self.gm.get_submodule(node.target)
        has_state = any(True for _ in module.parameters(recurse=False))
        # A model drafted whole as one call has no path of its own ('').
        return (self.module_path(node.target) or None) if has_state else None

    def in_place(self, node: fx.Node) -> bool:
        if not node.all_input_nodes:
            return False
        if node.op == "call_module":
            return bool(getattr(self.gm.get_submodule(node.target), "inplace", False))
        name = node.target if node.op == "call_method" else _name(node.target)
        in_place_name = name.endswith("_") and not name.startswith("__")
        return bool(node.kwargs.get("inplace")) or in_place_name

    def tensor(self, value) -> Tensor:
        if not isinstance(value, Tensor):
            raise _Unmappable("its input is not a tensor of the drafted graph")
        if value.shape is None:
            raise _Unmappable("its input comes from an unmapped op of unknown shape")
        return value

    def pair(
        self, node: fx.Node | None, keras: str, flat_from, torch_layer: int = 0
    ) -> str | None:
        """The `torch:` of a module's layer, or None where it must not pair.

        `torch_layer`: which layer of a stacked LSTM/GRU; each Keras layer of
        it pairs with the same module but maps its own keys (weight_ih_l1, ...).
        """
        if node is None or node.op != "call_module":
            return None
        path = node.target
        if LAYER_TYPES[keras].default_rule:
            self.claim(path if torch_layer == 0 else f"{path}#l{torch_layer}")
            return path
        if self.last_call.get(path) is not node or flat_from is not None:
            return None  # verify would compare it with another output
        return path

    def claim(self, path: str) -> None:
        """Record that a layer maps `path`'s keys; a second claim is an error."""
        if path in self.paired_weights:
            raise _Unmappable(
                "it is called a second time (shared weights), and a spec maps "
                "each PyTorch key once"
            )
        self.paired_weights.add(path)

    def layer(
        self,
        node: fx.Node | None,
        keras: str,
        inputs: list[Tensor],
        args: dict[str, Any] | None = None,
        *,
        shape: tuple[int, ...],
        channels_last: bool,
        flat_from: tuple[int, ...] | None = None,
        base: str | None = None,
        weights: dict[str, Any] | None = None,
        comment: str | None = None,
        path: str | None = None,
    ) -> Tensor:
        """Draft one layer for `node`, checking its Keras shape against PyTorch's.

        The layer pairs with `node`'s module; a layer drafted before it (a
        ZeroPadding2D) passes node=None and its own `base` name. A layer of a
        module drafted whole passes node=None and the submodule's `path`.
        """
        args = args or {}
        layer_type = LAYER_TYPES[keras]
        out = Tensor("", shape, channels_last and len(shape) >= 2, flat_from)
        try:
            keras_shape = layer_type.output_shape(
                layer_type.Args.model_validate(args), [t.keras_shape for t in inputs]
            )
        except (ValidationError, ShapeError) as exc:
            raise _Unmappable(
                f"scaffold drafted {keras} {args}, which fails: {exc}"
            ) from None
        if tuple(keras_shape) != out.keras_shape:  # a scaffold bug, never silent
            raise _Unmappable(
                f"scaffold drafted {keras} {args}, which gives {tuple(keras_shape)} "
                f"where PyTorch gives {out.keras_shape} (Keras layout)"
            )
        if path is not None:
            self.claim(path)
            torch_path = path
        else:
            torch_path = self.pair(node, keras, flat_from, args.get("torch_layer", 0))
        name = self.unique(base or self.base_name(node))
        self.layers.append(
            Layer(
                name,
                keras,
                [t.layer for t in inputs],
                args,
                torch_path,
                weights,
                comment,
                out.keras_shape,
            )
        )
        return replace(out, layer=name)

    def like(self, node, keras, x: Tensor, args=None, *, shape) -> Tensor:
        """A layer that keeps its input's layout and feature order."""
        return self.layer(
            node,
            keras,
            [x],
            args,
            shape=shape,
            channels_last=x.channels_last,
            flat_from=x.flat_from,
        )

    def placeholder(self, base, what, why, inputs, shape, torch_path=None) -> Tensor:
        """A layer validate rejects, naming the PyTorch op and where it is."""
        name = self.unique(base)
        self.unmapped.append(f"{name}: {what}: {why}")
        self.layers.append(
            Layer(
                name,
                f"{schema.UNMAPPED} {what}",
                [t.layer for t in inputs],
                torch=torch_path,
                comment=f"UNMAPPED: {why}.",
            )
        )
        # A guess, for the layers after it: a map is channels-first unless
        # what it reads is known not to be.
        known = [t for t in inputs if t.shape is not None]
        channels_last = (
            shape is not None
            and len(shape) >= 2
            and all(t.channels_last for t in known)
        )
        return Tensor(name, shape, channels_last)

    def flatten_source(self, name: str) -> tuple[int, ...] | None:
        """The Keras shape a Flatten flattened, seen through element-wise layers
        from layer `name`, as the resolver's flatten-order lint (W500) sees it."""
        layers = {layer.name: layer for layer in self.layers}
        layer = layers.get(name)
        while layer is not None and layer.keras in _ORDER_PRESERVING:
            layer = layers.get(layer.inputs[0])
        if layer is None or layer.keras != "Flatten":
            return None
        source = layers.get(layer.inputs[0])
        if source is not None:
            return source.shape
        return next(s for n, s, _ in self.inputs if n == layer.inputs[0])

    # --- mapping --------------------------------------------------------------

    def map(self, node: fx.Node, shape) -> Tensor:
        # Graph nodes (also inside lists, as torch.cat's) -> their drafted tensors.
        args = fx.node.map_arg(node.args, self.values.get)
        kwargs = fx.node.map_arg(node.kwargs, self.values.get)
        if node.op == "call_module":
            if node.target in self.untraceable:
                raise _Unmappable(self.untraceable[node.target])
            module, op = self.gm.get_submodule(node.target), None
            elementwise = _elementwise_module(module)
        else:
            # A function, or a method's name (never a module's path).
            module, op = None, node.target
            elementwise = _elementwise_function(node, args, kwargs)

        # Ops on two or more tensors.
        if op in _ADD:
            if kwargs.get("alpha", args[2] if len(args) > 2 else 1) != 1:
                raise _Unmappable("add with alpha != 1 has no Keras layer")
            return self.merge(node, "Add", args[:2], shape)
        if op in _MUL:
            scaled = self.channel_scale(node, args[:2], shape)
            if scaled is not None:
                return scaled
            return self.merge(node, "Multiply", args[:2], shape)
        if op in _CAT:
            tensors = kwargs.get("tensors", args[0] if args else ())
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            return self.concatenate(node, list(tensors), dim, shape)

        x = self.tensor(args[0] if args else kwargs.get("input"))
        if elementwise is not None:
            keras, layer_args = elementwise
            return self.like(node, keras, x, layer_args, shape=shape)
        if op in _ALIASES:
            return x
        if op in ("float", "to", "type_as") and self.same_dtype(node):
            return x
        if op in _RESHAPES or isinstance(module, nn.Flatten):
            return self.reshape(node, x, shape)
        if op in _PERMUTES:
            return self.permute(
                x, _permutation(node, args, kwargs, len(shape) + 1), shape
            )
        if x.flat_from is not None and not isinstance(module, nn.Linear):
            raise _Unmappable(
                f"it reads a flatten of a {x.flat_from} channels-first map, whose "
                "feature order Keras does not share"
            )
        if module is not None:
            return self.module(node, module, x, shape)
        return self.function(node, x, args, kwargs, shape)

    def same_dtype(self, node: fx.Node) -> bool:
        before = node.all_input_nodes[0].meta.get("tensor_meta")
        return getattr(before, "dtype", None) == node.meta["tensor_meta"].dtype

    def module(self, node, m: nn.Module, x: Tensor, shape) -> Tensor:
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
        if isinstance(m, nn.PReLU):
            return self.prelu(node, m, x, shape)
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            kind = "max" if isinstance(m, nn.MaxPool2d) else "avg"
            names = [n for n, _ in _POOL_PARAMETERS[kind]]
            return self.pool(node, kind, {n: getattr(m, n) for n in names}, x, shape)
        if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            if getattr(m, "return_indices", False):
                raise _Unmappable("it returns indices")
            kind = "avg" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
            return self.adaptive_pool(node, kind, m.output_size, x, shape)
        if isinstance(m, nn.Softmax):
            return self.softmax(node, x, m.dim, shape)
        raise _Unmappable(
            f"no Keras layer in the allowlist does what {type(m).__name__} does"
        )

    def function(self, node, x: Tensor, args, kwargs, shape) -> Tensor:
        target = node.target

        def arg(index, name, default=None):
            return kwargs.get(name, args[index] if len(args) > index else default)

        if target in (F.softmax, torch.softmax, "softmax"):
            return self.softmax(node, x, arg(1, "dim"), shape)
        if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
            if arg(2, "return_indices", False):
                raise _Unmappable("it returns indices")
            kind = "avg" if target is F.adaptive_avg_pool2d else "max"
            return self.adaptive_pool(node, kind, arg(1, "output_size"), x, shape)
        if target in (F.max_pool2d, torch.max_pool2d, F.avg_pool2d):
            kind = "avg" if target is F.avg_pool2d else "max"
            parameters = _POOL_PARAMETERS[kind]
            p = {n: arg(i + 1, n, d) for i, (n, d) in enumerate(parameters)}
            return self.pool(node, kind, p, x, shape)
        if target in (torch.mean, "mean"):
            return self.mean(node, x, arg(1, "dim"), arg(2, "keepdim", False), shape)
        if target is F.layer_norm:
            return self.functional_layer_norm(node, x, shape)
        raise _Unmappable("no Keras layer in the allowlist does what it does")

    def functional_layer_norm(self, node, x: Tensor, shape) -> Tensor:
        """F.layer_norm(x, (C,), module.weight, module.bias, eps), as a
        LayerNorm2d's forward calls it on a permuted map (ConvNeXt): a
        LayerNormalization paired with that module."""
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        bound = dict(zip(names, node.args)) | dict(node.kwargs)
        weight, bias = bound.get("weight"), bound.get("bias")
        params = [p for p in (weight, bias) if isinstance(p, fx.Node)]
        owners = {p.target.rpartition(".")[0] for p in params if p.op == "get_attr"}
        suffixes = {p.target.rpartition(".")[2] for p in params}
        if len(params) != 2 or len(owners) != 1 or suffixes != {"weight", "bias"}:
            raise _Unmappable(
                "it normalises with weights that are not one module's weight and bias"
            )
        normalized = tuple(bound.get("normalized_shape") or ())
        if len(normalized) != 1 or x.channels_last or x.shape[-1:] != normalized:
            raise _Unmappable(
                f"it normalises over {normalized} of a {x.shape} tensor, and "
                "LayerNormalization here normalises the last Keras axis"
            )
        eps = bound.get("eps", 1e-5)
        args = {} if eps == 1e-5 else {"epsilon": _float(eps)}
        (owner,) = owners
        return self.layer(
            node,
            "LayerNormalization",
            [x],
            args,
            shape=shape,
            channels_last=False,
            path=owner,
        )

    def channel_scale(self, node, operands, shape) -> Tensor | None:
        """x * parameter, the parameter (C, 1, 1) on a (C, H, W) map (ConvNeXt's
        layer scale): a 1x1 DepthwiseConv2D without bias, whose kernel is the
        parameter. None when the product is not of that form."""
        nodes = [n for n in node.args[:2] if isinstance(n, fx.Node)]
        params = [n for n in nodes if n.op == "get_attr"]
        tensors = [t for t in operands if isinstance(t, Tensor)]
        if len(params) != 1 or len(tensors) != 1:
            return None
        x, target = self.tensor(tensors[0]), params[0].target
        try:
            value = self.gm.get_parameter(target)
        except AttributeError:  # a buffer, not a learned scale
            return None
        channels = x.shape[0] if x.shape else 0
        if (
            not x.channels_last
            or len(x.shape) != 3
            or tuple(value.shape) != (channels, 1, 1)
        ):
            return None
        return self.layer(
            node,
            "DepthwiseConv2D",
            [x],
            {"kernel_size": 1, "use_bias": False},
            shape=shape,
            channels_last=True,
            weights={
                "kernel": {
                    "from": target,
                    "transform": [{"reshape": [1, 1, channels, 1]}],
                }
            },
            path=None,
            base=self.base_name(node),
            comment=f"x * {target}: one factor per channel, as a 1x1 depthwise kernel.",
        )

    def conv(self, node, m, x: Tensor, shape) -> Tensor:
        rank = 2 if isinstance(m, nn.Conv2d) else 1
        if not x.channels_last or len(x.shape) != rank + 1:
            raise _Unmappable(f"its input {x.shape} is not a channels-first map")
        if m.padding_mode != "zeros":
            raise _Unmappable(f"padding_mode {m.padding_mode!r} is not zero padding")
        kernel, strides, dilation = m.kernel_size, m.stride, m.dilation
        padding = (0,) * rank if m.padding == "valid" else m.padding
        # Keras "same" at stride 1 pads dilation*(k-1) in all, the odd pixel at
        # the end, as PyTorch's padding=p does when 2p == dilation*(k-1) (and
        # as its padding="same" does). At stride > 1 Keras pads asymmetrically:
        # explicit padding, then valid.
        same = padding == "same" or (
            any(padding)
            and all(s == 1 for s in strides)
            and all(2 * p == d * (k - 1) for p, k, d in zip(padding, kernel, dilation))
        )
        pad = not same and any(padding)
        if pad and rank == 1:
            raise _Unmappable(
                f"Conv1d padding {padding} needs explicit padding, and the "
                "allowlist has no ZeroPadding1D"
            )
        depthwise = rank == 2 and 1 < m.groups == m.in_channels
        if depthwise:
            keras, args = "DepthwiseConv2D", {"kernel_size": _int_or_list(kernel)}
        else:
            keras = f"Conv{rank}D"
            args = {"filters": m.out_channels, "kernel_size": _int_or_list(kernel)}
        if any(s != 1 for s in strides):
            args["strides"] = _int_or_list(strides)
        if same:
            args["padding"] = "same"
        if depthwise and m.out_channels != m.in_channels:
            args["depth_multiplier"] = m.out_channels // m.in_channels
        if any(d != 1 for d in dilation):
            args["dilation_rate"] = _int_or_list(dilation)
        if not depthwise and m.groups > 1:
            args["groups"] = m.groups
        if m.bias is None:
            args["use_bias"] = False
        if pad:
            comment = None
            if any(s > 1 for s in strides):
                comment = (
                    f"PyTorch pads {_int_or_list(padding)} on every side; Keras "
                    f'"same" with stride {_int_or_list(strides)} would not.'
                )
            channels, *spatial = x.shape
            x = self.layer(
                None,
                "ZeroPadding2D",
                [x],
                {"padding": _int_or_list(padding)},
                shape=(channels, *(n + 2 * p for n, p in zip(spatial, padding))),
                channels_last=True,
                base=f"{node.target}.pad",
                comment=comment,
            )
        return self.layer(node, keras, [x], args, shape=shape, channels_last=True)

    def linear(self, node, m: nn.Linear, x: Tensor, shape) -> Tensor:
        if x.channels_last:
            raise _Unmappable(
                f"it reads the last axis of a channels-first {x.shape} tensor, "
                "which Keras holds channels-last"
            )
        args = {"units": m.out_features}
        if m.bias is None:
            args["use_bias"] = False
        weights = comment = None
        kernel = f"{node.target}.weight"
        source = self.flatten_source(x.layer)
        if x.flat_from is not None:
            channels, *spatial = x.flat_from
            weights = {
                "kernel": {
                    "from": kernel,
                    "transform": [{"unflatten": list(x.flat_from)}, "transpose"],
                }
            }
            comment = (
                f"PyTorch flattened a {x.flat_from} map channel-first, Keras "
                f"flattens {(*spatial, channels)} channel-last: reorder the kernel's "
                "input features, then transpose."
            )
        elif source and len(source) > 1 and math.prod(source[:-1]) > 1:
            # The resolver cannot tell this flatten from an NCHW one (W500).
            weights = {"kernel": {"from": kernel, "transform": ["transpose"]}}
            comment = (
                f"The flattened {source} tensor has the same layout in PyTorch and "
                "Keras, so the features are in the same order: only transpose."
            )
        return self.layer(
            node,
            "Dense",
            [x],
            args,
            shape=shape,
            channels_last=False,
            weights=weights,
            comment=comment,
        )

    def batch_norm(self, node, m, x: Tensor, shape) -> Tensor:
        if not m.track_running_stats or m.running_mean is None:
            raise _Unmappable(
                "without running statistics it normalises with batch statistics "
                "at inference"
            )
        channels_on_axis_1 = len(x.shape) == 1 or x.channels_last
        if isinstance(m, nn.BatchNorm2d) and len(x.shape) != 3:
            channels_on_axis_1 = False
        if not channels_on_axis_1:
            raise _Unmappable(f"its input {x.shape} does not have channels on axis 1")
        args = {}
        # The spec's defaults are PyTorch's: eps 1e-5, Keras momentum 0.9.
        if m.eps != 1e-5:
            args["epsilon"] = _float(m.eps)
        if m.momentum is not None and _float(1 - m.momentum) != 0.9:
            args["momentum"] = _float(1 - m.momentum)  # Keras's is 1 - PyTorch's
        if not m.affine:
            args.update(center=False, scale=False)
        return self.like(node, "BatchNormalization", x, args, shape=shape)

    def layer_norm(self, node, m: nn.LayerNorm, x: Tensor, shape) -> Tensor:
        return self.like(
            node, "LayerNormalization", x, _layer_norm_args(m, x), shape=shape
        )

    def prelu(self, node, m: nn.PReLU, x: Tensor, shape) -> Tensor:
        rank = len(x.shape)
        if m.num_parameters == 1:  # one alpha: every Keras axis shares it
            shared = list(range(1, rank + 1))
        elif rank == 1 or x.channels_last:  # one per channel: all but the last
            shared = list(range(1, rank))
        else:
            raise _Unmappable(
                f"it has an alpha per entry of axis 1 of a {x.shape} tensor that "
                "Keras does not hold channels-last"
            )
        args = {"shared_axes": shared} if shared else {}
        return self.like(node, "PReLU", x, args, shape=shape)

    def embedding(self, node, m: nn.Embedding, x: Tensor, shape) -> Tensor:
        if m.max_norm is not None:
            raise _Unmappable("max_norm renormalises rows as it reads them")
        args = {"input_dim": m.num_embeddings, "output_dim": m.embedding_dim}
        return self.layer(
            node, "Embedding", [x], args, shape=shape, channels_last=False
        )

    # --- LSTM / GRU ------------------------------------------------------------
    #
    # fx records `output, h_n = self.gru(x)` as the module call, which returns
    # a tuple, and getitem nodes reading it: [0] is `output`, [1] is h_n (an
    # LSTM's (h_n, c_n)), then h_n[-1]. The call drafts one Keras layer per
    # PyTorch layer; the reads resolve to those layers' outputs, or become
    # placeholders where no drafted layer gives what they read.

    def is_rnn(self, node: fx.Node) -> bool:
        return node.op == "call_module" and isinstance(
            self.gm.get_submodule(node.target), tuple(_RNNS)
        )

    def reads_rnn(self, node: fx.Node) -> bool:
        return (
            node.op == "call_function"
            and node.target is operator.getitem
            and node.args[0] in self.rnn_parts
        )

    def rnn_part(self, node: fx.Node, shape) -> Tensor | None:
        """An LSTM/GRU call, or an index into what it returned."""
        if self.is_rnn(node):
            if node.target in self.untraceable:
                raise _Unmappable(self.untraceable[node.target])
            args = fx.node.map_arg(node.args, self.values.get)
            if len(node.args) != 1 or node.kwargs:
                raise _Unmappable(
                    "it is given an initial state, and the Keras layers here start "
                    "from zeros"
                )
            self.rnn(node, self.gm.get_submodule(node.target), self.tensor(args[0]))
            return None  # a tuple: only its parts are tensors
        run, part = self.rnn_parts[node.args[0]]
        index = node.args[1]
        if not node.users:
            return None  # `_, h_n = ...`: the part nobody reads needs no layer
        if part == "tuple" and index == 0:
            return run.sequence  # drafted whenever `output` is read
        if part == "tuple" and index == 1:
            lstm = isinstance(run.module, nn.LSTM)
            return self.rnn_state(node, run, "(h_n, c_n)" if lstm else "h_n")
        if part == "(h_n, c_n)" and index in (0, 1):
            return self.rnn_state(node, run, ("h_n", "c_n")[index])
        if part == "c_n":
            raise _Unmappable(_C_N)
        if part == "h_n" and _is_last_row(index, run.states):
            if run.last is None:
                raise _Unmappable(run.why_not_last)
            return run.last
        raise _Unmappable(
            f"it reads {part}[{_index_text(index)}]; scaffold maps the last layer's "
            "h_n[-1] of a unidirectional LSTM/GRU, and `output`"
        )

    def rnn_state(self, node: fx.Node, run: _RNNRun, part: str) -> None:
        """h_n, c_n or LSTM's (h_n, c_n): no tensor of its own; its reads are
        resolved one by one. Read whole, it becomes one placeholder."""
        if part == "c_n" and node.users:
            # Whatever is read of it: one placeholder here, not one per read.
            raise _Unmappable(_C_N)
        if any(user.target is not operator.getitem for user in node.users):
            raise _Unmappable(
                f"forward() uses {part} whole; it is (layers x directions, batch, "
                "units), not batch-first, and scaffold maps h_n[-1] and `output`"
            )
        self.rnn_parts[node] = (run, part)
        return None

    def rnn(self, node: fx.Node, m: nn.Module, x: Tensor) -> None:
        """One Keras layer per PyTorch layer, Bidirectional-wrapped if it is.

        Every layer but the last returns its sequence, as PyTorch feeds each
        layer the whole output of the one before. The last returns its
        sequence if forward() reads `output`, else its last step, which is
        h_n[-1] (unidirectional) or [h_n[-2], h_n[-1]] (bidirectional).
        """
        kind = _RNNS[next(k for k in _RNNS if isinstance(m, k))]
        if not m.batch_first:
            raise _Unmappable(
                "without batch_first it reads (time, batch, features), and Keras "
                "RNNs read (batch, time, features)"
            )
        if m.proj_size:
            raise _Unmappable("proj_size projects h; Keras's LSTM has no projection")
        if x.channels_last or len(x.shape) != 2:
            raise _Unmappable(
                f"its input {x.shape} is not a (time, features) sequence laid out "
                "alike in Keras"
            )
        # Which parts of the tuple forward() reads decides the last layer.
        directions = 2 if m.bidirectional else 1
        states = m.num_layers * directions
        reads_output = bool(_reads(node, 0))
        h_n = _reads(node, 1)
        if kind == "LSTM":
            h_n = [h for state in h_n for h in _reads(state, 0)]
        reads_last = any(
            _is_last_row(user.args[1], states)
            for h in h_n
            for user in h.users
            if user.target is operator.getitem and user.users
        )
        why_not_last = (
            "for a bidirectional layer h_n[-1] is the backward direction alone, "
            "and Bidirectional returns both directions' last steps concatenated"
            if m.bidirectional
            else "forward() also reads `output`, so the last Keras layer returns "
            "the whole sequence, and no layer here picks its last step"
        )
        units = m.hidden_size
        steps = x.shape[0]
        comment = None
        if m.num_layers > 1:
            comment = (
                f"nn.{kind}(num_layers={m.num_layers}) is {m.num_layers} Keras "
                "layers, each reading the whole sequence of the one before; "
                "torch_layer k maps PyTorch's *_l{k} keys."
            )
        sequence = last = None
        for layer in range(m.num_layers):
            final = layer == m.num_layers - 1
            return_sequences = not final or reads_output or not reads_last
            args: dict[str, Any] = {"units": units}
            keras = kind
            if m.bidirectional:
                keras, args = "Bidirectional", {"layer": kind, "units": units}
            if return_sequences:
                args["return_sequences"] = True
            if not m.bias:
                args["use_bias"] = False
            if layer:
                args["torch_layer"] = layer
            out_shape = (
                (steps, directions * units)
                if return_sequences
                else (directions * units,)
            )
            x = self.layer(
                node,
                keras,
                [x],
                args,
                shape=out_shape,
                channels_last=False,
                base=node.target if m.num_layers == 1 else f"{node.target}_l{layer}",
                comment=comment if layer == 0 else None,
            )
            if final and return_sequences:
                sequence = x
            elif final and not m.bidirectional:
                last = x  # PyTorch's h_n[-1]
        self.rnn_parts[node] = (
            _RNNRun(m, sequence, last, why_not_last, x),
            "tuple",
        )

    # --- modules drafted whole: attention, transformer layers, BertModel -------
    #
    # fx keeps nn.MultiheadAttention, nn.TransformerEncoderLayer and
    # nn.TransformerEncoder as leaves (they are torch.nn modules), and the
    # tracer makes BertModel one. Each call drafts the Keras layer sequence
    # the hand-written specs use (specs/transformer_encoder*.yaml,
    # specs/bert_small.yaml), each layer paired with its submodule's path. A
    # tuple or ModelOutput result is read like an RNN's: getitem / getattr
    # nodes resolve to the drafted tensors (self.composites).

    def is_composite(self, node: fx.Node) -> bool:
        return (
            node.op == "call_module"
            and _composite_kind(self.gm.get_submodule(node.target)) is not None
        )

    def reads_composite(self, node: fx.Node) -> bool:
        return (
            node.op == "call_function"
            and node.target in (operator.getitem, getattr)
            and bool(node.args)
            and node.args[0] in self.composites
        )

    def module_path(self, target: str) -> str:
        """A call_module target -> its modules' PyTorch path ('' for the model
        drafted whole as one call, see _root_call)."""
        return "" if self.root and target == _Root.ROOT else target

    def composite_part(self, node: fx.Node, shape) -> Tensor | None:
        """A call of a module drafted whole, or a part read of its result."""
        if self.is_composite(node):
            module = self.gm.get_submodule(node.target)
            kind = _composite_kind(module)
            prefix = self.module_path(node.target)
            arguments = _bind(module, node)
            for name in _UNSUPPORTED_MASKS:
                if arguments.get(name) not in (None, False):
                    raise _Unmappable(
                        f"it is given {name}; scaffold maps a key padding mask "
                        "(Keras's attention_mask=), not attention masks or causal "
                        "masking"
                    )
            if not prefix:
                # The model drafted whole: every key under it is used.
                self.used_modules.update(name for name, _ in module.named_children())
                self.used_modules.update(
                    name for name, _ in module.named_parameters(recurse=False)
                )
            result = getattr(self, f"draft_{kind}")(module, prefix, arguments)
            if isinstance(result, _Composite):
                self.composites[node] = result
                return None  # a tuple: only its parts are tensors
            return result
        composite = self.composites[node.args[0]]
        key = node.args[1]
        if isinstance(composite, Tensor):
            # The call is a placeholder: what reads it reads that placeholder.
            return Tensor(composite.layer, shape)
        if not node.users:
            return None
        part = composite.parts.get(
            key, f"it reads {_index_text(key)!r} of the result, which has no mapping"
        )
        if isinstance(part, str):
            raise _Unmappable(part)
        return part

    def mask_only_nodes(self) -> set[fx.Node]:
        """Ops whose results only reach the mask argument of a module drafted
        whole: the mask is drafted where that module reads it (attention_mask)."""
        mask_inputs: dict[fx.Node, set[fx.Node]] = {}
        for node in self.gm.graph.nodes:
            if not self.is_composite(node):
                continue
            module = self.gm.get_submodule(node.target)
            try:
                arguments = _bind(module, node)
            except _Unmappable:
                continue  # drafted as a placeholder, which says why
            masks = set(_MASKS[_composite_kind(module)])
            inside: set[fx.Node] = set()
            outside: set[fx.Node] = set()
            for name, value in arguments.items():
                found = inside if name in masks else outside
                fx.node.map_arg(value, lambda n, found=found: found.add(n))
            mask_inputs[node] = inside - outside
        only: set[fx.Node] = set()
        for node in reversed(self.gm.graph.nodes):
            if node.op not in ("call_function", "call_method") or not node.users:
                continue
            if all(u in only or node in mask_inputs.get(u, ()) for u in node.users):
                only.add(node)
        return only

    def attention_mask(self, value, meaning: str, keys: int) -> Tensor | None:
        """The Keras attention_mask=, (1, keys) per example, for a mask argument.

        Keras reads 1 where a key is attended, as a Hugging Face attention_mask
        (`meaning` "attend"); PyTorch's key padding mask (`meaning` "padding")
        is its inverse, so it must be computed from such an input
        (`attention_mask == 0`). Either way the Keras mask is a Reshape of the
        input itself.
        """
        if value is None:
            return None
        if not isinstance(value, fx.Node):
            raise _Unmappable(f"its mask is {value!r}, not a tensor")
        source = self.mask_source(value, meaning)
        x = self.tensor(self.values.get(source))
        if x.shape != (keys,):
            raise _Unmappable(
                f"its mask comes from input {source.target} of shape {x.shape}, "
                f"not one value per key ({keys},)"
            )
        if x.layer not in self.masks:
            self.masks[x.layer] = self.layer(
                None,
                "Reshape",
                [x],
                {"target_shape": [1, keys]},
                shape=(1, keys),
                channels_last=False,
                base="mask",
                comment=f"{x.layer}: 1 for a token, 0 for padding. Keras's attention "
                "mask is (batch, queries, keys), or (batch, 1, keys) for all queries.",
            )
        return self.masks[x.layer]

    def mask_source(self, node: fx.Node, meaning: str) -> fx.Node:
        """The input a mask is computed from, checked by running the ops in
        between on a 0/1 mask (0..3 for integers): what they compute is checked,
        not how."""
        ancestors, stack = set(), [node]
        while stack:
            n = stack.pop()
            if n not in ancestors:
                ancestors.add(n)
                stack.extend(n.all_input_nodes)
        sources = [n for n in ancestors if n.op == "placeholder"]
        meta = sources[0].meta.get("tensor_meta") if len(sources) == 1 else None
        if (
            any(n.op in ("call_module", "get_attr") for n in ancestors)
            or not isinstance(meta, TensorMetadata)
            or len(meta.shape) != 2
        ):
            raise _Unmappable(
                "its mask is not computed from one (batch, keys) input alone; "
                "scaffold maps a padding mask input, 1 for a token and 0 for padding"
            )
        graph, env = fx.Graph(), {}
        for n in self.gm.graph.nodes:
            if n in ancestors:
                env[n] = graph.node_copy(n, env.__getitem__)
        graph.output(env[node])
        # The Keras mask is the input itself, nonzero where a key is attended.
        # An integer input may be the token ids (`ids == 0` as the padding
        # mask), so it gets other nonzero values than 1 too: `ids == 1` or
        # `ids != 2` would pass a 0/1 check and mask the wrong keys.
        integer = not (meta.dtype.is_floating_point or meta.dtype == torch.bool)
        high, what = (4, "0..3") if integer else (2, "0/1")
        generator = torch.Generator().manual_seed(0)
        values = torch.randint(0, high, tuple(meta.shape), generator=generator)
        values[:, 0] = high - 1  # zero and nonzero both occur
        values[:, -1] = high - 1 if meta.shape[1] == 1 else 0
        tokens = values != 0
        try:
            with torch.no_grad():
                mask = fx.GraphModule(self.gm, graph)(values.to(meta.dtype))
        except Exception as exc:
            raise _Unmappable(
                f"computing its mask from a {what} input failed ({type(exc).__name__})"
            ) from None
        same_shape = isinstance(mask, torch.Tensor) and mask.shape == tokens.shape
        if meaning == "attend":
            if same_shape and torch.equal(mask != 0, tokens):
                return sources[0]
            wanted = "nonzero exactly where a key is attended"
        else:
            if same_shape and mask.dtype == torch.bool:
                ok = torch.equal(mask, ~tokens)
            else:
                ok = same_shape and bool(
                    (mask[tokens] == 0).all() and (mask[~tokens] <= -1e4).all()
                )
            if ok:
                return sources[0]
            wanted = (
                f"True (or -inf) where input {sources[0].target} is 0, as "
                f"`{sources[0].target} == 0` gives"
            )
        raise _Unmappable(
            f"on a {what} {sources[0].target} its mask is not {wanted}; Keras's "
            "attention_mask= is nonzero where a key is attended"
        )

    def multi_head_attention(
        self, m: nn.MultiheadAttention, path: str, query, value, key, mask
    ) -> Tensor:
        """One Keras MultiHeadAttention with the default rule: the fused
        in_proj_weight split into the query, key and value projections."""
        if not m.batch_first:
            raise _Unmappable(
                f"{path} is not batch_first: it reads (time, batch, features)"
            )
        if not m._qkv_same_embed_dim:
            raise _Unmappable(
                f"{path} has kdim/vdim != embed_dim, so no fused in_proj_weight "
                "for the MultiHeadAttention rule to split"
            )
        if m.bias_k is not None or m.add_zero_attn:
            raise _Unmappable(
                f"{path} has add_bias_kv or add_zero_attn, which add keys Keras's "
                "MultiHeadAttention does not"
            )
        for x in (query, value, key):
            if x.channels_last or len(x.shape) != 2:
                raise _Unmappable(
                    f"its input {x.shape} is not a (time, features) sequence laid "
                    "out alike in Keras"
                )
        args: dict[str, Any] = {"num_heads": m.num_heads, "key_dim": m.head_dim}
        if m.in_proj_bias is None:
            args["use_bias"] = False
        inputs = [query, value] + ([key] if key != value else [])
        if mask is not None:
            args["attention_mask"] = True
            inputs.append(mask)
        return self.layer(
            None,
            "MultiHeadAttention",
            inputs,
            args,
            shape=query.shape,
            channels_last=False,
            base=path,
            path=path,
        )

    def draft_attention(self, m: nn.MultiheadAttention, prefix: str, arguments):
        query, key, value = (
            self.tensor(self.values.get(arguments[name]))
            for name in ("query", "key", "value")
        )
        mask = self.attention_mask(
            arguments["key_padding_mask"], "padding", value.shape[0]
        )
        out = self.multi_head_attention(m, prefix, query, value, key, mask)
        weights = "it reads the attention weights, which Keras's MultiHeadAttention "
        weights += "here does not return"
        return _Composite({0: out, 1: weights}, (out,), out)

    def draft_encoder_layer(self, m: nn.TransformerEncoderLayer, prefix, arguments):
        x = self.tensor(self.values.get(arguments["src"]))
        mask = self.attention_mask(
            arguments["src_key_padding_mask"], "padding", x.shape[0]
        )
        return self.encoder_layer(m, prefix, x, mask)

    def draft_encoder(self, m: nn.TransformerEncoder, prefix, arguments):
        x = self.tensor(self.values.get(arguments["src"]))
        mask = self.attention_mask(
            arguments["src_key_padding_mask"], "padding", x.shape[0]
        )
        first = len(self.layers)
        for index, layer in enumerate(m.layers):
            x = self.encoder_layer(layer, _join(prefix, f"layers.{index}"), x, mask)
        if m.norm is not None:
            x = self.sequence_layer_norm(m.norm, _join(prefix, "norm"), x)
        if mask is not None and m.use_nested_tensor:
            drafted = self.layers[first]
            drafted.comment = " ".join(
                filter(
                    None,
                    [
                        drafted.comment,
                        "With enable_nested_tensor, PyTorch returns 0 at padded "
                        "positions at inference; these layers compute them. Real "
                        "positions agree.",
                    ],
                )
            )
        return x

    def encoder_layer(
        self, m: nn.TransformerEncoderLayer, prefix: str, x: Tensor, mask
    ) -> Tensor:
        """nn.TransformerEncoderLayer as specs/transformer_encoder*.yaml map it:
        post-norm  x = norm1(x + self_attn(x)); x = norm2(x + linear2(act(linear1(x))))
        norm_first x = x + self_attn(norm1(x)); x = x + linear2(act(linear1(norm2(x))))
        Dropout is the identity at inference and gets no layer."""
        activation = m.activation
        if activation is F.relu:
            keras, activation_args = "Activation", {"activation": "relu"}
        elif activation is F.gelu:
            keras, activation_args = "Activation", {"activation": "gelu"}
        elif isinstance(activation, nn.Module) and _elementwise_module(activation):
            keras, activation_args = _elementwise_module(activation)
        else:
            raise _Unmappable(
                f"{_join(prefix, 'activation')} is {activation!r}, not relu, gelu or "
                "an activation module scaffold maps"
            )

        def path(name):
            return _join(prefix, name)

        def attend(y):
            return self.multi_head_attention(
                m.self_attn, path("self_attn"), y, y, y, mask
            )

        def norm(name, y):
            return self.sequence_layer_norm(getattr(m, name), path(name), y)

        def add(name, a, b):
            return self.layer(
                None, "Add", [a, b], shape=a.shape, channels_last=False, base=path(name)
            )

        def feed_forward(y):
            y = self.sequence_dense(m.linear1, path("linear1"), y)
            # A layer of its own, so verify pairs linear1 1:1.
            y = self.layer(
                None,
                keras,
                [y],
                activation_args,
                shape=y.shape,
                channels_last=False,
                base=path("activation"),
            )
            return self.sequence_dense(m.linear2, path("linear2"), y)

        if m.norm_first:
            y = add("add1", x, attend(norm("norm1", x)))
            return add("add2", y, feed_forward(norm("norm2", y)))
        y = norm("norm1", add("add1", x, attend(x)))
        return norm("norm2", add("add2", y, feed_forward(y)))

    def sequence_dense(self, m: nn.Linear, path: str, x: Tensor, **kwargs) -> Tensor:
        args: dict[str, Any] = {"units": m.out_features}
        if m.bias is None:
            args["use_bias"] = False
        shape = (*x.shape[:-1], m.out_features)
        return self.layer(
            None,
            "Dense",
            [x],
            args,
            shape=shape,
            channels_last=False,
            base=path,
            path=path,
            **kwargs,
        )

    def sequence_layer_norm(self, m: nn.LayerNorm, path: str, x: Tensor) -> Tensor:
        args = _layer_norm_args(m, x)
        return self.layer(
            None,
            "LayerNormalization",
            [x],
            args,
            shape=x.shape,
            channels_last=False,
            base=path,
            path=path,
        )

    def draft_bert(self, m: nn.Module, prefix: str, arguments) -> _Composite:
        """transformers BertModel as specs/bert_small.yaml maps it: embeddings
        (word + position + token type, LayerNorm), one block per BertLayer,
        the pooler; its ModelOutput's last_hidden_state and pooler_output."""
        config = m.config
        # Anything else given (head_mask, position_ids, inputs_embeds, a cache,
        # encoder states...) changes what BertModel computes: refused, by name.
        mapped = {"input_ids", "attention_mask", "token_type_ids", "return_dict"}
        given = {}
        for name, value in arguments.items():
            if isinstance(value, dict):  # **kwargs
                given.update(value)
            elif name not in mapped:
                given[name] = value
        for name, value in given.items():
            if value is not None and value is not False and name != "return_dict":
                raise _Unmappable(
                    f"it is given {name}; scaffold maps input_ids, attention_mask "
                    "and token_type_ids"
                )
        if config.is_decoder:
            raise _Unmappable("it is a decoder (causal attention)")
        if getattr(config, "position_embedding_type", "absolute") != "absolute":
            raise _Unmappable(
                f"position_embedding_type {config.position_embedding_type!r} is not "
                "absolute"
            )
        ids = self.tensor(self.values.get(arguments["input_ids"]))
        given_types = arguments.get("token_type_ids") is not None
        types = (
            self.tensor(self.values.get(arguments["token_type_ids"]))
            if given_types
            else ids
        )
        if len(ids.shape) != 1 or types.shape != ids.shape:
            raise _Unmappable(
                f"input_ids {ids.shape} and token_type_ids {types.shape} are not "
                "both (length,)"
            )
        steps, width = ids.shape[0], config.hidden_size
        mask = self.attention_mask(arguments.get("attention_mask"), "attend", steps)

        def path(name):
            return _join(prefix, name)

        def embedding(keras, name, x, table, comment=None, weights=None):
            args = {
                "input_dim": table.num_embeddings,
                "output_dim": table.embedding_dim,
            }
            return self.layer(
                None,
                keras,
                [x],
                args,
                shape=(steps, width),
                channels_last=False,
                base=path(name),
                # With weights of its own it computes more than the PyTorch
                # module, so it is not paired with it.
                path=None if weights else path(name),
                weights=weights,
                comment=comment,
            )

        tables = m.embeddings
        positions = (
            f"position_ids = arange({steps}): the first {steps} rows of the table, "
            "for every example."
        )
        type_rows = tables.token_type_embeddings.num_embeddings
        without_types = {
            "embeddings": {
                "from": [
                    path("embeddings.position_embeddings.weight"),
                    path("embeddings.token_type_embeddings.weight"),
                ],
                "transform": [{"add_row": [0, type_rows]}],
            }
        }
        parts = [
            embedding(
                "Embedding", "embeddings.word_embeddings", ids, tables.word_embeddings
            ),
            embedding(
                "PositionEmbedding",
                "embeddings.position_embeddings",
                ids,
                tables.position_embeddings,
                comment=positions
                if given_types
                else positions + " Called without token_type_ids, BERT adds "
                "token type 0's row at every position: added to this table.",
                weights=None if given_types else without_types,
            ),
        ]
        if given_types:
            parts.append(
                embedding(
                    "Embedding",
                    "embeddings.token_type_embeddings",
                    types,
                    tables.token_type_embeddings,
                )
            )
        x = self.layer(
            None,
            "Add",
            parts,
            shape=(steps, width),
            channels_last=False,
            base=path("embeddings"),
        )
        x = self.sequence_layer_norm(tables.LayerNorm, path("embeddings.LayerNorm"), x)
        activation = _HF_ACTIVATIONS.get(config.hidden_act)
        if activation is None:
            raise _Unmappable(
                f"hidden_act {config.hidden_act!r} is not one of "
                f"{', '.join(_HF_ACTIVATIONS)} (Keras activations of the same formula)"
            )
        for index, layer in enumerate(m.encoder.layer):
            x = self.bert_layer(
                layer, path(f"encoder.layer.{index}"), x, mask, activation
            )
        parts = {0: x, "last_hidden_state": x}
        if m.pooler is None:
            return _Composite(parts, (x,), x)
        pooler_activation = _elementwise_module(m.pooler.activation)
        if pooler_activation is None:
            raise _Unmappable(f"the pooler's activation is {m.pooler.activation!r}")
        first = self.layer(
            None,
            "Cropping1D",
            [x],
            {"cropping": [0, steps - 1]},
            shape=(1, width),
            channels_last=False,
            base=path("pooler.first_token"),
            comment="The pooler reads the first token: tanh(dense(hidden[:, 0])).",
        )
        first = self.layer(
            None,
            "Flatten",
            [first],
            shape=(width,),
            channels_last=False,
            base=path("pooler.first_token_flat"),
        )
        pooled = self.sequence_dense(m.pooler.dense, path("pooler.dense"), first)
        keras, args = pooler_activation
        pooled = self.layer(
            None,
            keras,
            [pooled],
            args,
            shape=(width,),
            channels_last=False,
            base=path("pooler"),
        )
        parts.update({1: pooled, "pooler_output": pooled})
        return _Composite(parts, (x, pooled), pooled)

    def bert_layer(self, m: nn.Module, prefix: str, x: Tensor, mask, activation):
        """One BertLayer: self-attention, residual + LayerNorm, the MLP, residual
        + LayerNorm. BERT keeps query, key and value as separate Linear layers,
        so the MultiHeadAttention's weights are mapped explicitly."""
        attention = m.attention.self
        # By class name, as transformers is not imported here; its subclasses
        # (4.4x's BertSdpaSelfAttention) hold the same weights and compute the same.
        if "BertSelfAttention" not in {cls.__name__ for cls in type(attention).__mro__}:
            raise _Unmappable(
                f"{prefix}.attention.self is a {type(attention).__name__}, not "
                "BertSelfAttention"
            )
        heads = attention.num_attention_heads
        head_dim = attention.attention_head_size
        self_path = f"{prefix}.attention.self"
        weights: dict[str, Any] = {}
        for slot in ("query", "key", "value"):
            weights[f"{slot}/kernel"] = {
                "from": f"{self_path}.{slot}.weight",
                "transform": ["transpose", {"split_axis": [1, heads]}],
            }
            weights[f"{slot}/bias"] = {
                "from": f"{self_path}.{slot}.bias",
                "transform": [{"split_axis": [0, heads]}],
            }
        dense = f"{prefix}.attention.output.dense"
        weights["attention_output/kernel"] = {
            "from": f"{dense}.weight",
            "transform": ["transpose", {"split_axis": [0, heads]}],
        }
        weights["attention_output/bias"] = {"from": f"{dense}.bias"}
        args: dict[str, Any] = {"num_heads": heads, "key_dim": head_dim}
        inputs = [x, x]
        if mask is not None:
            args["attention_mask"] = True
            inputs.append(mask)
        self.claim(f"{prefix}.attention")  # its keys are mapped here, once
        attended = self.layer(
            None,
            "MultiHeadAttention",
            inputs,
            args,
            shape=x.shape,
            channels_last=False,
            base=f"{prefix}.attention",
            weights=weights,
            comment="query, key and value are separate Linear layers: each kernel "
            "is transposed and split into (hidden, heads, head_dim), the output "
            "dense into (heads, head_dim, hidden).",
        )

        def add(name, a, b):
            return self.layer(
                None, "Add", [a, b], shape=a.shape, channels_last=False, base=name
            )

        y = add(f"{prefix}.attention.add", x, attended)
        y = self.sequence_layer_norm(
            m.attention.output.LayerNorm, f"{prefix}.attention.output.LayerNorm", y
        )
        h = self.sequence_dense(m.intermediate.dense, f"{prefix}.intermediate.dense", y)
        # A layer of its own, so verify pairs intermediate.dense 1:1.
        h = self.layer(
            None,
            "Activation",
            [h],
            {"activation": activation},
            shape=h.shape,
            channels_last=False,
            base=f"{prefix}.intermediate.activation",
        )
        h = self.sequence_dense(m.output.dense, f"{prefix}.output.dense", h)
        y = add(f"{prefix}.output.add", y, h)
        return self.sequence_layer_norm(
            m.output.LayerNorm, f"{prefix}.output.LayerNorm", y
        )

    def pool(self, node, kind: str, p: dict, x: Tensor, shape) -> Tensor:
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
        args = {"pool_size": _int_or_list(pool)}
        if strides != pool:
            args["strides"] = _int_or_list(strides)
        comment = None
        if kind == "max" and (any(padding) or p["ceil_mode"]):
            # MaxPool2d pads with -inf and may round the size up: no
            # ZeroPadding2D + MaxPooling2D does that.
            keras = "TorchMaxPooling2D"
            if any(padding):
                args["padding"] = _int_or_list(padding)
            if p["ceil_mode"]:
                args["ceil_mode"] = True
        elif kind == "max":
            keras = "MaxPooling2D"
        else:
            floor = tuple(
                (n + 2 * q - k) // s + 1
                for n, k, s, q in zip(x.shape[1:], pool, strides, padding)
            )
            if p["ceil_mode"] and tuple(shape[1:]) != floor:
                raise _Unmappable(
                    "ceil_mode changes its output size, and TorchAveragePooling2D "
                    "has no ceil_mode"
                )
            if p["ceil_mode"]:
                comment = "ceil_mode does not change the output size here."
            keras = "TorchAveragePooling2D" if any(padding) else "AveragePooling2D"
            if any(padding):
                args["padding"] = _int_or_list(padding)
                if not p["count_include_pad"]:
                    args["count_include_pad"] = False
        return self.layer(
            node, keras, [x], args, shape=shape, channels_last=True, comment=comment
        )

    def adaptive_pool(self, node, kind: str, size, x: Tensor, shape) -> Tensor:
        if not x.channels_last or len(x.shape) != 3:
            raise _Unmappable(f"its input {x.shape} is not a channels-first 2-D map")
        height, width = x.shape[1:]
        size = _pair(size) if size is not None else (None, None)
        out = (size[0] or height, size[1] or width)
        pooling = "Average" if kind == "avg" else "Max"
        if out == (1, 1):
            keras = f"Global{pooling}Pooling2D"
            flatten = self.flatten_after(node, shape)
            if flatten is None:
                return self.layer(
                    node,
                    keras,
                    [x],
                    {"keepdims": True},
                    shape=shape,
                    channels_last=True,
                )
            # Global pooling + flatten: one layer, and the flatten is done.
            self.fused[flatten] = self.layer(
                node, keras, [x], shape=shape[:1], channels_last=False
            )
            return self.fused[flatten]
        if out == (height, width):
            keras, args = "Identity", {}
            comment = (
                f"Adaptive pooling of a {height}x{width} map to {out}: the identity."
            )
        elif height % out[0] == 0 and width % out[1] == 0:
            # The windows tile the map evenly: a plain pooling does the same.
            keras = f"{pooling}Pooling2D"
            args = {"pool_size": _int_or_list((height // out[0], width // out[1]))}
            comment = None
        else:
            raise _Unmappable(
                f"adaptive pooling of a {height}x{width} map to {out} uses uneven "
                "windows"
            )
        return self.layer(
            node, keras, [x], args, shape=shape, channels_last=True, comment=comment
        )

    def flatten_after(self, node: fx.Node, shape) -> fx.Node | None:
        """The flatten that is this node's only reader and gives (N, C), if any."""
        if len(node.users) != 1:
            return None
        (user,) = node.users
        if user.op == "call_module":
            flattens = isinstance(self.gm.get_submodule(user.target), nn.Flatten)
        else:
            flattens = user.target in _RESHAPES
        return user if flattens and self.meta_shape(user) == shape[:1] else None

    def reshape(self, node, x: Tensor, shape) -> Tensor:
        """flatten / view / reshape: a Flatten, a Reshape, or no layer at all."""
        if shape == x.shape:
            return x
        if len(shape) == 1 and shape[0] == math.prod(x.shape):
            flat_from = None
            if x.channels_last and math.prod(x.shape[1:]) > 1:
                flat_from = x.shape  # Keras's features come out (H, W, C)-ordered
            return self.layer(
                node,
                "Flatten",
                [x],
                shape=shape,
                channels_last=False,
                flat_from=flat_from,
            )
        if x.channels_last and len(shape) >= 2 and shape[0] == x.shape[0]:
            # Only the spatial axes change (N, C, H, W) -> (N, C, H*W): the
            # same reshape of Keras's (H, W, C) positions, channels still last.
            args = {"target_shape": [*shape[1:], shape[0]]}
            return self.layer(
                node, "Reshape", [x], args, shape=shape, channels_last=True
            )
        if not x.channels_last and x.flat_from is None:
            # Row-major on both sides: the same reshape.
            args = {"target_shape": list(shape)}
            return self.layer(
                node, "Reshape", [x], args, shape=shape, channels_last=False
            )
        raise _Unmappable(
            f"it reshapes a {x.shape} tensor that Keras holds in another layout "
            f"to {shape}"
        )

    def permute(self, x: Tensor, dims: tuple[int, ...], shape) -> Tensor:
        """A permute that moves channels to or from the last axis: no layer.

        Keras holds a channels-first map channels-last already; after
        x.permute(0, 2, 3, 1) PyTorch holds it that way too (and the other way
        round), so only the bookkeeping changes.
        """
        rank = len(x.shape) + 1
        to_last = (0, *range(2, rank), 1)
        to_first = (0, rank - 1, *range(1, rank - 1))
        if rank >= 3 and x.flat_from is None:
            if x.channels_last and dims == to_last:
                return Tensor(x.layer, shape, channels_last=False)
            if not x.channels_last and dims == to_first:
                return Tensor(x.layer, shape, channels_last=True)
        layout = "channels-first" if x.channels_last else "channels-last"
        raise _Unmappable(
            f"it permutes a {layout} {x.shape} tensor by {dims}, which moves more "
            "than the channel axis"
        )

    def softmax(self, node, x: Tensor, dim: int | None, shape) -> Tensor:
        if dim is None:
            raise _Unmappable("softmax without dim picks its axis implicitly")
        axis = _keras_axis(x, dim)
        return self.like(
            node, "Softmax", x, {} if axis == -1 else {"axis": axis}, shape=shape
        )

    def mean(self, node, x: Tensor, dims, keepdim: bool, shape) -> Tensor:
        rank = len(x.shape) + 1
        dims = (dims,) if isinstance(dims, int) else tuple(dims or ())
        if not x.channels_last or rank != 4 or {d % rank for d in dims} != {2, 3}:
            raise _Unmappable(
                f"a mean over {dims} of a {x.shape} tensor is not a global pooling"
            )
        return self.layer(
            node,
            "GlobalAveragePooling2D",
            [x],
            {"keepdims": True} if keepdim else {},
            shape=shape,
            channels_last=bool(keepdim),
        )

    def merge(self, node, keras: str, operands, shape) -> Tensor:
        if len(operands) != 2 or not all(isinstance(t, Tensor) for t in operands):
            raise _Unmappable(
                f"{keras} here takes two tensors of the graph, not a constant or a "
                "parameter"
            )
        a, b = (self.tensor(t) for t in operands)
        if len(a.shape) != len(b.shape) or (
            len(a.shape) >= 2 and a.channels_last != b.channels_last
        ):
            raise _Unmappable(
                f"its operands {a.shape} and {b.shape} are not laid out alike in Keras"
            )
        if a.flat_from != b.flat_from:
            raise _Unmappable("one operand is a channels-first flatten, one is not")
        return self.layer(
            node,
            keras,
            [a, b],
            shape=shape,
            channels_last=a.channels_last,
            flat_from=a.flat_from,
        )

    def concatenate(self, node, tensors, dim: int, shape) -> Tensor:
        tensors = [self.tensor(t) for t in tensors]
        first = tensors[0]
        if any(
            len(t.shape) != len(first.shape)
            or t.channels_last != first.channels_last
            or t.flat_from is not None
            for t in tensors
        ):
            raise _Unmappable("its inputs are not laid out alike in Keras")
        if len(tensors) == 1:
            return first
        axis = _keras_axis(first, dim)
        return self.layer(
            node,
            "Concatenate",
            tensors,
            {} if axis == -1 else {"axis": axis},
            shape=shape,
            channels_last=first.channels_last,
        )


# --- YAML -------------------------------------------------------------------------

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


def _wrap(text: str, width: int = 84) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line] if line else lines


def _layer_yaml(layer: Layer, previous: str | None) -> list[str]:
    entry: dict[str, Any] = {"name": layer.name, "keras": layer.keras}
    if layer.torch is not None:
        entry["torch"] = layer.torch
    # The default input is the previous layer: name inputs only where it is not.
    if previous is None or layer.inputs != [previous]:
        entry["inputs"] = layer.inputs
    if layer.args:
        entry["args"] = layer.args
    lines = [f"  # {line}" for line in _wrap(layer.comment or "")]
    if not layer.weights:
        return [*lines, f"  - {_yaml(entry)}"]
    # A mapped weight reads better on its own line, as in the committed specs.
    (key, value), *rest = entry.items()
    lines.append(f"  - {key}: {_yaml(value)}")
    lines += [f"    {key}: {_yaml(value)}" for key, value in rest]
    lines.append("    weights:")
    lines += [f"      {slot}: {_yaml(spec)}" for slot, spec in layer.weights.items()]
    return lines


def render(
    drafter: _Drafter,
    *,
    name: str,
    factory: str,
    model: nn.Module,
    input_shapes,
    command: str,
    ignore: list[str],
) -> str:
    shapes = " and ".join("x".join(map(str, s)) for s in input_shapes)
    summary = f"{type(model).__name__} ({factory}), drafted by torch2keras scaffold."
    lines = [
        f"# Drafted by torch2keras {__version__} scaffold from a torch.fx trace of",
        f"# {factory} on a {shapes} input:",
        f"#   {command}",
        "# Review it like code before you compile it: names, comments and blocks",
        "# for repeated structure are yours to improve.",
    ]
    if drafter.unmapped:
        lines.append(
            f"# {len(drafter.unmapped)} layer(s) marked UNMAPPED need a hand "
            "mapping; `torch2keras validate` names each."
        )
    lines += [
        "spec: 1",
        f"name: {_yaml(name)}",
        f"summary: {_block_scalar(summary[:200])}",
        "source:",
        f"  model: {_block_scalar(factory)}",
    ]
    if any(layer.keras == "BatchNormalization" for layer in drafter.layers):
        lines += [
            "# For an inference model, fold each BatchNormalization into the conv",
            "# before it (faster; see the README): uncomment the next line.",
            "# fold_batchnorm: true",
        ]
    lines.append("inputs:")
    for input_name, shape, dtype in drafter.inputs:
        spec: dict[str, Any] = {"shape": list(shape)}
        if dtype != "float32":
            spec["dtype"] = dtype
        note = (
            "  # Keras layout: channels last"
            if len(shape) >= 2 and dtype == "float32"
            else ""
        )
        lines.append(f"  {input_name}: {_yaml(spec)}{note}")
    lines.append("layers:")
    previous = drafter.inputs[0][0] if len(drafter.inputs) == 1 else None
    for layer in drafter.layers:
        lines += _layer_yaml(layer, previous)
        previous = layer.name
    lines.append(f"outputs: {_yaml(drafter.outputs)}")
    if ignore:
        lines.append("# Keys of modules forward() does not call on this input.")
        lines.append("ignore:")
        lines += [f"  - {_yaml(key)}" for key in ignore]
    return "\n".join(lines) + "\n"


def _is_placeholder(layer: Layer) -> bool:
    return layer.keras.startswith(schema.UNMAPPED)


def _unused_keys(model: nn.Module, used: set[str]) -> list[str]:
    """State-dict keys of no module or attribute that forward() used."""
    unused = []
    for key in model.state_dict():
        parts = key.split(".")
        if not any(".".join(parts[:i]) in used for i in range(1, len(parts) + 1)):
            unused.append(key)
    return unused


# --- entry points --------------------------------------------------------------------


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(n <= 0 for n in shape):
        raise ScaffoldError(
            f"--input-shape {text!r}: give PyTorch's shape with the batch axis, "
            "e.g. 1,3,224,224"
        )
    return shape


def command_line(factory: str, shapes, dtypes, name=None, output=None) -> str:
    """The scaffold command that drafts this spec (for the draft's header)."""
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
    """Trace the model `factory` builds and draft its spec; nothing is written.

    `path` is the file name the draft's diagnostics show; `model`, when given,
    is traced instead of building one from `factory`.
    """
    dtypes = list(input_dtypes or ["float32"])
    if len(dtypes) == 1:
        dtypes *= len(input_shapes)
    if len(dtypes) != len(input_shapes):
        raise ScaffoldError(
            f"{len(dtypes)} input dtypes for {len(input_shapes)} input shapes"
        )
    unknown = [d for d in dtypes if d not in DTYPES]
    if unknown:
        raise ScaffoldError(
            f"input dtype {unknown[0]!r} is not one of {', '.join(DTYPES)}"
        )
    model = (model if model is not None else build_model(factory)).eval()
    gm, untraceable = trace(model, len(input_shapes))
    placeholders = [n.target for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(input_shapes):
        raise ScaffoldError(
            f"{type(model).__name__}.forward takes {len(placeholders)} input(s) "
            f"({', '.join(placeholders)}): give one --input-shape for each"
        )
    try:
        with torch.no_grad():
            ShapeProp(gm).propagate(*example_inputs(input_shapes, dtypes))
    except Exception as exc:
        shapes = ", ".join(str(tuple(s)) for s in input_shapes)
        raise ScaffoldError(
            f"running {type(model).__name__} on an input of shape {shapes} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from None

    drafter = _Drafter(gm, untraceable)
    drafter.run(dtypes)
    drafter.prune(model)
    text = render(
        drafter,
        name=name or default_name(factory),
        factory=factory,
        model=model,
        input_shapes=input_shapes,
        command=command or command_line(factory, input_shapes, dtypes, name),
        ignore=_unused_keys(model, drafter.used_modules) + sorted(drafter.pruned_keys),
    )
    return Draft(text, tuple(drafter.unmapped), check(text, path))


def check(text: str, path: str) -> tuple[Diagnostic, ...]:
    """What validate says of a draft: its placeholders, and anything scaffold got wrong."""
    try:
        doc = load.load(path, text.encode("utf-8"))
        _, warnings = resolve.resolve(doc, schema.validate(doc))
    except SpecError as exc:
        return exc.diagnostics
    return tuple(warnings)


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
            f"error: --name {name!r} is not a valid spec name; try {identifier(name)!r}",
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
            args.model, shapes, dtypes, name=name, path=_shown(output), command=command
        )
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FINDINGS
    write.write_atomic(output, result.text)
    for diagnostic in result.diagnostics:
        print(diagnostic, file=sys.stderr)
    layers = sum(line.startswith("  - ") for line in result.text.splitlines())
    unmapped = f", {len(result.unmapped)} UNMAPPED" if result.unmapped else ""
    print(f"wrote {_shown(output)}: {layers} layers{unmapped}")
    return EXIT_FINDINGS if any(d.is_error for d in result.diagnostics) else EXIT_OK
