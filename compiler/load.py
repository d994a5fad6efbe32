"""Stage 1, load: YAML text -> plain Python data plus the file position of every node.

Specs come from pull requests, so the loader is deliberately narrow:
- safe construction only (PyYAML's composer, our own constructor);
- YAML 1.2 core-schema scalars, so `no`, `on`, `0755` and `1:20` are what they
  look like (strings, or a decimal int) and `1e-5` is a float, unlike PyYAML's
  YAML 1.1 defaults;
- no anchors or aliases (alias bombs), no explicit tags (`!!python/...`),
  no duplicate keys, only string keys, bounded size and depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import errors
from .errors import Diagnostic, Position, SpecError

MAX_BYTES = 1 << 20  # a spec is a few KB; a megabyte is not a spec
MAX_DEPTH = 64

Loc = tuple[str | int, ...]

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"


@dataclass
class Document:
    """A loaded spec: its data and where each part of it came from."""

    path: str  # as given by the user, used in every diagnostic
    text: bytes
    data: Any
    value_positions: dict[Loc, Position] = field(default_factory=dict)
    key_positions: dict[Loc, Position] = field(default_factory=dict)

    def position(self, loc: Loc, *, key: bool = False) -> Position | None:
        """Position of the node at `loc`, or of its nearest ancestor that has one."""
        for end in range(len(loc), -1, -1):
            prefix = tuple(loc[:end])
            if key and prefix in self.key_positions:
                return self.key_positions[prefix]
            if prefix in self.value_positions:
                return self.value_positions[prefix]
        return None

    def diagnostic(self, loc: Loc, code: str, message: str, *, key: bool = False):
        return Diagnostic(self.path, self.position(loc, key=key), code, message)


class _LoadFailure(Exception):
    def __init__(self, code: str, mark: Any, message: str):
        self.code, self.mark, self.message = code, mark, message


class _Loader(yaml.SafeLoader):
    """PyYAML's composer with YAML 1.2 core scalars and no aliases, anchors or tags."""

    yaml_implicit_resolvers: dict = {}
    _depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise _LoadFailure(
                errors.YAML_ALIAS,
                event.start_mark,
                f"aliases (*{event.anchor}) are not allowed in specs",
            )
        if getattr(event, "anchor", None) is not None:
            raise _LoadFailure(
                errors.YAML_ALIAS,
                event.start_mark,
                f"anchors (&{event.anchor}) are not allowed in specs",
            )
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            raise _LoadFailure(
                errors.YAML_TAG,
                event.start_mark,
                f"explicit tags ({tag}) are not allowed in specs",
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _LoadFailure(
                    errors.YAML_LIMIT,
                    event.start_mark,
                    f"nesting deeper than {MAX_DEPTH} levels",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
for _tag, _pattern, _first in [
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
]:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _position(mark) -> Position:
    return Position(mark.line + 1, mark.column + 1)


def _scalar(node: yaml.ScalarNode) -> Any:
    value = node.value
    if node.tag == _NULL:
        return None
    if node.tag == _BOOL:
        return value.lower() == "true"
    if node.tag == _INT:
        if value.startswith("0o"):
            return int(value[2:], 8)
        if value.startswith("0x"):
            return int(value[2:], 16)
        return int(value, 10)
    if node.tag == _FLOAT:
        lowered = value.lower().lstrip("+")
        if lowered in (".inf", "-.inf", ".nan"):
            return float(lowered.replace(".", ""))
        return float(value)
    return value


class _Builder:
    """Turns composed nodes into plain data, recording positions as it goes."""

    def __init__(self, doc: Document):
        self.doc = doc

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.doc.value_positions[loc] = _position(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            return _scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        result: dict[str, Any] = {}
        first_seen: dict[str, Position] = {}
        for key_node, value_node in node.value:
            key_position = _position(key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _STR:
                raise _LoadFailure(
                    errors.YAML_KEY_TYPE,
                    key_node.start_mark,
                    f"mapping keys must be strings, got {key_node.value!r}",
                )
            key = key_node.value
            if key in first_seen:
                raise _LoadFailure(
                    errors.YAML_DUPLICATE_KEY,
                    key_node.start_mark,
                    f"duplicate key {key!r} (first defined at line "
                    f"{first_seen[key].line})",
                )
            first_seen[key] = key_position
            self.doc.key_positions[loc + (key,)] = key_position
            result[key] = self.build(value_node, loc + (key,))
        return result


def load(path: str | Path, text: bytes | None = None) -> Document:
    """Load one spec file. Raises SpecError with a file:line:col diagnostic."""
    display = str(path)
    if text is None:
        try:
            text = Path(path).read_bytes()
        except OSError as exc:
            raise SpecError(
                [
                    Diagnostic(
                        display, None, errors.IO, f"cannot read spec: {exc.strerror}"
                    )
                ]
            ) from None
    doc = Document(display, text, None)
    if len(text) > MAX_BYTES:
        raise SpecError(
            [
                Diagnostic(
                    display,
                    None,
                    errors.YAML_LIMIT,
                    f"spec is larger than {MAX_BYTES} bytes",
                )
            ]
        )
    try:
        source = text.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [
                Diagnostic(
                    display,
                    None,
                    errors.YAML_SYNTAX,
                    f"spec is not UTF-8 text: {exc.reason} at byte {exc.start}",
                )
            ]
        ) from None
    loader = _Loader(source)
    try:
        root = loader.get_single_node()
        doc.data = _Builder(doc).build(root, ()) if root is not None else None
    except _LoadFailure as failure:
        raise SpecError(
            [
                Diagnostic(
                    display, _position(failure.mark), failure.code, failure.message
                )
            ]
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            message = f"{exc.problem} ({exc.context})"
        raise SpecError(
            [
                Diagnostic(
                    display,
                    _position(mark) if mark else None,
                    errors.YAML_SYNTAX,
                    f"YAML syntax error: {message}",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise SpecError(
            [Diagnostic(display, None, errors.YAML_SYNTAX, f"YAML error: {exc}")]
        ) from None
    finally:
        loader.dispose()
    return doc
