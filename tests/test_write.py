"""Output: a write is whole or not at all, races leave one complete file, and the
output path comes from the spec's file name, never from inside the spec."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from compiler import build, cli, write
from compiler.errors import SpecError
from tests.conftest import ROOT, SPECS

OLD = "old contents\n"
NEW = "new contents\n" * 1000


def _leftovers(folder):
    """Everything in `folder` but the target: temporary files, if any."""
    return sorted(p.name for p in folder.iterdir() if p.name != "out.py")


def _raise(exc):
    def fail(*args, **kwargs):
        raise exc

    return fail


@pytest.mark.parametrize(
    "patched, exc",
    [
        ("replace", OSError(28, "No space left on device")),
        ("replace", KeyboardInterrupt()),
        ("fsync", KeyboardInterrupt()),
        ("fsync", OSError(5, "Input/output error")),
        ("chmod", PermissionError(1, "Operation not permitted")),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_failure_mid_write_keeps_the_old_file_and_no_temp_file(
    tmp_path, monkeypatch, patched, exc
):
    target = tmp_path / "out.py"
    target.write_text(OLD)
    monkeypatch.setattr(write.os, patched, _raise(exc))
    with pytest.raises(type(exc)):
        write.write_atomic(target, NEW)
    monkeypatch.undo()
    assert target.read_text() == OLD
    assert _leftovers(tmp_path) == []


def test_interrupted_first_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "sub" / "out.py"
    monkeypatch.setattr(write.os, "replace", _raise(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        write.write_atomic(target, NEW)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_compile_reports_a_failed_write_and_keeps_the_old_file(
    tmp_path, monkeypatch, capsys
):
    shutil.copytree(SPECS, tmp_path / "specs")
    (tmp_path / "pyproject.toml").write_text("")
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "generated" / "seed_linear.py"
    target.parent.mkdir()
    target.write_text(OLD)
    monkeypatch.setattr(write.os, "replace", _raise(OSError(28, "No space left")))
    assert cli.main(["compile", "specs/seed_linear.yaml"]) == cli.EXIT_FINDINGS
    assert capsys.readouterr().err == (
        "generated/seed_linear.py: error: cannot write: No space left\n"
    )
    assert target.read_text() == OLD
    assert sorted(p.name for p in target.parent.iterdir()) == ["seed_linear.py"]


# Each writer alternates between two specs compiled to the same file, so nearly
# every call replaces it, for a fixed time.
_WRITER = """
import sys, time
from pathlib import Path
from compiler import build, write
out, seconds, specs = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
texts = [build.generate(spec, out).source for spec in specs]
writes, end, i = 0, time.monotonic() + seconds, 0
while time.monotonic() < end:
    writes += write.write_atomic(out, texts[i % len(texts)])
    i += 1
print(writes)
"""


def test_concurrent_compiles_leave_one_complete_file(tmp_path):
    out = tmp_path / "out.py"
    specs = [str(SPECS / "seed_linear.yaml"), str(SPECS / "seed_cnn.yaml")]
    complete = {build.generate(spec, out).source for spec in specs}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(out), "2", *order],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for order in (specs, specs[::-1])
    ]
    reads = 0
    deadline = time.monotonic() + 60
    while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
        if out.exists():
            # A reader sees the old file or the new one, never part of either.
            assert out.read_text() in complete
            reads += 1
    writes = [int(w.communicate(timeout=60)[0]) for w in writers]
    assert all(w.returncode == 0 for w in writers)
    assert min(writes) > 10, writes  # both really wrote, many times
    assert reads > 10
    assert out.read_text() in complete
    assert _leftovers(tmp_path) == []


# --- where the output goes -----------------------------------------------------------


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "specs").mkdir()
    return tmp_path


def test_a_path_as_spec_name_is_rejected(project):
    spec = project / "specs" / "model.yaml"
    text = (SPECS / "seed_linear.yaml").read_text()
    spec.write_text(text.replace("name: seed_linear", "name: ../../evil"))
    with pytest.raises(SpecError) as caught:
        build.generate(spec)
    assert [str(d) for d in caught.value.diagnostics] == [
        f"{spec}:3:7: error[E202]: '../../evil' is not a valid name: use ASCII "
        "letters, digits and _, not starting with a digit"
    ]


def test_default_output_is_the_spec_file_stem_not_its_name(project, monkeypatch):
    spec = project / "specs" / "file_stem.yaml"
    spec.write_text((SPECS / "seed_linear.yaml").read_text())  # name: seed_linear
    monkeypatch.chdir(project)
    assert cli.main(["compile", "specs/file_stem.yaml"]) == 0
    written = sorted(
        str(p.relative_to(project)) for p in project.rglob("*") if p.is_file()
    )
    assert written == [
        "generated/file_stem.py",
        "pyproject.toml",
        "specs/file_stem.yaml",
    ]
    assert os.path.dirname(build.default_output(spec)) == str(project / "generated")
