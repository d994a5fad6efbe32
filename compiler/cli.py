"""The `torch2keras` command line.

Exit codes: 0 ok, 1 findings (spec errors, drift, a verify divergence), 2 usage
errors.
Diagnostics go to stderr as `path:line:col: error[CODE]: message`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__, build, write
from .errors import SpecError

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _shown(path: Path) -> str:
    """A path as the user would type it: relative to the working directory if inside it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _report(exc: SpecError) -> None:
    for diagnostic in exc.diagnostics:
        print(diagnostic, file=sys.stderr)


def _generate(spec: Path, output: Path | None = None, warn: bool = True):
    """Compile one spec in memory; prints its diagnostics, None when it has errors."""
    try:
        generated = build.generate(spec, output)
    except SpecError as exc:
        _report(exc)
        return None
    for warning in generated.warnings if warn else ():
        print(warning, file=sys.stderr)
    return generated


def _specs(paths: list[str]) -> list[Path] | None:
    specs = build.find_specs(paths)
    missing = [p for p in specs if not p.is_file()]
    for path in missing:
        print(f"{path}: error: no such spec file", file=sys.stderr)
    if not specs and not missing:
        print(f"error: no spec files in {', '.join(paths)}", file=sys.stderr)
    return None if missing or not specs else specs


def cmd_compile(args) -> int:
    specs = _specs(args.specs)
    if specs is None:
        return EXIT_USAGE
    if args.output and len(specs) > 1:
        print(
            "error: -o names one file; use --out-dir for several specs", file=sys.stderr
        )
        return EXIT_USAGE
    status = EXIT_OK
    for spec in specs:
        if args.output:
            output = Path(args.output)
        elif args.out_dir:
            output = Path(args.out_dir) / f"{spec.stem}.py"
        else:
            output = None
        generated = _generate(spec, output)
        if generated is None:
            status = EXIT_FINDINGS  # the previous generated file stays untouched
            continue
        shown = _shown(generated.output_path)
        try:
            changed = write.write_atomic(generated.output_path, generated.source)
        except OSError as exc:  # the previous file, if any, is still whole
            print(
                f"{shown}: error: cannot write: {exc.strerror or exc}", file=sys.stderr
            )
            status = EXIT_FINDINGS
            continue
        print(f"{'wrote' if changed else 'unchanged'} {shown}")
    return status


def cmd_check(args) -> int:
    paths = args.paths or [build.SPECS_DIR]
    specs = _specs(paths)
    if specs is None:
        return EXIT_USAGE
    status = EXIT_OK
    expected_outputs = set()
    for spec in specs:
        generated = _generate(spec, warn=False)
        if generated is None:
            status = EXIT_FINDINGS
            continue
        expected_outputs.add(generated.output_path.resolve())
        shown = _shown(generated.output_path)
        delta = write.diff(generated.output_path, generated.source, shown)
        if delta:
            sys.stdout.write(delta)
            print(
                f"{shown}: error: out of date with {_shown(spec)}; run "
                f"`torch2keras compile {_shown(spec)}`",
                file=sys.stderr,
            )
            status = EXIT_FINDINGS
    # A generated module whose spec is gone is drift too (only for whole folders).
    folders = {build.default_output(s).parent for s in specs if Path(s).parent.is_dir()}
    if all(Path(p).is_dir() for p in paths):
        for folder in sorted(folders):
            for module in sorted(folder.glob("*.py")):
                if (
                    module.resolve() not in expected_outputs
                    and module.name != "__init__.py"
                ):
                    print(
                        f"{_shown(module)}: error: generated module has no spec",
                        file=sys.stderr,
                    )
                    status = EXIT_FINDINGS
    if status == EXIT_OK:
        print(f"{len(specs)} spec(s) up to date")
    return status


def cmd_validate(args) -> int:
    specs = _specs(args.specs)
    if specs is None:
        return EXIT_USAGE
    status = EXIT_OK
    for spec in specs:
        if _generate(spec) is None:
            status = EXIT_FINDINGS
            continue
        print(f"{_shown(spec)}: ok")
    return status


def cmd_verify(args) -> int:
    # Imported here: verify loads torch and keras, which compiling never needs.
    from . import verify

    return verify.main(args)


def cmd_inspect(args) -> int:
    from . import inspect_checkpoint

    return inspect_checkpoint.main(args)


def _shape(text: str) -> tuple[int, ...]:
    """'2,3,32,32' -> (2, 3, 32, 32)."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if not shape or any(size <= 0 for size in shape):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shape like 2,3,32,32 (positive sizes, batch first)"
        )
    return shape


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number >= 0")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def cmd_schema(args) -> int:
    from .schema import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=True))
    return EXIT_OK


def cmd_scaffold(args) -> int:
    # Imported here, not at the top: scaffold imports torch, and the compile
    # path must not.
    from . import scaffold

    return scaffold.main(args)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="torch2keras",
        description="Compile YAML mapping specs into standalone Keras modules that load PyTorch weights.",
    )
    root.add_argument(
        "--version", action="version", version=f"torch2keras {__version__}"
    )
    commands = root.add_subparsers(dest="command", required=True)

    compile_ = commands.add_parser(
        "compile", help="write the generated module for each spec"
    )
    compile_.add_argument("specs", nargs="+", help="spec files or folders of specs")
    where = compile_.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", help="output file (one spec only)")
    where.add_argument(
        "--out-dir", help="output folder; default: generated/ beside specs/"
    )
    compile_.set_defaults(run=cmd_compile)

    check = commands.add_parser(
        "check",
        help="exit 1 if any generated module differs from its spec (prints the diff)",
    )
    check.add_argument(
        "paths", nargs="*", help="spec files or folders (default: specs)"
    )
    check.set_defaults(run=cmd_check)

    validate = commands.add_parser(
        "validate", help="check specs without writing anything"
    )
    validate.add_argument("specs", nargs="+", help="spec files or folders of specs")
    validate.set_defaults(run=cmd_validate)

    verify = commands.add_parser(
        "verify",
        help="run PyTorch and the generated Keras model on the same input, "
        "compare every paired layer",
        description="Compile SPEC in memory, load CHECKPOINT into both the PyTorch "
        "model and the generated Keras model, run both on the same seeded random "
        "input, and compare the final outputs and every layer paired with a "
        "PyTorch module (torch: PATH). A comparison passes when max abs err <= "
        "ATOL + RTOL * max |pytorch output|; NaN/Inf on one side only fails. "
        "Exit 0 when all pass, 1 on a divergence or spec error, 2 on usage errors.",
    )
    verify.add_argument("spec", help="the spec file")
    verify.add_argument(
        "--checkpoint",
        required=True,
        help="PyTorch state dict: .safetensors (sharded: its .safetensors.index.json), "
        ".pt/.pth/.bin or .npz",
    )
    verify.add_argument(
        "--model",
        help="PyTorch model as package.module:callable (default: source.model)",
    )
    verify.add_argument(
        "--input-shape",
        type=_shape,
        action="append",
        metavar="N,C,H,W",
        help="PyTorch-layout input shape with batch; repeat once per spec input, "
        "in order (default: the spec's shape with batch 2)",
    )
    verify.add_argument(
        "--atol",
        type=_non_negative,
        default=1e-5,
        help="absolute tolerance (default: %(default)g)",
    )
    verify.add_argument(
        "--rtol",
        type=_non_negative,
        default=1e-4,
        help="tolerance relative to max |pytorch output| (default: %(default)g)",
    )
    verify.add_argument(
        "--seed", type=int, default=0, help="input seed (default: %(default)s)"
    )
    verify.add_argument(
        "--id-range",
        type=_positive_int,
        metavar="N",
        help="integer inputs get ids in [0, N) (default: the smallest nn.Embedding's "
        "num_embeddings, or 10 without one)",
    )
    verify.add_argument(
        "--json", metavar="REPORT", help="also write the report as JSON"
    )
    verify.set_defaults(run=cmd_verify)

    inspect = commands.add_parser(
        "inspect",
        help="list a checkpoint's keys, shapes, dtypes and parameter counts",
        description="List every tensor in a .safetensors (read from its header "
        "alone; sharded: its .safetensors.index.json and every shard's header), "
        ".pt/.pth/.bin or .npz checkpoint, sorted by key.",
    )
    inspect.add_argument(
        "checkpoint",
        help=".safetensors (or .safetensors.index.json), .pt/.pth/.bin or .npz",
    )
    inspect.add_argument(
        "--json", action="store_true", help="print JSON instead of a table"
    )
    inspect.set_defaults(run=cmd_inspect)

    schema = commands.add_parser("schema", help="print the spec language's JSON Schema")
    schema.set_defaults(run=cmd_schema)

    scaffold = commands.add_parser(
        "scaffold",
        help="draft a spec by tracing a PyTorch model (needs torch)",
    )
    scaffold.add_argument(
        "model", help="PyTorch model factory, package.module:callable"
    )
    scaffold.add_argument(
        "--input-shape",
        action="append",
        required=True,
        help="PyTorch input shape with the batch, e.g. 1,3,224,224 (one per input)",
    )
    scaffold.add_argument(
        "--input-dtype",
        action="append",
        choices=["float32", "int32", "int64"],
        help="input dtype (default float32; one for all inputs, or one per input)",
    )
    scaffold.add_argument("--name", help="spec name (default: from the callable)")
    scaffold.add_argument(
        "-o", "--output", help="spec file to write (default: specs/NAME.yaml)"
    )
    scaffold.add_argument(
        "--force", action="store_true", help="replace the output file if it exists"
    )
    scaffold.set_defaults(run=cmd_scaffold)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(main())
