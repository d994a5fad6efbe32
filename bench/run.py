"""Benchmark: our generated convert() vs nobuco vs the floor, and the converted models.

    python bench/run.py            # every model in MODELS -> bench/RESULTS.md
                                   # (~7 min on a quiet machine, ~15 under load)
    python bench/run.py --quick    # seed_cnn only, few repetitions -> bench/out/RESULTS-quick.md
    make bench                     # the same as the first, in the project's .venv

For each model it measures, in one run:
- conversion time and peak memory, each conversion in a fresh process:
  (a) ours: generated/NAME.py convert() from a .safetensors checkpoint;
  (b) nobuco 0.17 (a tracing converter), in bench/.venv-nobuco (Keras 2),
      with its defaults and with validation and trace printing off ("lean");
  (c) the floor: build_model() + read the checkpoint + layout + set_weights;
- inference latency (tf.function, batch 1 and 8) of ours and nobuco's model
  vs PyTorch eager, each framework in its own process, the sides taking turns;
- Transpose ops, Permute/transpose layers and Lambda-type layers per graph;
- max abs error of each converted model vs PyTorch on the same seeded input;
- then, unless --quick or --no-memory, bench/memory.py: the peak memory that
  convert() adds on a synthetic model of over 1 GB, one file and sharded.

This script runs in the project's environment and only orchestrates; it
imports neither torch nor tensorflow. The measuring happens in worker.py
(project env) and nobuco_worker.py (nobuco env). Everything it writes besides
the results file goes to bench/out/ (checkpoints, inputs, logs, and every
sample as JSON: bench/out/RESULTS.json; --rerender redraws the tables from it).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT))
from bench import memory  # noqa: E402  (standard library only at import)

OUT = BENCH / "out"
NOBUCO_VENV = BENCH / ".venv-nobuco"
NOBUCO_PYTHON = NOBUCO_VENV / "bin" / "python"


@dataclass(frozen=True)
class Bench:
    name: (
        str  # specs/NAME.yaml, generated/NAME.py; the PyTorch model is its source.model
    )
    convert_reps: int  # fresh processes per converter
    latency_reps: int  # timed calls per batch size, per round
    cnn: bool = True  # the "no slower than PyTorch eager" target applies to CNNs


# One line per model. The GRU classifier takes int64 token ids, not an image.
# The two small models' calls take about a millisecond, where a median of 50
# moved by 10% between runs: they get 400 (under a second per side and batch).
MODELS = [
    Bench("seed_cnn", convert_reps=3, latency_reps=400),
    Bench("resnet18", convert_reps=3, latency_reps=20),
    Bench("resnet50", convert_reps=3, latency_reps=12),
    Bench("mobilenet_v2", convert_reps=3, latency_reps=20),
    Bench("gru_classifier", convert_reps=3, latency_reps=400, cnn=False),
]
LATENCY_TURNS = (
    10  # each side's timed calls are split into this many turns, sides alternating
)

# Targets from issue 7; reported as pass/miss, never adjusted to fit.
FASTER_THAN_NOBUCO = 3.0  # nobuco (defaults) time / our convert() time, at least
WITHIN_FLOOR = 1.3  # our convert() time / floor time, at most


# --------------------------------------------------------------------------
# Running the workers


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (every process, anyone's)."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(
            int, stat.readline().split()[1:8]
        )
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds used by this script's finished child processes."""
    times = os.times()
    return times.children_user + times.children_system


class LoadMeter:
    """How many cores other people's work kept busy while we measured.

    The machine's busy time minus our workers' CPU time, over wall time. On
    a quiet machine it is ~0; here it tells how far to trust the figures.
    """

    def __enter__(self):
        self.start = (time.perf_counter(), machine_cpu_s(), children_cpu_s())
        return self

    def __exit__(self, *exc):
        wall, busy, ours = (
            now - then
            for now, then in zip(
                (time.perf_counter(), machine_cpu_s(), children_cpu_s()), self.start
            )
        )
        self.wall_s = wall
        self.other_cores = max(0.0, (busy - ours) / wall) if wall > 0 else 0.0


def run_worker(python: Path, script: str, args: list[str], log: Path) -> dict:
    """Run one worker in a fresh process; its JSON result plus `process_s`.

    `args` is COMMAND NAME FACTORY SHAPE [REST...]; the result file's path is
    inserted after SHAPE, where both workers expect it.

    A failure is recorded as {"error": ...} (with the log's path) rather than
    stopping the run: one model nobuco cannot convert should not cost the
    other figures.
    """
    result_path = log.with_suffix(".json")
    result_path.unlink(missing_ok=True)
    with open(log, "w") as output, LoadMeter() as load:
        completed = subprocess.run(
            [str(python), str(BENCH / script), *args[:4], str(result_path), *args[4:]],
            cwd=ROOT,
            env=ENV,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    if completed.returncode != 0 or not result_path.exists():
        return failure(log)
    result = json.loads(result_path.read_text())
    return {**result, "process_s": load.wall_s, "other_cores": load.other_cores}


ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}


def failure(log: Path) -> dict:
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["?"]
    print(f"    FAILED ({log.relative_to(ROOT)}): {tail[0]}")
    return {"error": tail[0], "log": str(log.relative_to(ROOT))}


class LatencyWorker:
    """One long-lived latency worker process (common.serve_latency) and its log."""

    def __init__(
        self, side: str, python: Path, script: str, command: str, common: list[str]
    ):
        self.log_path = OUT / "logs" / f"{common[0]}-latency-{side}.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [str(python), str(BENCH / script), command, *common, "-"],
            cwd=ROOT,
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.error: dict | None = None

    def ask(self, request: str | None):
        """Send `request` (None: only read, e.g. the ready line); the decoded answer.

        None once the worker has died; `error` then says why, and the other
        sides go on.
        """
        if self.error:
            return None
        try:
            if request is not None:
                self.process.stdin.write(request + "\n")
                self.process.stdin.flush()
            answer = self.process.stdout.readline()
        except BrokenPipeError:
            answer = ""
        if answer:
            return json.loads(answer)
        self.process.wait()
        self.log.flush()
        self.error = failure(self.log_path)
        return None

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        self.log.close()


def interleaved_latency(sides: dict, common: list[str], repetitions: int) -> dict:
    """Time every side's model on x1 and x8, the sides taking turns.

    Each side is one worker process, kept alive and warm; each turn asks one
    side for a few calls per batch, and the sides' order rotates every turn.
    Returns side -> {"latency_ms": {batch: samples}, ...the worker's final
    report (error, graph counts)}, or a failure record.
    """
    per_turn = max(1, -(-repetitions // LATENCY_TURNS))
    with LoadMeter() as load:
        workers = {
            side: LatencyWorker(side, *spec, common) for side, spec in sides.items()
        }
        for worker in workers.values():
            worker.ask(None)  # "ready": loaded, converted, warmed up
        samples = {side: {"x1": [], "x8": []} for side in workers}
        names = list(workers)
        for turn in range(LATENCY_TURNS):
            for side in names[turn % len(names) :] + names[: turn % len(names)]:
                for batch in ("x1", "x8"):
                    samples[side][batch] += (
                        workers[side].ask(f"{batch} {per_turn}") or []
                    )
        finals = {side: worker.ask("done") for side, worker in workers.items()}
        for worker in workers.values():
            worker.close()
    return {
        side: worker.error
        or {
            **finals[side],
            "latency_ms": samples[side],
            "other_cores": load.other_cores,
        }
        for side, worker in workers.items()
    }


def model_source(name: str) -> tuple[str, tuple[int, ...], str]:
    """The spec's PyTorch factory, its input shape in PyTorch layout (no batch)
    and the input's dtype (int64 for token ids)."""
    spec = yaml.safe_load((ROOT / "specs" / f"{name}.yaml").read_text())
    (keras_input,) = spec["inputs"].values()
    shape = tuple(keras_input["shape"])
    if len(shape) == 3:  # an image: Keras (H, W, C) is PyTorch (C, H, W)
        shape = (shape[2], shape[0], shape[1])
    return spec["source"]["model"], shape, keras_input.get("dtype", "float32")


def converters(with_nobuco: bool) -> dict[str, tuple[Path, str, str, list[str]]]:
    """name -> (python, worker script, command, trailing arguments) per converter."""
    main = Path(sys.executable)
    table = {
        "ours": (main, "worker.py", "ours", []),
        "floor": (main, "worker.py", "floor", []),
    }
    if with_nobuco:
        table["nobuco"] = (NOBUCO_PYTHON, "nobuco_worker.py", "convert", ["default"])
        table["nobuco_lean"] = (NOBUCO_PYTHON, "nobuco_worker.py", "convert", ["lean"])
    return table


def bench_model(bench: Bench, with_nobuco: bool) -> dict:
    factory, shape, dtype = model_source(bench.name)
    common = [bench.name, factory, f"{','.join(map(str, shape))}:{dtype}"]
    logs = OUT / "logs"
    main = Path(sys.executable)

    print(f"{bench.name}: seeded checkpoint and reference outputs")
    prepared = run_worker(
        main, "worker.py", ["prepare", *common], logs / f"{bench.name}-prepare.log"
    )
    if "error" in prepared:
        raise SystemExit(
            f"{bench.name}: could not prepare the checkpoint: {prepared['error']}"
        )

    # Conversions: one fresh process each, the converters' order rotated per
    # repetition so that a burst of load on the machine does not hit one alone.
    table = converters(with_nobuco)
    conversions: dict[str, list[dict]] = {method: [] for method in table}
    for rep in range(bench.convert_reps):
        methods = list(table)
        methods = methods[rep % len(methods) :] + methods[: rep % len(methods)]
        for method in methods:
            python, script, command, rest = table[method]
            print(f"  convert {method} ({rep + 1}/{bench.convert_reps})")
            log = logs / f"{bench.name}-convert-{method}-{rep}.log"
            conversions[method].append(
                run_worker(python, script, [command, *common, *rest], log)
            )

    # Latency: the three sides in three processes, taking turns.
    sides = {
        "ours": (main, "worker.py", "latency-ours"),
        "pytorch": (main, "worker.py", "latency-pytorch"),
    }
    if with_nobuco:
        sides["nobuco"] = (NOBUCO_PYTHON, "nobuco_worker.py", "latency")
    print(f"  latency {', '.join(sides)} ({bench.latency_reps} calls per batch each)")
    latency = interleaved_latency(sides, common, bench.latency_reps)

    with np.load(OUT / f"{bench.name}.npz") as data:
        output_scale = float(np.max(np.abs(data["y8"])))
    return {
        "bench": bench.__dict__,
        "factory": factory,
        "input_shape": shape,
        "input_dtype": dtype,
        "prepared": prepared,
        "output_scale": output_scale,
        "conversions": conversions,
        "latency": latency,
    }


# --------------------------------------------------------------------------
# Summaries


def ok(runs: list[dict]) -> list[dict]:
    return [run for run in runs if "error" not in run]


def median(runs: list[dict], key: str) -> float | None:
    values = [run[key] for run in ok(runs)]
    return statistics.median(values) if values else None


def latency_stat(result: dict, batch: str, stat) -> float | None:
    """`stat` (median, min) of every timed call of one side on one batch."""
    samples = result.get("latency_ms", {}).get(batch)
    return stat(samples) if samples else None


def summarize(result: dict) -> dict:
    conversions, latency = result["conversions"], result["latency"]
    loads = [run["other_cores"] for runs in conversions.values() for run in ok(runs)]
    loads += [side["other_cores"] for side in latency.values() if "other_cores" in side]
    return {
        "name": result["bench"]["name"],
        "cnn": result["bench"]["cnn"],
        "parameters": result["prepared"]["parameters"],
        "convert_s": {m: median(runs, "convert_s") for m, runs in conversions.items()},
        "process_s": {m: median(runs, "process_s") for m, runs in conversions.items()},
        "import_s": {m: median(runs, "import_s") for m, runs in conversions.items()},
        "peak_rss_mb": {
            m: median(runs, "peak_rss_mb") for m, runs in conversions.items()
        },
        "convert_rss_mb": {
            m: median(runs, "convert_rss_mb") for m, runs in conversions.items()
        },
        "nobuco_trace_s": median(conversions.get("nobuco", []), "trace_s"),
        "latency_ms": {
            batch: {
                side: latency_stat(r, batch, statistics.median)
                for side, r in latency.items()
            }
            for batch in ("x1", "x8")
        },
        "latency_min_ms": {
            batch: {side: latency_stat(r, batch, min) for side, r in latency.items()}
            for batch in ("x1", "x8")
        },
        "graph": {
            side: r
            for side, r in latency.items()
            if side != "pytorch" and "error" not in r
        },
        "max_abs_error": {
            "ours": latency["ours"].get("max_abs_error"),
            "nobuco": latency.get("nobuco", {}).get("max_abs_error"),
            "floor": max_error(conversions["floor"]),
            "pytorch": latency["pytorch"].get("max_abs_error"),
        },
        "output_scale": result["output_scale"],
        "other_cores": loads,
        "failures": [
            f"convert {name}: {run['error']} ({run['log']})"
            for name, runs in conversions.items()
            for run in runs
            if "error" in run
        ]
        + [
            f"latency {side}: {r['error']} ({r['log']})"
            for side, r in latency.items()
            if "error" in r
        ],
    }


def max_error(runs: list[dict]) -> float | None:
    values = [run["max_abs_error"] for run in ok(runs)]
    return max(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


# --------------------------------------------------------------------------
# The report


def fmt(value, spec: str = ".3g", missing: str = "n/a") -> str:
    return missing if value is None else format(value, spec)


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1e3:.0f} ms" if value < 1 else f"{value:.2f} s"


def verdict(passed: bool | None, detail: str) -> str:
    if passed is None:
        return f"n/a ({detail})"
    return f"{'pass' if passed else '**miss**'} ({detail})"


def trio(values: dict, spec: str = ".0f", keys=("ours", "floor", "nobuco")) -> str:
    return " / ".join(fmt(values.get(key), spec) for key in keys)


def machine() -> dict:
    with open("/proc/meminfo") as meminfo:
        total_kb = int(
            next(line for line in meminfo if line.startswith("MemTotal")).split()[1]
        )
    cpu = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cores": os.cpu_count(), "ram_gib": total_kb / 2**20, "cpu": cpu}


def banner(load: tuple[float, float] | None) -> list[str]:
    """The warning at the top: a shared machine, and how busy it was this time."""
    if load is not None and load[1] < 0.1:
        during = [
            "> engineers use for test runs; during this run their load was negligible",
            "> (*background load* below), but nothing reserved the machine, and two",
            "> runs' figures differ by several percent.",
        ]
    else:
        during = [
            "> engineers were using for test runs at the same time (*background load*",
            "> below). Absolute times move with that load: re-run it on a quiet",
            "> machine before quoting them.",
        ]
    return [
        "> **Shared machine.** Measured on a development machine that other",
        *during,
        "> The ratios, taken within one run with the sides interleaved, are the",
        "> meaningful part.",
    ]


def fmt_load(load: tuple[float, float] | None) -> str:
    return "n/a" if load is None else f"{load[0]:.2f} (max {load[1]:.2f})"


def memory_figures() -> dict:
    """bench/memory.py in its own process (it builds a 1 GB PyTorch model,
    which this process should not hold); its figures, or a failure record."""
    log = OUT / "logs" / "memory.log"
    with open(log, "w") as output:
        completed = subprocess.run(
            [sys.executable, str(BENCH / "memory.py")],
            cwd=ROOT,
            env=ENV,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    if completed.returncode != 0:
        return failure(log)
    return json.loads(memory.FIGURES.read_text())


def memory_lines(figures: dict | None) -> list[str]:
    if figures is None:  # --quick, --no-memory, or an older raw results file
        return []
    if "error" in figures:
        return ["", "## Memory on a 1 GB model", "", f"- FAILED: {figures['error']}"]
    return ["", *memory.render(figures)]


def render(summaries: list[dict], meta: dict, memory_figures: dict | None) -> str:
    load = background(summaries)
    lines = [
        "# Benchmark: torch2keras vs nobuco vs the floor",
        "",
        "Regenerated by `bench/run.py`; do not edit by hand.",
        "",
        *banner(load),
        "",
        f"- command: `{meta['command']}`",
        f"- date: {meta['date']} (run took {meta['duration_min']:.1f} min; "
        f"load average {meta['load_before']} before, {meta['load_after']} after)",
        f"- machine: {meta['machine']['cores']} cores ({meta['machine']['cpu']}), "
        f"{meta['machine']['ram_gib']:.0f} GiB RAM, no GPU",
        f"- background load: other people's processes kept {fmt_load(load)} of the"
        f" {meta['machine']['cores']} cores busy while we measured (median, max over all"
        " measurements; /proc/stat busy time minus our workers' CPU time)",
        f"- ours / floor / PyTorch: {versions(meta['versions'])}",
        f"- nobuco: {versions(meta['nobuco_versions'])} in `bench/.venv-nobuco` "
        "(nobuco needs Keras 2: see bench/setup_nobuco.sh)",
        "",
        "## Conversion",
        "",
        "Median over fresh processes per converter. *convert* is the converter's",
        "call alone; *process* is the whole process (interpreter, imports, convert,",
        "a one-input check); peak RSS is the process's, *added* is peak minus RSS",
        "just before the convert call. nobuco is timed as a user runs it: build the",
        "PyTorch model, load the checkpoint, `pytorch_to_keras` (defaults:",
        "per-module validation, trace printed); *lean* turns both off.",
        "",
        "| model | params | ours convert() | floor | nobuco | nobuco lean "
        "| nobuco / ours | nobuco lean / ours | ours / floor "
        "| process s (ours / floor / nobuco) | peak RSS MiB (ours / floor / nobuco) "
        "| added MiB (ours / floor / nobuco) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        c = s["convert_s"]
        lines.append(
            f"| {s['name']} | {s['parameters'] / 1e6:.2f} M | {seconds(c.get('ours'))} "
            f"| {seconds(c.get('floor'))} | {seconds(c.get('nobuco'))} "
            f"| {seconds(c.get('nobuco_lean'))} "
            f"| {fmt(ratio(c.get('nobuco'), c.get('ours')), '.1f')}x "
            f"| {fmt(ratio(c.get('nobuco_lean'), c.get('ours')), '.1f')}x "
            f"| {fmt(ratio(c.get('ours'), c.get('floor')), '.2f')}x "
            f"| {trio(s['process_s'], '.1f')} | {trio(s['peak_rss_mb'])} "
            f"| {trio(s['convert_rss_mb'])} |"
        )
    lines += [
        "",
        "## Inference latency",
        "",
        "Milliseconds per call: median (and fastest) of every timed call. Ours and",
        "nobuco's model are called through `tf.function` (TensorFlow backend,",
        "channels-last input); PyTorch is eager under `torch.no_grad()`. Each side",
        "runs in its own process (TensorFlow in the same process slows PyTorch's",
        f"small ops down); the three take turns, a few calls each, {LATENCY_TURNS} turns.",
        "Ratios are of the medians (of the fastest calls in brackets).",
        "*TF call floor*: the median time of calling an empty `tf.function` on",
        "the batch-1 input and fetching its result with `.numpy()`, in our",
        "worker: TensorFlow's fixed cost per call, which no TensorFlow model goes",
        "below (nobuco's runs on the same TensorFlow machinery).",
        "",
        "| model | batch | ours ms | PyTorch eager ms | nobuco ms | ours / PyTorch | ours / nobuco | TF call floor ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        for batch in ("x1", "x8"):
            t, best = s["latency_ms"][batch], s["latency_min_ms"][batch]
            times = [
                f"{fmt(t.get(k))} ({fmt(best.get(k))})"
                for k in ("ours", "pytorch", "nobuco")
            ]
            ratios = [
                f"{fmt(ratio(t.get('ours'), t.get(k)), '.2f')}x "
                f"({fmt(ratio(best.get('ours'), best.get(k)), '.2f')}x)"
                for k in ("pytorch", "nobuco")
            ]
            floor = s["graph"].get("ours", {}).get("tf_call_floor_ms")
            floor_cell = fmt(floor) if batch == "x1" else ""
            lines.append(
                "| "
                + " | ".join([s["name"], batch[1:], *times, *ratios, floor_cell])
                + " |"
            )
    lines += [
        "",
        "## Graph and accuracy",
        "",
        "*Transpose ops*: `Transpose` nodes in the TensorFlow graph `tf.function`",
        "traces for batch 1. *Transpose layers*: `Permute` layers, plus (nobuco)",
        "op layers calling `tf.transpose`. *Lambda-type layers*: `Lambda`, and the",
        "`TFOpLambda` / `SlicingOpLambda` layers Keras 2 wraps raw `tf.*` calls in.",
        "Max abs error against PyTorch eager on the same seeded batch of 8 (floor:",
        "batch 1), weights from `parity.randomize_` (seed 0), read from the same",
        "checkpoint by every side.",
        "",
        "| model | ours: Transpose ops / transpose layers / Lambda-type | ours graph ops "
        "| nobuco: Transpose ops / transpose layers / Lambda-type | nobuco graph ops "
        "| max abs err ours | nobuco | floor | max \\|PyTorch output\\| |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for s in summaries:
        ours, nobuco = s["graph"].get("ours", {}), s["graph"].get("nobuco", {})
        e = s["max_abs_error"]
        lines.append(
            f"| {s['name']} | {graph_trio(ours)} | {fmt(ours.get('graph_ops'), 'd')} "
            f"| {graph_trio(nobuco)} | {fmt(nobuco.get('graph_ops'), 'd')} "
            f"| {fmt(e['ours'], '.1e')} | {fmt(e['nobuco'], '.1e')} | {fmt(e['floor'], '.1e')} "
            f"| {s['output_scale']:.3g} |"
        )
    lines += [
        "",
        "## Targets (issue 7)",
        "",
        f"- convert: ours at least {FASTER_THAN_NOBUCO:g}x faster than nobuco (its defaults),"
        f" and within {WITHIN_FLOOR:g}x of the floor;",
        "- latency: ours no slower than nobuco's model, and no slower than PyTorch eager"
        " (CNNs), at batch 1 and 8;",
        "- no Transpose ops, Permute/transpose or Lambda-type layers in our graphs.",
        "",
        "| model | >= 3x faster than nobuco | <= 1.3x floor | latency <= nobuco (b1, b8) "
        "| latency <= PyTorch (b1, b8) | no Transpose/Permute/Lambda |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append("| " + " | ".join([s["name"], *targets(s)]) + " |")
    failures = [f for s in summaries for f in s["failures"]]
    if failures:
        lines += ["", "## Failed measurements", ""] + [f"- {f}" for f in failures]
    lines += memory_lines(memory_figures)
    lines += ["", "## How it measures", "", *NOTES]
    return "\n".join(lines) + "\n"


def graph_trio(graph: dict) -> str:
    keys = ("transpose_ops", "transpose_layers", "lambda_layers")
    return " / ".join(fmt(graph.get(key), "d") for key in keys)


def targets(s: dict) -> list[str]:
    c, t, ours_graph = s["convert_s"], s["latency_ms"], s["graph"].get("ours", {})
    speedup = ratio(c.get("nobuco"), c.get("ours"))
    floor = ratio(c.get("ours"), c.get("floor"))
    cells = [
        verdict(
            None if speedup is None else speedup >= FASTER_THAN_NOBUCO,
            f"{fmt(speedup, '.1f')}x",
        ),
        verdict(
            None if floor is None else floor <= WITHIN_FLOOR, f"{fmt(floor, '.2f')}x"
        ),
    ]
    for other in ("nobuco", "pytorch"):
        ratios = [ratio(t[b].get("ours"), t[b].get(other)) for b in ("x1", "x8")]
        detail = ", ".join(f"{fmt(r, '.2f')}x" for r in ratios)
        if other == "pytorch" and not s["cnn"]:
            cells.append(f"n/a, not a CNN ({detail})")
        elif None in ratios:
            cells.append(verdict(None, detail))
        else:
            tf_floor = ours_graph.get("tf_call_floor_ms")
            pytorch_b1 = t["x1"].get("pytorch")
            if other == "pytorch" and ratios[0] > 1.0 and tf_floor and pytorch_b1:
                if tf_floor >= pytorch_b1:  # unreachable for any TensorFlow model
                    detail += (
                        f"; an empty tf.function call takes {fmt(tf_floor)} ms, "
                        f"PyTorch's whole b1 call {fmt(pytorch_b1)} ms"
                    )
            cells.append(verdict(all(r <= 1.0 for r in ratios), detail))
    counts = [
        ours_graph.get(k)
        for k in ("transpose_ops", "transpose_layers", "lambda_layers")
    ]
    detail = " / ".join(fmt(n, "d") for n in counts)
    # Keras's RNN loop transposes (batch, time) itself; they fix no layout.
    in_loops = ours_graph.get("recurrent_transpose_ops") or 0
    if in_loops and counts[0] is not None:
        counts[0] -= in_loops
        detail += (
            f"; {in_loops} of the Transpose ops are Keras's RNN loop's batch/time swap"
        )
    cells.append(verdict(None if None in counts else not any(counts), detail))
    return cells


def background(summaries: list[dict]) -> tuple[float, float] | None:
    """Median and max cores kept busy by others over all measurements of the run."""
    loads = [load for s in summaries for load in s["other_cores"]]
    return (statistics.median(loads), max(loads)) if loads else None


def versions(v: dict | None) -> str:
    if not v:
        return "n/a"
    return ", ".join(f"{name} {version}" for name, version in v.items())


NOTES = [
    "- Weights: `compiler.parity.randomize_` (seed 0) on the spec's PyTorch model,"
    " saved once per model as `bench/out/NAME.safetensors`; every side reads that file.",
    "- Conversion processes start from nothing: `ours` and `floor` import keras, numpy"
    " and safetensors only (no torch), as a user of a generated module would; nobuco"
    " imports torch and TensorFlow (it traces the PyTorch model). Imports happen"
    " before the timed call on every side (they count in *process*, not *convert*).",
    "- The floor: `build_model()` of the generated module, `safetensors.numpy.load_file`,"
    " each weight's layout change (OIHW -> HWIO, depthwise, Dense transpose, flatten"
    " order) and one `Model.set_weights`, with no checks. Its outputs match PyTorch"
    " (column *floor*), so it does all the work a correct converter must.",
    "- nobuco converts with a free batch dimension (`input_shapes`, `trace_shape=True`,"
    " needed or it bakes `x.size(0)` in) and channels-last input and output, like ours;"
    " its latency model is converted in *lean* mode (the graph is the same).",
    "- Latency: 3 warm-up calls, then the timed calls; `.numpy()` on every output so"
    " each call has finished. Thread pools are the frameworks' defaults (2 cores)."
    " PyTorch's OpenMP threads suffer far more than TensorFlow's when another process"
    " takes a core (every parallel region waits for a descheduled thread): under"
    " background load its medians inflate most, and the fastest calls compare fairer.",
    "- Ratios: *nobuco / ours* > 1 means ours converts faster; *ours / floor* and"
    " *ours / X* latency < 1 mean ours is faster.",
    "- gru_classifier takes int64 token ids (batch, 16) from `parity.random_tokens`"
    " (rows after the first end in padding). Its two Transpose ops are inside Keras's"
    " own GRU layer (batch-major input to its time-major scan, and back), not a"
    " layout fix; the floor reorders the GRU gates (PyTorch r, z, n; Keras z, r, h).",
]


# --------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seed_cnn only, few repetitions (smoke run)",
    )
    parser.add_argument(
        "--models",
        help="comma-separated subset of: " + ", ".join(b.name for b in MODELS),
    )
    parser.add_argument(
        "--no-nobuco", action="store_true", help="skip nobuco (no Keras 2 environment)"
    )
    parser.add_argument(
        "--no-memory",
        action="store_true",
        help="skip bench/memory.py (the 1 GB model; --quick skips it too)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="results file (default bench/RESULTS.md; --quick: bench/out/RESULTS-quick.md)",
    )
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="measure nothing: rewrite the results file from its raw figures"
        " (bench/out/RESULTS.json, kept by the run that measured them)",
    )
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows up in a log file too

    models = MODELS
    if args.models:
        wanted = args.models.split(",")
        unknown = set(wanted) - {b.name for b in MODELS}
        if unknown:
            parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
        models = [b for b in MODELS if b.name in wanted]
    if args.quick:
        models = [
            Bench(b.name, convert_reps=1, latency_reps=10, cnn=b.cnn)
            for b in models[:1]
        ]
    output = args.output or (
        OUT / "RESULTS-quick.md" if args.quick else BENCH / "RESULTS.md"
    )

    if args.rerender:  # after a change to the report's layout
        saved = json.loads(raw_results(output).read_text())
        return report(saved["results"], saved["meta"], output, saved.get("memory"))

    with_nobuco = not args.no_nobuco
    if with_nobuco and not (NOBUCO_VENV / ".installed").exists():
        print(
            "creating bench/.venv-nobuco (nobuco 0.17 needs Keras 2; a few minutes, once)"
        )
        subprocess.run(["bash", str(BENCH / "setup_nobuco.sh")], check=True)
    (OUT / "logs").mkdir(parents=True, exist_ok=True)

    started, load_before = time.perf_counter(), os.getloadavg()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results = [bench_model(bench, with_nobuco) for bench in models]
    figures = None
    if not (args.quick or args.no_memory):
        print("memory on a 1 GB model (bench/memory.py)")
        figures = memory_figures()
    nobuco_versions = next(
        (
            r["latency"]["nobuco"]["versions"]
            for r in results
            if "versions" in r["latency"].get("nobuco", {})
        ),
        None,
    )
    meta = {
        "command": " ".join(
            ["python", "bench/run.py", *map(shlex.quote, sys.argv[1:])]
        ),
        "date": date,
        "duration_min": (time.perf_counter() - started) / 60,
        "load_before": " ".join(f"{x:.1f}" for x in load_before),
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "machine": machine(),
        "versions": results[0]["prepared"]["versions"],
        "nobuco_versions": nobuco_versions,
    }
    raw_results(output).write_text(
        json.dumps({"meta": meta, "results": results, "memory": figures}, indent=1)
    )
    return report(results, meta, output, figures)


def raw_results(output: Path) -> Path:
    """Where every sample behind a results file is kept: bench/out/STEM.json."""
    return OUT / f"{output.stem}.json"


def report(
    results: list[dict], meta: dict, output: Path, memory_figures: dict | None
) -> int:
    text = render([summarize(result) for result in results], meta, memory_figures)
    output.write_text(text)
    print(text.split("## How it measures")[0])
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
