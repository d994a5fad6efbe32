"""The intermediate representation: a resolved spec, ready to render.

Everything here is decided: names are unique and wired, shapes are inferred,
every Keras weight slot has exactly one PyTorch source and a transform chain
whose shapes check out. The renderer only formats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .transforms import Shape, Transform


@dataclass(frozen=True)
class Input:
    name: str
    shape: Shape  # Keras layout, batch omitted
    dtype: str
    line: int


@dataclass(frozen=True)
class WeightPort:
    """One Keras weight filled from one PyTorch key, or from several keys that
    its first transform combines (an LSTM bias is bias_ih + bias_hh)."""

    slot: str  # Keras variable path inside the layer: "kernel", "lstm_cell/bias", ...
    keras_shape: Shape
    torch_keys: tuple[str, ...]
    torch_shapes: tuple[Shape | None, ...]  # None where a reshape makes it unknowable
    transforms: tuple[Transform, ...]
    # Output shape of each transform, aligned with `transforms`.
    transform_shapes: tuple[Shape | None, ...]
    explicit: bool  # mapped under `weights:` rather than by the layer's default rule
    line: int


@dataclass(frozen=True)
class Wrapped:
    """The layer a wrapper (Bidirectional) is constructed around."""

    keras: str
    args: tuple[tuple[str, Any], ...]
    name: str


@dataclass(frozen=True)
class FoldedNorm:
    """An inference BatchNormalization folded into the layer before it (spec:
    fold_batchnorm). Its weights still come from PyTorch; the loader folds them
    into the layer's kernel and bias, and the Keras model has no layer for it."""

    name: str  # the spec's name for the BatchNormalization layer
    torch: str | None
    epsilon: float
    weights: tuple[WeightPort, ...]  # gamma (if scale), beta (if center), moving stats
    line: int


@dataclass(frozen=True)
class Layer:
    name: str
    keras: str  # Keras layer class name
    args: tuple[tuple[str, Any], ...]  # rendered arguments, in Keras's order
    inputs: tuple[str, ...]
    output_shape: Shape
    torch: str | None  # the paired PyTorch module path
    weights: tuple[WeightPort, ...]
    line: int
    # None: called on one tensor or a list; else, per input, "" (positional) or
    # the keyword it is passed as (MultiHeadAttention's attention_mask=).
    call_keywords: tuple[str, ...] | None = None
    wrapped: Wrapped | None = None
    instance: str = ""  # the block instance it belongs to, described; "" at top level
    folded: FoldedNorm | None = None  # a BatchNormalization applied to its output


@dataclass(frozen=True)
class Module:
    name: str
    summary: str
    spec_path: str  # as the user should see it: relative, forward slashes
    spec_sha256: str
    source_model: str | None
    inputs: tuple[Input, ...]
    layers: tuple[Layer, ...]
    outputs: tuple[str, ...]  # the layers (or inputs) whose values are outputs
    output_names: tuple[str, ...]  # the names the spec gives them (dict keys)
    ignored_keys: tuple[str, ...]  # sorted
    regenerate: str  # the command that rewrites the generated module
    # Whether the generated loader may cast weights with loss (spec: allow_lossy_cast).
    allow_lossy_cast: bool = False
