"""The any-size gradient graph's own ops and graph rewrites, each against what it replaces."""
import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from training import onnx_ops, onnx_passes

FLOAT = onnx.TensorProto.FLOAT


def _run(graph: onnx.GraphProto, feed: dict) -> list[np.ndarray]:
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _value(name, shape):
    return oh.make_tensor_value_info(name, FLOAT, shape)


WINDOWS = [([2, 2], [2, 2], [0, 0]), ([3, 3], [3, 3], [1, 1]), ([2, 3], [3, 3], [1, 0])]


@pytest.mark.parametrize("kernel,stride,padding", WINDOWS)
def test_max_pool_and_unpool_are_torchs_pooling_and_its_backward(kernel, stride, padding):
    # ties everywhere (zeros after a ReLU, repeated values): the first maximum takes the gradient
    x = torch.relu(torch.randint(-2, 3, (2, 3, 9, 11)).float()).requires_grad_(True)
    values, flat = onnx_ops.max_pool2d(x.detach(), kernel, stride, padding)
    want, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    assert torch.equal(values, want.detach())
    assert torch.equal(flat, indices + torch.arange(6).view(2, 3, 1, 1) * 99)
    grad = torch.randn_like(want)
    want.backward(grad)
    assert torch.equal(onnx_ops.max_unpool2d(grad, flat, x.detach(), kernel, stride, padding),
                       x.grad)


@pytest.mark.parametrize("kernel,stride,padding", WINDOWS)
def test_max_pool_and_unpool_in_onnxruntime_are_their_eager_selves(kernel, stride, padding):
    class PoolAndBack(torch.nn.Module):
        def forward(self, x, grad):
            values, indices = onnx_ops.max_pool2d(x, kernel, stride, padding)
            return values, onnx_ops.max_unpool2d(grad, indices, x, kernel, stride, padding)

    x = torch.relu(torch.randint(-2, 3, (2, 3, 9, 11)).float())
    grad = torch.randn_like(F.max_pool2d(x, kernel, stride, padding))
    program = torch.onnx.export(PoolAndBack().eval(), (x, grad), dynamo=True, opset_version=18,
                                custom_translation_table=onnx_ops.TRANSLATIONS, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: a.numpy() for i, a in zip(session.get_inputs(), (x, grad))})
    for g, w in zip(got, PoolAndBack()(x, grad)):
        np.testing.assert_array_equal(g, w.numpy())


def test_sum_square_in_onnxruntime_is_its_eager_self():
    class SumSquare(torch.nn.Module):
        def forward(self, x):
            return onnx_ops.sum_square(x, [2, 3])

    x = torch.randn(2, 3, 5, 4)
    program = torch.onnx.export(SumSquare().eval(), (x,), dynamo=True, opset_version=18,
                                custom_translation_table=onnx_ops.TRANSLATIONS, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0],
                               SumSquare()(x).numpy(), rtol=1e-6)


def test_overlapping_dilated_or_ceil_mode_windows_are_left_to_aten():
    assert onnx_ops.pool_windows(2, [], 0, 1, False) == ([2, 2], [2, 2], [0, 0])
    assert onnx_ops.pool_windows([3, 3], [2, 2], [1, 1], [1, 1], False) is None
    assert onnx_ops.pool_windows([2, 2], [2, 2], [0, 0], [2, 2], False) is None
    assert onnx_ops.pool_windows([2, 2], [2, 2], [0, 0], [1, 1], True) is None


def test_without_drops_the_terms_of_zero_inputs():
    # y = x + w * c, z = s + w (s broadcast to w's shape): with w zero, y is x (an input, so
    # copied) and z is not s
    graph = oh.make_graph(
        [oh.make_node("Mul", ["w", "c"], ["wc"]), oh.make_node("Add", ["x", "wc"], ["y"]),
         oh.make_node("Add", ["s", "w"], ["z"])],
        "g", [_value("x", [2, 3]), _value("w", [2, 3]), _value("c", [2, 3]), _value("s", [2, 1])],
        [_value("y", [2, 3]), _value("z", [2, 3])], value_info=[_value("wc", [2, 3])])
    specialised = onnx_passes.without(graph, {"w"})
    assert sorted(node.op_type for node in specialised.node) == ["Add", "Identity"]
    rng = np.random.default_rng(0)
    feed = {"x": rng.random((2, 3), dtype=np.float32), "w": np.zeros((2, 3), np.float32),
            "c": rng.random((2, 3), dtype=np.float32), "s": rng.random((2, 1), dtype=np.float32)}
    for got, want in zip(_run(specialised, feed), _run(graph, feed)):
        np.testing.assert_array_equal(got, want)


def test_without_lets_the_producer_of_a_sum_write_its_output():
    graph = oh.make_graph(
        [oh.make_node("Relu", ["x"], ["r"]), oh.make_node("Mul", ["w", "r"], ["wr"]),
         oh.make_node("Add", ["r", "wr"], ["y"])],
        "g", [_value("x", [4]), _value("w", [4])], [_value("y", [4])],
        value_info=[_value("r", [4]), _value("wr", [4])])
    specialised = onnx_passes.without(graph, {"w"})
    assert [(node.op_type, list(node.output)) for node in specialised.node] == [("Relu", ["y"])]


def test_mask_before_unpool_gives_the_same_floats():
    """ReLU's backward after MaxUnpool and before it, on ties, zeros and negative gradients."""
    x = np.maximum(np.random.default_rng(1).integers(-2, 3, (2, 3, 8, 10)), 0).astype(np.float32)
    g = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype(np.float32)
    graph = oh.make_graph(
        [oh.make_node("MaxPool", ["x"], ["q", "i"], kernel_shape=[2, 2], strides=[2, 2]),
         oh.make_node("Shape", ["x"], ["shape"]),
         oh.make_node("MaxUnpool", ["g", "i", "shape"], ["u"], kernel_shape=[2, 2], strides=[2, 2]),
         oh.make_node("Greater", ["x", "zero"], ["above"]),
         oh.make_node("Cast", ["above"], ["mask"], to=FLOAT),
         oh.make_node("Mul", ["u", "mask"], ["masked"])],
        "g", [_value("x", list(x.shape)), _value("g", list(g.shape))],
        [_value("u", list(x.shape)), _value("masked", list(x.shape))],
        [oh.make_tensor("zero", FLOAT, [], [0.0])])
    rewritten = onnx_passes.mask_before_unpool(graph)
    assert [node.op_type for node in rewritten.node].count("MaxUnpool") == 2
    assert not any(node.op_type == "Mul" and "u" in node.input for node in rewritten.node)
    got, want = _run(rewritten, {"x": x, "g": g}), _run(graph, {"x": x, "g": g})
    for a, b in zip(got, want):
        assert a.tobytes() == b.tobytes()


def _conv_pool_and_back(kernel: int, pads: list[int]) -> onnx.GraphProto:
    """y = MaxPool(ReLU(Conv(x))) 2x2 and, for a gradient g of y, the gradient of x as
    gradient.onnx's any-size graph computes it: ReLU's mask on g, MaxUnpool, a transposed conv."""
    rng = np.random.default_rng(7)
    weight = rng.standard_normal((4, 2, kernel, kernel)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    return oh.make_graph(
        [oh.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[kernel, kernel], pads=pads),
         oh.make_node("Relu", ["c"], ["r"]),
         oh.make_node("MaxPool", ["r"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2]),
         oh.make_node("Greater", ["y", "zero"], ["above"]),
         oh.make_node("Cast", ["above"], ["mask"], to=FLOAT),
         oh.make_node("Mul", ["g", "mask"], ["masked"]),
         oh.make_node("Shape", ["r"], ["shape"]),
         oh.make_node("MaxUnpool", ["masked", "i", "shape"], ["u"], kernel_shape=[2, 2], strides=[2, 2]),
         oh.make_node("ConvTranspose", ["u", "w"], ["dx"], kernel_shape=[kernel, kernel], pads=pads)],
        "g", [_value("x", None), _value("g", None)], [_value("y", None), _value("dx", None)],
        [onnx.numpy_helper.from_array(weight, "w"), onnx.numpy_helper.from_array(bias, "b"),
         oh.make_tensor("zero", FLOAT, [], [0.0])])


@pytest.mark.parametrize("kernel,pads", [(3, [0, 0, 0, 0]), (5, [2, 2, 2, 2]), (3, [1, 0, 0, 1])])
@pytest.mark.parametrize("size", [(12, 16), (13, 11), (4, 7), (6, 5)])
def test_pool_by_phases_is_pooling_and_its_backward(kernel, pads, size):
    """Pooling by phases against MaxPool and MaxUnpool, at sizes whose conv output pools evenly
    and not, down to one pooled row, on flat patches (every window a tie: the first maximum takes
    the gradient)."""
    graph = _conv_pool_and_back(kernel, pads)
    rewritten = onnx_passes.pool_by_phases(graph)
    assert not {"MaxPool", "MaxUnpool"} & {node.op_type for node in rewritten.node}
    rng = np.random.default_rng(8)
    x = rng.random((2, 2, *size), dtype=np.float32)
    x[0, :, :8, :8] = 0.25
    x[1] = 0.5
    y = _run(graph, {"x": x, "g": np.zeros((2, 4, 1, 1), np.float32)})[0]
    g = rng.standard_normal(y.shape).astype(np.float32)
    (want_y, want_dx), (got_y, got_dx) = (_run(graph, {"x": x, "g": g}),
                                          _run(rewritten, {"x": x, "g": g}))
    np.testing.assert_allclose(got_y, want_y, rtol=1e-6, atol=1e-6)
    assert got_dx.shape == x.shape
    np.testing.assert_allclose(got_dx, want_dx, rtol=1e-5, atol=1e-5)


def test_pool_by_phases_leaves_a_pooling_whose_input_is_used_elsewhere():
    graph = _conv_pool_and_back(3, [0, 0, 0, 0])
    graph.node.append(oh.make_node("ReduceSum", ["r"], ["total"], keepdims=0))
    graph.output.append(_value("total", None))
    assert [node.op_type for node in onnx_passes.pool_by_phases(graph).node].count("MaxPool") == 1


def test_without_redundant_relu_masks_gives_the_same_values():
    """ReLU's mask on a multiple of its own output changes nothing, and goes; on anything else it
    stays."""
    graph = oh.make_graph(
        [oh.make_node("Relu", ["x"], ["y"]),
         oh.make_node("Mul", ["y", "s"], ["ys"]),
         oh.make_node("Greater", ["y", "zero"], ["above"]),
         oh.make_node("Cast", ["above"], ["mask"], to=FLOAT),
         oh.make_node("Mul", ["ys", "mask"], ["masked"]),
         oh.make_node("Add", ["ys", "s"], ["shifted"]),
         oh.make_node("Mul", ["mask", "shifted"], ["kept"])],
        "g", [_value("x", [2, 3, 4, 5]), _value("s", [2, 1, 1, 1])],
        [_value("masked", [2, 3, 4, 5]), _value("kept", [2, 3, 4, 5])],
        [oh.make_tensor("zero", FLOAT, [], [0.0])])
    rewritten = onnx_passes.without_redundant_relu_masks(graph)
    assert [node.op_type for node in rewritten.node].count("Mul") == 2
    rng = np.random.default_rng(9)
    feed = {"x": rng.standard_normal((2, 3, 4, 5)).astype(np.float32),
            "s": rng.standard_normal((2, 1, 1, 1)).astype(np.float32)}
    for got, want in zip(_run(rewritten, feed), _run(graph, feed)):
        np.testing.assert_array_equal(got, want)
