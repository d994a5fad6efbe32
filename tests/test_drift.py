"""generated/ is exactly what the specs compile to, and passes ruff."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from compiler import build
from tests.conftest import GENERATED, ROOT, SPECS

SPEC_FILES = sorted(SPECS.glob("*.yaml"))


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.stem)
def test_generated_module_is_up_to_date(spec):
    generated = build.generate(spec)
    assert generated.output_path == GENERATED / f"{spec.stem}.py"
    assert generated.output_path.read_text() == generated.source, (
        f"generated/{spec.stem}.py is stale: run torch2keras compile {spec.relative_to(ROOT)}"
    )


def test_every_generated_module_has_a_spec():
    assert sorted(p.stem for p in GENERATED.glob("*.py")) == [
        p.stem for p in SPEC_FILES
    ]


def test_generation_is_deterministic():
    for spec in SPEC_FILES:
        assert build.generate(spec).source == build.generate(spec).source


def _ruff(*args):
    ruff = shutil.which(
        "ruff", path=str(__import__("pathlib").Path(sys.executable).parent)
    )
    if ruff is None:
        pytest.fail("ruff is a dev dependency: pip install -e '.[dev]'")
    return subprocess.run([ruff, *args], capture_output=True, text=True, cwd=ROOT)


def test_generated_modules_pass_ruff():
    lint = _ruff("check", "generated")
    assert lint.returncode == 0, lint.stdout
    formatting = _ruff("format", "--check", "--diff", "generated")
    assert formatting.returncode == 0, formatting.stdout + formatting.stderr


def test_compile_path_imports_no_framework():
    code = (
        "import sys\n"
        "from compiler import build, cli\n"
        f"for spec in sorted(__import__('pathlib').Path({str(SPECS)!r}).glob('*.yaml')):\n"
        "    build.generate(spec)\n"
        "cli.main(['validate', " + repr(str(SPECS)) + "])\n"
        "loaded = sorted(m for m in ('torch', 'tensorflow', 'keras', 'jax', 'numpy') if m in sys.modules)\n"
        "print(loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
