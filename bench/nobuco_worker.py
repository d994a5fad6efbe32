"""One measurement of nobuco, in bench/.venv-nobuco (Keras 2); started by bench/run.py.

    nobuco_worker.py convert NAME FACTORY SHAPE OUT_JSON MODE
        time what a nobuco user runs: build the PyTorch model, load the
        .safetensors checkpoint, nobuco.pytorch_to_keras(); MODE `default` is
        nobuco's defaults (full_validation=True, trace printed), `lean` turns
        both off (its fastest setting).
    nobuco_worker.py latency NAME FACTORY SHAPE -
        nobuco's model (tf.function): latency, error, ops, answering run.py
        on stdout (common.serve_latency). torch is imported here (nobuco needs
        it to convert); that does not slow TensorFlow down, only the other
        way round.

The checkpoint and inputs are the ones bench/worker.py prepare wrote, so both
converters start from the same weights and are checked on the same inputs.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

START = time.perf_counter()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import torch  # noqa: E402  (torch before tensorflow: see compiler/frameworks.py)
import torch._dynamo  # noqa: E402, F401

from bench.common import (  # noqa: E402
    ROOT,
    channels_last,
    graph_op_counts,
    max_abs_error,
    peak_rss_mb,
    protocol_channel,
    rss_mb,
    serve_latency,
    write_json,
)

OUT = ROOT / "bench" / "out"


def convert(name: str, factory: str, lean: bool):
    """The PyTorch model from the checkpoint, traced into Keras by nobuco.

    Returns (Keras model, seconds to build and load the PyTorch model, seconds tracing).
    """
    import nobuco
    from nobuco import ChannelOrder, TraceLevel
    from safetensors.torch import load_file

    from compiler import parity  # numpy + torch only

    start = time.perf_counter()
    torch_model = parity.build(factory)
    torch_model.load_state_dict(load_file(str(OUT / f"{name}.safetensors")))
    built = time.perf_counter()
    with np_load(name) as data:
        example = torch.from_numpy(data["x1"])
    # Images in and out channels-last, like our generated models. A free batch
    # dimension, like ours, so one model runs batch 1 and batch 8: that needs
    # trace_shape=True, or nobuco bakes `x.size(0)` (SeedCNN's flatten) in as 1.
    order = ChannelOrder.TENSORFLOW if example.ndim == 4 else ChannelOrder.PYTORCH
    options = (
        {"full_validation": False, "debug_traces": TraceLevel.NEVER} if lean else {}
    )
    keras_model = nobuco.pytorch_to_keras(
        torch_model,
        args=[example],
        input_shapes={example: (None, *example.shape[1:])},
        inputs_channel_order=order,
        outputs_channel_order=order,
        trace_shape=True,
        **options,
    )
    return keras_model, built - start, time.perf_counter() - built


def np_load(name: str):
    import numpy as np

    return np.load(OUT / f"{name}.npz")


def convert_timed(name: str, factory: str, mode: str) -> dict:
    import importlib

    import nobuco  # noqa: F401
    import tensorflow  # noqa: F401
    from safetensors.torch import load_file  # noqa: F401

    from compiler import parity  # noqa: F401

    # Imports are not conversion: the model's module (torchvision.models) too.
    importlib.import_module(factory.partition(":")[0])
    import_s = time.perf_counter() - START
    rss_before = rss_mb()
    start = time.perf_counter()
    keras_model, torch_s, trace_s = convert(name, factory, lean=mode == "lean")
    convert_s = time.perf_counter() - start
    peak = peak_rss_mb()
    with np_load(name) as data:
        error = max_abs_error(data["y1"], keras_model(channels_last(data["x1"])))
    return {
        "import_s": import_s,
        "convert_s": convert_s,
        "torch_model_s": torch_s,
        "trace_s": trace_s,
        "peak_rss_mb": peak,
        "convert_rss_mb": peak - rss_before,
        "max_abs_error": error,
    }


def latency(name: str, factory: str) -> None:
    channel = protocol_channel()
    import keras
    import numpy as np
    import tensorflow as tf

    # The converted graph is the same in both modes; lean only converts faster.
    keras_model, _, _ = convert(name, factory, lean=True)

    @tf.function(reduce_retracing=True)
    def converted(x):
        return keras_model(x, training=False)

    with np_load(name) as data:
        x1, x8, expected = data["x1"], data["x8"], data["y8"]
    inputs = {
        "x1": tf.constant(channels_last(x1)),
        "x8": tf.constant(channels_last(x8)),
    }

    def finish() -> dict:
        ops = graph_op_counts(
            converted, (1, *channels_last(x1).shape[1:]), x1.dtype.name
        )
        layers = keras_model.layers
        kinds = [type(layer).__name__ for layer in layers]
        # Keras 2 wraps every raw tf.* call nobuco emits in a TFOpLambda (or
        # SlicingOpLambda) layer: a Lambda by another name, holding a callable.
        transposes = [
            layer
            for layer in layers
            if type(layer).__name__ == "Permute"
            or "transpose" in str(getattr(layer, "symbol", ""))
        ]
        return {
            "max_abs_error": max_abs_error(expected, converted(inputs["x8"])),
            "transpose_ops": ops["Transpose"] + ops["ConjugateTranspose"],
            "graph_ops": sum(ops.values()),
            "top_ops": ops.most_common(8),
            "transpose_layers": len(transposes),
            "lambda_layers": sum(
                kinds.count(kind)
                for kind in ("Lambda", "TFOpLambda", "SlicingOpLambda")
            ),
            "keras_layers": len(layers),
            "versions": {
                "python": sys.version.split()[0],
                "numpy": np.__version__,
                "torch": torch.__version__,
                "tensorflow": tf.__version__,
                "keras": keras.__version__,
                "nobuco": _version("nobuco"),
            },
        }

    serve_latency(
        channel,
        {batch: (lambda x=x: converted(x).numpy()) for batch, x in inputs.items()},
        finish,
    )


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main() -> None:
    command, name, factory, shape, out_json = sys.argv[1:6]
    if command == "convert":
        write_json(out_json, convert_timed(name, factory, mode=sys.argv[6]))
    elif command == "latency":
        latency(name, factory)  # answers on stdout: see common.serve_latency
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main()
