"""The allowlist of Keras layers a spec may use.

Each entry is one small class that knows, for its Keras layer type:
- `Args`: the typed arguments a spec may pass (pydantic; nothing else is accepted,
  so no import strings, no Lambda, no custom objects);
- `output_shape`: shape inference, batch axis omitted, Keras (channels-last) layout;
- `weight_shapes`: the Keras weight slots and their shapes, in Keras's own order
  (a slot is the variable's path inside the layer: `kernel`, `gru_cell/bias`);
- `default_rule` (or `rules(args)` where it depends on the arguments): how
  `torch: PATH` fills each slot from PyTorch's naming (`PATH.weight`,
  `PATH.bias`, or several keys combined, e.g. an LSTM's two biases) and which
  transforms bring it into Keras layout;
- `ignored_suffixes`: PyTorch buffers the layer deliberately does not read;
- `call_keywords` / `wrapped`: for layers called or constructed unusually
  (MultiHeadAttention's attention_mask=, Bidirectional's inner layer).

This module is pure Python: the compile path never imports keras.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictInt,
)

from .transforms import (
    Chunk,
    ConvKernel,
    DepthwiseKernel,
    Gates,
    Shape,
    SplitAxis,
    Stack,
    Sum,
    Transform,
    Transpose,
)


class ShapeError(ValueError):
    """A layer does not accept the shapes it is given."""


# A default weight rule: PyTorch key suffix(es) and the transforms to apply.
Rule = tuple[str | tuple[str, ...], tuple[Transform, ...]]


PositiveInt = Annotated[StrictInt, Field(gt=0)]
NonNegativeInt = Annotated[StrictInt, Field(ge=0)]
Float = Annotated[float, Strict(), AllowInfNan(False)]
Rate = Annotated[Float, Field(ge=0, lt=1)]
IntOrPair = PositiveInt | tuple[PositiveInt, PositiveInt]
Padding = Literal["valid", "same"]
# Keras activation names whose formula matches PyTorch's module of the same role.
Activation = Literal[
    "linear",
    "relu",
    "relu6",
    "sigmoid",
    "tanh",
    "softmax",
    "gelu",
    "silu",
    "elu",
    "selu",
    "softplus",
    "hard_sigmoid",
    "hard_silu",
    # Not "leaky_relu": Keras's slope defaults to 0.2, PyTorch's to 0.01. Use
    # ReLU with negative_slope, which says the slope.
]


class Args(BaseModel):
    """Base of every layer's argument model: unknown arguments are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Arguments rendered even when the spec leaves them unset, because the
    # Keras default differs from PyTorch's (BatchNorm epsilon, ...): the
    # generated code must never silently take Keras's default.
    always_render: ClassVar[tuple[str, ...]] = ()
    # Arguments that steer the compiler (which PyTorch keys to read, how to wire
    # the call) rather than the Keras constructor: never rendered into it.
    spec_only: ClassVar[tuple[str, ...]] = ()

    def rendered(self) -> dict[str, Any]:
        explicit = self.model_dump(exclude_unset=True)
        names = [
            n
            for n in type(self).model_fields
            if (n in explicit or n in self.always_render) and n not in self.spec_only
        ]
        return {n: getattr(self, n) for n in names}


class NoArgs(Args):
    pass


def _pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _sides(value) -> tuple[tuple[int, int], tuple[int, int]]:
    """Keras's padding/cropping forms -> ((top, bottom), (left, right))."""
    if isinstance(value, int):
        return ((value, value), (value, value))
    if isinstance(value[0], int):
        return ((value[0], value[0]), (value[1], value[1]))
    return tuple(value)


def _feature_axis(axis: int, rank: int) -> int:
    """A Keras `axis` argument (it counts the batch axis: 1 is the first feature
    axis, -1 the last) -> an index into our batchless shapes."""
    if axis == 0 or not -rank <= axis <= rank:
        raise ShapeError(
            f"axis {axis} is not a feature axis of a rank-{rank} input (batch "
            f"excluded): use 1..{rank} or -{rank}..-1"
        )
    return axis - 1 if axis > 0 else axis % rank


def _window_out(
    size: int, window: int, stride: int, padding: str, dilation: int = 1
) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    span = dilation * (window - 1) + 1
    if size < span:
        raise ShapeError(
            f"window {window} (dilation {dilation}) does not fit in size {size}"
        )
    return (size - span) // stride + 1


def _rank(shape: Shape, rank: int, layer: str, layout: str) -> None:
    if len(shape) != rank:
        raise ShapeError(
            f"{layer} expects a rank-{rank} input ({layout}), got shape {shape}"
        )


class LayerType:
    """One Keras layer class: argument model, shape inference, default weight rule."""

    keras: ClassVar[str]
    Args: ClassVar[type[Args]] = NoArgs
    min_inputs: ClassVar[int] = 1
    max_inputs: ClassVar[int | None] = 1
    # slot -> (PyTorch suffix, transforms); see the module docstring. A tuple of
    # suffixes names several keys, which the first transform combines (sum, ...).
    default_rule: ClassVar[dict[str, Rule]] = {}
    ignored_suffixes: ClassVar[tuple[str, ...]] = ()
    # Set for layers Keras lacks: the generated module defines the class itself
    # from templates/layers/<keras>.py.jinja (keras.ops only, serialisable).
    custom: ClassVar[bool] = False

    @classmethod
    def output_shape(cls, args: Args, inputs: list[Shape]) -> Shape:
        return inputs[0]  # shape-preserving unless overridden

    @classmethod
    def weight_shapes(cls, args: Args, inputs: list[Shape]) -> dict[str, Shape]:
        return {}

    @classmethod
    def rules(cls, args: Args, inputs: list[Shape]) -> dict[str, Rule]:
        """The default weight rule for these arguments and input shapes (most
        layers: a fixed one)."""
        return cls.default_rule

    @classmethod
    def call_keywords(cls, args: Args, count: int) -> tuple[str, ...] | None:
        """How the inputs are passed when the layer is called: None for Keras's
        usual one tensor or list of tensors; else one entry per input, "" for a
        positional argument or the keyword it is passed as."""
        return None

    @classmethod
    def wrapped(cls, args: Args) -> tuple[str, dict[str, Any], str] | None:
        """For a wrapper layer: (Keras class, arguments, name) of the layer it wraps."""
        return None


# --- layers with weights ---------------------------------------------------


class DenseArgs(Args):
    units: PositiveInt
    activation: Activation | None = None
    use_bias: StrictBool = True


class Dense(LayerType):
    keras = "Dense"
    Args = DenseArgs
    default_rule = {"kernel": ("weight", (Transpose(),)), "bias": ("bias", ())}

    @classmethod
    def output_shape(cls, args, inputs):
        if not inputs[0]:
            raise ShapeError("Dense expects at least a rank-1 input")
        return (*inputs[0][:-1], args.units)

    @classmethod
    def weight_shapes(cls, args, inputs):
        slots = {"kernel": (inputs[0][-1], args.units)}
        if args.use_bias:
            slots["bias"] = (args.units,)
        return slots


class Conv1DArgs(Args):
    filters: PositiveInt
    kernel_size: PositiveInt
    strides: PositiveInt = 1
    padding: Padding = "valid"
    dilation_rate: PositiveInt = 1
    groups: PositiveInt = 1
    activation: Activation | None = None
    use_bias: StrictBool = True


class Conv2DArgs(Args):
    filters: PositiveInt
    kernel_size: IntOrPair
    strides: IntOrPair = 1
    padding: Padding = "valid"
    dilation_rate: IntOrPair = 1
    groups: PositiveInt = 1
    activation: Activation | None = None
    use_bias: StrictBool = True


class _Conv(LayerType):
    default_rule = {"kernel": ("weight", (ConvKernel(),)), "bias": ("bias", ())}
    spatial_rank: ClassVar[int]

    @classmethod
    def _geometry(cls, args):
        def per_axis(value):
            return (
                (value,) * cls.spatial_rank if isinstance(value, int) else tuple(value)
            )

        return (
            per_axis(args.kernel_size),
            per_axis(args.strides),
            per_axis(args.dilation_rate),
        )

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, cls.spatial_rank + 1, cls.keras, "channels last")
        channels = shape[-1]
        if channels % args.groups or args.filters % args.groups:
            raise ShapeError(
                f"groups={args.groups} must divide both the input channels "
                f"({channels}) and filters ({args.filters})"
            )
        kernel, strides, dilation = cls._geometry(args)
        spatial = tuple(
            _window_out(n, k, s, args.padding, d)
            for n, k, s, d in zip(shape[:-1], kernel, strides, dilation)
        )
        return (*spatial, args.filters)

    @classmethod
    def weight_shapes(cls, args, inputs):
        kernel, _, _ = cls._geometry(args)
        slots = {"kernel": (*kernel, inputs[0][-1] // args.groups, args.filters)}
        if args.use_bias:
            slots["bias"] = (args.filters,)
        return slots


class Conv1D(_Conv):
    keras = "Conv1D"
    Args = Conv1DArgs
    spatial_rank = 1


class Conv2D(_Conv):
    keras = "Conv2D"
    Args = Conv2DArgs
    spatial_rank = 2


class DepthwiseConv2DArgs(Args):
    kernel_size: IntOrPair
    strides: IntOrPair = 1
    padding: Padding = "valid"
    depth_multiplier: PositiveInt = 1
    dilation_rate: IntOrPair = 1
    activation: Activation | None = None
    use_bias: StrictBool = True


class DepthwiseConv2D(_Conv):
    """PyTorch Conv2d with groups == in_channels."""

    keras = "DepthwiseConv2D"
    Args = DepthwiseConv2DArgs
    spatial_rank = 2
    default_rule = {
        "kernel": ("weight", (DepthwiseKernel(),)),
        "bias": ("bias", ()),
    }

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 3, cls.keras, "height, width, channels")
        kernel, strides, dilation = cls._geometry(args)
        spatial = tuple(
            _window_out(n, k, s, args.padding, d)
            for n, k, s, d in zip(shape[:-1], kernel, strides, dilation)
        )
        return (*spatial, shape[-1] * args.depth_multiplier)

    @classmethod
    def weight_shapes(cls, args, inputs):
        kernel, _, _ = cls._geometry(args)
        channels = inputs[0][-1]
        slots = {"kernel": (*kernel, channels, args.depth_multiplier)}
        if args.use_bias:
            slots["bias"] = (channels * args.depth_multiplier,)
        return slots


class Conv2DTransposeArgs(Args):
    filters: PositiveInt
    kernel_size: IntOrPair
    strides: IntOrPair = 1
    padding: Padding = "valid"
    output_padding: NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] | None = None
    activation: Activation | None = None
    use_bias: StrictBool = True


class Conv2DTranspose(LayerType):
    """PyTorch ConvTranspose2d. Its `padding=p` crops p from each side of the
    full output: use padding "valid" (+ output_padding) here, then Cropping2D."""

    keras = "Conv2DTranspose"
    Args = Conv2DTransposeArgs
    # PyTorch (in, out, kh, kw) -> Keras (kh, kw, out, in): conv_kernel's permutation.
    default_rule = {"kernel": ("weight", (ConvKernel(),)), "bias": ("bias", ())}

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 3, cls.keras, "height, width, channels")
        kernel, strides = _pair(args.kernel_size), _pair(args.strides)
        if args.output_padding is None:
            # Keras: valid -> n*s + max(k - s, 0), same -> n*s. PyTorch's full
            # output is (n-1)*s + k: equal when k >= s; else give output_padding 0.
            spatial = tuple(
                n * s + (max(k - s, 0) if args.padding == "valid" else 0)
                for n, s, k in zip(shape[:2], strides, kernel)
            )
        else:
            extra = _pair(args.output_padding)
            if any(e >= s for e, s in zip(extra, strides)):
                raise ShapeError("output_padding must be smaller than the stride")
            spatial = tuple(
                (n - 1) * s + k - 2 * (k // 2 if args.padding == "same" else 0) + e
                for n, s, k, e in zip(shape[:2], strides, kernel, extra)
            )
        return (*spatial, args.filters)

    @classmethod
    def weight_shapes(cls, args, inputs):
        slots = {"kernel": (*_pair(args.kernel_size), args.filters, inputs[0][-1])}
        if args.use_bias:
            slots["bias"] = (args.filters,)
        return slots


class BatchNormalizationArgs(Args):
    # PyTorch's defaults, not Keras's (epsilon 1e-3, momentum 0.99).
    # Keras momentum is 1 - PyTorch momentum.
    epsilon: Annotated[Float, Field(gt=0)] = 1e-5
    momentum: Annotated[Float, Field(ge=0, le=1)] = 0.9
    center: StrictBool = True
    scale: StrictBool = True
    always_render = ("epsilon", "momentum")


class BatchNormalization(LayerType):
    keras = "BatchNormalization"
    Args = BatchNormalizationArgs
    default_rule = {
        "gamma": ("weight", ()),
        "beta": ("bias", ()),
        "moving_mean": ("running_mean", ()),
        "moving_variance": ("running_var", ()),
    }
    ignored_suffixes = ("num_batches_tracked",)

    @classmethod
    def weight_shapes(cls, args, inputs):
        channels = (inputs[0][-1],)
        slots = {}
        if args.scale:
            slots["gamma"] = channels
        if args.center:
            slots["beta"] = channels
        slots.update(moving_mean=channels, moving_variance=channels)
        return slots


# --- layers without weights ------------------------------------------------


class ReLUArgs(Args):
    max_value: Annotated[Float, Field(gt=0)] | None = None
    negative_slope: Annotated[Float, Field(ge=0)] = 0.0


class ReLU(LayerType):
    keras = "ReLU"
    Args = ReLUArgs


class ActivationArgs(Args):
    activation: Activation


class ActivationLayer(LayerType):
    keras = "Activation"
    Args = ActivationArgs


class SoftmaxArgs(Args):
    axis: StrictInt = -1


class Softmax(LayerType):
    keras = "Softmax"
    Args = SoftmaxArgs

    @classmethod
    def output_shape(cls, args, inputs):
        _feature_axis(args.axis, len(inputs[0]))
        return inputs[0]


class DropoutArgs(Args):
    rate: Rate


class Dropout(LayerType):
    """Identity at inference, as in PyTorch's eval mode."""

    keras = "Dropout"
    Args = DropoutArgs


class Flatten(LayerType):
    keras = "Flatten"

    @classmethod
    def output_shape(cls, args, inputs):
        return (math.prod(inputs[0]),)


class Pool2DArgs(Args):
    pool_size: IntOrPair = 2
    strides: IntOrPair | None = None
    padding: Padding = "valid"


class _Pool2D(LayerType):
    Args = Pool2DArgs

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 3, cls.keras, "height, width, channels")
        pool = _pair(args.pool_size)
        strides = pool if args.strides is None else _pair(args.strides)
        spatial = tuple(
            _window_out(n, k, s, args.padding)
            for n, k, s in zip(shape[:2], pool, strides)
        )
        return (*spatial, shape[2])


class MaxPooling2D(_Pool2D):
    keras = "MaxPooling2D"


class AveragePooling2D(_Pool2D):
    keras = "AveragePooling2D"


class GlobalPoolArgs(Args):
    keepdims: StrictBool = False


class _GlobalPool2D(LayerType):
    Args = GlobalPoolArgs

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 3, cls.keras, "height, width, channels")
        return (1, 1, shape[2]) if args.keepdims else (shape[2],)


class GlobalAveragePooling2D(_GlobalPool2D):
    keras = "GlobalAveragePooling2D"


class GlobalMaxPooling2D(_GlobalPool2D):
    keras = "GlobalMaxPooling2D"


class ZeroPadding1DArgs(Args):
    padding: NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] = 1


class ZeroPadding1D(LayerType):
    keras = "ZeroPadding1D"
    Args = ZeroPadding1DArgs

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 2, cls.keras, "steps, channels")
        pad = args.padding if isinstance(args.padding, tuple) else (args.padding,) * 2
        return (shape[0] + sum(pad), shape[1])


# Keras's padding/cropping amounts: one int, a (vertical, horizontal) pair, or
# ((top, bottom), (left, right)); _sides() normalises them.
Sides2D = (
    NonNegativeInt
    | tuple[NonNegativeInt, NonNegativeInt]
    | tuple[
        tuple[NonNegativeInt, NonNegativeInt], tuple[NonNegativeInt, NonNegativeInt]
    ]
)


class ZeroPadding2DArgs(Args):
    padding: Sides2D = 1


class ZeroPadding2D(LayerType):
    keras = "ZeroPadding2D"
    Args = ZeroPadding2DArgs

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 3, cls.keras, "height, width, channels")
        pad = _sides(args.padding)
        return (shape[0] + sum(pad[0]), shape[1] + sum(pad[1]), shape[2])


class Cropping2DArgs(Args):
    cropping: Sides2D = 0


class Cropping2D(LayerType):
    keras = "Cropping2D"
    Args = Cropping2DArgs

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 3, cls.keras, "height, width, channels")
        crop = _sides(args.cropping)
        height = shape[0] - sum(crop[0])
        width = shape[1] - sum(crop[1])
        if height <= 0 or width <= 0:
            raise ShapeError(f"cropping {args.cropping} leaves nothing of {shape}")
        return (height, width, shape[2])


class _Merge(LayerType):
    """Element-wise merge with numpy broadcasting (Keras allows it for these)."""

    min_inputs = 2
    max_inputs = None

    @classmethod
    def output_shape(cls, args, inputs):
        rank = max(len(s) for s in inputs)
        padded = [(1,) * (rank - len(s)) + s for s in inputs]
        result = []
        for sizes in zip(*padded):
            distinct = {n for n in sizes if n != 1}
            if len(distinct) > 1:
                raise ShapeError(f"{cls.keras} inputs do not broadcast: {inputs}")
            result.append(distinct.pop() if distinct else 1)
        return tuple(result)


class Add(_Merge):
    keras = "Add"


class Multiply(_Merge):
    keras = "Multiply"


class ConcatenateArgs(Args):
    axis: StrictInt = -1


class Concatenate(LayerType):
    keras = "Concatenate"
    Args = ConcatenateArgs
    min_inputs = 2
    max_inputs = None

    @classmethod
    def output_shape(cls, args, inputs):
        rank = len(inputs[0])
        if any(len(s) != rank for s in inputs):
            raise ShapeError(f"cannot concatenate shapes {inputs} on axis {args.axis}")
        axis = _feature_axis(args.axis, rank)
        for shape in inputs[1:]:
            if (
                shape[:axis] + shape[axis + 1 :]
                != inputs[0][:axis] + inputs[0][axis + 1 :]
            ):
                raise ShapeError(
                    f"cannot concatenate shapes {inputs} on axis {args.axis}"
                )
        total = sum(s[axis] for s in inputs)
        return (*inputs[0][:axis], total, *inputs[0][axis + 1 :])


class ReshapeArgs(Args):
    target_shape: tuple[PositiveInt, ...]


class Reshape(LayerType):
    keras = "Reshape"
    Args = ReshapeArgs

    @classmethod
    def output_shape(cls, args, inputs):
        if math.prod(inputs[0]) != math.prod(args.target_shape):
            raise ShapeError(f"cannot reshape {inputs[0]} to {args.target_shape}")
        return args.target_shape


class LayerNormalizationArgs(Args):
    # PyTorch's default epsilon, not Keras's 1e-3.
    epsilon: Annotated[Float, Field(gt=0)] = 1e-5
    center: StrictBool = True
    scale: StrictBool = True
    always_render = ("epsilon",)


class LayerNormalization(LayerType):
    """PyTorch LayerNorm over the last axis."""

    keras = "LayerNormalization"
    Args = LayerNormalizationArgs
    default_rule = {"gamma": ("weight", ()), "beta": ("bias", ())}

    @classmethod
    def weight_shapes(cls, args, inputs):
        features = (inputs[0][-1],)
        slots = {}
        if args.scale:
            slots["gamma"] = features
        if args.center:
            slots["beta"] = features
        return slots


class EmbeddingArgs(Args):
    input_dim: PositiveInt
    output_dim: PositiveInt


class Embedding(LayerType):
    """PyTorch Embedding. Its padding_idx only stops gradients reaching that row
    (and zeroes it at initialisation): at inference the row is looked up like
    any other, so the weight copies as is and Keras needs no mask_zero."""

    keras = "Embedding"
    Args = EmbeddingArgs
    default_rule = {"embeddings": ("weight", ())}

    @classmethod
    def output_shape(cls, args, inputs):
        return (*inputs[0], args.output_dim)

    @classmethod
    def weight_shapes(cls, args, inputs):
        return {"embeddings": (args.input_dim, args.output_dim)}


class PReLUArgs(Args):
    # Axes (1-based, batch excluded) that share one alpha: for PyTorch's
    # per-channel PReLU(C), every axis but the channels, e.g. [1, 2] after a
    # conv; for PReLU() (one alpha for everything), every axis, e.g. [1, 2, 3].
    shared_axes: tuple[PositiveInt, ...] | None = None


class PReLU(LayerType):
    """PyTorch PReLU(num_parameters=C) or PReLU() (one alpha), channels last."""

    keras = "PReLU"
    Args = PReLUArgs

    @classmethod
    def weight_shapes(cls, args, inputs):
        shape = inputs[0]
        shared = tuple(sorted(args.shared_axes or ()))
        per_channel = tuple(range(1, len(shape)))
        if shared == per_channel:
            return {"alpha": (*(1 for _ in shared), shape[-1])}
        if shared == (*per_channel, len(shape)):
            return {"alpha": (1,) * len(shape)}
        raise ShapeError(
            f"PyTorch's PReLU has one alpha per channel or one in all: for input "
            f"shape {shape}, shared_axes must be {list(per_channel)} (PReLU(C)) or "
            f"{[*per_channel, len(shape)]} (PReLU()), got {list(shared)}"
        )

    @classmethod
    def rules(cls, args, inputs):
        # weight (C,) -> alpha (1, ..., 1, C), or weight (1,) -> alpha (1, ..., 1):
        # one leading 1 for each axis but the last.
        return {"alpha": ("weight", (SplitAxis(0, 1),) * (len(inputs[0]) - 1))}


class Identity(LayerType):
    """A PyTorch module that is the identity here (e.g. AdaptiveAvgPool2d((7, 7))
    on a 7x7 map, or Dropout at inference), kept so verify can pair it."""

    keras = "Identity"


class TorchPool2DArgs(Args):
    pool_size: IntOrPair
    strides: IntOrPair | None = None  # PyTorch's default: the pool size
    padding: NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] = 0


class TorchMaxPooling2DArgs(TorchPool2DArgs):
    ceil_mode: StrictBool = False


class TorchAveragePooling2DArgs(TorchPool2DArgs):
    count_include_pad: StrictBool = True


def _torch_pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (torch.nn.MaxPool2d docs)."""
    span = size + 2 * p - k
    if span < 0:
        raise ShapeError(f"window {k} does not fit in size {size} padded by {p}")
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window must start inside the input or left padding
    return out


class _TorchPool2D(LayerType):
    custom = True

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 3, cls.keras, "height, width, channels")
        pool = _pair(args.pool_size)
        strides = pool if args.strides is None else _pair(args.strides)
        padding = _pair(args.padding) if isinstance(args.padding, int) else args.padding
        if any(2 * p > k for p, k in zip(padding, pool)):
            raise ShapeError("PyTorch requires padding <= half the pool size")
        ceil_mode = getattr(args, "ceil_mode", False)
        spatial = tuple(
            _torch_pool_out(n, k, s, p, ceil_mode)
            for n, k, s, p in zip(shape[:2], pool, strides, padding)
        )
        return (*spatial, shape[2])


class TorchMaxPooling2D(_TorchPool2D):
    """PyTorch MaxPool2d: pads with -inf and may round the output size up
    (ceil_mode); Keras MaxPooling2D can do neither."""

    keras = "TorchMaxPooling2D"
    Args = TorchMaxPooling2DArgs


class TorchAveragePooling2D(_TorchPool2D):
    """PyTorch AvgPool2d with symmetric padding and count_include_pad."""

    keras = "TorchAveragePooling2D"
    Args = TorchAveragePooling2DArgs


class Cropping1DArgs(Args):
    cropping: NonNegativeInt | tuple[NonNegativeInt, NonNegativeInt] = 1


class Cropping1D(LayerType):
    """Drop steps from the start and end of a sequence: BERT's pooler reads the
    first token as Cropping1D((0, length - 1)) and a Flatten."""

    keras = "Cropping1D"
    Args = Cropping1DArgs

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 2, cls.keras, "steps, features")
        start, end = _pair(args.cropping)
        if start + end >= shape[0]:
            raise ShapeError(f"cropping {start} + {end} leaves no step of {shape[0]}")
        return (shape[0] - start - end, shape[1])


# --- sequence layers --------------------------------------------------------


class RNNArgs(Args):
    units: PositiveInt
    return_sequences: StrictBool = False
    use_bias: StrictBool = True
    # Keras's unroll: the same numbers without a while loop, faster on a short,
    # fixed sequence length (the bench's GRU: 16 steps); memory grows with it.
    unroll: StrictBool = False
    # Which layer of a multi-layer PyTorch LSTM/GRU (num_layers > 1) this Keras
    # layer is: it reads the keys weight_ih_l{torch_layer}, ... One Keras layer
    # per PyTorch layer, each feeding the next with return_sequences: true.
    torch_layer: NonNegativeInt = 0
    spec_only = ("torch_layer",)


class LSTMArgs(RNNArgs):
    pass


class GRUArgs(RNNArgs):
    # PyTorch's GRU applies the reset gate after the recurrent matmul, which is
    # Keras's reset_after=True (its default, stated so a reader need not know);
    # reset_after=False is a different model with no PyTorch counterpart.
    reset_after: Literal[True] = True
    always_render = ("reset_after",)


class _RNN(LayerType):
    """A PyTorch LSTM/GRU layer (batch_first or not: the weights are the same).

    Keras RNNs are always batch-first: a PyTorch model without batch_first
    takes (time, batch, features), so give the Keras model the input with its
    first two axes swapped. The output is the whole sequence
    (return_sequences: true) or the last step, which is PyTorch's h_n for this
    layer and direction.
    """

    cell: ClassVar[str]  # the Keras cell's name, part of every weight's path
    gates: ClassVar[int]

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        _rank(shape, 2, cls.keras, "steps, features")
        return (shape[0], args.units) if args.return_sequences else (args.units,)

    @classmethod
    def weight_shapes(cls, args, inputs):
        width = cls.gates * args.units
        slots = {
            f"{cls.cell}/kernel": (inputs[0][-1], width),
            f"{cls.cell}/recurrent_kernel": (args.units, width),
        }
        if args.use_bias:
            slots[f"{cls.cell}/bias"] = cls.bias_shape(args)
        return slots

    @classmethod
    def bias_shape(cls, args) -> Shape:
        return (cls.gates * args.units,)

    @classmethod
    def cell_rules(cls, args, direction: str = "") -> dict[str, Rule]:
        """Slot -> rule for one direction ("" or "_reverse") of PyTorch layer l."""
        raise NotImplementedError

    @classmethod
    def rules(cls, args, inputs):
        return cls.cell_rules(args)


class LSTM(_RNN):
    """PyTorch LSTM. Both order the gates (input, forget, cell, output), so the
    kernels only transpose; the two PyTorch biases are one sum in Keras."""

    keras = "LSTM"
    Args = LSTMArgs
    cell = "lstm_cell"
    gates = 4

    @classmethod
    def cell_rules(cls, args, direction=""):
        tag = f"_l{args.torch_layer}{direction}"
        return {
            f"{cls.cell}/kernel": (f"weight_ih{tag}", (Transpose(),)),
            f"{cls.cell}/recurrent_kernel": (f"weight_hh{tag}", (Transpose(),)),
            f"{cls.cell}/bias": ((f"bias_ih{tag}", f"bias_hh{tag}"), (Sum(),)),
        }


# PyTorch's GRU gates are (reset, update, new); Keras's (update, reset, candidate).
GRU_GATES = Gates((1, 0, 2))


class GRU(_RNN):
    """PyTorch GRU: its gates reordered for Keras, its two biases stacked."""

    keras = "GRU"
    Args = GRUArgs
    cell = "gru_cell"
    gates = 3

    @classmethod
    def bias_shape(cls, args):
        return (2, cls.gates * args.units)  # input and recurrent bias (reset_after)

    @classmethod
    def cell_rules(cls, args, direction=""):
        tag = f"_l{args.torch_layer}{direction}"
        return {
            f"{cls.cell}/kernel": (f"weight_ih{tag}", (Transpose(), GRU_GATES)),
            f"{cls.cell}/recurrent_kernel": (
                f"weight_hh{tag}",
                (Transpose(), GRU_GATES),
            ),
            f"{cls.cell}/bias": (
                (f"bias_ih{tag}", f"bias_hh{tag}"),
                (Stack(), GRU_GATES),
            ),
        }


class BidirectionalArgs(Args):
    layer: Literal["LSTM", "GRU"]
    units: PositiveInt
    return_sequences: StrictBool = False
    use_bias: StrictBool = True
    torch_layer: NonNegativeInt = 0  # as for LSTM/GRU
    # PyTorch concatenates the forward and backward outputs, in that order.
    merge_mode: Literal["concat"] = "concat"
    always_render = ("merge_mode",)
    spec_only = ("layer", "units", "return_sequences", "use_bias", "torch_layer")


class Bidirectional(LayerType):
    """A bidirectional PyTorch LSTM/GRU layer: the forward direction reads
    weight_ih_l{k}, ..., the backward one weight_ih_l{k}_reverse, ...

    With return_sequences: false the output is (forward last step, backward
    last step), PyTorch's (h_n[-2], h_n[-1]) concatenated.
    """

    keras = "Bidirectional"
    Args = BidirectionalArgs

    @classmethod
    def _inner(cls, args) -> tuple[type[_RNN], RNNArgs]:
        rnn = LSTM if args.layer == "LSTM" else GRU
        inner_args = rnn.Args(
            units=args.units,
            return_sequences=args.return_sequences,
            use_bias=args.use_bias,
            torch_layer=args.torch_layer,
        )
        return rnn, inner_args

    @classmethod
    def _name(cls, args) -> str:
        # A fixed name: Keras would otherwise number it per session (lstm_3),
        # and the weights' paths would change with it.
        return args.layer.lower()

    @classmethod
    def wrapped(cls, args):
        rnn, inner_args = cls._inner(args)
        # The inner layer's own arguments, in the order its type declares them.
        explicit = {
            key: value
            for key, value in inner_args.rendered().items()
            if key in args.model_fields_set or key in inner_args.always_render
        }
        return rnn.keras, explicit, cls._name(args)

    @classmethod
    def output_shape(cls, args, inputs):
        rnn, inner_args = cls._inner(args)
        *steps, units = rnn.output_shape(inner_args, inputs)
        return (*steps, 2 * units)

    @classmethod
    def weight_shapes(cls, args, inputs):
        rnn, inner_args = cls._inner(args)
        cell = rnn.weight_shapes(inner_args, inputs)
        return {
            f"{direction}_{cls._name(args)}/{slot}": shape
            for direction in ("forward", "backward")
            for slot, shape in cell.items()
        }

    @classmethod
    def rules(cls, args, inputs):
        rnn, inner_args = cls._inner(args)
        return {
            f"{direction}_{cls._name(args)}/{slot}": rule
            for direction, suffix in (("forward", ""), ("backward", "_reverse"))
            for slot, rule in rnn.cell_rules(inner_args, suffix).items()
        }


class MultiHeadAttentionArgs(Args):
    num_heads: PositiveInt
    key_dim: PositiveInt
    value_dim: PositiveInt | None = None
    dropout: Rate = 0.0  # inference: no effect, as in PyTorch's eval mode
    use_bias: StrictBool = True
    # true: the last input is the attention mask, passed as attention_mask=
    # (shape (1, S) or (T, S) per example, 1 where a query may attend to a key:
    # a PyTorch key_padding_mask, inverted and reshaped to (1, S)).
    attention_mask: StrictBool = False
    spec_only = ("attention_mask",)


class MultiHeadAttention(LayerType):
    """PyTorch MultiheadAttention (batch_first) and other scaled dot-product
    attention: inputs [query, value] or [query, value, key], then the mask.

    The default rule reads nn.MultiheadAttention's fused in_proj_weight: rows
    chunk 0, 1, 2 of 3 are the query, key and value projections, each
    transposed and split into (embed, heads, head_dim); out_proj becomes
    (heads, head_dim, embed). Keras scales the query by 1/sqrt(key_dim) as
    PyTorch does by 1/sqrt(head_dim).
    """

    keras = "MultiHeadAttention"
    Args = MultiHeadAttentionArgs
    min_inputs = 2
    max_inputs = 4

    @classmethod
    def _split(cls, args, inputs):
        """(query, value, key, mask) shapes; key and mask may be None."""
        count = len(inputs) - args.attention_mask
        if count not in (2, 3):
            expected = "[query, value] or [query, value, key]"
            if args.attention_mask:
                expected += ", then the mask"
            raise ShapeError(f"takes inputs {expected}, got {len(inputs)} input(s)")
        query, value = inputs[0], inputs[1]
        key = inputs[2] if count == 3 else None
        mask = inputs[-1] if args.attention_mask else None
        return query, value, key, mask

    @classmethod
    def output_shape(cls, args, inputs):
        query, value, key, mask = cls._split(args, inputs)
        for what, shape in (("query", query), ("value", value), ("key", key)):
            if shape is not None:
                _rank(shape, 2, cls.keras, f"{what}: steps, features")
        if key is not None and key[0] != value[0]:
            raise ShapeError(f"key {key} and value {value} differ in length")
        if mask is not None and mask not in ((1, value[0]), (query[0], value[0])):
            raise ShapeError(
                f"the attention mask must have shape (1, {value[0]}) or "
                f"({query[0]}, {value[0]}) per example, got {mask}; feed a "
                f"(batch, {value[0]}) padding mask through a Reshape layer with "
                f"target_shape: [1, {value[0]}]"
            )
        return query

    @classmethod
    def weight_shapes(cls, args, inputs):
        query, value, key, _ = cls._split(args, inputs)
        key = value if key is None else key
        heads, key_dim = args.num_heads, args.key_dim
        value_dim = args.value_dim or key_dim
        dims = {
            "query": (query, key_dim),
            "key": (key, key_dim),
            "value": (value, value_dim),
        }
        slots = {}
        for name, (shape, dim) in dims.items():
            slots[f"{name}/kernel"] = (shape[-1], heads, dim)
            if args.use_bias:
                slots[f"{name}/bias"] = (heads, dim)
        slots["attention_output/kernel"] = (heads, value_dim, query[-1])
        if args.use_bias:
            slots["attention_output/bias"] = (query[-1],)
        return slots

    @classmethod
    def rules(cls, args, inputs):
        heads = args.num_heads
        slots = {}
        for index, name in enumerate(("query", "key", "value")):
            rows = Chunk(index, 3)
            slots[f"{name}/kernel"] = (
                "in_proj_weight",
                (rows, Transpose(), SplitAxis(1, heads)),
            )
            slots[f"{name}/bias"] = ("in_proj_bias", (rows, SplitAxis(0, heads)))
        slots["attention_output/kernel"] = (
            "out_proj.weight",
            (Transpose(), SplitAxis(0, heads)),
        )
        slots["attention_output/bias"] = ("out_proj.bias", ())
        return slots

    @classmethod
    def call_keywords(cls, args, count):
        positional = ("",) * (count - args.attention_mask)
        return positional + (("attention_mask",) if args.attention_mask else ())


class PositionEmbeddingArgs(Args):
    input_dim: PositiveInt  # PyTorch's max_position_embeddings
    output_dim: PositiveInt


class PositionEmbedding(LayerType):
    """Learned absolute positions, as BERT's position_embeddings over
    position_ids = arange(length): reads any (steps, ...) input only for its
    length and gives the first `steps` rows of its table, for every example."""

    keras = "PositionEmbedding"
    Args = PositionEmbeddingArgs
    custom = True
    default_rule = {"embeddings": ("weight", ())}

    @classmethod
    def output_shape(cls, args, inputs):
        shape = inputs[0]
        if not shape or shape[0] > args.input_dim:
            raise ShapeError(
                f"a sequence of {shape[0] if shape else 0} steps needs at most "
                f"input_dim={args.input_dim} positions"
            )
        return (shape[0], args.output_dim)

    @classmethod
    def weight_shapes(cls, args, inputs):
        return {"embeddings": (args.input_dim, args.output_dim)}


LAYER_TYPES: dict[str, type[LayerType]] = {
    layer.keras: layer
    for layer in (
        Dense,
        Conv1D,
        Conv2D,
        DepthwiseConv2D,
        BatchNormalization,
        LayerNormalization,
        Embedding,
        Identity,
        PReLU,
        TorchMaxPooling2D,
        TorchAveragePooling2D,
        LSTM,
        GRU,
        Bidirectional,
        MultiHeadAttention,
        PositionEmbedding,
        Cropping1D,
        ReLU,
        ActivationLayer,
        Softmax,
        Dropout,
        Flatten,
        MaxPooling2D,
        AveragePooling2D,
        GlobalAveragePooling2D,
        GlobalMaxPooling2D,
        ZeroPadding1D,
        ZeroPadding2D,
        Cropping2D,
        Conv2DTranspose,
        Add,
        Multiply,
        Concatenate,
        Reshape,
    )
}
