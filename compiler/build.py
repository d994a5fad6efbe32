"""The pipeline: spec file -> generated source, in memory (load, schema, resolve, render).

`compile`, `check` and `validate` share this one function, so what `check`
compares is exactly what `compile` would write.
"""

from __future__ import annotations

import ast
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

from . import errors, ir, load, render, resolve, schema
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
    doc = load.load(spec_path)
    spec = schema.validate(doc)
    module, warnings = resolve.resolve(doc, spec)

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
    source = render.render(module)
    try:
        ast.parse(source)
    except SyntaxError as exc:  # a compiler bug, never the user's: refuse to write it
        raise SpecError(
            [
                Diagnostic(
                    doc.path,
                    None,
                    errors.GRAPH,
                    f"internal error: generated code does not parse ({exc})",
                )
            ]
        ) from None
    return Generated(spec_path, output, module, source, tuple(warnings))


def find_specs(paths: list[str | Path]) -> list[Path]:
    """Spec files named directly, plus *.yaml / *.yml inside named folders, sorted."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found
