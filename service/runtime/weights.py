"""The first conv layer's raw kernels, read from model.onnx's initializers (no onnx, no torch).

model.onnx is read with a few lines of the protobuf wire format rather than the onnx package:
that one read is all the service needs of onnx, which (with ml_dtypes) would otherwise be over
50 MB of the serving image. The field numbers are onnx.proto's."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Wire types (https://protobuf.dev/programming-guides/encoding/); onnx.proto has no groups (3, 4).
VARINT, I64, LEN, I32 = 0, 1, 2, 5
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_INPUT, NODE_OP_TYPE = 1, 4
TENSOR_DIMS, TENSOR_DATA_TYPE, TENSOR_FLOAT_DATA, TENSOR_NAME = 1, 2, 4, 8
TENSOR_RAW_DATA, TENSOR_DATA_LOCATION = 9, 14
FLOAT, EXTERNAL = 1, 1   # TensorProto.DataType.FLOAT, TensorProto.DataLocation.EXTERNAL


def first_conv_kernels(model: bytes) -> np.ndarray | None:
    """From model.onnx's bytes: out_channels x in_channels x kh x kw, or None if there is no
    Conv, or the first Conv's weight is not an initializer (e.g. computed by other nodes), or is
    not float32 stored in the file (what a picture of the kernels is made of)."""
    graph = next(iter(_values(memoryview(model), MODEL_GRAPH)), b"")
    conv = next((node for node in _values(graph, GRAPH_NODE)
                 if _strings(node, NODE_OP_TYPE) == ["Conv"]), None)
    if conv is None:
        return None
    weight = _strings(conv, NODE_INPUT)[1]
    tensor = next((tensor for tensor in _values(graph, GRAPH_INITIALIZER)
                   if _strings(tensor, TENSOR_NAME) == [weight]), None)
    return None if tensor is None else _float_tensor(tensor)


def kernel_planes(kernels: np.ndarray) -> np.ndarray:
    """Kernels on one symmetric scale: 0 is mid-grey, the layer's largest |weight| is black
    (negative) or white (positive), so kernels can be compared with each other."""
    peak = float(np.abs(kernels).max()) or 1.0
    return 0.5 + 0.5 * kernels / peak


def _float_tensor(tensor: memoryview) -> np.ndarray | None:
    """A TensorProto's values, from raw_data (little-endian) or float_data: either way float32s,
    4 bytes each, whether float_data's are packed (one LEN field) or not (one I32 field each).
    None for another data type, or values kept in an external file."""
    dims, data_type, location, raw, floats = [], 0, 0, None, []
    for number, value in _fields(tensor):
        if number == TENSOR_DIMS:   # repeated int64: packed (LEN) or one VARINT per dim
            dims += [value] if isinstance(value, int) else _varints(value)
        elif number == TENSOR_DATA_TYPE:
            data_type = value
        elif number == TENSOR_DATA_LOCATION:
            location = value
        elif number == TENSOR_RAW_DATA:
            raw = value
        elif number == TENSOR_FLOAT_DATA:
            floats.append(value)
    if data_type != FLOAT or location == EXTERNAL:
        return None
    data = raw if raw is not None else b"".join(floats)
    return np.frombuffer(data, "<f4").astype(np.float32).reshape(dims)


def _values(message: memoryview, field: int) -> list:
    return [value for number, value in _fields(message) if number == field]


def _strings(message: memoryview, field: int) -> list[str]:
    return [bytes(value).decode() for value in _values(message, field)]


def _fields(message: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """A message's fields in order, as (field number, value): an int for a VARINT, the bytes
    (a view, not a copy: model.onnx's weights are most of it) for the others."""
    position = 0
    while position < len(message):
        key, position = _varint(message, position)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, position = _varint(message, position)
        else:
            if wire == LEN:
                size, position = _varint(message, position)
            elif wire in (I32, I64):
                size = 4 if wire == I32 else 8
            else:
                raise ValueError(f"model.onnx: field {number} has wire type {wire}")
            if position + size > len(message):
                raise ValueError(f"model.onnx: field {number} runs past the end of its message")
            value, position = message[position:position + size], position + size
        yield number, value


def _varints(packed: memoryview) -> list[int]:
    values, position = [], 0
    while position < len(packed):
        value, position = _varint(packed, position)
        values.append(value)
    return values


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    """The base-128 integer at position (7 bits a byte, least significant first, the high bit
    set on all but the last byte), and the position after it."""
    value = shift = 0
    while True:
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if byte < 0x80:
            return value, position
