"""Torch ops whose ONNX translation the any-size gradient graph chooses itself.

torch.onnx translates each aten op the same way wherever it appears; for the few ops that dominate
a gradient step on a large image its choice is slow in onnxruntime, so the any-size graph is
traced with these custom ops in their place (training/onnx_export.py), each with an eager
implementation, a shape function for tracing and an ONNX translation (TRANSLATIONS):

- sum_square: ReduceSumSquare, one pass over an activation instead of Mul then ReduceSum.
- max_pool2d / max_unpool2d: onnxruntime's MaxPool with its indices, and MaxUnpool to route the
  gradient back. torch's translation of max_pool2d_with_indices runs a second, 1x1 MaxPool with
  indices over the whole input only to turn onnxruntime's indices (flat over the tensor) into
  torch's (flat per channel), and torch's backward scatters into a zero tensor; here the indices
  stay flat over the tensor in both the eager implementation and the ONNX graph. Only for
  windows that do not overlap, where each input is the maximum of at most one window (MaxUnpool
  writes, it does not add), see pool_windows. MaxPool with indices is onnxruntime's scalar
  kernel; where the pooled conv's activation is not weighed, training/onnx_passes.py replaces
  both by a pooling of the conv's four phases (pool_by_phases), the formulations of the pooling
  alone tried without the indices being slower (see docs/benchmarks.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from onnxscript import opset18 as op
from torch import Tensor


@torch.library.custom_op("cnnlens::sum_square", mutates_args=())
def sum_square(x: Tensor, dims: list[int]) -> Tensor:
    """The sum of x * x over `dims` (which are dropped)."""
    return (x * x).sum(dims)


@sum_square.register_fake
def _(x, dims):
    return x.new_empty([size for axis, size in enumerate(x.shape) if axis not in dims])


def _sum_square_onnx(x, dims):
    return op.ReduceSumSquare(x, op.Constant(value_ints=list(dims)), keepdims=0)


@torch.library.custom_op("cnnlens::max_pool2d", mutates_args=())
def max_pool2d(x: Tensor, kernel: list[int], stride: list[int],
               padding: list[int]) -> tuple[Tensor, Tensor]:
    """torch's max_pool2d with its indices flat over the whole tensor (ONNX MaxPool's), not per
    channel (torch's)."""
    values, indices = F.max_pool2d(x, kernel, stride, padding, return_indices=True)
    planes = torch.arange(x.shape[0] * x.shape[1], device=x.device).view(*x.shape[:2], 1, 1)
    return values, indices + planes * (x.shape[2] * x.shape[3])


@max_pool2d.register_fake
def _(x, kernel, stride, padding):
    values = F.max_pool2d(x, kernel, stride, padding)
    return values, values.new_empty(values.shape, dtype=torch.int64)


def _max_pool2d_onnx(x, kernel, stride, padding):
    return op.MaxPool(x, kernel_shape=list(kernel), strides=list(stride), pads=list(padding) * 2)


@torch.library.custom_op("cnnlens::max_unpool2d", mutates_args=())
def max_unpool2d(grad: Tensor, indices: Tensor, like: Tensor, kernel: list[int],
                 stride: list[int], padding: list[int]) -> Tensor:
    """A tensor shaped like `like`, zero but for grad[i] at the flat position indices[i]."""
    out = grad.new_zeros(like.numel())
    out[indices.flatten()] = grad.flatten()
    return out.view(like.shape)


@max_unpool2d.register_fake
def _(grad, indices, like, kernel, stride, padding):
    return like.new_empty(like.shape)


def _max_unpool2d_onnx(grad, indices, like, kernel, stride, padding):
    # onnxruntime checks the output is at least the size the pooling attributes imply
    return op.MaxUnpool(grad, indices, op.Shape(like), kernel_shape=list(kernel),
                        strides=list(stride), pads=list(padding) * 2)


TRANSLATIONS = {
    torch.ops.cnnlens.sum_square.default: _sum_square_onnx,
    torch.ops.cnnlens.max_pool2d.default: _max_pool2d_onnx,
    torch.ops.cnnlens.max_unpool2d.default: _max_unpool2d_onnx,
}


def pool_windows(kernel_size, stride, padding, dilation, ceil_mode) -> tuple | None:
    """aten's max_pool2d arguments as (kernel, stride, padding) pairs when the windows do not
    overlap and are not dilated, and none hangs over the end (ceil_mode: onnxruntime's MaxUnpool
    refuses an output smaller than the windows span), else None."""
    def pair(value, default):
        value = list(value) if isinstance(value, (list, tuple)) else [value]
        value = value or default
        return value * 2 if len(value) == 1 else value
    kernel = pair(kernel_size, None)
    stride, padding, dilation = pair(stride, kernel), pair(padding, [0]), pair(dilation, [1])
    if ceil_mode or dilation != [1, 1] or any(s < k for s, k in zip(stride, kernel)):
        return None
    return kernel, stride, padding
