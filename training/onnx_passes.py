"""Rewrites of the exported any-size gradient graph that onnxruntime does not do itself.

`without`: the graph specialised for inputs known to be zero. gradient.onnx computes every
target's part of the objective and of the gradient whatever the weights, while a request weighs
one target or two: on a 512x512 image the parts of the targets it does not weigh cost more than
a third of a step. `without` derives from one exported graph the graph for the case where given
inputs are all zero: a zero propagates through products, quotients (as numerator) and the ops
that map zero to zero, and a sum with a zero of the same shape (by the graph's shape
annotations) is its other operand; whatever no output needs any more is dropped. The derived
graph computes what the original computes when those inputs are zero, as long as the values
they multiply are finite (the original gives NaN for 0 * inf, the derived graph leaves the
product out).

`mask_before_unpool`: ReLU's backward applied to the pooled gradient before MaxUnpool spreads it,
instead of to the spread one: the same numbers, from a quarter of the values.
"""
from __future__ import annotations

import onnx
import onnx.helper as oh

# ops whose output is zero when their first input is (the other inputs are shapes, axes, ...)
_ZERO_IN_ZERO_OUT = {"Neg", "Reshape", "Unsqueeze", "Squeeze", "Expand", "Transpose", "Identity",
                     "Flatten", "Slice", "ReduceSum", "ReduceMean", "Relu", "Abs", "Cast", "Tile"}


def without(graph: onnx.GraphProto, zero_inputs: set[str]) -> onnx.GraphProto:
    """A copy of `graph` for the case where every input named in `zero_inputs` is all zeros."""
    zero = set(zero_inputs)
    alias: dict[str, str] = {}   # output of a dropped sum -> its other operand
    shapes = _shapes(graph)
    kept = []
    for node in graph.node:
        inputs = [alias.get(name, name) for name in node.input]
        zero_in = [name in zero for name in inputs]
        other = (inputs[0] if node.op_type in ("Add", "Sub") and zero_in[1]
                 else inputs[1] if node.op_type == "Add" and zero_in[0] else None)
        # a sum broadcast to the zero's larger shape is not its other operand
        if other is not None and shapes.get(other) is not None \
                and shapes.get(other) == shapes.get(node.output[0]):
            alias[node.output[0]] = other
            continue
        if (node.op_type in ("Mul", "MatMul") and any(zero_in)
                or node.op_type in ("Add", "Sub") and all(zero_in)
                or node.op_type == "Div" and zero_in[0]
                or node.op_type in _ZERO_IN_ZERO_OUT and zero_in[0]):
            zero.update(node.output)
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = inputs
        kept.append(copy)

    outputs = [output.name for output in graph.output]
    sources = {name: alias.get(name, name) for name in outputs}
    # An output that became another value: that value's producer now writes the output itself,
    # unless the value is also an input or another output (then it is copied).
    produced = {name for node in kept for name in node.output}
    renames, copies = {}, []
    for name, source in sources.items():
        if source == name:
            continue
        if source in produced and list(sources.values()).count(source) == 1:
            renames[source] = name
        else:
            copies.append(oh.make_node("Identity", [source], [name]))
    for node in kept:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]

    needed, nodes = set(outputs), []
    for node in reversed(kept + copies):
        if any(name in needed for name in node.output):
            nodes.append(node)
            needed.update(name for name in node.input if name)
            needed.update(_outer_names(node))
    out = onnx.GraphProto()
    out.CopyFrom(graph)
    del out.node[:]
    out.node.extend(reversed(nodes))
    used = {name for node in out.node for name in node.input}
    initializers = [t for t in graph.initializer if t.name in used]
    del out.initializer[:]
    out.initializer.extend(initializers)
    return out


def _shapes(graph: onnx.GraphProto) -> dict[str, tuple | None]:
    """Each annotated value's shape, a dimension as its value or its symbol; None if unknown."""
    def shape(value: onnx.ValueInfoProto):
        if not value.type.tensor_type.HasField("shape"):
            return None
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param or None
                for d in value.type.tensor_type.shape.dim]
        return None if None in dims else tuple(dims)
    return {value.name: shape(value)
            for value in [*graph.input, *graph.value_info, *graph.output]}


def _outer_names(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs (If, Loop) read from the enclosing graph."""
    names = set()
    for attribute in node.attribute:
        for graph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            names.update(name for inner in graph.node for name in inner.input)
            names.update(name for inner in graph.node for name in _outer_names(inner))
    return names


def mask_before_unpool(graph: onnx.GraphProto) -> onnx.GraphProto:
    """A copy of `graph` where Mul(MaxUnpool(g, i, shape), Cast(Greater(x, t))), with i the
    indices of MaxPool(x) and t a scalar (ReLU's backward on the gradient of max pooling's input),
    becomes MaxUnpool(Mul(g, Cast(Greater(y, t))), i, shape), y that MaxPool's values. MaxUnpool
    writes g[k] where x is y[k] and zeros elsewhere, so masking by x > t there is masking g by
    y > t; the products are the same floats, signed zeros included."""
    producer = {name: node for node in graph.node for name in node.output}
    scalars = _scalars(graph)
    out = onnx.GraphProto()
    out.CopyFrom(graph)
    del out.node[:]
    for node in graph.node:
        found = node.op_type == "Mul" and _unpool_and_mask(node, producer, scalars)
        if not found:
            out.node.append(node)
            continue
        unpool, cast, greater, pool = found
        masked = node.output[0]
        out.node.extend([
            oh.make_node("Greater", [pool.output[0], greater.input[1]], [f"{masked}/pooled_above"]),
            oh.make_node("Cast", [f"{masked}/pooled_above"], [f"{masked}/pooled_mask"],
                         to=onnx.TensorProto.FLOAT),
            oh.make_node("Mul", [unpool.input[0], f"{masked}/pooled_mask"], [f"{masked}/pooled"]),
            oh.make_node("MaxUnpool", [f"{masked}/pooled", *unpool.input[1:]], [masked],
                         **{a.name: oh.get_attribute_value(a) for a in unpool.attribute}),
        ])
    return without(out, set())


def _unpool_and_mask(mul: onnx.NodeProto, producer: dict, scalars: set[str]):
    """(MaxUnpool, Cast, Greater, MaxPool) when `mul` multiplies an unpooled gradient by the
    mask of the pooled input above a scalar, else None."""
    for unpooled, mask in (mul.input, reversed(mul.input)):
        unpool, cast = producer.get(unpooled), producer.get(mask)
        if not (unpool and unpool.op_type == "MaxUnpool" and cast and cast.op_type == "Cast"
                and oh.get_node_attr_value(cast, "to") == onnx.TensorProto.FLOAT):
            continue
        greater, pool = producer.get(cast.input[0]), producer.get(unpool.input[1])
        if (greater and greater.op_type == "Greater" and greater.input[1] in scalars
                and pool and pool.op_type == "MaxPool" and len(pool.output) == 2
                and pool.output[1] == unpool.input[1] and pool.input[0] == greater.input[0]):
            return unpool, cast, greater, pool
    return None


def _scalars(graph: onnx.GraphProto) -> set[str]:
    """Names of the graph's one-element constants."""
    names = {t.name for t in graph.initializer if len(t.dims) == 0 or list(t.dims) == [1]}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            if len(node.attribute[0].t.dims) == 0 or list(node.attribute[0].t.dims) == [1]:
                names.add(node.output[0])
    return names
