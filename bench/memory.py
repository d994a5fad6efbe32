"""Peak memory added by a generated convert() on a synthetic model of over 1 GB.

    python bench/memory.py                 # measure, print the section, keep bench/out/memory.json
    python bench/memory.py --output F.md   # also write the section to F.md

Issue 7's target: the peak RSS that convert() adds stays within 1.25x the
checkpoint size plus the Keras model itself. The model: 17 nn.Linear(4096,
4096) layers with ReLUs between them (285 M float32 parameters, 1.14 GB),
seeded random weights. Its spec is written here (not in specs/: the drift test
would then compile a 1 GB model's module on every run) and compiled into
bench/out/memory/ with the project's compiler. The checkpoint is saved twice,
as one .safetensors file and as 3 shards with a Hugging Face index, and each
is converted in a fresh process, which imports only keras and numpy.

How the peak is measured: the child process reads its RSS (VmRSS) just before
convert(), resets the kernel's high-water mark (writing 5 to
/proc/self/clear_refs sets VmHWM to the current RSS), calls convert(), then
reads VmHWM. VmHWM is kept by the kernel on every page fault, so no short-lived
spike between two samples is missed, and resetting it leaves out the imports'
own peak. RSS counts file-backed pages mapped into the process too, so a
memory-mapped checkpoint's touched pages count, as they should.

bench/run.py runs this script in its own process and renders the figures it
leaves in bench/out/memory.json with render(), as its "Memory on a 1 GB model"
section. The 2.2 GB of checkpoints are deleted once measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "out" / "memory"
FIGURES = BENCH / "out" / "memory.json"
WIDTH, DEPTH, SHARDS = 4096, 17, 3
TARGET = 1.25  # issue 7; see render() for its two readings

ENV = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2"}


def spec_text() -> str:
    """The synthetic model's spec: Dense layers paired with nn.Sequential indices."""
    layers = []
    for i in range(DEPTH):
        layers.append(
            f'  - {{name: fc{i}, keras: Dense, args: {{units: {WIDTH}}}, torch: "{2 * i}"}}'
        )
        if i < DEPTH - 1:
            layers.append(f"  - {{name: relu{i}, keras: ReLU}}")
    return "\n".join(
        [
            "spec: 1",
            "name: memory_mlp",
            f"summary: {DEPTH} Dense layers of {WIDTH} units, for bench/memory.py.",
            "inputs:",
            f"  x: {{shape: [{WIDTH}]}}",
            "layers:",
            *layers,
            f"outputs: [fc{DEPTH - 1}]",
            "",
        ]
    )


def prepare() -> dict:
    """Compile the spec, save both checkpoints and the reference output."""
    sys.path.insert(0, str(ROOT))
    from compiler import build, frameworks, write

    frameworks.import_torch_first()
    import numpy as np
    from torch import nn

    from compiler import parity

    (WORK / "specs").mkdir(parents=True, exist_ok=True)
    (WORK / "pyproject.toml").write_text("")  # the compiler's project root
    spec = WORK / "specs" / "memory_mlp.yaml"
    spec.write_text(spec_text())
    generated = build.generate(spec)
    write.write_atomic(generated.output_path, generated.source)

    layers = []
    for i in range(DEPTH):
        layers.append(nn.Linear(WIDTH, WIDTH))
        if i < DEPTH - 1:
            layers.append(nn.ReLU())
    model = parity.randomize_(nn.Sequential(*layers).eval(), seed=0)
    single = parity.save_checkpoint(model, WORK / "memory_mlp.safetensors")
    index = parity.save_sharded_checkpoint(model, WORK / "sharded", SHARDS)
    x = parity.random_input((2, WIDTH), seed=1)
    np.savez(WORK / "reference.npz", x=x, y=parity.torch_output(model, x))
    return {
        "module": str(generated.output_path),
        "checkpoints": {"single file": str(single), f"{SHARDS} shards": str(index)},
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def checkpoint_bytes(path: Path) -> int:
    """A file's size; for an index, the size of every shard it names."""
    if path.name.endswith(".index.json"):
        shards = set(json.loads(path.read_text())["weight_map"].values())
        return sum((path.parent / name).stat().st_size for name in shards)
    return path.stat().st_size


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(module_path: str, checkpoint: str, result_path: str) -> None:
    """In a fresh process: convert() once, its added peak RSS and its error."""
    import importlib.util

    import keras
    import numpy as np

    spec = importlib.util.spec_from_file_location("memory_mlp", module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with np.load(WORK / "reference.npz") as data:
        x, y = data["x"], data["y"]
    keras.ops.convert_to_numpy(keras.ops.ones(1))  # backend start-up, not convert()

    before_kib = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # VmHWM := VmRSS
    reset_kib = _status_kib("VmHWM")
    start = time.perf_counter()
    model = module.convert(checkpoint)
    convert_s = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM")
    if reset_kib > before_kib + 1024:
        raise RuntimeError("VmHWM was not reset: cannot measure the peak")
    model_bytes = sum(
        int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in model.weights
    )
    output = keras.ops.convert_to_numpy(model(x, training=False))
    error = float(np.max(np.abs(output.astype(np.float64) - y)))
    Path(result_path).write_text(
        json.dumps(
            {
                "rss_before_bytes": before_kib * 1024,
                "added_bytes": (peak_kib - before_kib) * 1024,
                "model_bytes": model_bytes,
                "convert_s": convert_s,
                "max_abs_error": error,
                "output_scale": float(np.max(np.abs(y))),
            }
        )
    )


def measure(repetitions: int = 1) -> dict:
    """Prepare, then convert each checkpoint in fresh processes; every figure."""
    print("memory: synthetic model, its module and checkpoints (bench/out/memory/)")
    prepared = prepare()
    runs = {}
    for label, checkpoint in prepared["checkpoints"].items():
        runs[label] = []
        for rep in range(repetitions):
            print(f"  convert {label} ({rep + 1}/{repetitions})")
            result = WORK / "result.json"
            result.unlink(missing_ok=True)
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "child",
                    prepared["module"],
                    checkpoint,
                    str(result),
                ],
                check=True,
                cwd=ROOT,
                env=ENV,
            )
            run = json.loads(result.read_text())
            run["checkpoint_bytes"] = checkpoint_bytes(Path(checkpoint))
            runs[label].append(run)
    for checkpoint in [*WORK.glob("*.safetensors"), *WORK.glob("sharded/*")]:
        checkpoint.unlink()  # 2.2 GB; prepare() writes them again
    return {"parameters": prepared["parameters"], "runs": runs}


def render(data: dict) -> list[str]:
    """The "Memory on a 1 GB model" section, as markdown lines."""
    mib = 2**20
    lines = [
        "## Memory on a 1 GB model",
        "",
        f"`bench/memory.py`: {DEPTH} `nn.Linear({WIDTH}, {WIDTH})` layers with ReLUs",
        f"between them ({data['parameters'] / 1e6:.0f} M float32 parameters), seeded",
        "random weights, converted by the generated module in a fresh process (keras",
        "and numpy only), from one .safetensors file and from 3 shards and their",
        "index. *Added* is the kernel's high-water mark of RSS during",
        "`convert()` (VmHWM, reset just before the call through /proc/self/clear_refs)",
        "minus RSS just before it; a memory-mapped checkpoint's touched pages count.",
        "Issue 7's target, \"within 1.25x the checkpoint size plus the Keras model",
        'itself", reads two ways, and both are checked: added <= 1.25 x (checkpoint',
        "+ model), and the stricter added <= 1.25 x checkpoint + model, that is,",
        "what reading and transforming held *beyond the model's* own weights is at",
        "most 1.25x the checkpoint. *Model* is the bytes of the Keras weights;",
        "building the model alone (TensorFlow's initialisers and allocator) takes",
        "more than that (190 MiB more, when this was written), which counts in",
        "*beyond the model*.",
        "",
        "| checkpoint | size MiB | Keras model MiB | added MiB "
        "| added / (checkpoint + model) | beyond the model / checkpoint | convert s "
        "| max abs err | target (both readings) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for label, runs in data["runs"].items():
        worst = max(runs, key=lambda run: run["added_bytes"])
        size, model = worst["checkpoint_bytes"], worst["model_bytes"]
        added = worst["added_bytes"]
        loose, strict = added / (size + model), (added - model) / size
        verdict = "pass" if max(loose, strict) <= TARGET else "**miss**"
        lines.append(
            f"| {label} | {size / mib:.0f} | {model / mib:.0f} | {added / mib:.0f} "
            f"| {loose:.2f}x | {strict:.2f}x "
            f"| {min(run['convert_s'] for run in runs):.1f} "
            f"| {worst['max_abs_error']:.1e} | {verdict} (<= {TARGET:g}x) |"
        )
    if any(len(runs) > 1 for runs in data["runs"].values()):
        lines += [
            "",
            "The worst of the repetitions is shown; convert s is the fastest.",
        ]
    return lines


def main() -> int:
    if sys.argv[1:2] == ["child"]:
        child(*sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=1)
    parser.add_argument("--output", type=Path, help="write the markdown section here")
    args = parser.parse_args()
    data = measure(args.repetitions)
    FIGURES.write_text(json.dumps(data, indent=1) + "\n")
    text = "\n".join(render(data)) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
