"""Stage 2, schema: the spec language as pydantic models, and nothing else.

Structure and types only: whether names resolve, shapes fit and every weight is
covered is the resolver's job. Every model forbids unknown keys. Pydantic's
errors are turned into diagnostics that point at the YAML line (`validate`).
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    Tag,
    ValidationError,
    model_validator,
)

from . import errors, transforms
from .errors import Diagnostic, SpecError, did_you_mean
from .layers import LAYER_TYPES, Float, PositiveInt
from .load import Document, Loc

# Names the generated module itself uses at module or function level; a layer
# or input with one of these names would shadow it. build_model() reads `keras`
# and the custom layer classes it defines (TorchMaxPooling2D, ...).
RESERVED_NAMES = frozenset(
    {
        "keras",
        "np",
        "argparse",
        "Path",
        "Mapping",
        "model",
        "state_dict",
        "sd",
        "assign",
    }
    | {name for name, layer in LAYER_TYPES.items() if layer.custom}
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PARAM = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
# PyTorch module paths and state-dict keys: dotted names (torchvision regnet has
# "block1-0", so "-" too). They only ever reach generated code inside literals.
TORCH_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_FACTORY = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"
)


def _identifier(value: str) -> str:
    if not _IDENTIFIER.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid name: use ASCII letters, digits and _, "
            "not starting with a digit"
        )
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise ValueError(f"{value!r} is a Python keyword")
    if value.startswith("__"):
        raise ValueError(f"{value!r}: names may not start with '__'")
    if value in RESERVED_NAMES:
        raise ValueError(f"{value!r} is reserved by the generated module")
    return value


def _torch_path(value: str) -> str:
    if not TORCH_PATH.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a PyTorch module path or key (like 'layer1.0.conv1')"
        )
    return value


def _factory(value: str) -> str:
    # fullmatch, not a pydantic `pattern`: that one only searches, and let text
    # around a valid factory (newlines, quotes) through into the docstring.
    if not _FACTORY.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a PyTorch model factory like 'package.module:callable'"
        )
    return value


def _single_line(value: str) -> str:
    # Line breaks, control and bidi-override characters (U+202E, ...) are not
    # printable; in a docstring they could make the code read differently from
    # what it does, so they are refused, not escaped.
    for ch in value:
        if not ch.isprintable():
            name = unicodedata.name(ch, "a control character")
            raise ValueError(
                f"contains U+{ord(ch):04X} ({name}): a summary is one line of "
                "printable text, without control or bidi characters"
            )
    return value


Name = Annotated[str, Field(strict=True), AfterValidator(_identifier)]
TorchPath = Annotated[str, Field(strict=True), AfterValidator(_torch_path)]


def _torch_path_or_param(value: str) -> str:
    return value if _PARAM.fullmatch(value) else _torch_path(value)


# Inside a block, a layer's torch path may be a "$param" reference.
TorchPathOrParam = Annotated[
    str, Field(strict=True), AfterValidator(_torch_path_or_param)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceSpec(Strict):
    """Where verify and scaffold find the PyTorch model."""

    model: Annotated[str, Field(strict=True), AfterValidator(_factory)] = Field(
        description="PyTorch model factory as 'package.module:callable'",
        json_schema_extra={"pattern": f"^{_FACTORY.pattern}$"},
    )


class InputSpec(Strict):
    shape: list[PositiveInt] = Field(
        description="Keras layout (channels last), batch omitted"
    )
    dtype: Literal["float32", "float16", "bfloat16", "int32", "int64", "bool"] = (
        "float32"
    )


def _transform(item: Any) -> transforms.Transform:
    try:
        return transforms.parse(item)
    except KeyError as missing:
        name = missing.args[0]
        raise _custom(
            "unknown_transform",
            f"unknown transform {name!r}{did_you_mean(str(name), transforms.TRANSFORMS)}; "
            f"known: {', '.join(sorted(transforms.TRANSFORMS))}",
        ) from None
    except transforms.TransformError as exc:
        raise ValueError(str(exc)) from None


def _custom(kind: str, message: str):
    from pydantic_core import PydanticCustomError

    # The message goes through str.format-like templating: escape braces.
    return PydanticCustomError(kind, message.replace("{", "{{").replace("}", "}}"))


TransformItem = Annotated[
    str | dict[str, Any],
    AfterValidator(_transform),
]


class WeightSpec(Strict):
    """An explicit mapping of one Keras weight slot."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    from_: TorchPath | Annotated[list[TorchPath], Field(min_length=2)] = Field(
        alias="from",
        description="the PyTorch state-dict key, or several keys that the first "
        "transform combines (sum, stack)",
    )
    transform: list[TransformItem] = Field(default_factory=list)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.from_,) if isinstance(self.from_, str) else tuple(self.from_)

    @model_validator(mode="after")
    def _combining(self):
        try:
            transforms.check_chain(len(self.keys), tuple(self.transform))
        except transforms.TransformError as exc:
            raise ValueError(str(exc)) from None
        return self


# `torch2keras scaffold` writes `keras: "UNMAPPED <what PyTorch does there>"`
# where it finds no Keras layer for a PyTorch op. It must fail validation with
# its own message (naming the op and module path) rather than a did-you-mean.
UNMAPPED = "UNMAPPED"


def _keras_type(value: str) -> str:
    if value.startswith(UNMAPPED):
        what = value.removeprefix(UNMAPPED).strip() or "this PyTorch op"
        raise _custom(
            "unmapped_layer",
            f"scaffold found no Keras layer for {what}: replace this placeholder "
            "with a Keras layer type the spec language allows (the README lists "
            "them), or change the PyTorch model",
        )
    if value not in LAYER_TYPES:
        raise _custom(
            "unknown_layer",
            f"unknown Keras layer type {value!r}{did_you_mean(value, LAYER_TYPES)}; "
            f"supported: {', '.join(sorted(LAYER_TYPES))}",
        )
    return value


Reference = Annotated[str, Field(strict=True)]
# A block parameter's value, or (inside a block) a "$param" reference to one.
Value = Union[StrictBool, StrictInt, Float, str, None, list[Any]]  # noqa: UP007


class LayerSpec(Strict):
    """One Keras layer. `args` are checked against the layer type by the resolver,
    after block parameters are substituted."""

    name: Name
    keras: Annotated[str, Field(strict=True), AfterValidator(_keras_type)] = Field(
        description="Keras layer class (see the allowlist in compiler/layers.py)"
    )
    args: dict[Annotated[str, Field(strict=True)], Any] = Field(default_factory=dict)
    inputs: list[Reference] | None = Field(
        default=None,
        description="layers or inputs feeding this one; default: the previous layer",
    )
    torch: TorchPathOrParam | None = Field(
        default=None, description="the PyTorch module this layer pairs with"
    )
    weights: dict[Annotated[str, Field(strict=True)], WeightSpec] = Field(
        default_factory=dict
    )
    when: StrictBool | Annotated[str, Field(strict=True)] = Field(
        default=True,
        description="inside a block, '$param': leave the layer out when false; "
        "references to a left-out layer then read its input",
    )


class BlockSpec(Strict):
    """A parametrised sub-graph, defined once and instantiated by name."""

    params: dict[Name, Value] = Field(
        default_factory=dict,
        description="parameter -> default value (null: the instance must give it)",
    )
    layers: list[LayerSpec] = Field(min_length=1)
    output: Reference | None = Field(
        default=None,
        description="the layer whose output is the block's (default: last)",
    )


class BlockInstanceSpec(Strict):
    """One use of a block (or `repeat` uses, chained) in the layer list."""

    name: Name
    block: Name
    args: dict[Name, Value] = Field(default_factory=dict)
    repeat: PositiveInt | None = Field(
        default=None,
        description="chain this many instances, named NAME_0..., with torch PATH.0...",
    )
    first: dict[Name, Value] = Field(
        default_factory=dict,
        description="with repeat: args overriding `args` in the first",
    )
    start: Annotated[StrictInt, Field(ge=0)] = Field(
        default=0,
        description="with repeat: index of the first instance, in names and torch paths",
    )
    inputs: list[Reference] | None = Field(default=None, max_length=1)
    torch: TorchPath | None = Field(
        default=None, description="PyTorch path prefix of the block's modules"
    )


def _item_tag(value: Any) -> str:
    return "block" if isinstance(value, dict) and "block" in value else "layer"


LayerItem = Annotated[
    Union[  # noqa: UP007
        Annotated[LayerSpec, Tag("layer")], Annotated[BlockInstanceSpec, Tag("block")]
    ],
    Discriminator(_item_tag),
]


class Spec(Strict):
    spec: Literal[1] = Field(description="spec language version")
    name: Name
    summary: Annotated[
        str, Field(strict=True, max_length=200), AfterValidator(_single_line)
    ] = ""
    source: SourceSpec | None = None
    inputs: dict[Name, InputSpec] = Field(min_length=1)
    blocks: dict[Name, BlockSpec] = Field(default_factory=dict)
    layers: list[LayerItem] = Field(min_length=1)
    outputs: list[Reference] = Field(min_length=1)
    ignore: list[TorchPath] = Field(
        default_factory=list, description="PyTorch keys deliberately left unused"
    )
    allow_lossy_cast: Annotated[bool, Field(strict=True)] = Field(
        default=False,
        description="let the generated loader cast weights whose values change "
        "(float64 -> float32) or whose kind differs (int -> float)",
    )
    fold_batchnorm: Annotated[bool, Field(strict=True)] = Field(
        default=False,
        description="fold each BatchNormalization that follows a Conv/Dense layer "
        "(no activation, nothing else reading it) into that layer's kernel and "
        "bias: a faster model, for inference only",
    )


# --- pydantic errors -> diagnostics ----------------------------------------


_CODES = {
    "extra_forbidden": errors.SCHEMA_UNKNOWN_KEY,
    "missing": errors.SCHEMA_MISSING,
    "unknown_layer": errors.UNKNOWN_LAYER,
    "unknown_transform": errors.UNKNOWN_TRANSFORM,
    "unmapped_layer": errors.UNMAPPED_LAYER,
}


def _data_loc(data: Any, loc: tuple) -> Loc:
    """Drop the parts of a pydantic loc that are not in the data (union tags, ...)."""
    result: list[str | int] = []
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        elif part == "from_" and isinstance(data, dict) and "from" in data:
            part, data = "from", data["from"]
        else:
            continue
        result.append(part)
    return tuple(result)


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [f.alias or n for n, f in model.model_fields.items()]


def _spec_keys(data: Any, parent: Loc) -> tuple[str, list[str]]:
    """What the mapping at `parent` holds, and the keys it accepts (for did-you-mean)."""
    if not parent:
        return "key", _keys_of(Spec)
    if parent == ("source",):
        return "key", _keys_of(SourceSpec)
    if parent[0] == "inputs" and len(parent) == 2:
        return "key", _keys_of(InputSpec)
    if parent[0] == "blocks" and len(parent) == 2:
        return "key", _keys_of(BlockSpec)
    # A layer, top level or in a block, and the weights inside it.
    layer_loc = parent[:2] if parent[0] == "layers" else parent[:4]
    if parent[0] in ("layers", "blocks") and len(parent) >= len(layer_loc):
        node = data
        for part in layer_loc:
            node = node[part]
        model = BlockInstanceSpec if _item_tag(node) == "block" else LayerSpec
        rest = parent[len(layer_loc) :]
        if not rest:
            return "key", _keys_of(model)
        if rest[0] == "weights" and len(rest) == 2:
            return "key", _keys_of(WeightSpec)
    return "key", []


def _message(error: dict, loc: Loc, keys) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        what, allowed = keys(loc[:-1])
        hint = did_you_mean(key, allowed)
        known = f"; allowed: {', '.join(allowed)}" if allowed and not hint else ""
        return f"unknown {what} {key!r}{hint}{known}"
    if kind == "missing":
        return f"missing required key {error['loc'][-1]!r}"
    message = error["msg"]
    if kind in ("value_error", "unknown_layer", "unknown_transform", "unmapped_layer"):
        # Our own validators name the value themselves.
        return message.removeprefix("Value error, ")
    if kind == "literal_error" and error["loc"] == ("spec",):
        return (
            f"unsupported spec version {error['input']!r}; this compiler reads spec: 1"
        )
    if isinstance(error["input"], (str, int, float)) and kind != "literal_error":
        message += f", got {error['input']!r}"
    return message


def diagnostics(
    doc: Document, exc: ValidationError, data: Any, prefix: Loc, keys, context: str = ""
) -> list[Diagnostic]:
    """A pydantic error -> diagnostics at the YAML positions of the data at `prefix`.

    `keys(parent_loc) -> (what, allowed keys)` feeds did-you-mean on unknown keys;
    `context` is appended to every message (e.g. the block instance it came from).
    """
    found = []
    for error in exc.errors():
        loc = _data_loc(data, error["loc"])
        code = _CODES.get(error["type"], errors.SCHEMA_VALUE)
        message = _message(error, loc, keys) + context
        key = error["type"] == "extra_forbidden"
        found.append(doc.diagnostic(prefix + loc, code, message, key=key))
    # One finding per place: a union reports each of its members' failures at the
    # same spot ("greater than 0", "a valid tuple"); the first one says enough.
    first = {}
    for diagnostic in found:
        first.setdefault((diagnostic.position, diagnostic.code), diagnostic)
    return sorted(first.values(), key=Diagnostic.sort_key)


def validate(doc: Document) -> Spec:
    """Document -> Spec, or SpecError with one diagnostic per problem."""
    if not isinstance(doc.data, dict):
        raise SpecError(
            [
                doc.diagnostic(
                    (),
                    errors.SCHEMA_VALUE,
                    "a spec is a YAML mapping (spec: 1, name: ...)",
                )
            ]
        )
    try:
        return Spec.model_validate(doc.data)
    except ValidationError as exc:
        found = diagnostics(doc, exc, doc.data, (), lambda p: _spec_keys(doc.data, p))
        raise SpecError(found) from None


# Keywords whose value is a schema, or a list of schemas, for a part of the value.
_SUBSCHEMAS = ("items", "prefixItems", "anyOf", "oneOf", "allOf")


def _or_param(node: dict, param: dict) -> dict:
    """`node`, with a `$param` string allowed in its place and in place of any
    part of it (block parameters are substituted at any depth: `[$k, $k]`)."""
    node = dict(node)
    for part_of in _SUBSCHEMAS:
        if isinstance(node.get(part_of), dict):
            node[part_of] = _or_param(node[part_of], param)
        elif isinstance(node.get(part_of), list):
            node[part_of] = [_or_param(part, param) for part in node[part_of]]
    annotations = {
        k: node.pop(k) for k in ("title", "default", "description") if k in node
    }
    return {**annotations, "anyOf": [node, param]}


def json_schema() -> dict:
    """The spec language as JSON Schema, for editors to validate and complete.

    The pydantic models' schema, plus what the resolver checks per layer type:
    `keras` is one of the allowlisted classes, and each class's `args` have its
    own names and types. Inside a block any argument may be a `$param` instead.
    """
    schema = Spec.model_json_schema(by_alias=True)
    defs = schema["$defs"]
    layer = defs["LayerSpec"]
    layer["properties"]["keras"]["enum"] = sorted(LAYER_TYPES)
    param = {"type": "string", "pattern": f"^{_PARAM.pattern}$"}
    branches = []
    for name, layer_type in sorted(LAYER_TYPES.items()):
        args = layer_type.Args.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(args.pop("$defs", {}))
        args_schema = {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                key: _or_param(value, param)
                for key, value in args.get("properties", {}).items()
            },
        }
        if args.get("required"):
            args_schema["required"] = args["required"]
        branches.append(
            {
                "if": {"properties": {"keras": {"const": name}}, "required": ["keras"]},
                "then": {"properties": {"args": args_schema}},
            }
        )
    layer["allOf"] = branches
    return schema
