"""service.runtime.weights reads the first Conv's kernels from model.onnx without the onnx
package: checked against onnx's own reading (onnx.numpy_helper), on the default bundle and on small models built
with onnx.helper, in every encoding a TensorProto's float32s can have."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from service.runtime.weights import first_conv_kernels
from tests.service.reference import MODEL_DIR

KERNELS = np.random.default_rng(0).standard_normal((4, 1, 3, 3)).astype(np.float32)
SECOND = np.ones((2, 4, 1, 1), np.float32)
VARINT, LEN, I32 = 0, 2, 5   # protobuf wire types


def onnx_reading(model: onnx.ModelProto) -> np.ndarray:
    conv = next(node for node in model.graph.node if node.op_type == "Conv")
    weight = next(tensor for tensor in model.graph.initializer if tensor.name == conv.input[1])
    return numpy_helper.to_array(weight)


def model(w: TensorProto | None, op: str = "Conv") -> onnx.ModelProto:
    """x -> Relu -> op(w) -> op(v) -> y. v's initializer comes first, so that w must be found by
    name; w None: w is a graph input, not an initializer."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node(op, ["a", "w"], ["b"]),
             helper.make_node(op, ["b", "v"], ["y"])]
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
              for name in ["x", *(["w"] if w is None else [])]]
    graph = helper.make_graph(nodes, "convs", inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(SECOND, "v"), *([] if w is None else [w])])
    return helper.make_model(graph)


def test_the_default_bundles_first_conv_kernels_are_onnxs():
    data = (MODEL_DIR / "model.onnx").read_bytes()
    kernels, expected = first_conv_kernels(data), onnx_reading(onnx.load_from_string(data))
    assert kernels.dtype == np.float32 and kernels.shape == expected.shape == (25, 1, 3, 3)
    assert np.array_equal(kernels, expected)


def test_raw_data():
    w = numpy_helper.from_array(KERNELS, "w")
    assert w.raw_data and not w.float_data
    m = model(w)
    assert np.array_equal(first_conv_kernels(m.SerializeToString()), onnx_reading(m))


def test_float_data():
    """As onnx writes them: float_data packed, dims not (onnx.proto is proto2)."""
    w = helper.make_tensor("w", TensorProto.FLOAT, KERNELS.shape, KERNELS.ravel(), raw=False)
    assert w.float_data and not w.raw_data
    m = model(w)
    assert np.array_equal(first_conv_kernels(m.SerializeToString()), onnx_reading(m))


@pytest.mark.parametrize("packed_dims, packed_floats",
                         [(True, True), (True, False), (False, False)])
def test_float_data_and_dims_packed_or_not(packed_dims, packed_floats):
    """The encodings onnx does not write but any protobuf reader accepts: w written by hand."""
    shape, values = KERNELS.shape, KERNELS.astype("<f4").ravel()
    dims = (_field(1, b"".join(map(_varint, shape))) if packed_dims
            else b"".join(_key(1, VARINT) + _varint(d) for d in shape))
    floats = (_field(4, values.tobytes()) if packed_floats
              else b"".join(_key(4, I32) + value.tobytes() for value in values))
    w = _field(8, b"w") + dims + _key(2, VARINT) + _varint(TensorProto.FLOAT) + floats
    graph = model(None).graph
    del graph.input[1]                  # w: neither a graph input nor (yet) an initializer
    head = helper.make_model(graph)
    head.ClearField("graph")
    data = head.SerializeToString() + _field(7, graph.SerializeToString() + _field(5, w))
    expected = onnx_reading(onnx.load_from_string(data))
    assert np.array_equal(expected, KERNELS)
    assert np.array_equal(first_conv_kernels(data), expected)


def test_none_without_a_conv():
    m = model(numpy_helper.from_array(KERNELS, "w"), op="Mul")
    assert first_conv_kernels(m.SerializeToString()) is None


def test_none_when_the_weight_is_a_graph_input():
    assert first_conv_kernels(model(None).SerializeToString()) is None


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_none_for_a_weight_not_float32(dtype):
    m = model(numpy_helper.from_array(KERNELS.astype(dtype), "w"))
    assert np.array_equal(onnx_reading(m), KERNELS.astype(dtype))
    assert first_conv_kernels(m.SerializeToString()) is None


def test_none_for_a_weight_in_an_external_file(tmp_path):
    path = tmp_path / "model.onnx"
    onnx.save_model(model(numpy_helper.from_array(KERNELS, "w")), path, save_as_external_data=True,
                    location="weights.bin", size_threshold=0)
    data = path.read_bytes()
    assert onnx.load_from_string(data).graph.initializer[1].data_location == TensorProto.EXTERNAL
    assert np.array_equal(onnx_reading(onnx.load(path)), KERNELS)   # they are in weights.bin
    assert first_conv_kernels(data) is None


def test_a_model_cut_short_is_an_error():
    data = (MODEL_DIR / "model.onnx").read_bytes()
    with pytest.raises(ValueError, match="runs past the end"):
        first_conv_kernels(data[:len(data) // 2])


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field: key, length, payload."""
    return _key(number, LEN) + _varint(len(payload)) + payload


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(out + bytes([value]))
