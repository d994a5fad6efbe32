"""The wheel carries the templates: a compile works from an installed copy, not only a checkout."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import GENERATED, ROOT, SPECS


def test_wheel_includes_templates_and_compiles(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path / "dist"),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "dist").glob("torch2keras-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "compiler/templates/module.py.jinja" in names
        archive.extractall(tmp_path / "site")
    assert not any(
        name.startswith(("tests/", "examples/", "generated/")) for name in names
    )

    out = tmp_path / "seed_cnn.py"
    code = (
        "import sys, compiler.cli, compiler.render as r\n"
        f"assert r.__file__.startswith({str(tmp_path / 'site')!r}), r.__file__\n"
        "sys.exit(compiler.cli.main(sys.argv[1:]))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "compile",
            str(SPECS / "seed_cnn.yaml"),
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": ""},
    )
    assert result.returncode == 0, result.stderr
    # Same code as the checkout's, apart from the regenerate command naming -o.
    expected = (GENERATED / "seed_cnn.py").read_text().splitlines()
    assert out.read_text().splitlines()[3:] == expected[3:]
