"""What a user sees for each broken spec in tests/error_specs/, word for word.

Each NAME.yaml has a NAME.expected holding the exact stderr of
`torch2keras validate NAME.yaml`; a wording change shows up in review as a
diff of that file. Regenerate them with UPDATE_SNAPSHOTS=1 pytest.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from compiler import cli

CASES = Path(__file__).parent / "error_specs"


@pytest.mark.parametrize("spec", sorted(p.name for p in CASES.glob("*.yaml")))
def test_error_output_matches_snapshot(spec, monkeypatch, capsys):
    monkeypatch.chdir(CASES)
    status = cli.main(["validate", spec])
    captured = capsys.readouterr()
    assert status == cli.EXIT_FINDINGS
    snapshot = CASES / spec.replace(".yaml", ".expected")
    if os.environ.get("UPDATE_SNAPSHOTS"):
        snapshot.write_text(captured.err)
    assert captured.err == snapshot.read_text()
    assert captured.out == ""


def test_every_snapshot_has_its_spec():
    specs = {p.stem for p in CASES.glob("*.yaml")}
    snapshots = {p.stem for p in CASES.glob("*.expected")}
    assert snapshots == specs
