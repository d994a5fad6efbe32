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
    Tag,
    ValidationError,
    create_model,
)

from . import errors, transforms
from .errors import Diagnostic, SpecError, did_you_mean
from .layers import LAYER_TYPES, PositiveInt
from .load import Document, Loc

# Names the generated module itself uses at module or function level; a layer
# or input with one of these names would shadow it.
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
)

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# PyTorch module paths and state-dict keys: dotted identifiers or indices.
_TORCH_PATH = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
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
    if not _TORCH_PATH.fullmatch(value):
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

    from_: TorchPath = Field(alias="from", description="the PyTorch state-dict key")
    transform: list[TransformItem] = Field(default_factory=list)


class _LayerBase(Strict):
    name: Name
    inputs: list[Annotated[str, Field(strict=True)]] | None = Field(
        default=None,
        description="layers or inputs feeding this one; default: the previous layer",
    )
    torch: TorchPath | None = Field(
        default=None, description="the PyTorch module this layer pairs with"
    )
    weights: dict[Annotated[str, Field(strict=True)], WeightSpec] = Field(
        default_factory=dict
    )


def _layer_model(keras_type: str, layer_type) -> type[BaseModel]:
    args_required = any(f.is_required() for f in layer_type.Args.model_fields.values())
    args_field = (
        (layer_type.Args, ...)
        if args_required
        else (layer_type.Args, layer_type.Args())
    )
    return create_model(
        f"{keras_type}Layer",
        __base__=_LayerBase,
        keras=(Literal[keras_type], ...),
        args=args_field,
    )


def _layer_tag(value: Any) -> str | None:
    keras_type = value.get("keras") if isinstance(value, dict) else None
    return keras_type if keras_type in LAYER_TYPES else None


# One model per Keras layer type, chosen by the `keras:` key.
_LAYER_MODELS = tuple(
    Annotated[_layer_model(k, t), Tag(k)] for k, t in LAYER_TYPES.items()
)
LayerSpec = Annotated[
    Union[_LAYER_MODELS],  # noqa: UP007 (a union built from a tuple needs Union[...])
    Discriminator(
        _layer_tag,
        custom_error_type="unknown_layer",
        custom_error_message="unknown Keras layer type",
    ),
]


class Spec(Strict):
    spec: Literal[1] = Field(description="spec language version")
    name: Name
    summary: Annotated[
        str, Field(strict=True, max_length=200), AfterValidator(_single_line)
    ] = ""
    source: SourceSpec | None = None
    inputs: dict[Name, InputSpec] = Field(min_length=1)
    layers: list[LayerSpec] = Field(min_length=1)
    outputs: list[Annotated[str, Field(strict=True)]] = Field(min_length=1)
    ignore: list[TorchPath] = Field(
        default_factory=list, description="PyTorch keys deliberately left unused"
    )
    allow_lossy_cast: Annotated[bool, Field(strict=True)] = Field(
        default=False,
        description="let the generated loader cast weights whose values change "
        "(float64 -> float32) or whose kind differs (int -> float)",
    )


# --- pydantic errors -> diagnostics ----------------------------------------


_CODES = {
    "extra_forbidden": errors.SCHEMA_UNKNOWN_KEY,
    "missing": errors.SCHEMA_MISSING,
    "unknown_layer": errors.UNKNOWN_LAYER,
    "unknown_transform": errors.UNKNOWN_TRANSFORM,
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


def _allowed_keys(data: Any, parent: Loc) -> tuple[str, list[str]]:
    """What the mapping at `parent` holds, and the keys it accepts (for did-you-mean)."""
    if not parent:
        return "key", _keys_of(Spec)
    if parent == ("source",):
        return "key", _keys_of(SourceSpec)
    if parent[0] == "inputs" and len(parent) == 2:
        return "key", _keys_of(InputSpec)
    if parent[0] == "layers" and len(parent) >= 2:
        layer = data["layers"][parent[1]]
        layer_type = (
            LAYER_TYPES.get(layer.get("keras")) if isinstance(layer, dict) else None
        )
        if len(parent) == 2:
            return "key", _keys_of(_LayerBase) + ["keras", "args"]
        if parent[2] == "args" and len(parent) == 3 and layer_type is not None:
            return "argument", list(layer_type.Args.model_fields)
        if parent[2] == "weights" and len(parent) == 4:
            return "key", _keys_of(WeightSpec)
    return "key", []


def _message(error: dict, data: Any, loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        what, allowed = _allowed_keys(data, loc[:-1])
        hint = did_you_mean(key, allowed)
        known = f"; allowed: {', '.join(allowed)}" if allowed and not hint else ""
        return f"unknown {what} {key!r}{hint}{known}"
    if kind == "missing":
        return f"missing required key {error['loc'][-1]!r}"
    if kind == "unknown_layer":
        value = (
            error["input"].get("keras") if isinstance(error["input"], dict) else None
        )
        if value is None:
            return "layer has no 'keras' type (e.g. keras: Conv2D)"
        return (
            f"unknown Keras layer type {value!r}{did_you_mean(str(value), LAYER_TYPES)}; "
            f"supported: {', '.join(sorted(LAYER_TYPES))}"
        )
    message = error["msg"]
    if kind == "value_error":  # our own validators name the value themselves
        return message.removeprefix("Value error, ")
    if isinstance(error["input"], (str, int, float)) and kind != "literal_error":
        message += f", got {error['input']!r}"
    if kind == "literal_error" and error["loc"] and error["loc"][-1] == "spec":
        message = (
            f"unsupported spec version {error['input']!r}; this compiler reads spec: 1"
        )
    return message


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
        diagnostics = []
        for error in exc.errors():
            loc = _data_loc(doc.data, error["loc"])
            code = _CODES.get(error["type"], errors.SCHEMA_VALUE)
            if error["type"] == "missing":
                diagnostics.append(
                    doc.diagnostic(loc, code, _message(error, doc.data, loc))
                )
                continue
            key = error["type"] == "extra_forbidden"
            diagnostics.append(
                doc.diagnostic(loc, code, _message(error, doc.data, loc), key=key)
            )
        # One finding per place: unions can report the same spot more than once.
        unique = list(dict.fromkeys(diagnostics))
        raise SpecError(sorted(unique, key=Diagnostic.sort_key)) from None


def json_schema() -> dict:
    return Spec.model_json_schema(by_alias=True)
