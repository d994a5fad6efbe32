"""Stage 4, render: IR -> Python source, through templates/module.py.jinja.

The template holds the module's layout and its fixed runtime code; this module
turns IR values into Python literals and statements. Output is already in
`ruff format` style (88 columns, double quotes, magic trailing commas), so the
compiler needs no formatter at run time and the result is byte-for-byte stable.

Every string from a spec reaches the output in one of three ways, and no other:
- through `py()`, as a Python literal;
- as an identifier pasted into code, checked again here by `identifier()` (the
  schema validated it first; this catches a resolver that forgets to);
- inside the docstring or a comment, through `docstring_text()`/`comment()`,
  which escape anything that could end the docstring or the comment line.
build.py then parses the result and refuses anything the template would not
produce, so a bug here becomes an internal error, not code in someone's repo.
"""

from __future__ import annotations

import keyword
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from . import __version__, ir
from .fold import CHANNEL_AXES
from .layers import LAYER_TYPES

LINE_LENGTH = 88
INDENT = "    "


def py(value: Any) -> str:
    """A Python literal for a plain value, quoted the way ruff formats it."""
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int):
        return repr(value)
    if isinstance(value, float):
        if not math.isfinite(value):  # repr gives `inf`/`nan`: names, not literals
            raise ValueError(f"no literal for the non-finite float {value!r}")
        return repr(value)
    if isinstance(value, tuple):
        if len(value) == 1:
            return f"({py(value[0])},)"
        return f"({', '.join(py(v) for v in value)})"
    if isinstance(value, list):
        return f"[{', '.join(py(v) for v in value)}]"
    raise TypeError(f"no literal for {type(value).__name__}")


def _string(text: str) -> str:
    body = repr(
        text
    )  # escapes backslashes, quotes, control and non-printable characters
    if body[0] == "'" and '"' not in text:
        # ruff prefers double quotes unless that would need more escapes.
        body = '"' + body[1:-1].replace("\\'", "'") + '"'
    return body


def identifier(value: str) -> str:
    """`value`, if it is safe to paste into code as a name; ValueError otherwise."""
    if not (value.isascii() and value.isidentifier()) or keyword.iskeyword(value):
        raise ValueError(f"{value!r} is not a valid Python name")
    return value


def _escape(ch: str) -> str:
    """A printable character as itself, any other as its backslash escape."""
    return ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")


def comment(value: str) -> str:
    """`value` for a `#` comment: line breaks and control or bidi characters are
    escaped, so the text can neither end the comment line nor display reordered."""
    return "".join(_escape(ch) for ch in value)


def docstring_text(value: str) -> str:
    """`value` for the inside of the module docstring, whose value is then
    exactly `value`: quotes and backslashes are escaped, so they cannot end it."""
    return "".join("\\" + ch if ch in '"\\' else _escape(ch) for ch in value)


def fit(indent: int, head: str, items: list[str], tail: str) -> list[str]:
    """`head item, item tail` on one line if it fits, else one item per line.

    The exploded form ends with a trailing comma, which ruff keeps exploded.
    """
    pad = INDENT * indent
    one_line = f"{pad}{head}{', '.join(items)}{tail}"
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    inner = INDENT * (indent + 1)
    return [f"{pad}{head}", *(f"{inner}{item}," for item in items), f"{pad}{tail}"]


def fit_call(
    indent: int, head: str, args: list[str], tail: str, feed: str | None = None
) -> list[str]:
    """Like fit(), for a call that is a whole statement, split as ruff splits it.

    `head(args)tail`, or with `feed`, `head(args)(feed)tail`. Ruff first tries
    the last bracket: `head(args)(` / feed / `)tail`; if that first line is too
    long, the arguments on one line of their own; else one argument per line.
    """
    pad, inner = INDENT * indent, INDENT * (indent + 1)
    joined = ", ".join(args)
    close = f")({feed}){tail}" if feed is not None else f"){tail}"
    if len(f"{pad}{head}{joined}{close}") <= LINE_LENGTH:
        return [f"{pad}{head}{joined}{close}"]
    if feed is not None and len(f"{pad}{head}{joined})(") <= LINE_LENGTH:
        if len(f"{inner}{feed}") <= LINE_LENGTH:
            return [f"{pad}{head}{joined})(", f"{inner}{feed}", f"{pad}){tail}"]
    if len(f"{inner}{joined}") <= LINE_LENGTH:
        return [f"{pad}{head}", f"{inner}{joined}", f"{pad}{close}"]
    return fit(indent, head, args, close)


def _docstring(module: ir.Module) -> str:
    title = f"{module.name}: {module.summary}" if module.summary else module.name
    lines = [
        f'"""{docstring_text(title)}',
        "",
        "build_model() builds the Keras model, load_weights() fills it from a PyTorch",
        "state dict, convert() does both from a checkpoint file; run this file with a",
        "checkpoint and -o model.keras to save the converted model.",
    ]
    if module.source_model:
        lines.append(f"PyTorch reference model: {docstring_text(module.source_model)}")
    lines.append('"""')
    return "\n".join(lines)


def _call_args(args: tuple[tuple[str, Any], ...], name: str) -> list[str]:
    return [f"{identifier(key)}={py(value)}" for key, value in args] + [
        f"name={py(name)}"
    ]


def _wrapper_lines(head: str, inner: ir.Wrapped, args: list[str], tail: str):
    """A wrapper layer around its inner layer's constructor, e.g.
    `Bidirectional(keras.layers.LSTM(units=8, name="lstm"), merge_mode=...)`."""
    inner_head = f"keras.layers.{inner.keras}("
    inner_args = _call_args(inner.args, inner.name)
    inner_call = f"{inner_head}{', '.join(inner_args)})"
    lines = fit(1, head, [inner_call, *args], tail)
    if len(lines) == 1 or len(INDENT * 2 + inner_call + ",") <= LINE_LENGTH:
        return lines
    # The inner constructor does not fit on its own line either: explode it too.
    return [
        f"{INDENT}{head}",
        *fit(2, inner_head, inner_args, "),"),
        *(f"{INDENT * 2}{arg}," for arg in args),
        f"{INDENT}{tail}",
    ]


def _build_lines(module: ir.Module) -> list[str]:
    lines: list[str] = []
    for spec_input in module.inputs:
        lines += fit(
            1,
            f"{identifier(spec_input.name)} = keras.Input(",
            [
                f"shape={py(spec_input.shape)}",
                f"dtype={py(spec_input.dtype)}",
                f"name={py(spec_input.name)}",
            ],
            ")",
        )
    instance = ""
    for layer in module.layers:
        if layer.instance != instance:
            instance = layer.instance
            lines.append(comment(f"{INDENT}# {instance or 'top level'}"))
        names = [identifier(n) for n in layer.inputs]
        if layer.call_keywords is not None:
            # Separate call arguments: attention(query, value, attention_mask=mask)
            feed = ", ".join(
                f"{word}={name}" if word else name
                for word, name in zip(layer.call_keywords, names)
            )
        elif len(names) == 1:
            feed = names[0]
        else:
            feed = f"[{', '.join(names)}]"
        if LAYER_TYPES[layer.keras].custom:
            # Defined in the generated module itself (templates/layers/).
            layer_class = identifier(layer.keras)
        else:
            layer_class = f"keras.layers.{identifier(layer.keras)}"
        head, args = (
            f"{identifier(layer.name)} = {layer_class}(",
            _call_args(layer.args, layer.name),
        )
        if layer.wrapped is None:
            lines += fit_call(1, head, args, "", feed=feed)
        else:
            lines += _wrapper_lines(head, layer.wrapped, args, f")({feed})")

    # (key, variable) pairs: a dict keyed by the spec's names when there are several.
    inputs = tuple((i.name, i.name) for i in module.inputs)
    outputs = tuple(zip(module.output_names, module.outputs))

    def entries(pairs) -> list[str]:
        return [f"{py(key)}: {identifier(variable)}" for key, variable in pairs]

    def structure(pairs) -> str:
        if len(pairs) == 1:
            return identifier(pairs[0][1])
        return "{" + ", ".join(entries(pairs)) + "}"

    items = [
        f"inputs={structure(inputs)}",
        f"outputs={structure(outputs)}",
        f"name={py(module.name)}",
    ]
    call = fit(1, "return keras.Model(", items, ")")
    if len(call) == 1 or all(len(f"{INDENT * 2}{i},") <= LINE_LENGTH for i in items):
        return lines + call
    # A dict of many inputs or outputs is too long for its line: explode it too.
    lines.append(f"{INDENT}return keras.Model(")
    for argument, pairs in (("inputs", inputs), ("outputs", outputs)):
        item = f"{argument}={structure(pairs)}"
        if len(f"{INDENT * 2}{item},") <= LINE_LENGTH:
            lines.append(f"{INDENT * 2}{item},")
        else:
            lines += fit(2, f"{argument}={{", entries(pairs), "},")
    lines += [f"{INDENT * 2}name={py(module.name)},", f"{INDENT})"]
    return lines


def _read_lines(name: str, key: str) -> list[str]:
    """`name = sd["key"]`, split the way ruff splits a subscript too long for a line."""
    line = f"{INDENT}{name} = sd[{py(key)}]"
    if len(line) <= LINE_LENGTH:
        return [line]
    return [f"{INDENT}{name} = sd[", f"{INDENT * 2}{py(key)}", f"{INDENT}]"]


def _chain(port: ir.WeightPort, name: str) -> tuple[list[str], str, list[str]]:
    """(statements to run first, base expression, method links) for one weight.

    Several keys are combined first (`sd["a"] + sd["b"]`); if that is too long
    to bind to `name` on one line, each key is read into a `partN` name first.
    """
    lines: list[str] = []
    sources = [f"sd[{py(key)}]" for key in port.torch_keys]
    steps = zip(port.transforms, port.transform_shapes)
    combiner = port.transforms[0] if port.transforms[:1] else None
    if combiner is not None and combiner.combines:
        next(steps)
        base = combiner.combine(sources)
        if len(f"{INDENT}{name} = {base}") > LINE_LENGTH:
            # One short statement per key, then the combination of their names.
            names = [f"part{i}" for i in range(len(sources))]
            for part, key in zip(names, port.torch_keys):
                lines += _read_lines(part, key)
            base = combiner.combine(names)
    else:
        combiner = None
        (base,) = sources
    links = [link for transform, shape in steps for link in transform.links(shape)]
    if links and combiner is not None and combiner.operator:
        base = f"({base})"  # (a + b).T, not a + b.T
    return lines, base, links


def _bind_lines(name: str, port: ir.WeightPort) -> list[str]:
    """`name = <the weight's numpy value>`, over as many short statements as it takes.

    A numpy chain too long for one line is built up in `name` over several
    statements rather than left to ruff's fluent-call style.
    """
    lines, base, links = _chain(port, name)
    bare = f"{INDENT}{name} = {name}"
    statement = f"{INDENT}{name} = {base}"
    if len(statement) > LINE_LENGTH and len(port.torch_keys) == 1:
        lines += _read_lines(name, port.torch_keys[0])
        statement = bare
    for link in links:
        if len(statement + link) > LINE_LENGTH and statement != bare:
            lines.append(statement)
            statement = bare
        statement += link
    if statement != bare:
        lines.append(statement)
    return lines


def _assign_lines(target: str, port: ir.WeightPort) -> list[str]:
    """`assign(target, <numpy>)` for one weight, on as many lines as ruff would want."""
    lines, base, links = _chain(port, "value")
    expr = base + "".join(links)
    if len(INDENT * 2 + expr + ",") <= LINE_LENGTH:
        return lines + fit_call(1, "assign(", [py(target), expr], "")
    return _bind_lines("value", port) + fit_call(
        1, "assign(", [py(target), "value"], ""
    )


def _port_comment(port: ir.WeightPort) -> list[str]:
    """A comment spelling out an explicit weight mapping's transforms."""
    if not (port.explicit and port.transforms):
        return []
    steps = ", ".join(t.describe() for t in port.transforms)
    return [comment(f"{INDENT}# {port.slot}: {steps} (spec line {port.line})")]


def _layer_comment(name: str, keras: str, torch: str | None, line: int) -> str:
    paired = f" <- {torch}" if torch else ""
    return comment(f"{INDENT}# {name}: {keras}{paired} (spec line {line})")


# BatchNormalization weight -> the name its value is bound to while folding.
_NORM_NAMES = {
    "gamma": "gamma",
    "beta": "beta",
    "moving_mean": "mean",
    "moving_variance": "variance",
}


def _folded_lines(layer: ir.Layer) -> list[str]:
    """A layer's weights with the BatchNormalization after it folded in: each
    source bound to a name, then _fold_batchnorm (in the template) combines them."""
    norm = layer.folded
    lines = [
        _layer_comment(layer.name, layer.keras, layer.torch, layer.line),
        comment(
            f"{INDENT}# folded in: {norm.name}"
            + (f" <- {norm.torch}" if norm.torch else "")
            + f" (spec line {norm.line})"
        ),
    ]
    bound = {}
    for port in layer.weights:
        bound[port.slot] = port.slot
        lines += _port_comment(port) + _bind_lines(port.slot, port)
    for port in norm.weights:
        bound[port.slot] = _NORM_NAMES[port.slot]
        lines += _port_comment(port) + _bind_lines(bound[port.slot], port)
    args = [
        bound.get(slot, "None")
        for slot in ("kernel", "bias", "gamma", "beta", "moving_mean")
    ]
    args += [bound["moving_variance"], py(norm.epsilon)]
    if CHANNEL_AXES[layer.keras] != 1:
        args.append(f"channel_axes={CHANNEL_AXES[layer.keras]}")
    lines += fit_call(1, "kernel, bias = _fold_batchnorm(", args, "")
    for slot in ("kernel", "bias"):
        lines += fit_call(1, "assign(", [py(f"{layer.name}/{slot}"), slot], "")
    return lines


def _load_lines(module: ir.Module) -> list[str]:
    lines: list[str] = []
    for layer in module.layers:
        if layer.folded is not None:
            lines += _folded_lines(layer)
            continue
        if not layer.weights:
            continue
        lines.append(_layer_comment(layer.name, layer.keras, layer.torch, layer.line))
        for port in layer.weights:
            lines += _port_comment(port)
            lines += _assign_lines(f"{layer.name}/{port.slot}", port)
    return lines


def _source_lines(module: ir.Module) -> list[str]:
    # key -> (shape, Keras weights it feeds, line); a key read in chunks (a fused
    # in_proj_weight) feeds several weights, listed in one entry.
    sources: dict[str, tuple[ir.Shape | None, list[str], int]] = {}
    for layer in module.layers:
        ports = [(port, (port.slot,)) for port in layer.weights]
        if layer.folded is not None:
            # Folded: gamma and the variance scale the kernel and the bias, beta
            # and the mean shift the bias.
            ports += [
                (
                    port,
                    ("bias",)
                    if port.slot in ("beta", "moving_mean")
                    else ("kernel", "bias"),
                )
                for port in layer.folded.weights
            ]
        for port, slots in ports:
            for key, shape in zip(port.torch_keys, port.torch_shapes):
                entry = sources.setdefault(key, (shape, [], port.line))
                entry[1].extend(f"{layer.name}/{slot}" for slot in slots)
    lines: list[str] = []
    for key, (shape, targets, line) in sources.items():
        items = [py(shape), py(tuple(targets)), str(line)]
        entry = fit(1, f"{py(key)}: (", items, "),")
        if any(len(text) > LINE_LENGTH for text in entry):
            # The weights tuple is too long for its own line: explode it too.
            inner = INDENT * 2
            weights = [f"{inner}{items[1]},"]  # a 1-tuple keeps its comma here
            if len(weights[0]) > LINE_LENGTH:
                weights = [f"{inner}(", *(f"{inner}{INDENT}{py(t)}," for t in targets)]
                weights.append(f"{inner}),")
            entry = [
                f"{INDENT}{py(key)}: (",
                f"{inner}{items[0]},",
                *weights,
                f"{inner}{items[2]},",
                f"{INDENT}),",
            ]
        lines += entry
    return lines


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    here = Path(__file__).resolve().parent
    # Inside a wheel the templates ship as compiler/templates; in a checkout
    # they sit at the top of the repository.
    for folder in (here / "templates", here.parent / "templates"):
        if (folder / "module.py.jinja").is_file():
            break
    else:
        raise FileNotFoundError(
            "torch2keras templates not found (is the install complete?)"
        )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=False,  # the output is Python; every spec string goes through py()
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["py"] = py
    env.filters["comment"] = comment
    return env


def render(module: ir.Module) -> str:
    """IR -> the generated module's source text."""
    template = _environment().get_template("module.py.jinja")
    return template.render(
        version=__version__,
        spec_path=module.spec_path,
        spec_sha256=module.spec_sha256,
        regenerate=module.regenerate,
        docstring=_docstring(module),
        sources=_source_lines(module),
        ignored=module.ignored_keys,
        allow_lossy_cast=module.allow_lossy_cast,
        build_lines=_build_lines(module),
        load_lines=_load_lines(module),
        fold_batchnorm=any(layer.folded for layer in module.layers),
        custom_layers=sorted(
            {layer.keras for layer in module.layers if LAYER_TYPES[layer.keras].custom}
        ),
    )
