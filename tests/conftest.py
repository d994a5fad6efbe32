"""Test session set-up.

PyTorch (and torch._dynamo) must be imported before TensorFlow/Keras in this
process: see compiler/frameworks.py for the crash this avoids.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from compiler import frameworks  # noqa: E402

frameworks.import_torch_first()

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GENERATED = ROOT / "generated"


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
