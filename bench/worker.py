"""One measurement, in the project's environment; bench/run.py starts it as a fresh process.

    worker.py prepare NAME FACTORY SHAPE OUT_JSON    seeded checkpoint + inputs + PyTorch outputs
    worker.py ours    NAME FACTORY SHAPE OUT_JSON    time generated/NAME.py convert()
    worker.py floor   NAME FACTORY SHAPE OUT_JSON    time build_model() + read + set_weights
    worker.py latency-ours    NAME FACTORY SHAPE -   our model: latency, error, ops
    worker.py latency-pytorch NAME FACTORY SHAPE -   PyTorch eager latency

SHAPE is the PyTorch input shape without batch, comma-separated, and the
input's dtype: 3,224,224:float32 (an image), 16:int64 (token ids).
Files go to bench/out/NAME.*; the result is one JSON object in OUT_JSON, except
for the latency commands, which answer bench/run.py's requests on stdout
(common.serve_latency) and take `-` for OUT_JSON.

`ours`, `floor` and `latency-ours` import neither torch nor compiler.parity
(which imports torch): a user of a generated module needs only keras, numpy
and safetensors, and torch would inflate time and memory. `latency-pytorch`
imports no tensorflow (see common.serve_latency for why).
"""

from __future__ import annotations

import importlib.util
import os
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

START = time.perf_counter()  # before the heavy imports: `import_s` counts them

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.common import (  # noqa: E402
    ROOT,
    channels_last,
    graph_nodes,
    latency_ms,
    max_abs_error,
    peak_rss_mb,
    protocol_channel,
    rss_mb,
    serve_latency,
    write_json,
)

OUT = ROOT / "bench" / "out"


def import_generated(name: str):
    """Import generated/NAME.py from its file (generated/ is not a package)."""
    path = ROOT / "generated" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paths(name: str) -> tuple[Path, Path]:
    return OUT / f"{name}.safetensors", OUT / f"{name}.npz"


def prepare(name: str, factory: str, shape: tuple[int, ...], dtype: str) -> dict:
    """Seeded random PyTorch weights saved as .safetensors, plus inputs and outputs."""
    from compiler import frameworks

    frameworks.import_torch_first()
    import numpy as np
    import torch

    from compiler import parity

    model = parity.randomize_(parity.build(factory), seed=0)
    checkpoint, arrays = paths(name)
    parity.save_checkpoint(model, checkpoint)
    if dtype == "float32":
        inputs = {
            "x1": parity.random_input((1, *shape), seed=1),
            "x8": parity.random_input((8, *shape), seed=2),
        }
    elif dtype == "int64" and len(shape) == 1:
        # Token ids (batch, time), as tests/test_sequence.py feeds them: the
        # vocabulary is the model's (first) embedding table's.
        (vocab, *_) = (
            m.num_embeddings
            for m in model.modules()
            if isinstance(m, torch.nn.Embedding)
        )
        inputs = {
            "x1": parity.random_tokens(1, shape[0], vocab, seed=1)[0],
            "x8": parity.random_tokens(8, shape[0], vocab, seed=2)[0],
        }
    else:
        raise SystemExit(f"{name}: no bench inputs for shape {shape} of dtype {dtype}")
    outputs = {
        f"y{key[1:]}": parity.torch_output(model, x) for key, x in inputs.items()
    }
    np.savez(arrays, **inputs, **outputs)

    import keras
    import tensorflow as tf

    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint_mb": checkpoint.stat().st_size / 2**20,
        "versions": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "torch": torch.__version__,
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
        },
        "torch_threads": torch.get_num_threads(),
    }


def check_output(keras_model, name: str) -> float:
    """Max abs error of a converted model on the batch-1 input (after timing)."""
    import numpy as np

    with np.load(paths(name)[1]) as data:
        x1, y1 = data["x1"], data["y1"]
    return max_abs_error(y1, np.asarray(keras_model(channels_last(x1), training=False)))


def convert_ours(name: str) -> dict:
    """Our generated convert(), from the .safetensors checkpoint."""
    import keras  # noqa: F401  (what the generated module imports first)
    import safetensors.numpy  # noqa: F401  (read_checkpoint's lazy import: not conversion)

    module = import_generated(name)
    checkpoint = paths(name)[0]
    import_s = time.perf_counter() - START
    rss_before = rss_mb()
    start = time.perf_counter()
    model = module.convert(checkpoint)
    convert_s = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "import_s": import_s,
        "convert_s": convert_s,
        "peak_rss_mb": peak,
        "convert_rss_mb": peak - rss_before,
        "max_abs_error": check_output(model, name),
    }


def to_keras_layout(layer, slot: str, arrays: list):
    """The layout change every converter must make for one weight, by slot and rank.

    `arrays` are the PyTorch tensors of that weight: one, or (a GRU's bias)
    two. Conv kernels OIHW -> HWIO, depthwise (C, 1, H, W) -> (H, W, C, 1),
    Dense (out, in) -> (in, out); a Dense fed by a Flatten of an (H, W, C) map
    also reorders its inputs from PyTorch's (C, H, W) flatten order.
    """
    import keras

    if isinstance(layer, keras.layers.GRU):
        return gru_layout(slot, arrays)
    (array,) = arrays
    if slot != "kernel":
        return array  # biases, BatchNorm statistics: same layout on both sides
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return array.transpose(2, 3, 0, 1)
    if array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if array.ndim == 3:
        return array.transpose(2, 1, 0)
    source = layer.input._keras_history.operation
    if isinstance(source, keras.layers.Flatten) and len(source.input.shape) == 4:
        height, width, channels = source.input.shape[1:]
        units = array.shape[0]
        array = array.reshape(units, channels, height, width).transpose(0, 2, 3, 1)
        array = array.reshape(units, -1)
    return array.T


def _reads(norm, key: str) -> bool:
    return any(key in port.torch_keys for port in norm.weights)


def fold_layout(slot: str, array, norm, state_dict):
    """A conv or Dense weight with a BatchNormalization folded in:
    kernel * scale, or (bias - mean) * scale + beta, scale = gamma / sqrt(var + eps)
    per output channel (the kernel's last axes: (C, M) for a depthwise kernel).
    `array` is the layer's own weight in Keras layout (None: it had no bias)."""
    import numpy as np

    bn = {port.slot: state_dict[port.torch_keys[0]] for port in norm.weights}
    scale = bn.get("gamma", 1.0) / np.sqrt(bn["moving_variance"] + norm.epsilon)
    if slot == "kernel":
        channels = scale.size
        axes = 1 if array.shape[-1] == channels else 2
        return array * scale.reshape(array.shape[-axes:])
    bias = 0.0 if array is None else array
    return (bias - bn["moving_mean"]) * scale + bn.get("beta", 0.0)


def gru_layout(slot: str, arrays: list):
    """A GRU weight: PyTorch orders the gates (r, z, n), Keras (z, r, h).

    Kernels are transposed to (inputs, 3 * units); the bias of Keras's
    reset_after GRU stacks PyTorch's bias_ih and bias_hh as (2, 3 * units).
    """
    import numpy as np

    stacked = np.stack(arrays) if slot == "bias" else arrays[0].T
    rows, gates = stacked.shape
    return stacked.reshape(rows, 3, gates // 3)[:, [1, 0, 2], :].reshape(rows, gates)


def convert_floor(name: str) -> dict:
    """The least any converter must do: build, read, change layouts, set_weights.

    No key or shape checks, no per-weight error messages: a plain loop over
    the model's weights and one Model.set_weights(). The PyTorch key of each
    Keras weight comes from the generated module's SOURCES table.
    """
    import keras  # noqa: F401
    from safetensors.numpy import load_file

    from compiler import build  # the compile path: no torch, no tensorflow

    module = import_generated(name)
    checkpoint = paths(name)[0]
    # Which BatchNormalization the spec folds into which layer (fold_batchnorm):
    # the floor must give the same model, so it folds them too.
    folded = {
        layer.name: layer.folded
        for layer in build.generate(ROOT / "specs" / f"{name}.yaml").module.layers
        if layer.folded is not None
    }
    import_s = time.perf_counter() - START
    rss_before = rss_mb()
    start = time.perf_counter()
    model = module.build_model()
    state_dict = load_file(str(checkpoint))
    # Keras weight -> its PyTorch keys, in SOURCES order (a GRU bias: ih, hh).
    keys_of: dict[str, list[str]] = {}
    for key, (_, targets, _) in module.SOURCES.items():
        for target in targets:
            keys_of.setdefault(target, []).append(key)
    layers = {layer.name: layer for layer in model.layers}
    arrays = []
    for variable in model.weights:
        # "conv1/kernel"; a recurrent layer's weights sit in its cell:
        # "gru/gru_cell/kernel".
        layer_name, slot = variable.path.split("/")[0], variable.path.split("/")[-1]
        if layer_name in folded:
            norm = folded[layer_name]
            own = [key for key in keys_of[variable.path] if not _reads(norm, key)]
            tensors = [state_dict[key] for key in own]
            array = to_keras_layout(layers[layer_name], slot, tensors) if own else None
            arrays.append(fold_layout(slot, array, norm, state_dict))
            continue
        tensors = [state_dict[key] for key in keys_of[variable.path]]
        arrays.append(to_keras_layout(layers[layer_name], slot, tensors))
    model.set_weights(arrays)
    convert_s = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "import_s": import_s,
        "convert_s": convert_s,
        "peak_rss_mb": peak,
        "convert_rss_mb": peak - rss_before,
        "max_abs_error": check_output(model, name),
    }


def load_inputs(name: str) -> dict:
    import numpy as np

    with np.load(paths(name)[1]) as data:
        return {key: data[key] for key in data.files}


def latency_ours(name: str) -> None:
    """Our converted model, called through tf.function; no torch in this process."""
    channel = protocol_channel()
    import keras
    import tensorflow as tf

    keras_model = import_generated(name).convert(paths(name)[0])

    @tf.function(reduce_retracing=True)
    def ours(x):
        return keras_model(x, training=False)

    data = load_inputs(name)
    inputs = {batch: tf.constant(channels_last(data[batch])) for batch in ("x1", "x8")}

    def finish() -> dict:
        x1 = channels_last(data["x1"])
        nodes = graph_nodes(ours, (1, *x1.shape[1:]), x1.dtype.name)
        ops = Counter(node.op for node in nodes)
        layers = [type(layer).__name__ for layer in keras_model.layers]
        # Keras's own RNN loop swaps batch and time axes (tf.transpose) in and
        # out: Transpose ops inside a recurrent layer's name scope, not layout.
        recurrent = [
            re.escape(layer.name)
            for layer in keras_model.layers
            if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional))
        ]
        inside = re.compile(rf"(.*/)?({'|'.join(recurrent)})(_\d+)?/.*")
        recurrent_transposes = sum(
            node.op in ("Transpose", "ConjugateTranspose")
            and bool(recurrent)
            and inside.fullmatch(node.name) is not None
            for node in nodes
        )
        # TensorFlow's fixed cost of one tf.function call and .numpy() on the
        # batch-1 input, with no model: what no TensorFlow model can go below.
        empty = tf.function(lambda x: x + 0)
        empty(inputs["x1"])  # trace
        floor = statistics.median(latency_ms(lambda: empty(inputs["x1"]).numpy(), 200))
        return {
            "tf_call_floor_ms": floor,
            "max_abs_error": max_abs_error(data["y8"], ours(inputs["x8"])),
            "transpose_ops": ops["Transpose"] + ops["ConjugateTranspose"],
            "recurrent_transpose_ops": recurrent_transposes,
            "graph_ops": sum(ops.values()),
            "top_ops": ops.most_common(8),
            "transpose_layers": layers.count("Permute"),  # Keras 3 has no TFOpLambda
            "lambda_layers": layers.count("Lambda"),
            "keras_layers": len(layers),
            "keras_backend": keras.backend.backend(),
        }

    serve_latency(
        channel,
        {batch: (lambda x=x: ours(x).numpy()) for batch, x in inputs.items()},
        finish,
    )


def latency_pytorch(name: str, factory: str) -> None:
    """PyTorch eager under no_grad, from the same checkpoint; no tensorflow here."""
    channel = protocol_channel()
    import torch
    from safetensors.torch import load_file

    from compiler import parity

    model = parity.build(factory)
    model.load_state_dict(load_file(str(paths(name)[0])))
    data = load_inputs(name)
    inputs = {batch: torch.from_numpy(data[batch]) for batch in ("x1", "x8")}

    def pytorch(x):
        with torch.no_grad():
            return model(x).numpy()

    def finish() -> dict:
        # Same weights, same input, same torch: the reference must reproduce.
        return {
            "max_abs_error": max_abs_error(data["y8"], pytorch(inputs["x8"])),
            "torch_threads": torch.get_num_threads(),
        }

    serve_latency(
        channel,
        {batch: (lambda x=x: pytorch(x)) for batch, x in inputs.items()},
        finish,
    )


def main() -> None:
    command, name, factory, shape, out_json = sys.argv[1:6]
    dims, _, dtype = shape.partition(":")
    shape = tuple(int(size) for size in dims.split(","))
    if command == "prepare":
        result = prepare(name, factory, shape, dtype or "float32")
    elif command == "ours":
        result = convert_ours(name)
    elif command == "floor":
        result = convert_floor(name)
    elif command == "latency-ours":
        return latency_ours(name)  # answers on stdout: see common.serve_latency
    elif command == "latency-pytorch":
        return latency_pytorch(name, factory)
    else:
        raise SystemExit(f"unknown command {command!r}")
    write_json(out_json, result)


if __name__ == "__main__":
    main()
