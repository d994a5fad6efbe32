"""The torch2keras command line: compile, check, validate, schema, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from compiler import __version__, build, cli, load
from tests.conftest import GENERATED, ROOT, SPECS


@pytest.fixture
def project(tmp_path):
    """A copy of the seed specs in a project of their own."""
    (tmp_path / "pyproject.toml").write_text("")
    shutil.copytree(SPECS, tmp_path / "specs")
    return tmp_path


def test_compile_writes_generated_module_beside_specs(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli.main(["compile", "specs/seed_cnn.yaml"]) == 0
    assert capsys.readouterr().out == "wrote generated/seed_cnn.py\n"
    written = (project / "generated" / "seed_cnn.py").read_text()
    assert written == (GENERATED / "seed_cnn.py").read_text()
    # A second run changes nothing.
    assert cli.main(["compile", "specs/seed_cnn.yaml"]) == 0
    assert capsys.readouterr().out == "unchanged generated/seed_cnn.py\n"


def test_compile_output_options(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli.main(["compile", "specs/seed_linear.yaml", "-o", "out/linear.py"]) == 0
    text = (project / "out" / "linear.py").read_text()
    assert (
        "# Regenerate: torch2keras compile specs/seed_linear.yaml -o out/linear.py\n"
        in text
    )
    assert cli.main(["compile", "specs", "--out-dir", "elsewhere"]) == 0
    assert sorted(p.name for p in (project / "elsewhere").iterdir()) == [
        f"{p.stem}.py" for p in sorted(SPECS.glob("*.yaml"))
    ]
    assert cli.main(["compile", "specs", "-o", "one.py"]) == cli.EXIT_USAGE
    assert "-o names one file" in capsys.readouterr().err


def test_failed_compile_leaves_previous_output_untouched(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli.main(["compile", "specs/seed_cnn.yaml"]) == 0
    before = (project / "generated" / "seed_cnn.py").read_bytes()
    spec = project / "specs" / "seed_cnn.yaml"
    spec.write_text(spec.read_text().replace("keras: Flatten", "keras: Flaten"))
    assert cli.main(["compile", "specs/seed_cnn.yaml"]) == cli.EXIT_FINDINGS
    assert "error[E203]: unknown Keras layer type 'Flaten'" in capsys.readouterr().err
    assert (project / "generated" / "seed_cnn.py").read_bytes() == before
    assert sorted(p.name for p in (project / "generated").iterdir()) == ["seed_cnn.py"]


def test_check_reports_drift_with_a_diff(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli.main(["compile", "specs"]) == 0
    capsys.readouterr()
    assert cli.main(["check"]) == 0
    count = len(list(SPECS.glob("*.yaml")))
    assert capsys.readouterr().out == f"{count} spec(s) up to date\n"

    module = project / "generated" / "seed_conv.py"
    module.write_text(module.read_text().replace("filters=16", "filters=17"))
    (project / "generated" / "orphan.py").write_text("")
    assert cli.main(["check", "specs"]) == cli.EXIT_FINDINGS
    captured = capsys.readouterr()
    diff_lines = captured.out.splitlines()
    assert any(line.startswith("-") and "filters=17" in line for line in diff_lines)
    assert any(line.startswith("+") and "filters=16" in line for line in diff_lines)
    assert (
        "generated/seed_conv.py: error: out of date with specs/seed_conv.yaml"
        in captured.err
    )
    assert "generated/orphan.py: error: generated module has no spec" in captured.err


def test_validate_and_usage_errors(project, monkeypatch, capsys):
    monkeypatch.chdir(project)
    assert cli.main(["validate", "specs"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"specs/{p.name}: ok" for p in sorted(SPECS.glob("*.yaml"))
    ]
    assert cli.main(["validate", "specs/nope.yaml"]) == cli.EXIT_USAGE
    assert "specs/nope.yaml: error: no such spec file" in capsys.readouterr().err
    assert not (project / "generated").exists()  # validate writes nothing
    with pytest.raises(SystemExit) as exit_:
        cli.main(["compile"])
    assert exit_.value.code == cli.EXIT_USAGE


def _schema_errors(data) -> list[str]:
    import jsonschema

    from compiler.schema import json_schema

    validator = jsonschema.Draft202012Validator(json_schema())
    return [error.message for error in validator.iter_errors(data)]


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS.glob("*.yaml")))
def test_every_committed_spec_passes_the_editors_json_schema(spec):
    # Read as YAML 1.2, as the compiler and editors' YAML servers do.
    assert _schema_errors(load.load(SPECS / spec).data) == []


@pytest.mark.parametrize(
    "path, value",
    [
        (("keras",), "Conv3D"),  # not in the allowlist
        (("args", "filters"), "sixteen"),  # wrong type for Conv2D
        (("args", "filtres"), 16),  # no such argument of Conv2D
        (("args", "padding"), "full"),  # not one of Conv2D's paddings
    ],
)
def test_json_schema_checks_layer_types_and_their_args(path, value):
    data = load.load(SPECS / "seed_cnn.yaml").data
    layer = data["layers"][0]
    assert layer["keras"] == "Conv2D" and _schema_errors(data) == []
    target = layer
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert _schema_errors(data) != []


def test_json_schema_lets_block_arguments_be_parameters():
    data = load.load(SPECS / "resnet18.yaml").data
    conv = data["blocks"]["basic"]["layers"][1]
    assert conv["args"]["filters"] == "$filters" and _schema_errors(data) == []
    # Parameters are substituted at any depth: inside a list too.
    conv["args"]["kernel_size"] = ["$k", "$k"]
    assert _schema_errors(data) == []
    conv["args"]["filters"] = "$not a parameter"
    assert _schema_errors(data) != []
    conv["args"]["filters"] = 64
    conv["args"]["kernel_size"] = ["$k", "three"]
    assert _schema_errors(data) != []


def test_version_schema_and_module_entry_point(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out == f"torch2keras {__version__}\n"
    assert cli.main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert {"spec", "name", "inputs", "layers", "outputs"} <= set(schema["properties"])
    result = subprocess.run(
        [sys.executable, "-m", "compiler", "--version"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.stdout == f"torch2keras {__version__}\n"


def test_generated_code_does_not_depend_on_working_directory(tmp_path):
    """Drift check run from another folder, on absolute paths."""
    result = subprocess.run(
        [sys.executable, "-m", "compiler", "check", str(SPECS)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": ""},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        build.generate(SPECS / "seed_cnn.yaml").source
        == (GENERATED / "seed_cnn.py").read_text()
    )
