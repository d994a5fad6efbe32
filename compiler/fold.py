"""Stage 3b, fold (spec `fold_batchnorm: true`): IR -> IR without the
BatchNormalization layers that can live in the weights of the layer before.

At inference a BatchNormalization is a per-channel affine map,
    y = (x - moving_mean) * scale + beta,  scale = gamma / sqrt(moving_variance + eps),
and a convolution or Dense layer is linear in its output channels, so
conv -> BN is one conv with kernel * scale and bias (bias - mean) * scale + beta.
Keras 3 runs BatchNormalization as several unfused ops, so folding removes
real work from every call (see bench/RESULTS.md). The price is a model for
inference only: a folded network cannot be fine-tuned with batch statistics.

Only what is exactly equivalent is folded: the BatchNormalization must read
a Conv1D/Conv2D/DepthwiseConv2D/Dense with no activation, that nothing else
reads and that is not an output. Every other BatchNormalization stays a layer.
The weights are still read from the BatchNormalization's PyTorch keys; the
generated loader does the arithmetic (templates/module.py.jinja,
_fold_batchnorm), so a reviewer sees which keys go where.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from . import ir

# Keras layer -> how many trailing kernel axes index its output channels
# (DepthwiseConv2D's output channel c*M + m is kernel[..., c, m]).
CHANNEL_AXES = {"Conv1D": 1, "Conv2D": 1, "DepthwiseConv2D": 2, "Dense": 1}


def fold_batchnorm(module: ir.Module) -> ir.Module:
    """`module` with every foldable BatchNormalization folded into its input layer."""
    readers = Counter(name for layer in module.layers for name in layer.inputs)
    readers.update(module.outputs)
    by_name = {layer.name: layer for layer in module.layers}
    # name of a folded BatchNormalization -> the layer that now produces its value
    renamed: dict[str, str] = {}
    folded: dict[str, ir.Layer] = {}  # producer name -> producer with the BN folded in
    for layer in module.layers:
        if layer.keras != "BatchNormalization":
            continue
        producer = by_name.get(layer.inputs[0])
        if producer is None or not _foldable(producer, readers):
            continue
        folded[producer.name] = _fold(producer, layer)
        renamed[layer.name] = producer.name

    layers = tuple(
        replace(
            folded.get(layer.name, layer),
            inputs=tuple(renamed.get(name, name) for name in layer.inputs),
        )
        for layer in module.layers
        if layer.name not in renamed
    )
    outputs = tuple(renamed.get(name, name) for name in module.outputs)
    return replace(module, layers=layers, outputs=outputs)


def _foldable(producer: ir.Layer, readers: Counter) -> bool:
    args = dict(producer.args)
    return (
        producer.keras in CHANNEL_AXES
        and args.get("activation") in (None, "linear")
        and readers[producer.name] == 1  # the BatchNormalization alone reads it
        and producer.folded is None
        and any(port.slot == "kernel" for port in producer.weights)
    )


def _fold(producer: ir.Layer, norm: ir.Layer) -> ir.Layer:
    """The producer with `norm` folded in: it gains a bias if it had none."""
    epsilon = dict(norm.args)["epsilon"]
    args = tuple((key, value) for key, value in producer.args if key != "use_bias")
    return replace(
        producer,
        args=args,  # use_bias: Keras's default, True
        folded=ir.FoldedNorm(
            name=norm.name,
            torch=norm.torch,
            epsilon=epsilon,
            weights=norm.weights,
            line=norm.line,
        ),
    )
