"""The allowlist of Keras layers a spec may use.

Each entry is one small class that knows, for its Keras layer type:
- `Args`: the typed arguments a spec may pass (pydantic; nothing else is accepted,
  so no import strings, no Lambda, no custom objects);
- `output_shape`: shape inference, batch axis omitted, Keras (channels-last) layout;
- `weight_shapes`: the Keras weight slots and their shapes, in Keras's own order;
- `default_rule`: how `torch: PATH` fills each slot from PyTorch's naming
  (`PATH.weight`, `PATH.bias`, ...) and which transforms bring it into Keras layout;
- `ignored_suffixes`: PyTorch buffers the layer deliberately does not read.

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

from .transforms import ConvKernel, DepthwiseKernel, Shape, Transform, Transpose


class ShapeError(ValueError):
    """A layer does not accept the shapes it is given."""


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
    "leaky_relu",
]


class Args(BaseModel):
    """Base of every layer's argument model: unknown arguments are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Arguments rendered even when the spec leaves them unset, because the
    # Keras default differs from PyTorch's (BatchNorm epsilon, ...): the
    # generated code must never silently take Keras's default.
    always_render: ClassVar[tuple[str, ...]] = ()

    def rendered(self) -> dict[str, Any]:
        explicit = self.model_dump(exclude_unset=True)
        names = [
            n
            for n in type(self).model_fields
            if n in explicit or n in self.always_render
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
    # slot -> (PyTorch suffix, transforms); see the module docstring.
    default_rule: ClassVar[dict[str, tuple[str, tuple[Transform, ...]]]] = {}
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
        extra = (0, 0) if args.output_padding is None else _pair(args.output_padding)
        if any(e >= s for e, s in zip(extra, strides)):
            raise ShapeError("output_padding must be smaller than the stride")
        if args.padding == "same":
            spatial = tuple(n * s for n, s in zip(shape[:2], strides))
        else:
            spatial = tuple(
                (n - 1) * s + k for n, s, k in zip(shape[:2], strides, kernel)
            )
        spatial = tuple(n + e for n, e in zip(spatial, extra))
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


class ZeroPadding2DArgs(Args):
    # ((top, bottom), (left, right)), or one int / (vertical, horizontal) pair.
    padding: (
        NonNegativeInt
        | tuple[NonNegativeInt, NonNegativeInt]
        | tuple[
            tuple[NonNegativeInt, NonNegativeInt], tuple[NonNegativeInt, NonNegativeInt]
        ]
    ) = 1


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
    # ((top, bottom), (left, right)), or one int / (vertical, horizontal) pair.
    cropping: (
        NonNegativeInt
        | tuple[NonNegativeInt, NonNegativeInt]
        | tuple[
            tuple[NonNegativeInt, NonNegativeInt],
            tuple[NonNegativeInt, NonNegativeInt],
        ]
    ) = 0


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
        if any(len(s) != rank for s in inputs) or not -rank <= args.axis < rank:
            raise ShapeError(f"cannot concatenate shapes {inputs} on axis {args.axis}")
        axis = args.axis % rank
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
    keras = "Embedding"
    Args = EmbeddingArgs
    default_rule = {"embeddings": ("weight", ())}

    @classmethod
    def output_shape(cls, args, inputs):
        return (*inputs[0], args.output_dim)

    @classmethod
    def weight_shapes(cls, args, inputs):
        return {"embeddings": (args.input_dim, args.output_dim)}


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
        TorchMaxPooling2D,
        TorchAveragePooling2D,
        ReLU,
        ActivationLayer,
        Softmax,
        Dropout,
        Flatten,
        MaxPooling2D,
        AveragePooling2D,
        GlobalAveragePooling2D,
        GlobalMaxPooling2D,
        ZeroPadding2D,
        Cropping2D,
        Conv2DTranspose,
        Add,
        Multiply,
        Concatenate,
        Reshape,
    )
}
