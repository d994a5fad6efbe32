"""The pipeline: spec file -> generated source, in memory (load, schema, resolve,
[fold,] render).

`compile`, `check` and `validate` share this one function, so what `check`
compares is exactly what `compile` would write.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from . import errors, fold, ir, load, render, resolve, schema
from .errors import Diagnostic, SpecError

GENERATED_DIR = "generated"
SPECS_DIR = "specs"


@dataclass(frozen=True)
class Generated:
    spec_path: Path
    output_path: Path
    module: ir.Module  # the resolved spec the source was rendered from
    source: str
    warnings: tuple[Diagnostic, ...]


def project_root(spec_path: Path) -> Path:
    """The nearest folder above the spec holding pyproject.toml or .git.

    Paths written into generated code are relative to it, so the output does
    not depend on the directory the compiler runs from.
    """
    spec_path = spec_path.resolve()
    for folder in spec_path.parents:
        if (folder / "pyproject.toml").exists() or (folder / ".git").exists():
            return folder
    parent = spec_path.parent
    return parent.parent if parent.name == SPECS_DIR else parent


def default_output(spec_path: Path) -> Path:
    """generated/<spec file stem>.py in the spec's project (never a path from the spec)."""
    return project_root(spec_path) / GENERATED_DIR / f"{spec_path.stem}.py"


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def generate(spec_path: str | Path, output_path: str | Path | None = None) -> Generated:
    """Compile one spec to source text. Raises SpecError with every diagnostic."""
    spec_path = Path(spec_path)
    for path in (spec_path, output_path):
        # Paths end up in the generated header's comments: refuse line breaks and
        # control or bidi characters there rather than show them escaped.
        if path is not None and not str(path).isprintable():
            shown = render.comment(str(path))
            raise SpecError(
                [
                    Diagnostic(
                        shown,
                        None,
                        errors.IO,
                        "file name contains a control, line-break or bidi "
                        "character; rename it",
                    )
                ]
            )
    doc = load.load(spec_path)
    spec = schema.validate(doc)
    module, warnings = resolve.resolve(doc, spec)
    if spec.fold_batchnorm:
        module = fold.fold_batchnorm(module)

    root = project_root(spec_path)
    default = default_output(spec_path)
    output = Path(output_path) if output_path is not None else default
    shown_spec = _relative(spec_path, root)
    regenerate = f"torch2keras compile {shown_spec}"
    if output.resolve() != default.resolve():
        regenerate += f" -o {_relative(output, root)}"
    module = replace(
        module,
        spec_path=shown_spec,
        spec_sha256=hashlib.sha256(doc.text).hexdigest(),
        regenerate=regenerate,
        allow_lossy_cast=spec.allow_lossy_cast,
    )
    try:
        source = render.render(module)
        check_generated(source)
    except (SyntaxError, ValueError, TypeError) as exc:
        # A compiler bug, never the user's: refuse to write it.
        raise SpecError(
            [
                Diagnostic(
                    doc.path,
                    None,
                    errors.GRAPH,
                    f"internal error: refusing to write the generated code ({exc}); "
                    "please report this with the spec",
                )
            ]
        ) from None
    return Generated(spec_path, output, module, source, tuple(warnings))


# What the template produces, and so all a generated module may contain. This is
# a tripwire for rendering bugs (a spec string that became code), not a sandbox.
# Imports at module level: the standard library bits, numpy and keras.
_MODULE_IMPORTS = frozenset(
    {"__future__", "argparse", "collections.abc", "json", "math", "mmap", "pathlib"}
    | {"time"}
    | {"keras", "numpy"}
)
# Imports inside a function: torch in read_checkpoint, only for .pt files;
# tensorflow and tempfile in export(), only for SavedModel and TFLite.
_LAZY_IMPORTS = frozenset({"torch", "tensorflow", "tempfile"})
# Builtins that run code, import, or open files.
_FORBIDDEN_NAMES = frozenset(
    {"exec", "eval", "compile", "__import__", "open", "breakpoint"}
    | {"getattr", "setattr", "delattr", "globals", "locals", "vars", "input"}
)
# Dunder names the template uses; any other (`__class__`, `__builtins__`...) is
# how sandbox escapes start.
_DUNDERS = frozenset(
    {"__future__", "__name__", "__init__", "__call__", "__getitem__", "__iter__"}
    | {"__len__"}
)
# Keyword arguments pinned to one value: loading a checkpoint never runs code.
_PINNED_KEYWORDS = {"weights_only": True, "allow_pickle": False}


def _names(node: ast.AST) -> list[str]:
    """The identifiers a node spells (after Python's NFKC normalisation, so a
    fullwidth `ｅｖａｌ` is seen as `eval`)."""
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword):
        return [node.arg] if node.arg else []
    if isinstance(node, ast.alias):
        return [node.name, node.asname] if node.asname else [node.name]
    return []


def check_generated(source: str) -> None:
    """Parse generated source; ValueError naming anything the template never writes."""
    tree = ast.parse(source)
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", "?")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            allowed = _MODULE_IMPORTS if id(node) in top_level else _LAZY_IMPORTS
            if isinstance(node, ast.ImportFrom):
                modules = ["." * node.level + (node.module or "")]
            else:
                modules = [alias.name for alias in node.names]
            for module in modules:
                if module not in allowed:
                    raise ValueError(f"line {line} imports {module!r}")
        if isinstance(node, ast.Name) and node.id in _FORBIDDEN_NAMES:
            raise ValueError(f"line {line} uses {node.id!r}")
        for name in _names(node):
            if name.startswith("__") and name not in _DUNDERS:
                raise ValueError(f"line {line} uses the name {name!r}")
        if isinstance(node, ast.keyword) and node.arg in _PINNED_KEYWORDS:
            pinned = _PINNED_KEYWORDS[node.arg]
            if not (
                isinstance(node.value, ast.Constant) and node.value.value is pinned
            ):
                raise ValueError(f"line {line}: {node.arg} must be {pinned}")


def find_specs(paths: list[str | Path]) -> list[Path]:
    """Spec files named directly, plus *.yaml / *.yml inside named folders, sorted."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found
