"""Property: whatever string a spec field holds, the compiler either refuses it with
diagnostics, or writes a module that parses, imports quietly and carries the
string back exactly.

Every string field of a small spec gets hypothesis's text(), strings shaped like
what the field accepts (so the accepting path is exercised too), and a list of
strings known to break code generators. The spec is written as YAML with every
character escaped in a double-quoted scalar, so each string reaches the
compiler exactly, control characters included.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import tempfile
import types
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from compiler import build
from compiler.errors import SpecError

NASTY = [
    "",
    " ",
    '"',
    "'",
    '"""',
    "'''",
    "\\",
    "x\\",
    "\\n",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x0c",
    "\x85",
    "\u2028",
    "\ufeff",
    "\ud800",
    "\u202e",
    "abc\u2066def\u2069",
    "{}",
    "{{ x }}",
    "{% raw %}",
    "#",
    "x # y",
    '"""; import os; os.system("id"); """',
    "x\nimport os",
    "ｅｖａｌ",
    "＂＂＂",
    "ｆｃ",
    "__import__",
    "__class__",
    "class",
    "match",
    "_",
    "np",
    "keras",
    "../../evil",
    "é",
    "fc",
    "fc.weight",
    "fc.weight\n",
    "a.b:c",
    "a.b:c\n",
    "examples.seed:SeedLinear",
    "true",
    "null",
    "1e5",
    "0",
    "x" * 201,
]

STRINGS = st.one_of(
    st.text(),
    st.sampled_from(NASTY),
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True),  # names
    st.from_regex(r"[A-Za-z0-9_]{1,6}(\.[A-Za-z0-9_]{1,6}){0,3}", fullmatch=True),
    st.from_regex(r"[a-z_]{1,6}(\.[a-z_]{1,6})?:[A-Za-z_]{1,8}", fullmatch=True),
)


def _yaml(value) -> str:
    """YAML flow text for plain data; every string double-quoted and escaped."""
    if isinstance(value, str):
        out = []
        for ch in value:
            code = ord(ch)
            if ch in '"\\':
                out.append("\\" + ch)
            elif ch.isprintable():
                out.append(ch)
            elif code < 0x100:
                out.append(f"\\x{code:02x}")
            elif code < 0x10000:
                out.append(f"\\u{code:04x}")
            else:
                out.append(f"\\U{code:08x}")
        return '"' + "".join(out) + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(map(_yaml, value)) + "]"
    return "{" + ", ".join(f"{_yaml(k)}: {_yaml(v)}" for k, v in value.items()) + "}"


def _base() -> dict:
    return {
        "spec": 1,
        "name": "probe",
        "summary": "A probe.",
        "source": {"model": "examples.seed:SeedLinear"},
        "inputs": {"x": {"shape": [4]}},
        "layers": [
            {"name": "fc", "keras": "Dense", "args": {"units": 3}, "torch": "fc"},
            {
                "name": "head",
                "keras": "Dense",
                "args": {"units": 2},
                "weights": {
                    "kernel": {"from": "head_w", "transform": ["transpose"]},
                    "bias": {"from": "head_b"},
                },
            },
        ],
        "outputs": ["head"],
        "ignore": ["fc.extra"],
    }


def _constants(module) -> set:
    tree = ast.parse(module.source)
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}


# field -> (put the string into the spec, check that it came back)
Put = Callable[[dict, str], None]
Check = Callable[[types.ModuleType, "build.Generated", str], None]


def _doc_first_line(mod, gen, s):
    return mod.__doc__.split("\n", 1)[0]


FIELDS: dict[str, tuple[Put, Check]] = {
    "name": (
        lambda spec, s: spec.update(name=s),
        lambda mod, gen, s: (
            _doc_first_line(mod, gen, s) == f"{s}: A probe." and s in _constants(gen)
        ),
    ),
    "summary": (
        lambda spec, s: spec.update(summary=s),
        lambda mod, gen, s: (
            _doc_first_line(mod, gen, s) == (f"probe: {s}" if s else "probe")
        ),
    ),
    "source model": (
        lambda spec, s: spec["source"].update(model=s),
        lambda mod, gen, s: f"\nPyTorch reference model: {s}\n" in mod.__doc__,
    ),
    "input name": (
        lambda spec, s: spec.update(inputs={s: {"shape": [4]}}),
        lambda mod, gen, s: s in _constants(gen),
    ),
    "layer name": (
        lambda spec, s: spec["layers"][0].update(name=s),
        lambda mod, gen, s: mod.SOURCES["fc.weight"][1] == (f"{s}/kernel",),
    ),
    "layer inputs": (
        lambda spec, s: spec["layers"][1].update(inputs=[s]),
        lambda mod, gen, s: s in ("fc", "x"),
    ),
    "output name": (
        lambda spec, s: (spec["layers"][1].update(name=s), spec.update(outputs=[s])),
        lambda mod, gen, s: mod.SOURCES["head_w"][1] == (f"{s}/kernel",),
    ),
    "torch path": (
        lambda spec, s: spec["layers"][0].update(torch=s),
        lambda mod, gen, s: {f"{s}.weight", f"{s}.bias"} <= mod.SOURCES.keys(),
    ),
    "weights from": (
        lambda spec, s: spec["layers"][1]["weights"]["kernel"].update({"from": s}),
        lambda mod, gen, s: mod.SOURCES[s][1] == ("head/kernel",),
    ),
    "ignore key": (
        lambda spec, s: spec.update(ignore=[s]),
        lambda mod, gen, s: s in mod.IGNORED,
    ),
}

_CODE = re.compile(r"[EW]\d{3}")


@pytest.fixture(scope="module")
def project():
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "pyproject.toml").write_text("")
        (root / "specs").mkdir()
        yield root


@pytest.mark.parametrize("field", FIELDS)
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=STRINGS)
def test_any_string_is_refused_or_carried_back_exactly(project, field, value):
    put, check = FIELDS[field]
    spec = _base()
    put(spec, value)
    path = project / "specs" / "probe.yaml"
    path.write_text(_yaml(spec) + "\n", encoding="utf-8")
    try:
        generated = build.generate(path)
    except SpecError as exc:
        assert exc.diagnostics
        for diagnostic in exc.diagnostics:
            assert _CODE.fullmatch(diagnostic.code), diagnostic
            # One printable line: a hostile value cannot forge or reorder output.
            assert str(diagnostic).isprintable(), str(diagnostic)
        assert any(d.is_error for d in exc.diagnostics)
        event(f"refused {exc.diagnostics[0].code}")
        return

    event("accepted")
    build.check_generated(generated.source)
    module = types.ModuleType("probe_module")
    module.__file__ = str(project / "probe_module.py")
    before = sorted(project.rglob("*"))
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        exec(compile(generated.source, module.__file__, "exec"), module.__dict__)  # noqa: S102
    assert output.getvalue() == ""  # importing it prints nothing
    assert sorted(project.rglob("*")) == before  # and creates no file
    assert check(module, generated, value), (field, value)
