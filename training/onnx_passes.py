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

`without_redundant_relu_masks`: no ReLU backward mask on a multiple of the ReLU's own output.

`pool_by_phases`: a conv, its ReLU, a 2x2 max pooling and their backward computed at the pooled
size, from the conv's four phases, without MaxPool's indices or MaxUnpool.
"""
from __future__ import annotations

import onnx
import onnx.helper as oh
import onnx.numpy_helper

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
    nodes = []
    for node in graph.node:
        found = node.op_type == "Mul" and _unpool_and_mask(node, producer, scalars)
        if not found:
            nodes.append(node)
            continue
        unpool, cast, greater, pool = found
        masked = node.output[0]
        nodes.extend([
            oh.make_node("Greater", [pool.output[0], greater.input[1]], [f"{masked}/pooled_above"]),
            oh.make_node("Cast", [f"{masked}/pooled_above"], [f"{masked}/pooled_mask"],
                         to=onnx.TensorProto.FLOAT),
            oh.make_node("Mul", [unpool.input[0], f"{masked}/pooled_mask"], [f"{masked}/pooled"]),
            oh.make_node("MaxUnpool", [f"{masked}/pooled", *unpool.input[1:]], [masked],
                         **_attributes(unpool)),
        ])
    return _rewritten(graph, nodes)


def _unpool_and_mask(mul: onnx.NodeProto, producer: dict, scalars: dict):
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


def _scalars(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The graph's one-element constants (initializers and Constant nodes), by name."""
    tensors = {t.name: t for t in graph.initializer}
    tensors |= {node.output[0]: node.attribute[0].t for node in graph.node
                if node.op_type == "Constant" and node.attribute[0].name == "value"}
    return {name: t for name, t in tensors.items() if list(t.dims) in ([], [1])}


def _zero_scalars(graph: onnx.GraphProto) -> set[str]:
    """Names of the graph's one-element float constants that are zero."""
    return {name for name, t in _scalars(graph).items()
            if t.data_type == onnx.TensorProto.FLOAT and onnx.numpy_helper.to_array(t).item() == 0.0}


def _rewritten(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> onnx.GraphProto:
    """A copy of `graph` with `nodes` in place of its own, without what no output needs any more."""
    out = onnx.GraphProto()
    out.CopyFrom(graph)
    del out.node[:]
    out.node.extend(nodes)
    return without(out, set())


def pool_by_phases(graph: onnx.GraphProto) -> onnx.GraphProto:
    """A copy of `graph` where a 2x2 max pooling of ReLU(Conv(x)) and its backward run at the
    pooled size, without MaxPool's indices (onnxruntime's scalar kernel) and MaxUnpool.

    The window at pooled position (i, j) holds the conv's outputs at (2i + dy, 2j + dx): four
    phases, each a stride-2 convolution of x shifted by (dy, dx). The pooling is their Max (and
    ReLU after it, which commutes with a maximum); its backward gives each pooled gradient to the
    first phase, in window order, that equals the maximum (as MaxPool's index does); and the
    input gradient is the sum of each phase's through the conv's kernel at stride 2, shifted by
    its offset. The rewrite needs the conv's output and its ReLU to feed only the pooling, and
    the unpooled gradient to feed only the conv's input gradient as a transposed convolution
    (training/onnx_export.py uses one for convs with few input channels, such as the first):
    then no full-size activation or gradient is left. Matches are rewritten in place; anything
    else is kept as it is."""
    producer = {name: node for node in graph.node for name in node.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    replaced: dict[int, list[onnx.NodeProto]] = {}   # id of a node -> the nodes taking its place
    for pool in graph.node:
        match = pool.op_type == "MaxPool" and _phase_match(pool, producer, users)
        if match:
            conv, unpools = match
            replaced[id(pool)] = _phase_forward(conv, pool)
            for unpool, transposed in unpools:
                replaced[id(transposed)] = _phase_backward(conv, pool, unpool, transposed)
    return _rewritten(graph, [new for node in graph.node for new in replaced.get(id(node), [node])])


def without_redundant_relu_masks(graph: onnx.GraphProto) -> onnx.GraphProto:
    """A copy of `graph` without ReLU backward masks that change nothing: Mul(Mul(y, s),
    Cast(Greater(y, 0))) with y a ReLU's output is Mul(y, s), which is already zero where y is.
    The gradient of the energy mean(y ** 2) is such a product: Deep Dream's, when no target has
    weights (a weight adds a constant the mask does change)."""
    producer = {name: node for node in graph.node for name in node.output}
    zeros = _zero_scalars(graph)
    alias = {}
    for node in graph.node:
        if node.op_type != "Mul":
            continue
        for product, mask in (node.input, reversed(node.input)):
            cast, times = producer.get(mask), producer.get(product)
            greater = cast and cast.op_type == "Cast" and producer.get(cast.input[0])
            if (greater and greater.op_type == "Greater" and greater.input[1] in zeros
                    and oh.get_node_attr_value(cast, "to") == onnx.TensorProto.FLOAT
                    and getattr(producer.get(greater.input[0]), "op_type", None) == "Relu"
                    and times and times.op_type == "Mul" and greater.input[0] in times.input):
                alias[node.output[0]] = alias.get(product, product)
                break
    nodes = []
    for node in graph.node:
        if node.output[0] in alias:
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[:] = [alias.get(name, name) for name in node.input]
        nodes.append(copy)
    nodes.extend(oh.make_node("Identity", [alias[o.name]], [o.name])
                 for o in graph.output if o.name in alias)
    return _rewritten(graph, nodes)


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: oh.get_attribute_value(a) for a in node.attribute}


def _phase_match(pool, producer, users):
    """(Conv, [(MaxUnpool, ConvTranspose), ...]) when `pool` can run by phases, else None."""
    pooling = _attributes(pool)
    if (len(pool.output) != 2 or pooling.get("kernel_shape") != [2, 2]
            or pooling.get("strides") != [2, 2] or any(pooling.get("pads", [0])) or
            pooling.get("ceil_mode", 0) or pooling.get("dilations", [1, 1]) != [1, 1]):
        return None
    relu = producer.get(pool.input[0])
    conv = relu and relu.op_type == "Relu" and producer.get(relu.input[0])
    if not (conv and conv.op_type == "Conv" and [id(n) for n in users[conv.output[0]]] == [id(relu)]):
        return None
    convolution = _attributes(conv)
    if (convolution.get("strides", [1, 1]) != [1, 1] or convolution.get("group", 1) != 1
            or convolution.get("dilations", [1, 1]) != [1, 1]
            or convolution.get("auto_pad", b"NOTSET") != b"NOTSET"):
        return None
    # the ReLU's output may only be pooled, or give its shape to the unpooling
    for node in users[relu.output[0]]:
        if node is not pool and not (node.op_type == "Shape" and all(
                user.op_type == "MaxUnpool" for user in users.get(node.output[0], []))):
            return None
    unpools = []
    for unpool in users.get(pool.output[1], []):
        consumers = users.get(unpool.output[0], [])
        transposed = consumers[0] if len(consumers) == 1 else None
        if not (unpool.op_type == "MaxUnpool" and unpool.input[1] == pool.output[1]
                and transposed is not None and transposed.op_type == "ConvTranspose"
                and list(transposed.input) == [unpool.output[0], conv.input[1]]
                and _same_geometry(convolution, _attributes(transposed))):
            return None
        unpools.append((unpool, transposed))
    return conv, unpools


def _same_geometry(convolution: dict, transposed: dict) -> bool:
    """Whether a stride-1 ConvTranspose computes the input gradient of a stride-1 Conv."""
    return (transposed.get("strides", [1, 1]) == [1, 1] and transposed.get("group", 1) == 1
            and transposed.get("dilations", [1, 1]) == [1, 1]
            and not any(transposed.get("output_padding", [0])) and "output_shape" not in transposed
            and transposed.get("auto_pad", b"NOTSET") == b"NOTSET"
            and transposed.get("pads", [0] * 4) == convolution.get("pads", [0] * 4))


PHASES = [(0, 0), (0, 1), (1, 0), (1, 1)]   # MaxPool's order within a 2x2 window


def _ints(name: str, values: list[int]) -> onnx.NodeProto:
    return oh.make_node("Constant", [], [name],
                        value=oh.make_tensor(name, onnx.TensorProto.INT64, [len(values)], values))


def _phase_forward(conv: onnx.NodeProto, pool: onnx.NodeProto) -> list[onnx.NodeProto]:
    """The pooled ReLU(Conv(x)) from four stride-2 convolutions, under the pooling's value name;
    each phase's conv output is `<pool>/phase<p>` (the backward compares it to the maximum)."""
    at = f"{pool.output[0]}/phases"
    convolution = _attributes(conv)
    kernel, pads = convolution["kernel_shape"], convolution.get("pads", [0] * 4)
    nodes, padded = [], conv.input[0]
    if any(pads):
        padded = f"{at}/padded"
        nodes += [_ints(f"{at}/pads", [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]),
                  oh.make_node("Pad", [conv.input[0], f"{at}/pads"], [padded])]
    # the conv's output rows past an even count are dropped by the pooling: so is their input
    nodes += [oh.make_node("Shape", [padded], [f"{at}/size"], start=2),
              _ints(f"{at}/kernel_less_one", [k - 1 for k in kernel]),
              _ints(f"{at}/two", [2, 2]),
              _ints(f"{at}/axes", [2, 3]),
              oh.make_node("Sub", [f"{at}/size", f"{at}/kernel_less_one"], [f"{at}/outputs"]),
              oh.make_node("Div", [f"{at}/outputs", f"{at}/two"], [f"{at}/pooled"]),
              oh.make_node("Mul", [f"{at}/pooled", f"{at}/two"], [f"{at}/even"]),
              oh.make_node("Add", [f"{at}/even", f"{at}/kernel_less_one"], [f"{at}/end"])]
    for p, offset in enumerate(PHASES):
        nodes += [_ints(f"{at}/start{p}", list(offset)),
                  oh.make_node("Slice", [padded, f"{at}/start{p}", f"{at}/end", f"{at}/axes"],
                               [f"{at}/input{p}"]),
                  oh.make_node("Conv", [f"{at}/input{p}", *conv.input[1:]], [f"{at}/phase{p}"],
                               kernel_shape=kernel, strides=[2, 2])]
        # each pair's maximum while its phases are still in cache: faster than one Max of four
        if p % 2:
            nodes.append(oh.make_node("Max", [f"{at}/phase{p - 1}", f"{at}/phase{p}"],
                                      [f"{at}/max{p // 2}"]))
    return nodes + [
        oh.make_node("Max", [f"{at}/max0", f"{at}/max1"], [f"{at}/max"]),
        oh.make_node("Relu", [f"{at}/max"], [pool.output[0]])]


def _phase_backward(conv, pool, unpool, transposed) -> list[onnx.NodeProto]:
    """The conv's input gradient from the pooled gradient (MaxUnpool's input), under the name of
    the transposed convolution it replaces: each phase's share through the conv's own kernel at
    stride 2, shifted to the phase's offset, and the four summed."""
    at, phases = f"{transposed.output[0]}/phases", f"{pool.output[0]}/phases"
    convolution = _attributes(conv)
    grad, nodes = unpool.input[0], []
    for p in range(3):   # the last phase takes whatever the first three did not
        nodes += [
            oh.make_node("Equal", [f"{phases}/phase{p}", f"{phases}/max"], [f"{at}/first{p}"]),
            oh.make_node("Cast", [f"{at}/first{p}"], [f"{at}/mask{p}"], to=onnx.TensorProto.FLOAT),
            oh.make_node("Mul", [grad, f"{at}/mask{p}"], [f"{at}/grad{p}"]),
            oh.make_node("Sub", [grad, f"{at}/grad{p}"], [f"{at}/rest{p}"])]
        grad = f"{at}/rest{p}"
    # rows and columns of the (padded) input past the last window get no gradient
    nodes += [oh.make_node("Sub", [f"{phases}/size", f"{phases}/end"], [f"{at}/dropped"])]
    for p, (dy, dx) in enumerate(PHASES):
        share = grad if p == 3 else f"{at}/grad{p}"
        nodes += [
            oh.make_node("ConvTranspose", [share, conv.input[1]], [f"{at}/shifted{p}"],
                         kernel_shape=convolution["kernel_shape"], strides=[2, 2]),
            _ints(f"{at}/before{p}", [0, 0, dy, dx, 0, 0]),
            _ints(f"{at}/past{p}", [1 - dy, 1 - dx]),
            oh.make_node("Add", [f"{at}/past{p}", f"{at}/dropped"], [f"{at}/after{p}"]),
            oh.make_node("Concat", [f"{at}/before{p}", f"{at}/after{p}"], [f"{at}/pads{p}"], axis=0),
            oh.make_node("Pad", [f"{at}/shifted{p}", f"{at}/pads{p}"], [f"{at}/placed{p}"])]
    pads = convolution.get("pads", [0] * 4)
    placed = [f"{at}/placed{p}" for p in range(4)]
    if not any(pads):
        return nodes + [oh.make_node("Sum", placed, [transposed.output[0]])]
    return nodes + [
        oh.make_node("Sum", placed, [f"{at}/padded"]),
        _ints(f"{at}/start", pads[:2]),
        _ints(f"{at}/pads_after", pads[2:]),
        oh.make_node("Sub", [f"{phases}/size", f"{at}/pads_after"], [f"{at}/end"]),
        oh.make_node("Slice", [f"{at}/padded", f"{at}/start", f"{at}/end", f"{phases}/axes"],
                     [transposed.output[0]])]
