"""Export a trained model as the two ONNX graphs of a bundle.

model.onnx     image -> logits, probabilities and every explainable layer's activation.
gradient.onnx  image and objective weights -> objective, d objective / d image, and
               d objective / d activation for every conv layer.

The objective of sample n is linear in its weights, which is what lets one graph serve filter,
neuron and class visualisation, Deep Dream and Grad-CAM:

    objective[n] = sum over targets l of   sum_c weights.l[n, c] * degree_l[n, c]
                                         + energy.l[n] * mean(activation_l[n] ** 2)

where degree_l is the mean of each channel over its feature map (the lecture's "degree of
activation"), or the unit itself for dense layers and logits. The targets are every layer's
activation and every conv and dense layer's pre-activation, `<layer>.pre` (objective_targets).

torch.onnx cannot export a module that calls autograd, so the gradient function is first traced
into a plain aten graph with make_fx (backward ops decomposed into exportable ones), and that
graph is exported. Conv-layer objectives work on images of any size; dense layers bind the size
to the training size. So two graphs are traced, a conv-only one with dynamic height and width and
a complete one at the training size, and joined under an ONNX `If` on the image size.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import onnx
import onnx.compose
import onnx.helper as oh
import torch
import torch.nn.functional as F
from torch import nn
from torch._decomp import get_decompositions
from torch.export import Dim
from torch.fx.experimental.proxy_tensor import make_fx

from lens.optvis.objectives import PREACTIVATION, preactivation
from lens.bundle import DIGIT_SCORE
from training.layers import Layer, capture, state_of

OPSET = 18
MAX_SIDE = 4096   # largest height/width the dynamic graph is exported for
MIN_SIDE = 8
MAX_BATCH = 65536


def objective_targets(layers: list[Layer]) -> list[str]:
    """What gradient.onnx's objective can weigh: every layer's activation, then every conv and
    dense layer's pre-activation (the input of its activation function), through which gradient
    ascent moves a unit that is switched off (a ReLU passes no gradient there)."""
    return ([layer.name for layer in layers]
            + [preactivation(layer.name) for layer in layers if layer.kind != "output"])


def io_names(layers: list[Layer]) -> dict:
    """The input and output names of both graphs; the manifest records them."""
    conv = [layer for layer in layers if layer.kind == "conv"]
    targets = objective_targets(layers)
    return {
        "model": {"inputs": ["image"],
                  "outputs": ["logits", "probabilities", DIGIT_SCORE]
                             + [l.name for l in layers if l.name != "logits"]},
        "gradient": {"inputs": ["image"] + [f"weights.{t}" for t in targets]
                               + [f"energy.{t}" for t in targets],
                     "outputs": ["objective", "grad.image"] + [f"grad.{l.name}" for l in conv]},
    }


def export_model(model: nn.Module, layers: list[Layer], input_shape, path: Path,
                 temperature: float = 1.0) -> None:
    """model.onnx: dynamic batch, fixed image size; probabilities are softmax(logits / temperature)
    (training.calibration), the logits as the network computes them, and digit_score the energy
    score T * logsumexp(logits / T): how much the network's evidence adds up to some class."""
    class Outputs(nn.Module):
        def forward(self, image):
            acts = capture(model, layers, state_of(model), image)
            logits = acts["logits"]
            return (logits, torch.softmax(logits / temperature, dim=1),
                    temperature * torch.logsumexp(logits / temperature, dim=1),
                    *[acts[l.name] for l in layers if l.name != "logits"])

    names = io_names(layers)["model"]
    onnx.save(_export(Outputs().eval(), (torch.rand(2, *input_shape),), names["inputs"],
                      names["outputs"], ({0: Dim("batch", min=1, max=MAX_BATCH)},)), path)


def export_gradient(model: nn.Module, layers: list[Layer], input_shape, path: Path) -> None:
    """gradient.onnx: dynamic batch; dynamic height and width for conv-layer objectives."""
    names = io_names(layers)["gradient"]
    conv = [layer for layer in layers if layer.kind == "conv"]
    full = _gradient_graph(model, layers, input_shape, dynamic_size=False)
    if len(conv) == len(layers):
        onnx.save(full, path)
        return
    conv_only = _gradient_graph(model, conv, input_shape, dynamic_size=True)
    onnx.save(_join_on_size(full, conv_only, input_shape[1:], names), path)


def objective(acts: dict[str, torch.Tensor], weights: dict[str, torch.Tensor],
              energy: dict[str, torch.Tensor]) -> torch.Tensor:
    """The per-sample objective described at the top of this module."""
    total = 0
    for name, act in acts.items():
        # Means as sums times 1/n: the backward of mean() divides the whole expanded map by n
        # (a Div over every activation, 9 % of a 512x512 step in ORT); this scales the small
        # per-sample gradient before it is expanded.
        # act * act, not act.pow(2): Pow and its derivative cost a fifth of a 512x512 step in ORT
        if act.ndim == 4:
            degree = act.flatten(2).sum(2) * (1.0 / (act.shape[2] * act.shape[3]))
        else:
            degree = act
        mean_square = (act * act).flatten(1).sum(1) * (1.0 / act[0].numel())
        total = total + (degree * weights[name]).sum(1) + energy[name] * mean_square
    return total


def gradient_function(model: nn.Module, layers: list[Layer]):
    """f(state, image, weights..., energies...) -> (objective, d/d image, d/d conv activations).
    `state` (parameters and buffers) is an explicit argument: make_fx must see no hidden tensors."""
    keys = list(state_of(model))
    conv = [layer.name for layer in layers if layer.kind == "conv"]
    targets = objective_targets(layers)

    def f(state: list[torch.Tensor], image: torch.Tensor, *weights_and_energy: torch.Tensor):
        weights = dict(zip(targets, weights_and_energy[:len(targets)]))
        energy = dict(zip(targets, weights_and_energy[len(targets):]))
        image = image.detach().requires_grad_(True)
        with torch.enable_grad():
            acts = capture(model, layers, dict(zip(keys, state)), image, preactivations=True)
            value = objective(acts, weights, energy)
            grads = torch.autograd.grad(value.sum(), [image] + [acts[name] for name in conv])
        return (value.detach(), *grads)

    return f


def _gradient_graph(model, layers, input_shape, dynamic_size: bool) -> onnx.ModelProto:
    n = 2
    state = [t.detach() for t in state_of(model).values()]
    channels = {layer.name: layer.channels for layer in layers}
    targets = objective_targets(layers)
    example = (torch.rand(n, *input_shape),
               *[torch.randn(n, channels[t.removesuffix(PREACTIVATION)]) for t in targets],
               *[torch.randn(n) for _ in targets])
    traced = make_fx(gradient_function(model, layers), tracing_mode="symbolic",
                     decomposition_table=_BACKWARD_DECOMPOSITIONS)(state, *example)

    class Traced(nn.Module):
        """The traced graph with the weights as buffers, so they become ONNX initializers."""

        def __init__(self):
            super().__init__()
            for i, tensor in enumerate(state):
                self.register_buffer(f"state_{i}", tensor)

        def forward(self, image, *weights_and_energy):
            return traced([getattr(self, f"state_{i}") for i in range(len(state))],
                          image, *weights_and_energy)

    batch = Dim("batch", min=1, max=MAX_BATCH)
    image_dims = {0: batch}
    if dynamic_size:
        image_dims |= {2: Dim("height", min=MIN_SIDE, max=MAX_SIDE), 3: Dim("width", min=MIN_SIDE, max=MAX_SIDE)}
    names = io_names(layers)["gradient"]
    # forward(image, *weights_and_energy): the varargs take one nested tuple of shapes
    dynamic = (image_dims, tuple({0: batch} for _ in names["inputs"][1:]))
    return _export(Traced().eval(), example, names["inputs"], names["outputs"], dynamic)


def _export(module, args, inputs, outputs, dynamic_shapes) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module, args, dynamo=True, opset_version=OPSET, input_names=inputs,
            output_names=outputs, dynamic_shapes=dynamic_shapes,
            optimize=True, verbose=False)
    model = program.model_proto
    # The exporter's per-node debugging metadata names Python objects by address (torch's
    # sym_float, for one): without it, two exports of the same model are the same bytes.
    for node in [*model.graph.node, *(n for f in model.functions for n in f.node)]:
        del node.metadata_props[:]
    return model


def _join_on_size(full: onnx.ModelProto, conv_only: onnx.ModelProto, size, names) -> onnx.ModelProto:
    """One graph: `full` when the image has the training size, else `conv_only` (whose dense
    weights are ignored; the manifest says which layers need the training size)."""
    def branch(model: onnx.ModelProto, prefix: str) -> onnx.GraphProto:
        graph = onnx.compose.add_prefix_graph(model.graph, prefix, rename_inputs=False)
        del graph.input[:]   # the branch reads the outer graph's inputs by name
        return graph

    then_branch, else_branch = branch(full, "full/"), branch(conv_only, "conv/")
    for graph in (then_branch, else_branch):
        del graph.value_info[:]
    nodes = [
        oh.make_node("Shape", ["image"], ["image_size"], start=2),
        oh.make_node("Constant", [], ["training_size"],
                     value=oh.make_tensor("training_size", onnx.TensorProto.INT64, [2], list(size))),
        oh.make_node("Equal", ["image_size", "training_size"], ["size_matches"]),
        oh.make_node("Cast", ["size_matches"], ["size_matches_int"], to=onnx.TensorProto.INT64),
        oh.make_node("ReduceMin", ["size_matches_int"], ["all_match_int"], keepdims=0),
        oh.make_node("Cast", ["all_match_int"], ["at_training_size"], to=onnx.TensorProto.BOOL),
        oh.make_node("If", ["at_training_size"], names["outputs"],
                     then_branch=then_branch, else_branch=else_branch),
    ]
    # the image input and the outputs take the conv-only graph's dynamic height and width
    inputs = [conv_only.graph.input[0], *full.graph.input[1:]]
    graph = oh.make_graph(nodes, "gradient", inputs, list(conv_only.graph.output))
    opsets = {o.domain: o.version for o in list(full.opset_import) + list(conv_only.opset_import)}
    joined = oh.make_model(graph, opset_imports=[oh.make_opsetid(d, v) for d, v in opsets.items()],
                           producer_name="cnn-lens")
    joined.ir_version = full.ir_version
    onnx.checker.check_model(joined, full_check=True)
    return joined


def _conv_input_grad(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                     transposed, output_padding, groups, output_mask):
    """aten.convolution_backward has no ONNX translation; the input gradient of a convolution
    is a transposed convolution, padded where striding dropped rows and columns at the end.
    Gradients of weights and bias are never asked for."""
    grad = F.conv_transpose2d(grad_output, weight, None, stride, padding, 0, groups, dilation)
    grad = F.pad(grad, (0, input.shape[3] - grad.shape[3], 0, input.shape[2] - grad.shape[2]))
    return grad, None, None


def _avg_pool_input_grad(grad_output, input, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override):
    """torch has no decomposition for avg_pool2d_backward: each output spreads its gradient
    evenly over its window, which is a grouped transposed convolution with a flat kernel."""
    if any(padding) or ceil_mode or divisor_override:
        raise NotImplementedError("export supports AvgPool2d without padding, ceil_mode or divisor_override")
    kh, kw = kernel_size
    channels = grad_output.shape[1]
    weight = torch.full((channels, 1, kh, kw), 1.0 / (kh * kw), dtype=grad_output.dtype)
    grad = F.conv_transpose2d(grad_output, weight, None, stride or kernel_size, 0, 0, channels)
    return F.pad(grad, (0, input.shape[3] - grad.shape[3], 0, input.shape[2] - grad.shape[2]))


def _relu_input_grad(grad_output, output, threshold):
    """ReLU's backward as a product with the mask of the units that fired, not torch's
    where(output <= threshold, 0, grad): onnxruntime's Where is a generic kernel, and this made a
    512x512 gradient step 14 % faster (161 -> 139 ms, 1 thread) with bit-identical results."""
    return grad_output * (output > threshold).to(grad_output.dtype)


_BACKWARD_DECOMPOSITIONS = get_decompositions([
    torch.ops.aten.max_pool2d_with_indices_backward,
    torch.ops.aten.native_batch_norm_backward,
    torch.ops.aten._native_batch_norm_legit_no_training,
])
_BACKWARD_DECOMPOSITIONS[torch.ops.aten.avg_pool2d_backward.default] = _avg_pool_input_grad
_BACKWARD_DECOMPOSITIONS[torch.ops.aten.threshold_backward.default] = _relu_input_grad
_BACKWARD_DECOMPOSITIONS[torch.ops.aten.convolution_backward.default] = _conv_input_grad
