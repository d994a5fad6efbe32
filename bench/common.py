"""Measurement helpers shared by the two workers.

Both workers import this file: bench/worker.py in the project's environment
(Keras 3) and bench/nobuco_worker.py in bench/.venv-nobuco (Keras 2). So it
uses only the standard library at import time; tensorflow is imported inside
the one function that needs it, after the caller has imported torch first.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    """Resident set size of this process now, in MiB (Linux /proc)."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    """Largest resident set size this process has had so far, in MiB.

    ru_maxrss is in KiB on Linux. Each conversion runs in a fresh process, so
    this peak belongs to that conversion (plus the imports it needed).
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def channels_last(array):
    """PyTorch layout (N, C, H, W) -> Keras layout (N, H, W, C)."""
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def max_abs_error(expected, actual) -> float:
    """Largest absolute difference; inf when shapes differ or a value is not finite."""
    import numpy as np

    expected = np.asarray(expected, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if expected.shape != actual.shape:
        return float("inf")
    if not (np.isfinite(expected).all() and np.isfinite(actual).all()):
        return float("inf")
    return float(np.max(np.abs(expected - actual), initial=0.0))


def graph_nodes(tf_function, input_shape, dtype: str = "float32") -> list:
    """The nodes of the TensorFlow graph that `tf_function` traces for one input
    of `dtype` (int64 for token ids): the top-level graph's and those of every
    function in its library, so a transpose hidden in a nested function counts.
    """
    import tensorflow as tf

    concrete = tf_function.get_concrete_function(tf.TensorSpec(input_shape, dtype))
    graph_def = concrete.graph.as_graph_def()
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes += function.node_def
    return nodes


def graph_op_counts(tf_function, input_shape, dtype: str = "float32") -> Counter:
    """Op types in the graph of graph_nodes(), with their counts."""
    return Counter(node.op for node in graph_nodes(tf_function, input_shape, dtype))


def latency_ms(call: Callable[[], object], repetitions: int) -> list[float]:
    """Milliseconds per call of `call`, each of `repetitions` calls timed alone."""
    samples = []
    for _ in range(repetitions):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def protocol_channel():
    """Keep this process's stdout for the latency protocol; send all else to stderr.

    Called first thing in a latency worker: nobuco prints its trace to stdout,
    and nothing but protocol lines may reach bench/run.py there.
    """
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return channel


def serve_latency(
    channel, calls: dict[str, Callable[[], object]], finish: Callable[[], dict]
) -> None:
    """Answer bench/run.py's timing requests, one JSON line each, until `done`.

    Each side (ours, PyTorch, nobuco) lives in its own process, because each
    framework must be timed without the other loaded: importing TensorFlow
    into a process slows PyTorch's small ops by an order of magnitude here
    (seed_cnn eager went from 1.5 ms to 88 ms per batch of 8). run.py keeps
    the three processes alive and asks them in turn for a few calls at a time
    (`x1 2` -> time 2 calls on the batch-1 input), so a burst of load on a
    shared machine falls on every side alike; the idle ones wait on stdin.
    `done` -> `finish()`: error, graph counts, versions.
    """
    for call in calls.values():  # warm-up: tracing, allocations, thread pools
        for _ in range(3):
            call()
    channel.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = line.split()
        if request == ["done"]:
            channel.write(json.dumps(finish()) + "\n")
            return
        batch, repetitions = request
        channel.write(json.dumps(latency_ms(calls[batch], int(repetitions))) + "\n")


def write_json(path: str | Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
