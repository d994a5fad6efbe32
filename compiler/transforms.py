"""The closed vocabulary of weight transforms.

A transform turns one PyTorch array into (a step towards) one Keras array. Each
is a small frozen object that knows
- how its output shape follows from its input shape, and back (so the compiler
  can tell, from the Keras weight's shape, which PyTorch shape to expect);
- the numpy expression it renders to in the generated module, so a reviewer
  reads plain numpy, never a call into this library.

Specs name transforms as `transpose` or `{permute: [2, 3, 1, 0]}`; `parse`
is the only way in, and nothing from a spec is ever evaluated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

Shape = tuple[int, ...]


class TransformError(ValueError):
    """A transform does not fit the shapes it is applied to."""


def _ints(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, list) or not values:
        raise TransformError(f"{what} takes a non-empty list of integers")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TransformError(f"{what} takes a list of integers, got {value!r}")
    return tuple(values)


def _call(method: str, numbers: tuple[int, ...]) -> str:
    """One method-call link of a numpy chain, e.g. `.transpose(2, 3, 1, 0)`."""
    return f".{method}({', '.join(str(n) for n in numbers)})"


@dataclass(frozen=True)
class Transform:
    name: ClassVar[str]
    takes_argument: ClassVar[bool] = False
    # Whether render() needs the output shape (known unless a later reshape hides it).
    needs_out_shape: ClassVar[bool] = False

    def forward(self, shape: Shape) -> Shape | None:
        """Output shape for an input of `shape` (None: not determined by it alone);
        TransformError if it does not fit."""
        raise NotImplementedError

    def backward(self, shape: Shape) -> Shape | None:
        """Input shape that gives `shape`, or None where it cannot be known."""
        raise NotImplementedError

    def links(self, out_shape: Shape) -> list[str]:
        """The numpy method calls (`.T`, `.reshape(...)`) that apply this transform."""
        raise NotImplementedError

    def render(self, expr: str, out_shape: Shape) -> str:
        """numpy expression applying this transform to the array `expr`."""
        return expr + "".join(self.links(out_shape))

    def describe(self) -> str:
        """How the spec spells this transform (used in generated comments)."""
        return self.name


@dataclass(frozen=True)
class Transpose(Transform):
    """Reverse all axes: a Linear (out, in) weight becomes a Dense (in, out) kernel."""

    name: ClassVar[str] = "transpose"

    def forward(self, shape: Shape) -> Shape:
        return shape[::-1]

    def backward(self, shape: Shape) -> Shape:
        return shape[::-1]

    def links(self, out_shape: Shape) -> list[str]:
        return [".T"]


@dataclass(frozen=True)
class Permute(Transform):
    """Reorder axes as numpy.transpose(axes) does."""

    name: ClassVar[str] = "permute"
    takes_argument: ClassVar[bool] = True
    axes: tuple[int, ...]

    def __post_init__(self):
        if sorted(self.axes) != list(range(len(self.axes))):
            raise TransformError(
                f"permute axes {list(self.axes)} are not a permutation of "
                f"0..{len(self.axes) - 1}"
            )

    def _check_rank(self, shape: Shape) -> None:
        if len(shape) != len(self.axes):
            raise TransformError(
                f"permute {list(self.axes)} needs a rank-{len(self.axes)} array, "
                f"got shape {shape}"
            )

    def forward(self, shape: Shape) -> Shape:
        self._check_rank(shape)
        return tuple(shape[a] for a in self.axes)

    def backward(self, shape: Shape) -> Shape:
        self._check_rank(shape)
        result = [0] * len(shape)
        for out_axis, in_axis in enumerate(self.axes):
            result[in_axis] = shape[out_axis]
        return tuple(result)

    def links(self, out_shape: Shape) -> list[str]:
        return [_call("transpose", self.axes)]

    def describe(self) -> str:
        return f"permute {list(self.axes)}"


@dataclass(frozen=True)
class Reshape(Transform):
    """Reshape to a fixed shape (same number of elements)."""

    name: ClassVar[str] = "reshape"
    takes_argument: ClassVar[bool] = True
    shape: tuple[int, ...]

    def __post_init__(self):
        if any(n <= 0 for n in self.shape):
            raise TransformError(f"reshape {list(self.shape)} needs positive sizes")

    def forward(self, shape: Shape) -> Shape:
        if math.prod(shape) != math.prod(self.shape):
            raise TransformError(
                f"cannot reshape {shape} ({math.prod(shape)} elements) to "
                f"{self.shape} ({math.prod(self.shape)} elements)"
            )
        return self.shape

    def backward(self, shape: Shape) -> None:
        if shape != self.shape:
            raise TransformError(f"reshape gives {self.shape}, but {shape} is needed")
        return None  # any shape with as many elements would do

    def links(self, out_shape: Shape) -> list[str]:
        return [_call("reshape", self.shape)]

    def describe(self) -> str:
        return f"reshape {list(self.shape)}"


@dataclass(frozen=True)
class ConvKernel(Transform):
    """PyTorch conv weight (out, in/groups, *k) -> Keras kernel (*k, in/groups, out)."""

    name: ClassVar[str] = "conv_kernel"
    needs_out_shape: ClassVar[bool] = True

    @staticmethod
    def _axes(rank: int) -> tuple[int, ...]:
        return (*range(2, rank), 1, 0)

    def _check_rank(self, shape: Shape) -> None:
        if len(shape) < 3:
            raise TransformError(
                f"conv_kernel needs a rank-3 or higher array, got {shape}"
            )

    def forward(self, shape: Shape) -> Shape:
        self._check_rank(shape)
        return tuple(shape[a] for a in self._axes(len(shape)))

    def backward(self, shape: Shape) -> Shape:
        self._check_rank(shape)
        return (shape[-1], shape[-2], *shape[:-2])

    def links(self, out_shape: Shape) -> list[str]:
        return [_call("transpose", self._axes(len(out_shape)))]


@dataclass(frozen=True)
class DepthwiseKernel(Transform):
    """PyTorch depthwise weight (C*M, 1, kh, kw) -> Keras kernel (kh, kw, C, M).

    PyTorch output channel c*M + m is input channel c's m-th filter, which is
    exactly where Keras's DepthwiseConv2D puts kernel[:, :, c, m].
    """

    name: ClassVar[str] = "depthwise_kernel"
    needs_out_shape: ClassVar[bool] = True

    def forward(self, shape: Shape) -> None:
        if len(shape) != 4 or shape[1] != 1:
            raise TransformError(
                f"depthwise_kernel needs a (C*M, 1, kh, kw) weight, got {shape}"
            )
        return None  # how C*M splits into C and M is the Keras layer's to say

    def backward(self, shape: Shape) -> Shape:
        if len(shape) != 4:
            raise TransformError(f"depthwise_kernel gives a rank-4 kernel, not {shape}")
        kh, kw, channels, multiplier = shape
        return (channels * multiplier, 1, kh, kw)

    def links(self, out_shape: Shape) -> list[str]:
        kh, kw, channels, multiplier = out_shape
        return [
            _call("reshape", (channels, multiplier, kh, kw)),
            _call("transpose", (2, 3, 0, 1)),
        ]


@dataclass(frozen=True)
class Unflatten(Transform):
    """Reorder the input features of a Linear weight from NCHW- to NHWC-flatten order.

    PyTorch flattens a (C, H, W) feature map channel-first; Keras flattens the
    (H, W, C) map channel-last. A Linear (out, C*H*W) weight must have its input
    axis reordered to (out, H*W*C) before it can serve a Keras Dense. `dims` is
    the PyTorch feature map shape (C, H, W), or (C, L) for 1-D features.
    """

    name: ClassVar[str] = "unflatten"
    takes_argument: ClassVar[bool] = True
    needs_out_shape: ClassVar[bool] = True
    dims: tuple[int, ...]

    def __post_init__(self):
        if len(self.dims) < 2 or any(n <= 0 for n in self.dims):
            raise TransformError(
                f"unflatten takes the PyTorch feature map shape [C, H, W] "
                f"(or [C, L]), got {list(self.dims)}"
            )

    def _check(self, shape: Shape) -> None:
        if len(shape) != 2 or shape[1] != math.prod(self.dims):
            raise TransformError(
                f"unflatten {list(self.dims)} covers {math.prod(self.dims)} input "
                f"features, but the weight has shape {shape}"
            )

    def forward(self, shape: Shape) -> Shape:
        self._check(shape)
        return shape

    def backward(self, shape: Shape) -> Shape:
        self._check(shape)
        return shape

    def links(self, out_shape: Shape) -> list[str]:
        rank = len(self.dims)
        return [
            _call("reshape", (out_shape[0], *self.dims)),  # (out, C, H, W)
            _call("transpose", (0, *range(2, rank + 1), 1)),  # (out, H, W, C)
            _call("reshape", out_shape),  # (out, H*W*C)
        ]

    def describe(self) -> str:
        return f"unflatten {list(self.dims)}"


TRANSFORMS: dict[str, type[Transform]] = {
    t.name: t
    for t in (Transpose, Permute, Reshape, ConvKernel, DepthwiseKernel, Unflatten)
}


def parse(item: Any) -> Transform:
    """A spec item (`"transpose"` or `{"permute": [...]}`) -> Transform.

    Raises KeyError(name) for an unknown name, TransformError for a bad form.
    """
    if isinstance(item, str):
        name, argument = item, None
    elif isinstance(item, dict) and len(item) == 1:
        ((name, argument),) = item.items()
    else:
        raise TransformError(
            "a transform is a name (transpose) or a one-key mapping "
            "({permute: [2, 3, 1, 0]})"
        )
    if name not in TRANSFORMS:
        raise KeyError(name)
    cls = TRANSFORMS[name]
    if not cls.takes_argument:
        if argument is not None:
            raise TransformError(f"{name} takes no argument")
        return cls()
    if argument is None:
        raise TransformError(f"{name} needs an argument, e.g. {{{name}: [...]}}")
    return cls(_ints(argument, name))
