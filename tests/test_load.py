"""The YAML loader: YAML 1.2 scalars, positions, and what it refuses."""

from __future__ import annotations

import pytest

from compiler import load
from compiler.errors import SpecError


def loaded(text: str):
    return load.load("spec.yaml", text.encode())


def test_yaml_1_2_scalars():
    doc = loaded(
        "a: no\nb: on\nc: 0755\nd: 1:20\ne: 1e-5\nf: 0o17\ng: 0x1F\nh: true\n"
        "i: ~\nj: .inf\nk: -.inf\nl: 3.\nm: '12'\nn: Yes\n"
    )
    assert doc.data == {
        "a": "no",
        "b": "on",
        "c": 755,
        "d": "1:20",
        "e": 1e-5,
        "f": 15,
        "g": 31,
        "h": True,
        "i": None,
        "j": float("inf"),
        "k": float("-inf"),
        "l": 3.0,
        "m": "12",
        "n": "Yes",
    }
    nan = loaded("x: .nan\n").data["x"]
    assert nan != nan


def test_positions_of_keys_and_values():
    doc = loaded("layers:\n  - name: fc\n    keras: Dense\n")
    assert doc.position(("layers", 0, "keras")) == load.Position(3, 12)
    assert doc.position(("layers", 0, "keras"), key=True) == load.Position(3, 5)
    assert doc.position(("layers", 0, "missing")) == load.Position(2, 5)


def _error(text: str) -> str:
    with pytest.raises(SpecError) as caught:
        loaded(text)
    return str(caught.value)


def test_refusals():
    assert _error("a: 1\nb:\n  c: 1\n  c: 2\n") == (
        "spec.yaml:4:3: error[E101]: duplicate key 'c' (first defined at line 3)"
    )
    assert "error[E102]: anchors (&a)" in _error("x: &a 1\ny: 2\n")
    assert "error[E103]: explicit tags" in _error("x: !!python/name:os.system\n")
    assert "error[E103]: explicit tags" in _error("x: !custom 1\n")
    assert "error[E105]: mapping keys must be strings, got '1'" in _error("1: a\n")
    assert "error[E104]: nesting deeper than 64" in _error(
        "x: " + "[" * 100 + "]" * 100
    )
    assert "error[E104]: spec is larger than" in _error(
        "x: '" + "a" * (1 << 20) + "'\n"
    )
    assert "error[E100]: spec is not UTF-8" in _error_bytes(b"x: \xff\n")


def _error_bytes(data: bytes) -> str:
    with pytest.raises(SpecError) as caught:
        load.load("spec.yaml", data)
    return str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match=r"error\[E400\]: cannot read spec"):
        load.load(tmp_path / "absent.yaml")
