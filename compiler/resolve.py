"""Stage 3, resolve: a validated Spec -> the IR.

Wires the graph (default input = previous layer), infers shapes layer by layer,
fills every Keras weight slot from the layer's default rule or its explicit
`weights:` entry, checks each transform chain against the shapes, checks that
no PyTorch key feeds two slots, and runs the lints. All findings are collected,
so a user sees every problem at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import ValidationError

from . import errors, ir, schema
from .errors import Diagnostic, SpecError, did_you_mean
from .expand import FlatLayer, expand
from .layers import LAYER_TYPES, ShapeError
from .load import Document
from .schema import Spec
from .transforms import Chunk, Shape, Transform, TransformError, Unflatten

# Layers that keep their input's values in place: a Flatten seen through them
# still decides the order of a Dense's input features.
_ORDER_PRESERVING = {"Dropout", "ReLU", "Activation", "Identity"}


@dataclass(frozen=True)
class _Use:
    """One read of a PyTorch key: whole (part None) or chunk (index, parts)."""

    part: tuple[int, int] | None
    layer: str
    slot: str
    line: int
    loc: tuple
    context: str  # the block instance of the reading layer, for messages


class _Resolver:
    def __init__(self, doc: Document, spec: Spec):
        self.doc = doc
        self.spec = spec
        self.diagnostics: list[Diagnostic] = []
        self.shapes: dict[str, Shape | None] = {}  # output shape per input/layer name
        self.kinds: dict[str, str] = {}  # Keras type per layer name
        self.producers: dict[str, tuple[str, ...]] = {}  # inputs per layer name
        self.lines: dict[str, int] = {}  # spec line per input/layer name
        self.locs: dict[str, tuple] = {}  # spec location per layer name
        self.key_users: dict[str, list[_Use]] = {}  # who reads each PyTorch key
        self.context = ""  # block instance of the layer being resolved, for messages

    def line(self, *loc) -> int:
        position = self.doc.position(loc)
        return position.line if position else 0

    def report(self, loc, code: str, message: str) -> None:
        self.diagnostics.append(self.doc.diagnostic(loc, code, message + self.context))

    # --- graph ---------------------------------------------------------

    def resolve(self) -> tuple[ir.Module, list[Diagnostic]]:
        inputs = []
        for name, spec in self.spec.inputs.items():
            self.shapes[name] = tuple(spec.shape)
            self.lines[name] = self.line("inputs", name)
            inputs.append(
                ir.Input(name, tuple(spec.shape), spec.dtype, self.lines[name])
            )

        expansion = expand(self.doc, self.spec)
        self.diagnostics += expansion.diagnostics
        aliases = expansion.aliases
        for name in expansion.failed:
            self.shapes[name] = None  # unknown: layers reading it are skipped quietly
        layers = []
        for flat in expansion.layers:
            self.context = flat.context
            resolved = self.layer(flat)
            if resolved is not None:
                layers.append(resolved)
        self.context = ""
        self.check_chunks()

        outputs = []
        for position, spec_name in enumerate(self.spec.outputs):
            name = aliases.get(spec_name, spec_name)
            if name in outputs:
                self.report(
                    ("outputs", position),
                    errors.DUPLICATE_NAME,
                    f"output {spec_name!r} is already an output",
                )
            outputs.append(name)
            if name not in self.shapes:
                self.report(
                    ("outputs", position),
                    errors.DANGLING_REFERENCE,
                    f"output {name!r} is not a layer or input"
                    f"{did_you_mean(name, aliases)}",
                )

        if not any(d.is_error for d in self.diagnostics):  # else it may cascade
            self.check_reaches_an_output(layers, outputs)

        ignored = set(self.spec.ignore)
        for position, key in enumerate(self.spec.ignore):
            if key in self.key_users:
                use = self.key_users[key][0]
                self.report(
                    ("ignore", position),
                    errors.WEIGHT_COVERAGE,
                    f"{key!r} is listed in ignore: but feeds layer {use.layer!r} slot "
                    f"{use.slot!r} (line {use.line})",
                )
        for layer in layers:
            if layer.torch is not None:
                suffixes = LAYER_TYPES[layer.keras].ignored_suffixes
                ignored.update(f"{layer.torch}.{s}" for s in suffixes)

        self.diagnostics.sort(key=Diagnostic.sort_key)
        if any(d.is_error for d in self.diagnostics):
            raise SpecError(self.diagnostics)
        module = ir.Module(
            name=self.spec.name,
            summary=self.spec.summary,
            # Filled in by the caller, who knows the file and the project layout.
            spec_path="",
            spec_sha256="",
            regenerate="",
            source_model=self.spec.source.model if self.spec.source else None,
            inputs=tuple(inputs),
            layers=tuple(layers),
            outputs=tuple(outputs),
            output_names=tuple(self.spec.outputs),
            ignored_keys=tuple(sorted(ignored)),
        )
        return module, self.diagnostics

    def layer(self, flat: FlatLayer) -> ir.Layer | None:
        loc = flat.loc
        if flat.name in self.shapes:
            self.report(
                loc + ("name",),
                errors.DUPLICATE_NAME,
                f"name {flat.name!r} is already used (line {self.lines[flat.name]})",
            )
            return None
        layer_type = LAYER_TYPES[flat.keras]
        self.shapes[flat.name] = None  # until inferred
        self.kinds[flat.name] = flat.keras
        self.lines[flat.name] = self.line(*loc)
        self.locs[flat.name] = loc
        self.producers[flat.name] = flat.inputs

        args = self.args(flat, layer_type)
        ok = args is not None
        for name, name_loc in zip(flat.inputs, flat.input_locs):
            if name not in self.shapes or name == flat.name:
                candidates = [n for n in self.shapes if n != flat.name]
                self.report(
                    name_loc,
                    errors.DANGLING_REFERENCE,
                    f"layer {flat.name!r} reads {name!r}, which is not an input or an "
                    f"earlier layer{did_you_mean(name, candidates)}",
                )
                ok = False
        count = len(flat.inputs)
        if count < layer_type.min_inputs or (
            layer_type.max_inputs is not None and count > layer_type.max_inputs
        ):
            expected = (
                f"{layer_type.min_inputs}"
                if layer_type.max_inputs == layer_type.min_inputs
                else f"at least {layer_type.min_inputs}"
            )
            self.report(
                loc,
                errors.GRAPH,
                f"{flat.keras} {flat.name!r} takes {expected} input(s), got {count}",
            )
            ok = False
        if not ok:
            return None
        input_shapes = [self.shapes[n] for n in flat.inputs]
        if any(s is None for s in input_shapes):
            return None  # an earlier error; do not cascade

        try:
            output_shape = layer_type.output_shape(args, input_shapes)
            slot_shapes = layer_type.weight_shapes(args, input_shapes)
        except ShapeError as exc:
            self.report(
                loc,
                errors.SHAPE,
                f"{flat.keras} {flat.name!r} with input shape(s) "
                f"{', '.join(map(str, input_shapes))}: {exc}",
            )
            return None
        self.shapes[flat.name] = output_shape
        self.lint(flat, args, input_shapes)

        weights = self.weights(flat, layer_type.rules(args, input_shapes), slot_shapes)
        wrapped = layer_type.wrapped(args)
        return ir.Layer(
            name=flat.name,
            keras=flat.keras,
            args=tuple(args.rendered().items()),
            inputs=flat.inputs,
            output_shape=output_shape,
            torch=flat.torch,
            weights=weights,
            line=self.lines[flat.name],
            call_keywords=layer_type.call_keywords(args, len(flat.inputs)),
            wrapped=None
            if wrapped is None
            else ir.Wrapped(wrapped[0], tuple(wrapped[1].items()), wrapped[2]),
            instance=flat.instance,
        )

    def args(self, flat: FlatLayer, layer_type):
        """The layer's arguments, typed by its Keras layer type's model."""
        try:
            return layer_type.Args.model_validate(flat.args)
        except ValidationError as exc:
            fields = list(layer_type.Args.model_fields)
            self.diagnostics += schema.diagnostics(
                self.doc,
                exc,
                flat.args,
                flat.loc + ("args",),
                lambda parent: ("argument", fields if not parent else []),
                self.context,
            )
            return None

    def check_reaches_an_output(self, layers: list[ir.Layer], outputs) -> None:
        """A layer with weights must lead to an output: keras.Model leaves out
        every layer no output depends on, and its weights would then have
        nowhere to go (the loader would fail on a model built as specified)."""
        live, stack = set(), list(outputs)
        while stack:
            name = stack.pop()
            if name not in live:
                live.add(name)
                stack.extend(self.producers.get(name, ()))
        for layer in layers:
            if layer.weights and layer.name not in live:
                self.report(
                    self.locs[layer.name],
                    errors.GRAPH,
                    f"layer {layer.name!r} leads to no output, so Keras leaves it "
                    "out of the model and its weights have nowhere to go: add it "
                    "to outputs:, or remove it and list its PyTorch keys under "
                    "ignore:",
                )

    # --- weights -------------------------------------------------------

    def weights(
        self, layer: FlatLayer, rules, slot_shapes
    ) -> tuple[ir.WeightPort, ...]:
        loc = layer.loc
        for slot in layer.weights:
            if slot not in slot_shapes:
                self.diagnostics.append(
                    self.doc.diagnostic(
                        loc + ("weights", slot),
                        errors.WEIGHT_COVERAGE,
                        f"{layer.keras} {layer.name!r} has no weight {slot!r}"
                        f"{did_you_mean(slot, slot_shapes)}; its weights: "
                        f"{', '.join(slot_shapes) or 'none'}{self.context}",
                        key=True,
                    )
                )
        ports = []
        for slot, keras_shape in slot_shapes.items():
            if slot in layer.weights:
                explicit = layer.weights[slot]
                keys, chain = explicit.keys, tuple(explicit.transform)
                where = loc + ("weights", slot)
            elif layer.torch is not None:
                suffixes, chain = rules[slot]
                if isinstance(suffixes, str):
                    suffixes = (suffixes,)
                keys = tuple(f"{layer.torch}.{suffix}" for suffix in suffixes)
                where = loc + ("torch",)
                if slot == "kernel" and layer.keras == "Dense":
                    self.lint_flatten_order(layer, keys[0])
            else:
                self.report(
                    loc,
                    errors.WEIGHT_COVERAGE,
                    f"{layer.keras} {layer.name!r} has weight {slot!r} but no source: pair it "
                    f"with a PyTorch module (torch: PATH) or map it under weights:",
                )
                continue
            port = self.port(
                where, layer, slot, keras_shape, keys, chain, slot in layer.weights
            )
            if port is not None:
                ports.append(port)
        return tuple(ports)

    def port(
        self,
        loc,
        layer,
        slot,
        keras_shape,
        keys,
        chain: tuple[Transform, ...],
        explicit,
    ):
        line = self.line(*loc)
        what = repr(keys[0]) if len(keys) == 1 else repr(list(keys))
        # A chain over several keys starts by combining them (schema checks this).
        combiner = chain[0] if chain and chain[0].combines else None
        steps = chain[1:] if combiner else chain
        # Walk the chain backwards from the Keras shape to the PyTorch shape.
        shapes: list[Shape | None] = [keras_shape]
        try:
            for transform in reversed(steps):
                shape = shapes[0]
                shapes.insert(
                    0, transform.backward(shape) if shape is not None else None
                )
            if combiner is None:
                sources = (shapes[0],)
            elif shapes[0] is None:
                sources = (None,) * len(keys)
            else:
                sources = combiner.backward_many(shapes[0], len(keys))
                combined = combiner.forward_many(list(sources))
                if combined != shapes[0]:
                    raise TransformError(
                        f"{combiner.describe()} does not give {shapes[0]}"
                    )
            # And forwards, where the input is known, to check each step agrees.
            for i, transform in enumerate(steps):
                if shapes[i] is not None:
                    out = transform.forward(shapes[i])
                    if out is not None and out != shapes[i + 1]:
                        raise TransformError(
                            f"{transform.describe()} does not give {shapes[i + 1]}"
                        )
                if shapes[i + 1] is None and transform.needs_out_shape:
                    raise TransformError(
                        f"{transform.describe()} needs to know its output shape, which "
                        f"the reshape after it hides; move it after the reshape"
                    )
            if self.kinds.get(layer.name) == "Dense" and slot == "kernel":
                self.check_unflatten(layer, chain)
        except TransformError as exc:
            self.report(
                loc,
                errors.SHAPE,
                f"{layer.name}/{slot} <- {what}: {exc} (Keras weight shape {keras_shape})",
            )
            return None
        part = None
        if chain and isinstance(chain[0], Chunk):
            part = (chain[0].index, chain[0].parts)
        claimed = [self.claim(loc, key, part, layer.name, slot, line) for key in keys]
        if not all(claimed):
            return None
        return ir.WeightPort(
            slot=slot,
            keras_shape=keras_shape,
            torch_keys=tuple(keys),
            torch_shapes=tuple(sources),
            transforms=chain,
            # With a combiner, shapes[0] is already its output, not a source.
            transform_shapes=tuple(shapes if combiner else shapes[1:]),
            explicit=explicit,
            line=line,
        )

    # --- each key read once ----------------------------------------------

    def claim(self, loc, key, part, layer, slot, line) -> bool:
        """Record that layer/slot reads `key` (or one chunk of it); False, with an
        error, where that key or chunk already has a reader."""
        for other in self.key_users.get(key, []):
            where = f"{other.layer}/{other.slot} (line {other.line})"
            if part is None or other.part is None:
                message = (
                    f"PyTorch key {key!r} already feeds {where}; each key may be "
                    "used once"
                )
            elif part[1] != other.part[1]:
                message = (
                    f"PyTorch key {key!r} is already read in {other.part[1]} chunks "
                    f"by {where}; read all its chunks with the same number of parts"
                )
            elif part == other.part:
                message = (
                    f"chunk {part[0]} of {part[1]} of PyTorch key {key!r} already "
                    f"feeds {where}; each chunk may be used once"
                )
            else:
                continue
            self.report(loc, errors.WEIGHT_COVERAGE, message)
            return False
        self.key_users.setdefault(key, []).append(
            _Use(part, layer, slot, line, loc, self.context)
        )
        return True

    def check_chunks(self) -> None:
        """A key read in chunks must have every chunk read: none silently dropped."""
        for key, uses in self.key_users.items():
            if uses[0].part is None:
                continue
            parts = uses[0].part[1]
            unread = sorted(set(range(parts)) - {use.part[0] for use in uses})
            if unread:
                readers = ", ".join(
                    f"chunk {use.part[0]} -> {use.layer}/{use.slot}" for use in uses
                )
                self.diagnostics.append(
                    self.doc.diagnostic(
                        uses[0].loc,
                        errors.WEIGHT_COVERAGE,
                        f"PyTorch key {key!r} is read in {parts} chunks ({readers}), "
                        f"but chunk(s) {', '.join(map(str, unread))} feed no weight"
                        f"{uses[0].context}",
                    )
                )

    # --- lints ---------------------------------------------------------

    def lint(self, layer: FlatLayer, args, input_shapes) -> None:
        """Warnings for Keras arguments whose PyTorch counterpart differs silently.

        Keras's "same" pads (total // 2) before and the rest after; PyTorch's
        padding=p pads p on both sides. They agree only when the total is even.
        """
        windowed = {"Conv1D", "Conv2D", "DepthwiseConv2D", "MaxPooling2D"}
        if layer.keras not in windowed | {"AveragePooling2D"}:
            return
        if args.padding != "same":
            return
        spatial = input_shapes[0][:-1]
        window = getattr(args, "kernel_size", None) or args.pool_size
        strides = args.strides if args.strides is not None else window
        dilation = getattr(args, "dilation_rate", 1)

        def per_axis(value):
            return (value,) * len(spatial) if isinstance(value, int) else value

        totals = [
            max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
            for n, k, s, d in zip(
                spatial, per_axis(window), per_axis(strides), per_axis(dilation)
            )
        ]
        if layer.keras == "AveragePooling2D" and any(totals):
            why = (
                "averages over the real elements only at the borders, while "
                "PyTorch's AvgPool2d counts its zero padding (count_include_pad); "
                "use TorchAveragePooling2D"
            )
        elif any(total % 2 for total in totals):
            why = (
                "pads more at the bottom/right here, while PyTorch's padding=p pads "
                "both sides equally; pad explicitly (ZeroPadding1D/2D, or "
                "TorchMaxPooling2D's padding), then use padding 'valid'"
            )
        else:
            return
        self.report(
            layer.loc + ("args", "padding"),
            errors.LINT_SAME_PADDING,
            f"{layer.keras} {layer.name!r}: padding 'same' {why}",
        )

    # --- flatten order -------------------------------------------------

    def flattened_map(self, layer) -> Shape | None:
        """The (H, W, C) map a Dense's input was flattened from, if any."""
        name = self.producers[layer.name][0]
        while self.kinds.get(name) in _ORDER_PRESERVING:
            name = self.producers[name][0]
        if self.kinds.get(name) != "Flatten":
            return None
        shape = self.shapes.get(self.producers[name][0])
        if shape is None or len(shape) < 2 or math.prod(shape[:-1]) == 1:
            return None  # one position: channel order is the only order
        return shape

    def check_unflatten(self, layer, chain) -> None:
        feature_map = self.flattened_map(layer)
        for transform in chain:
            if isinstance(transform, Unflatten) and feature_map is not None:
                torch_dims = (feature_map[-1], *feature_map[:-1])
                if transform.dims != torch_dims:
                    raise TransformError(
                        f"the Flatten before it sees a {feature_map} (H, W, C) map, so "
                        f"PyTorch's features are {list(torch_dims)}, not "
                        f"{list(transform.dims)}"
                    )

    def lint_flatten_order(self, layer: FlatLayer, key) -> None:
        feature_map = self.flattened_map(layer)
        if feature_map is None:
            return
        torch_dims = [feature_map[-1], *feature_map[:-1]]
        self.report(
            layer.loc + ("torch",),
            errors.LINT_FLATTEN_ORDER,
            f"Dense {layer.name!r} reads a Flatten of a {feature_map} map: PyTorch "
            f"flattens channels-first, Keras channels-last, so the default kernel "
            f"rule feeds it features in the wrong order. If the PyTorch model "
            f"flattens an NCHW tensor, map the kernel explicitly: "
            f"weights: {{kernel: {{from: {key}, transform: "
            f"[{{unflatten: {torch_dims}}}, transpose]}}}}",
        )


def resolve(doc: Document, spec: Spec) -> tuple[ir.Module, list[Diagnostic]]:
    """Spec -> (IR, warnings). Raises SpecError listing every error found."""
    return _Resolver(doc, spec).resolve()
