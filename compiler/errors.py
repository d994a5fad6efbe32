"""Diagnostics: one format for every finding, `path:line:col: severity[CODE]: message`.

Every stage reports through `Diagnostic`; a stage that finds errors raises
`SpecError` carrying all of them, so a user sees every problem in one run.
Codes are stable: tests and users may match on them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

# Stable codes, one per kind of finding.
YAML_SYNTAX = "E100"
YAML_DUPLICATE_KEY = "E101"
YAML_ALIAS = "E102"
YAML_TAG = "E103"
YAML_LIMIT = "E104"
YAML_KEY_TYPE = "E105"
SCHEMA_UNKNOWN_KEY = "E200"
SCHEMA_MISSING = "E201"
SCHEMA_VALUE = "E202"
UNKNOWN_LAYER = "E203"
UNKNOWN_TRANSFORM = "E204"
UNMAPPED_LAYER = "E205"  # a placeholder scaffold left where it found no Keras layer
DUPLICATE_NAME = "E300"
DANGLING_REFERENCE = "E301"
SHAPE = "E302"
WEIGHT_COVERAGE = "E303"
GRAPH = "E304"
IO = "E400"
LINT_FLATTEN_ORDER = "W500"
LINT_SAME_PADDING = "W501"


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    col: int  # 1-based


@dataclass(frozen=True)
class Diagnostic:
    path: str
    position: Position | None
    code: str
    message: str

    def sort_key(self) -> tuple[int, int]:
        return (self.position.line, self.position.col) if self.position else (0, 0)

    @property
    def is_error(self) -> bool:
        return self.code.startswith("E")

    def __str__(self) -> str:
        where = self.path
        if self.position is not None:
            where = f"{where}:{self.position.line}:{self.position.col}"
        severity = "error" if self.is_error else "warning"
        return f"{where}: {severity}[{self.code}]: {self.message}"


class SpecError(Exception):
    """A spec could not be compiled; carries every diagnostic found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = tuple(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix, or '' when nothing is close."""
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
