"""Resolve, part 1: flatten the layer list, instantiating blocks.

A block is a parametrised sub-graph defined once under `blocks:`. Each use in
`layers:` (`block: NAME`, optionally `repeat: N`) becomes plain layers:
- names are prefixed with the instance name (`layer1_0` + `conv1` ->
  `layer1_0_conv1`), PyTorch paths with the instance's `torch:` prefix;
- `$param` values anywhere in a layer's `args` or `when` take the instance's
  value (no expressions: a derived value is one more parameter);
- a layer whose `when` is false is left out, and whatever read it reads its
  (first) input instead: an omitted downsample path becomes the identity
  shortcut, an omitted residual Add([main, input]) the main path;
- `input` inside a block is what the instance is fed; a `$param` in a block
  layer's `inputs` names a layer or input outside the block (given by the
  instance, e.g. the attention mask every encoder layer reads).

Every flat layer keeps the spec location it came from, plus, for block layers,
the instance it belongs to, so errors point at the right line and name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import Diagnostic, did_you_mean
from .load import Document, Loc
from .schema import TORCH_PATH, BlockInstanceSpec, LayerSpec, Spec

BLOCK_INPUT = "input"


@dataclass(frozen=True)
class FlatLayer:
    name: str
    keras: str
    args: dict[str, Any]  # parameters substituted; typed by the resolver
    inputs: tuple[str, ...]
    input_locs: tuple[Loc, ...]  # where each input was named (for errors)
    torch: str | None
    weights: dict[str, Any]  # slot -> WeightSpec, `from` keys already prefixed
    loc: Loc
    context: str = ""  # " (in block instance 'x', line N)" for block layers
    instance: str = (
        ""  # "x: block(args) <- torch prefix (spec line N)" for block layers
    )


@dataclass
class _Expander:
    doc: Document
    spec: Spec
    diagnostics: list[Diagnostic] = field(default_factory=list)
    layers: list[FlatLayer] = field(default_factory=list)
    # Name a later layer may read -> the flat layer that produces it.
    aliases: dict[str, str] = field(default_factory=dict)
    # Top-level names whose expansion failed (and was reported).
    failed: set[str] = field(default_factory=set)

    def report(self, loc: Loc, code: str, message: str, context: str = "") -> None:
        self.diagnostics.append(self.doc.diagnostic(loc, code, message + context))

    def line(self, loc: Loc) -> int:
        position = self.doc.position(loc)
        return position.line if position else 0

    def run(self) -> None:
        for name in self.spec.inputs:
            self.aliases[name] = name
        previous = next(iter(self.spec.inputs)) if len(self.spec.inputs) == 1 else None
        for index, item in enumerate(self.spec.layers):
            loc = ("layers", index)
            feed = self.top_level_inputs(item, loc, previous)
            if feed is None:
                output = None
            elif isinstance(item, BlockInstanceSpec):
                output = self.instances(item, loc, feed)
            else:
                output = self.add(item, loc, feed, prefix="", torch_prefix=None)
            if output is None:
                # Reported already. Later layers may still read the name: the
                # resolver knows it failed and does not report it again.
                self.failed.add(item.name)
                output = item.name
            self.aliases[item.name] = output
            previous = output

    def top_level_inputs(self, item, loc, previous):
        """(names, locs) that feed a top-level layer or block instance."""
        if item.inputs is None:
            if previous is None:
                self.report(
                    loc,
                    errors.DANGLING_REFERENCE,
                    f"layer {item.name!r} needs `inputs:`: there is no single previous "
                    "layer or input to read",
                )
                return None
            return (previous,), (loc,)
        names = tuple(self.aliases.get(n, n) for n in item.inputs)
        return names, tuple(loc + ("inputs", i) for i in range(len(names)))

    def add(
        self, layer: LayerSpec, loc, feed, prefix, torch_prefix, context="", instance=""
    ):
        """Append one flat layer; returns its name."""
        if not prefix and "when" in layer.model_fields_set:
            self.report(
                loc + ("when",),
                errors.SCHEMA_VALUE,
                "when: only applies inside a block; remove the layer instead",
            )
        if isinstance(layer.torch, str) and layer.torch.startswith("$"):
            self.report(
                loc + ("torch",),
                errors.SCHEMA_VALUE,
                f"{layer.torch} is a block parameter, but this layer is not in a block",
            )
        name = f"{prefix}{layer.name}"
        torch, weights = layer.torch, dict(layer.weights)
        if torch_prefix:
            torch = f"{torch_prefix}.{torch}" if torch else None
            weights = {
                slot: w.model_copy(update={"from_": _prefixed(torch_prefix, w.from_)})
                for slot, w in weights.items()
            }
        inputs, input_locs = feed
        self.layers.append(
            FlatLayer(
                name=name,
                keras=layer.keras,
                args=dict(layer.args),
                inputs=inputs,
                input_locs=input_locs,
                torch=torch,
                weights=weights,
                loc=loc,
                context=context,
                instance=instance,
            )
        )
        return name

    # --- blocks --------------------------------------------------------

    def instances(self, item: BlockInstanceSpec, loc, feed) -> str | None:
        block = self.spec.blocks.get(item.block)
        if block is None:
            self.report(
                loc + ("block",),
                errors.DANGLING_REFERENCE,
                f"no block named {item.block!r}"
                f"{did_you_mean(item.block, self.spec.blocks)}",
            )
            return None
        if item.repeat is None:
            for key in ("first", "start"):
                if key in item.model_fields_set:
                    self.report(
                        loc + (key,), errors.SCHEMA_VALUE, f"`{key}:` needs `repeat:`"
                    )
            return self.instance(item, loc, feed, item.name, item.torch, item.args)
        output = None
        for i in range(item.start, item.start + item.repeat):
            args = {**item.args, **(item.first if i == item.start else {})}
            torch = f"{item.torch}.{i}" if item.torch else None
            output = self.instance(item, loc, feed, f"{item.name}_{i}", torch, args)
            if output is None:
                return None
            feed = (output,), (loc,)
        return output

    def outside(self, ref: str, params: dict[str, Any]) -> str | None:
        """The flat layer a `$param` input names outside the block, if any."""
        value = params.get(ref[1:])
        if not isinstance(value, str):
            return None
        return self.aliases.get(value)

    def instance(self, item, loc, feed, name, torch_prefix, args) -> str | None:
        block_name = item.block
        block = self.spec.blocks[block_name]
        block_loc = ("blocks", block_name)
        context = f" (in block instance {name!r}, line {self.line(loc)})"
        params = dict(block.params)
        for key, value in args.items():
            if key not in params:
                self.report(
                    loc + ("args", key),
                    errors.SCHEMA_UNKNOWN_KEY,
                    f"block {block_name!r} has no parameter {key!r}"
                    f"{did_you_mean(key, params)}; its parameters: "
                    f"{', '.join(params) or 'none'}",
                )
                return None
            params[key] = value
        missing = [key for key, value in params.items() if value is None]
        if missing:
            self.report(
                loc,
                errors.SCHEMA_MISSING,
                f"block {block_name!r} needs a value for {', '.join(map(repr, missing))}",
            )
            return None

        given = ", ".join(f"{key}={params[key]!r}" for key in block.params)
        paired = f" <- {torch_prefix}" if torch_prefix else ""
        instance = f"{name}: {block_name}({given}){paired} (spec line {self.line(loc)})"
        local = {BLOCK_INPUT: feed[0][0]}  # block-local name -> flat layer name
        previous = feed[0][0]
        for j, layer in enumerate(block.layers):
            layer_loc = block_loc + ("layers", j)
            try:
                layer = layer.model_copy(
                    update={
                        "args": _substitute(layer.args, params),
                        "when": _substitute(layer.when, params),
                        "torch": _substitute(layer.torch, params),
                    }
                )
            except KeyError as missing_param:
                self.report(
                    layer_loc,
                    errors.DANGLING_REFERENCE,
                    f"${missing_param.args[0]} is not a parameter of block "
                    f"{block_name!r}{did_you_mean(missing_param.args[0], params)}",
                    context,
                )
                return None
            if not _is_torch_path(layer.torch):
                self.report(
                    layer_loc + ("torch",),
                    errors.SCHEMA_VALUE,
                    f"torch: {layer.torch!r} is not a PyTorch module path",
                    context,
                )
                return None
            if layer.inputs is None:
                names, locs = (previous,), (layer_loc,)
            else:
                names, locs = [], []
                for i, ref in enumerate(layer.inputs):
                    if ref.startswith("$"):
                        # A parameter naming a layer or input outside the block
                        # (an attention mask every instance reads).
                        outside = self.outside(ref, params)
                        if outside is None:
                            value = params.get(ref[1:], ref)
                            hint = (
                                did_you_mean(value, self.aliases)
                                if isinstance(value, str)
                                else ""
                            )
                            self.report(
                                layer_loc + ("inputs", i),
                                errors.DANGLING_REFERENCE,
                                f"{ref} is {value!r}, which names no input or layer "
                                f"before the block instance{hint}",
                                context,
                            )
                            return None
                        names.append(outside)
                        locs.append(layer_loc + ("inputs", i))
                        continue
                    if ref not in local:
                        self.report(
                            layer_loc + ("inputs", i),
                            errors.DANGLING_REFERENCE,
                            f"{ref!r} is not '{BLOCK_INPUT}' or an earlier layer of "
                            f"block {block_name!r}{did_you_mean(ref, local)}",
                            context,
                        )
                        return None
                    names.append(local[ref])
                    locs.append(layer_loc + ("inputs", i))
                names, locs = tuple(names), tuple(locs)
            if layer.when is False:
                local[layer.name] = previous = names[0]  # reads pass through
                continue
            if layer.when is not True:
                self.report(
                    layer_loc + ("when",),
                    errors.SCHEMA_VALUE,
                    f"when: must be true, false or a $parameter, got {layer.when!r}",
                    context,
                )
                return None
            flat = self.add(
                layer,
                layer_loc,
                (names, locs),
                f"{name}_",
                torch_prefix,
                context,
                instance,
            )
            local[layer.name] = previous = flat
        output = block.output or block.layers[-1].name
        if output not in local:
            self.report(
                block_loc + ("output",),
                errors.DANGLING_REFERENCE,
                f"block output {output!r} is not a layer of block {block_name!r}",
            )
            return None
        return local[output]


def _prefixed(prefix: str, keys: str | list[str]) -> str | list[str]:
    """A block's `from:` key(s), under the instance's PyTorch path."""
    if isinstance(keys, str):
        return f"{prefix}.{keys}"
    return [f"{prefix}.{key}" for key in keys]


def _is_torch_path(value: Any) -> bool:
    return value is None or (
        isinstance(value, str) and bool(TORCH_PATH.fullmatch(value))
    )


def _substitute(value: Any, params: dict[str, Any]) -> Any:
    """Replace "$name" strings (at any depth) by the parameter's value."""
    if isinstance(value, str) and value.startswith("$"):
        return params[value[1:]]
    if isinstance(value, list):
        return [_substitute(v, params) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, params) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Expansion:
    layers: list[FlatLayer]  # in order, blocks instantiated
    aliases: dict[str, str]  # a name later layers may read -> its flat layer
    failed: set[str]  # top-level names whose expansion failed (and was reported)
    diagnostics: list[Diagnostic]


def expand(doc: Document, spec: Spec) -> Expansion:
    """The spec's layers as flat layers, blocks instantiated."""
    expander = _Expander(doc, spec)
    expander.run()
    return Expansion(
        expander.layers, expander.aliases, expander.failed, expander.diagnostics
    )
