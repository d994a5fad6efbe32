"""Where a generated convert() spends its time: cProfile of one call.

    python bench/profile_convert.py [NAME] [--top N]     (default resnet50)

Uses the checkpoint bench/run.py wrote (bench/out/NAME.safetensors); run
`python bench/run.py --models NAME` first if it is missing. Like the
benchmark's `ours` worker, it imports no torch.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.worker import OUT, import_generated  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="resnet50")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    checkpoint = OUT / f"{args.name}.safetensors"
    if not checkpoint.exists():
        parser.error(
            f"{checkpoint} is missing: run python bench/run.py --models {args.name}"
        )

    import keras  # noqa: F401  (imports are not what we profile)

    module = import_generated(args.name)
    profiler = cProfile.Profile()
    profiler.enable()
    module.convert(checkpoint)
    profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"convert() of generated/{args.name}.py: {stats.total_tt:.2f} s profiled")
    stats.sort_stats("cumulative").print_stats(args.top)
    stats.sort_stats("tottime").print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
