"""The bundled example, end to end: seed_cnn from spec to a verified Keras model.

1. compile specs/seed_cnn.yaml -> generated/seed_cnn.py (the same as
   `torch2keras compile specs/seed_cnn.yaml`);
2. make the PyTorch SeedCNN with seeded random weights and save a checkpoint;
3. convert that checkpoint with the generated module and save model.keras;
4. run the same input through both and print the largest difference.

Run: python examples/demo.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from compiler import build, frameworks, write  # noqa: E402

frameworks.import_torch_first()

from compiler import parity  # noqa: E402

TOLERANCE = 1e-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir", default=str(ROOT / "out"), help="where to write files"
    )
    args = parser.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    generated = build.generate(ROOT / "specs" / "seed_cnn.yaml")
    write.write_atomic(generated.output_path, generated.source)
    print(f"compiled specs/seed_cnn.yaml -> {generated.output_path.relative_to(ROOT)}")

    torch_model = parity.randomize_(parity.build("examples.seed:SeedCNN"), seed=0)
    checkpoint = parity.save_checkpoint(torch_model, out / "seed_cnn.safetensors")
    print(f"saved a seeded random PyTorch checkpoint -> {checkpoint}")

    module = parity.import_generated(generated.output_path)
    keras_model = module.convert(checkpoint)
    keras_model.save(out / "seed_cnn.keras")
    print(f"converted it with the generated module -> {out / 'seed_cnn.keras'}")

    image = parity.random_input((4, 3, 32, 32), seed=1)
    error = parity.max_abs_error(
        parity.torch_output(torch_model, image), parity.keras_output(keras_model, image)
    )
    verdict = "OK" if error <= TOLERANCE else "MISMATCH"
    print(
        f"max abs difference, PyTorch vs Keras, same input: {error:.3g} "
        f"(tolerance {TOLERANCE:g}): {verdict}"
    )
    return 0 if error <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
