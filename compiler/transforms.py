"""The closed vocabulary of weight transforms.

A transform turns one PyTorch array into (a step towards) one Keras array. Each
is a small frozen object that knows
- how its output shape follows from its input shape, and back (so the compiler
  can tell, from the Keras weight's shape, which PyTorch shape to expect);
- the numpy expression it renders to in the generated module, so a reviewer
  reads plain numpy, never a call into this library.

Specs name transforms as `transpose` or `{permute: [2, 3, 1, 0]}`; `parse`
is the only way in, and nothing from a spec is ever evaluated.

A Keras weight made of several PyTorch keys (`from: [KEY_A, KEY_B]`) starts
its chain with a combining transform (`sum`, `stack`): it makes one array of
the sources, and the rest of the chain goes on as for one key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
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
    # Whether it combines several PyTorch keys into one array (see Combine).
    combines: ClassVar[bool] = False

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


@dataclass(frozen=True)
class Chunk(Transform):
    """Rows of a fused weight: chunk `index` of `parts` equal chunks along axis 0,
    as torch.chunk(w, parts)[index] (PyTorch MultiheadAttention's in_proj_weight
    holds the query, key and value projections as chunks 0, 1, 2 of 3).

    Only the first transform of a chain may take a chunk, so the resolver can
    check that every chunk of the key is read exactly once.
    """

    name: ClassVar[str] = "chunk"
    takes_argument: ClassVar[bool] = True
    needs_out_shape: ClassVar[bool] = True
    index: int
    parts: int

    def __post_init__(self):
        if self.parts < 2 or not 0 <= self.index < self.parts:
            raise TransformError(
                f"chunk takes [index, parts] with parts >= 2 and 0 <= index < parts, "
                f"got {[self.index, self.parts]}"
            )

    def forward(self, shape: Shape) -> Shape:
        if not shape or shape[0] % self.parts:
            raise TransformError(
                f"chunk {[self.index, self.parts]} needs a first axis divisible by "
                f"{self.parts}, got shape {shape}"
            )
        return (shape[0] // self.parts, *shape[1:])

    def backward(self, shape: Shape) -> Shape:
        if not shape:
            raise TransformError("chunk cannot give a scalar")
        return (shape[0] * self.parts, *shape[1:])

    def links(self, out_shape: Shape) -> list[str]:
        start = self.index * out_shape[0]
        return [f"[{start}:{start + out_shape[0]}]"]

    def describe(self) -> str:
        return f"chunk {[self.index, self.parts]}"


@dataclass(frozen=True)
class Gates(Transform):
    """Reorder the equal gate blocks along the last axis of a fused RNN weight.

    `order[i]` is the PyTorch gate that becomes Keras gate i: a GRU's PyTorch
    gates are (reset, update, new), Keras's (update, reset, candidate), so a GRU
    kernel takes `{gates: [1, 0, 2]}` after its transpose.
    """

    name: ClassVar[str] = "gates"
    takes_argument: ClassVar[bool] = True
    needs_out_shape: ClassVar[bool] = True
    order: tuple[int, ...]

    def __post_init__(self):
        if len(self.order) < 2 or sorted(self.order) != list(range(len(self.order))):
            raise TransformError(
                f"gates {list(self.order)} is not a reordering of "
                f"0..{len(self.order) - 1} (at least two gates)"
            )

    def _check(self, shape: Shape) -> Shape:
        if not shape or shape[-1] % len(self.order):
            raise TransformError(
                f"gates {list(self.order)} needs a last axis divisible by "
                f"{len(self.order)}, got shape {shape}"
            )
        return shape

    def forward(self, shape: Shape) -> Shape:
        return self._check(shape)

    def backward(self, shape: Shape) -> Shape:
        return self._check(shape)

    def links(self, out_shape: Shape) -> list[str]:
        gates = len(self.order)
        blocks = (*out_shape[:-1], gates, out_shape[-1] // gates)
        return [
            _call("reshape", blocks),
            f"[..., {list(self.order)}, :]",
            _call("reshape", out_shape),
        ]

    def describe(self) -> str:
        return f"gates {list(self.order)}"


@dataclass(frozen=True)
class SplitAxis(Transform):
    """Split one axis into (parts, size / parts), as torch.unflatten does: a
    Linear's output features (E,) become MultiHeadAttention's (heads, head_dim).

    Unlike `reshape`, it knows the shape it came from, so the PyTorch key's
    shape is still checked at compile time."""

    name: ClassVar[str] = "split_axis"
    takes_argument: ClassVar[bool] = True
    needs_out_shape: ClassVar[bool] = True
    axis: int
    parts: int

    def __post_init__(self):
        if self.axis < 0 or self.parts < 1:
            raise TransformError(
                f"split_axis takes [axis, parts] with axis >= 0 and parts >= 1, "
                f"got {[self.axis, self.parts]}"
            )

    def forward(self, shape: Shape) -> Shape:
        if self.axis >= len(shape) or shape[self.axis] % self.parts:
            raise TransformError(
                f"split_axis {[self.axis, self.parts]} needs axis {self.axis} of a size "
                f"divisible by {self.parts}, got shape {shape}"
            )
        size = shape[self.axis]
        return (
            *shape[: self.axis],
            self.parts,
            size // self.parts,
            *shape[self.axis + 1 :],
        )

    def backward(self, shape: Shape) -> Shape:
        if self.axis + 1 >= len(shape) or shape[self.axis] != self.parts:
            raise TransformError(
                f"split_axis {[self.axis, self.parts]} gives axis {self.axis} of size "
                f"{self.parts}, not shape {shape}"
            )
        merged = shape[self.axis] * shape[self.axis + 1]
        return (*shape[: self.axis], merged, *shape[self.axis + 2 :])

    def links(self, out_shape: Shape) -> list[str]:
        return [_call("reshape", out_shape)]

    def describe(self) -> str:
        return f"split_axis {[self.axis, self.parts]}"


# --- combining several PyTorch keys into one Keras weight ---------------------


@dataclass(frozen=True)
class Combine(Transform):
    """The first transform of a `from: [KEY_A, KEY_B, ...]` chain: it makes one
    array of the sources, which the rest of the chain then transforms."""

    combines: ClassVar[bool] = True
    # Whether combine() gives an operator expression (a + b), which needs
    # parentheses before a method call can follow it.
    operator: ClassVar[bool] = False

    def forward_many(self, shapes: list[Shape]) -> Shape:
        if len(set(shapes)) != 1:
            raise TransformError(
                f"{self.name} needs sources of one shape, got {', '.join(map(str, shapes))}"
            )
        return self.forward(shapes[0])

    def backward_many(self, shape: Shape, count: int) -> tuple[Shape, ...]:
        return (self.backward(shape),) * count

    def combine(self, exprs: list[str]) -> str:
        """numpy expression of the sources `exprs`, combined."""
        raise NotImplementedError

    def links(self, out_shape: Shape) -> list[str]:
        raise TransformError(
            f"{self.name} combines sources: use it first after from: [...]"
        )


@dataclass(frozen=True)
class Sum(Combine):
    """Element-wise sum: an LSTM's Keras bias is PyTorch's bias_ih + bias_hh."""

    name: ClassVar[str] = "sum"
    operator: ClassVar[bool] = True

    def forward(self, shape: Shape) -> Shape:
        return shape

    def backward(self, shape: Shape) -> Shape:
        return shape

    def combine(self, exprs: list[str]) -> str:
        return " + ".join(exprs)


@dataclass(frozen=True)
class Stack(Combine):
    """Stack on a new first axis: a GRU's Keras bias (reset_after) is
    (bias_ih, bias_hh) as a (2, 3 * units) array."""

    name: ClassVar[str] = "stack"

    def forward_many(self, shapes: list[Shape]) -> Shape:
        shape = super().forward_many(shapes)
        return (len(shapes), *shape)

    def forward(self, shape: Shape) -> Shape:
        return shape

    def backward_many(self, shape: Shape, count: int) -> tuple[Shape, ...]:
        if not shape or shape[0] != count:
            raise TransformError(
                f"stack of {count} sources gives a first axis of {count}, not shape {shape}"
            )
        return (shape[1:],) * count

    def backward(self, shape: Shape) -> Shape:
        return shape

    def combine(self, exprs: list[str]) -> str:
        return f"np.stack([{', '.join(exprs)}])"


@dataclass(frozen=True)
class AddRow(Combine):
    """`from: [TABLE, ROWS]`: the table plus row `row` of ROWS (which has `rows`
    rows), added to every row of the table. BERT called without token_type_ids
    adds token type 0's embedding at every position: the same as a position
    table with that row added, so no layer has to add a constant."""

    name: ClassVar[str] = "add_row"
    takes_argument: ClassVar[bool] = True
    operator: ClassVar[bool] = True
    row: int
    rows: int

    def __post_init__(self):
        if not 0 <= self.row < self.rows:
            raise TransformError(
                f"add_row takes [row, rows] with 0 <= row < rows, got "
                f"{[self.row, self.rows]}"
            )

    def forward_many(self, shapes: list[Shape]) -> Shape:
        if len(shapes) != 2:
            raise TransformError(
                f"add_row takes two keys, [table, rows], not {len(shapes)}"
            )
        table, rows = shapes
        if not table or rows != (self.rows, *table[1:]):
            raise TransformError(
                f"add_row {[self.row, self.rows]} needs rows of shape "
                f"{(self.rows, *table[1:])} for a table of shape {table}, got {rows}"
            )
        return table

    def backward_many(self, shape: Shape, count: int) -> tuple[Shape, ...]:
        if count != 2:
            raise TransformError(f"add_row takes two keys, [table, rows], not {count}")
        if not shape:
            raise TransformError("add_row cannot give a scalar")
        return (shape, (self.rows, *shape[1:]))

    def forward(self, shape: Shape) -> Shape:
        return shape

    def backward(self, shape: Shape) -> Shape:
        return shape

    def combine(self, exprs: list[str]) -> str:
        table, rows = exprs
        return f"{table} + {rows}[{self.row}]"

    def describe(self) -> str:
        return f"add_row {[self.row, self.rows]}"


def check_chain(sources: int, chain: tuple[Transform, ...]) -> None:
    """Where combining and chunking transforms may stand in a chain; TransformError if not.

    Several sources need a combining transform first; one source takes none. A
    chunk reads part of a key, so it must act on the key itself: first, alone.
    """
    combiners = [i for i, t in enumerate(chain) if t.combines]
    if sources > 1 and combiners[:1] != [0]:
        raise TransformError(
            f"from: lists {sources} keys, so the first transform must combine them "
            f"({', '.join(COMBINERS)}), e.g. transform: [sum]"
        )
    if sources == 1 and combiners:
        raise TransformError(
            f"{chain[combiners[0]].name} combines several keys: give from: a list"
        )
    if len(combiners) > 1:
        raise TransformError("only the first transform may combine keys")
    for i, transform in enumerate(chain):
        if isinstance(transform, Chunk) and (i != 0 or sources != 1):
            raise TransformError(
                "chunk reads part of a PyTorch key: it must be the first transform "
                "of a single key"
            )


TRANSFORMS: dict[str, type[Transform]] = {
    t.name: t
    for t in (
        Transpose,
        Permute,
        Reshape,
        ConvKernel,
        DepthwiseKernel,
        Unflatten,
        Chunk,
        Gates,
        SplitAxis,
        Sum,
        Stack,
        AddRow,
    )
}
COMBINERS = tuple(name for name, t in TRANSFORMS.items() if issubclass(t, Combine))


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
    numbers = _ints(argument, name)
    fields = dataclass_fields(cls)
    if len(fields) > 1:  # a transform of several numbers: [index, parts], ...
        if len(numbers) != len(fields):
            raise TransformError(
                f"{name} takes [{', '.join(f.name for f in fields)}], got {list(numbers)}"
            )
        return cls(*numbers)
    return cls(numbers)
