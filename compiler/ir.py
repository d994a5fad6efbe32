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
    """One Keras weight filled from one PyTorch key."""

    slot: str  # Keras variable name inside the layer: "kernel", "gamma", ...
    keras_shape: Shape
    torch_key: str
    torch_shape: Shape | None  # None where a reshape makes it unknowable
    transforms: tuple[Transform, ...]
    # Output shape of each transform, aligned with `transforms`.
    transform_shapes: tuple[Shape | None, ...]
    explicit: bool  # mapped under `weights:` rather than by the layer's default rule
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
    instance: str = ""  # the block instance it belongs to, described; "" at top level


@dataclass(frozen=True)
class Module:
    name: str
    summary: str
    spec_path: str  # as the user should see it: relative, forward slashes
    spec_sha256: str
    source_model: str | None
    inputs: tuple[Input, ...]
    layers: tuple[Layer, ...]
    outputs: tuple[str, ...]
    ignored_keys: tuple[str, ...]  # sorted
    regenerate: str  # the command that rewrites the generated module
    # Whether the generated loader may cast weights with loss (spec: allow_lossy_cast).
    allow_lossy_cast: bool = False
