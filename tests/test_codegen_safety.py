"""No spec can put code into the generated module, and the compiler checks its own output.

Spec strings reach the module as literals (render.py), escaped docstring or
comment text, or validated identifiers; build.check_generated then refuses any
construct the template never writes, so a rendering bug is an internal error
and nothing is written.
"""

from __future__ import annotations

import ast
import json
import shutil

import pytest

from compiler import build, cli, render
from compiler.errors import SpecError
from tests.conftest import GENERATED, SPECS

BASE = """\
spec: 1
name: tiny
inputs:
  x: {shape: [4]}
layers:
  - {name: fc, keras: Dense, args: {units: 3}, torch: fc}
outputs: [fc]
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "specs").mkdir()
    return tmp_path


def _spec(project, extra: str, stem: str = "tiny"):
    path = project / "specs" / f"{stem}.yaml"
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def _errors(spec) -> list[str]:
    with pytest.raises(SpecError) as caught:
        build.generate(spec)
    return [str(d) for d in caught.value.diagnostics]


def _docstring(source: str) -> str:
    return ast.get_docstring(ast.parse(source), clean=False)


# --- what a spec can say ---------------------------------------------------------


def test_source_model_cannot_break_out_of_the_docstring(project):
    """Once accepted: pydantic's `pattern` searched, so text around a valid factory
    passed, and this spec's import ran os.system."""
    exploit = 'x"""\nimport os\nos.system("touch pwned")\n"""a.b:c'
    errors = _errors(_spec(project, f"source:\n  model: {json.dumps(exploit)}\n"))
    assert errors == [
        f"{project / 'specs' / 'tiny.yaml'}:9:10: error[E202]: "
        '\'x"""\\nimport os\\nos.system("touch pwned")\\n"""a.b:c\' is not '
        "a PyTorch model factory like 'package.module:callable'"
    ]


NASTY_SUMMARIES = [
    'triple """ quotes',
    "ends with a backslash \\",
    'ends with a quote"',
    "{braces} {{ jinja }} {% if x %} # not a comment",
    "＂＂＂ fullwidth quotes ｅｘｅｃ（） and ＃",
    "\\x00 and \\u202e as text, not characters",
    "emoji 🐍 and accents é, Ω",
]


@pytest.mark.parametrize("summary", NASTY_SUMMARIES)
def test_summary_comes_back_exactly_in_the_docstring(project, summary):
    quoted = summary.replace("\\", "\\\\").replace('"', '\\"')
    generated = build.generate(_spec(project, f'summary: "{quoted}"\n'))
    build.check_generated(generated.source)
    assert _docstring(generated.source).splitlines()[0] == f"tiny: {summary}"


@pytest.mark.parametrize(
    "escaped, shown",
    [
        ("\\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),
        ("\\u2066", "U+2066 (LEFT-TO-RIGHT ISOLATE)"),
        ("\\0", "U+0000 (a control character)"),
        ("\\n", "U+000A (a control character)"),
        ("\\u2028", "U+2028 (LINE SEPARATOR)"),
        ("\\ufeff", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)"),
    ],
)
def test_summary_refuses_control_and_bidi_characters(project, escaped, shown):
    errors = _errors(_spec(project, f'summary: "ok{escaped}evil"\n'))
    assert errors == [
        f"{project / 'specs' / 'tiny.yaml'}:8:10: error[E202]: contains {shown}: "
        "a summary is one line of printable text, without control or bidi characters"
    ]


def test_spec_file_name_with_a_line_break_is_refused(project):
    spec = _spec(project, "", stem="evil\nimport os")
    with pytest.raises(SpecError) as caught:
        build.generate(spec)
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.code == "E400"
    assert "\n" not in str(diagnostic)
    assert str(diagnostic).endswith(
        "evil\\nimport os.yaml: error[E400]: file name contains a control, "
        "line-break or bidi character; rename it"
    )


def test_output_name_with_a_bidi_character_is_refused(project):
    with pytest.raises(SpecError, match="E400"):
        build.generate(_spec(project, ""), project / "out\u202e.py")


# --- render's own guards -----------------------------------------------------------


def test_py_has_no_literal_for_non_finite_floats():
    for value in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(ValueError, match="non-finite"):
            render.py(value)


@pytest.mark.parametrize("bad", ["a b", "x)(os", "1x", "class", "ｅｖａｌ", "é", ""])
def test_identifier_refuses_what_is_not_a_plain_name(bad):
    with pytest.raises(ValueError, match="is not a valid Python name"):
        render.identifier(bad)


def test_comment_and_docstring_text_escape_what_could_end_them():
    assert render.comment("a\nb\r\u202ec\x00") == "a\\nb\\r\\u202ec\\x00"
    assert render.docstring_text('q"""\\\n') == 'q\\"\\"\\"\\\\\\n'
    assert render.comment("specs/modèle ＂.yaml") == "specs/modèle ＂.yaml"


# --- the allowlist over the generated module ---------------------------------------


@pytest.mark.parametrize("path", sorted(GENERATED.glob("*.py")), ids=lambda p: p.stem)
def test_committed_modules_pass_the_check(path):
    build.check_generated(path.read_text())


FORBIDDEN = {
    "import os": "imports 'os'",
    "from subprocess import run": "imports 'subprocess'",
    "from . import sibling": "imports '.'",
    "import torch": "imports 'torch'",  # only inside a function
    "def f():\n    import pickle": "imports 'pickle'",
    "x = eval('1')": "uses 'eval'",
    "x = ｅｖａｌ('1')": "uses 'eval'",  # NFKC: fullwidth letters are `eval`
    "x = exec": "uses 'exec'",
    "open('f', 'w')": "uses 'open'",
    "x = __import__('os')": "uses '__import__'",
    "x = ().__class__": "uses the name '__class__'",
    "x = __builtins__": "uses the name '__builtins__'",
    "np.load('f', allow_pickle=True)": "allow_pickle must be False",
    "def f(torch, p):\n    torch.load(p, weights_only=False)": "weights_only must be True",
    "def f(torch, p, w):\n    torch.load(p, weights_only=w)": "weights_only must be True",
}


@pytest.mark.parametrize("snippet", FORBIDDEN, ids=range(len(FORBIDDEN)))
def test_check_refuses_what_the_template_never_writes(snippet):
    source = (GENERATED / "seed_linear.py").read_text() + "\n" + snippet + "\n"
    with pytest.raises(ValueError, match=FORBIDDEN[snippet]):
        build.check_generated(source)


def test_a_refused_module_is_an_internal_error_and_nothing_is_written(
    tmp_path, monkeypatch, capsys
):
    project = tmp_path / "project"
    shutil.copytree(SPECS, project / "specs")
    (project / "pyproject.toml").write_text("")
    monkeypatch.chdir(project)
    assert cli.main(["compile", "specs/seed_linear.yaml"]) == 0
    output = project / "generated" / "seed_linear.py"
    before = output.read_bytes()
    capsys.readouterr()

    original = render.render
    monkeypatch.setattr(
        render, "render", lambda module: original(module) + "import os\n"
    )
    (project / "specs" / "seed_linear.yaml").write_text(
        (SPECS / "seed_linear.yaml").read_text().replace("units: 5", "units: 6")
    )
    assert cli.main(["compile", "specs/seed_linear.yaml"]) == cli.EXIT_FINDINGS
    captured = capsys.readouterr()
    assert captured.err == (
        "specs/seed_linear.yaml: error[E304]: internal error: refusing to write the "
        f"generated code (line {len(before.splitlines()) + 1} imports 'os'); "
        "please report this with the spec\n"
    )
    assert output.read_bytes() == before
    assert sorted(p.name for p in output.parent.iterdir()) == ["seed_linear.py"]


def test_raw_bidi_character_in_the_spec_file_is_refused(project):
    """The YAML reader lets a raw U+202E through (it is printable to YAML); the
    schema does not."""
    errors = _errors(_spec(project, "summary: Fine \u202e,enif ton\n"))
    assert len(errors) == 1
    assert "error[E202]: contains U+202E (RIGHT-TO-LEFT OVERRIDE)" in errors[0]
    assert errors[0].isprintable()
