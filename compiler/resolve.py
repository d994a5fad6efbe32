"""Stage 3, resolve: a validated Spec -> the IR.

Wires the graph (default input = previous layer), infers shapes layer by layer,
fills every Keras weight slot from the layer's default rule or its explicit
`weights:` entry, checks each transform chain against the shapes, checks that
no PyTorch key feeds two slots, and runs the lints. All findings are collected,
so a user sees every problem at once.
"""

from __future__ import annotations

import math

from . import errors, ir
from .errors import Diagnostic, SpecError, did_you_mean
from .layers import LAYER_TYPES, ShapeError
from .load import Document
from .schema import Spec
from .transforms import Shape, Transform, TransformError, Unflatten

# Layers that keep their input's values in place: a Flatten seen through them
# still decides the order of a Dense's input features.
_ORDER_PRESERVING = {"Dropout", "ReLU", "Activation"}


class _Resolver:
    def __init__(self, doc: Document, spec: Spec):
        self.doc = doc
        self.spec = spec
        self.diagnostics: list[Diagnostic] = []
        self.shapes: dict[str, Shape | None] = {}  # output shape per input/layer name
        self.kinds: dict[str, str] = {}  # Keras type per layer name
        self.producers: dict[str, tuple[str, ...]] = {}  # inputs per layer name
        self.key_users: dict[
            str, tuple[str, str, int]
        ] = {}  # key -> (layer, slot, line)

    def line(self, *loc) -> int:
        position = self.doc.position(loc)
        return position.line if position else 0

    def report(self, loc, code: str, message: str) -> None:
        self.diagnostics.append(self.doc.diagnostic(loc, code, message))

    # --- graph ---------------------------------------------------------

    def resolve(self) -> tuple[ir.Module, list[Diagnostic]]:
        inputs = []
        for name, spec in self.spec.inputs.items():
            self.shapes[name] = tuple(spec.shape)
            inputs.append(
                ir.Input(name, tuple(spec.shape), spec.dtype, self.line("inputs", name))
            )

        layers = []
        previous = next(iter(self.spec.inputs)) if len(self.spec.inputs) == 1 else None
        for index, layer in enumerate(self.spec.layers):
            resolved = self.layer(index, layer, previous)
            if resolved is not None:
                layers.append(resolved)
            previous = layer.name

        for position, name in enumerate(self.spec.outputs):
            if name not in self.shapes:
                self.report(
                    ("outputs", position),
                    errors.DANGLING_REFERENCE,
                    f"output {name!r} is not a layer or input{did_you_mean(name, self.shapes)}",
                )

        ignored = set(self.spec.ignore)
        for position, key in enumerate(self.spec.ignore):
            if key in self.key_users:
                layer, slot, line = self.key_users[key]
                self.report(
                    ("ignore", position),
                    errors.WEIGHT_COVERAGE,
                    f"{key!r} is listed in ignore: but feeds layer {layer!r} slot "
                    f"{slot!r} (line {line})",
                )
        for layer in self.spec.layers:
            layer_type = LAYER_TYPES[layer.keras]
            if layer.torch is not None:
                ignored.update(
                    f"{layer.torch}.{s}" for s in layer_type.ignored_suffixes
                )

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
            outputs=tuple(self.spec.outputs),
            ignored_keys=tuple(sorted(ignored)),
        )
        return module, self.diagnostics

    def layer(self, index: int, layer, previous: str | None) -> ir.Layer | None:
        loc = ("layers", index)
        if layer.name in self.shapes:
            self.report(
                loc + ("name",),
                errors.DUPLICATE_NAME,
                f"name {layer.name!r} is already used (line "
                f"{self._line_of_name(layer.name)})",
            )
            return None
        layer_type = LAYER_TYPES[layer.keras]
        self.shapes[layer.name] = None  # until inferred
        self.kinds[layer.name] = layer.keras

        if layer.inputs is None:
            if previous is None:
                self.report(
                    loc,
                    errors.DANGLING_REFERENCE,
                    f"layer {layer.name!r} needs `inputs:`: the spec has several inputs",
                )
                return None
            input_names = (previous,)
        else:
            input_names = tuple(layer.inputs)
        self.producers[layer.name] = input_names

        ok = True
        for position, name in enumerate(input_names):
            if name not in self.shapes or name == layer.name:
                where = loc + ("inputs", position) if layer.inputs is not None else loc
                self.report(
                    where,
                    errors.DANGLING_REFERENCE,
                    f"layer {layer.name!r} reads {name!r}, which is not an input or an "
                    f"earlier layer{did_you_mean(name, [n for n in self.shapes if n != layer.name])}",
                )
                ok = False
        count = len(input_names)
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
                f"{layer.keras} {layer.name!r} takes {expected} input(s), got {count}",
            )
            ok = False
        if not ok:
            return None
        input_shapes = [self.shapes[n] for n in input_names]
        if any(s is None for s in input_shapes):
            return None  # an earlier error; do not cascade

        try:
            output_shape = layer_type.output_shape(layer.args, input_shapes)
            slot_shapes = layer_type.weight_shapes(layer.args, input_shapes)
        except ShapeError as exc:
            self.report(
                loc,
                errors.SHAPE,
                f"{layer.keras} {layer.name!r} with input shape(s) "
                f"{', '.join(map(str, input_shapes))}: {exc}",
            )
            return None
        self.shapes[layer.name] = output_shape

        weights = self.weights(index, layer, layer_type, slot_shapes)
        return ir.Layer(
            name=layer.name,
            keras=layer.keras,
            args=tuple(layer.args.rendered().items()),
            inputs=input_names,
            output_shape=output_shape,
            torch=layer.torch,
            weights=weights,
            line=self.line(*loc),
        )

    def _line_of_name(self, name: str) -> int:
        if name in self.spec.inputs:
            return self.line("inputs", name)
        for index, layer in enumerate(self.spec.layers):
            if layer.name == name:
                return self.line("layers", index)
        return 0

    # --- weights -------------------------------------------------------

    def weights(
        self, index, layer, layer_type, slot_shapes
    ) -> tuple[ir.WeightPort, ...]:
        loc = ("layers", index)
        for slot in layer.weights:
            if slot not in slot_shapes:
                self.diagnostics.append(
                    self.doc.diagnostic(
                        loc + ("weights", slot),
                        errors.WEIGHT_COVERAGE,
                        f"{layer.keras} {layer.name!r} has no weight {slot!r}"
                        f"{did_you_mean(slot, slot_shapes)}; its weights: "
                        f"{', '.join(slot_shapes) or 'none'}",
                        key=True,
                    )
                )
        ports = []
        for slot, keras_shape in slot_shapes.items():
            if slot in layer.weights:
                explicit = layer.weights[slot]
                key, chain = explicit.from_, tuple(explicit.transform)
                where = loc + ("weights", slot)
            elif layer.torch is not None:
                suffix, chain = layer_type.default_rule[slot]
                key, where = f"{layer.torch}.{suffix}", loc + ("torch",)
                if slot == "kernel" and layer.keras == "Dense":
                    self.lint_flatten_order(index, layer, key)
            else:
                self.report(
                    loc,
                    errors.WEIGHT_COVERAGE,
                    f"{layer.keras} {layer.name!r} has weight {slot!r} but no source: pair it "
                    f"with a PyTorch module (torch: PATH) or map it under weights:",
                )
                continue
            port = self.port(
                where, layer, slot, keras_shape, key, chain, slot in layer.weights
            )
            if port is not None:
                ports.append(port)
        return tuple(ports)

    def port(
        self, loc, layer, slot, keras_shape, key, chain: tuple[Transform, ...], explicit
    ):
        line = self.line(*loc)
        # Walk the chain backwards from the Keras shape to the PyTorch shape.
        shapes: list[Shape | None] = [keras_shape]
        try:
            for transform in reversed(chain):
                shape = shapes[0]
                shapes.insert(
                    0, transform.backward(shape) if shape is not None else None
                )
            # And forwards, where the input is known, to check each step agrees.
            for i, transform in enumerate(chain):
                if (
                    shapes[i] is not None
                    and transform.forward(shapes[i]) != shapes[i + 1]
                ):
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
                f"{layer.name}/{slot} <- {key!r}: {exc} (Keras weight shape {keras_shape})",
            )
            return None
        if key in self.key_users:
            other_layer, other_slot, other_line = self.key_users[key]
            self.report(
                loc,
                errors.WEIGHT_COVERAGE,
                f"PyTorch key {key!r} already feeds {other_layer}/{other_slot} "
                f"(line {other_line}); each key may be used once",
            )
            return None
        self.key_users[key] = (layer.name, slot, line)
        return ir.WeightPort(
            slot=slot,
            keras_shape=keras_shape,
            torch_key=key,
            torch_shape=shapes[0],
            transforms=chain,
            transform_shapes=tuple(shapes[1:]),
            explicit=explicit,
            line=line,
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

    def lint_flatten_order(self, index, layer, key) -> None:
        feature_map = self.flattened_map(layer)
        if feature_map is None:
            return
        torch_dims = [feature_map[-1], *feature_map[:-1]]
        self.report(
            ("layers", index, "torch"),
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
