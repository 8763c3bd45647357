"""Export a trained model as the two ONNX graphs of a bundle.

model.onnx     image -> logits, probabilities and every explainable layer's activation.
gradient.onnx  image and objective weights -> objective, d objective / d image, and
               d objective / d activation for every conv layer (at the training size, for
               Grad-CAM; empty at other sizes, where only d / d image is asked for).

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

The conv-only graph is the one Deep Dream runs on large images, and it is built for speed in
onnxruntime (the complete one, 0.4 ms a step at 28x28, is traced as it always was: the bundle's
filter pictures are rendered through it, and they keep their bytes):
- each target's part of the objective is one autograd Function whose backward is a single
  product and sum over the activation (_Term), its sum of squares one ReduceSumSquare;
- max pooling keeps onnxruntime's indices and routes the gradient back with MaxUnpool
  (training/onnx_ops.py); ReLU's mask before it is applied to the pooled gradient, before
  MaxUnpool spreads it to four times the size (training/onnx_passes.py);
- where nothing weighs a pooled conv's own activation (Deep Dream on a later layer), the first
  conv, its pooling and their backward run as four stride-2 convolutions, one per position in
  the pooling window, and no full-size activation or gradient is formed at all
  (onnx_passes.pool_by_phases);
- the input gradient of a stride-1 convolution with enough input channels is a convolution with
  the flipped, transposed kernel, which onnxruntime runs as one cache-blocked GEMM, instead of a
  transposed convolution (a GEMM into a column buffer the size of the kernel times the image,
  then a scatter of it);
- a request weighs few targets: the graph is specialised for each target that can come first in
  depth (conv1.pre, conv1, conv2.pre, conv2, ...), as if every target before it had zero weights
  (training/onnx_passes.py), and an `If` picks the specialisation by the first target with a
  nonzero weight. Deep Dream on conv2 then computes nothing for conv1's and conv2.pre's terms;
- each of those has a variant for objectives without weights, energies alone (Deep Dream), where
  ReLU's backward mask on the energy's gradient changes nothing and goes
  (onnx_passes.without_redundant_relu_masks).
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
from training import onnx_ops, onnx_passes
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
    conv_only = _without_layer_gradients(_gradient_graph(model, conv, input_shape, dynamic_size=True),
                                         conv)
    onnx.save(_join_on_size(full, conv_only, depth_order(conv), input_shape[1:], names), path)


def _without_layer_gradients(conv_only: onnx.ModelProto, conv: list[Layer]) -> onnx.ModelProto:
    """`conv_only` giving each grad.<conv layer> empty (N x C x 0 x 0). Off the training size
    only feature visualisation and Deep Dream run, and they read grad.image alone; Grad-CAM, which
    reads the layer gradients, needs the class logits and so the training size. Left out, the
    first layer's gradient no longer has to be formed at full size (onnx_passes.pool_by_phases)."""
    graph = onnx.GraphProto()
    graph.CopyFrom(conv_only.graph)
    for layer in conv:
        name = f"grad.{layer.name}"
        for node in graph.node:
            node.input[:] = [f"{name}/unused" if n == name else n for n in node.input]
            node.output[:] = [f"{name}/unused" if n == name else n for n in node.output]
        graph.node.extend([
            oh.make_node("Shape", ["image"], [f"{name}/batch"], start=0, end=1),
            oh.make_node("Constant", [], [f"{name}/rest"], value=oh.make_tensor(
                f"{name}/rest", onnx.TensorProto.INT64, [3], [layer.channels, 0, 0])),
            oh.make_node("Concat", [f"{name}/batch", f"{name}/rest"], [f"{name}/shape"], axis=0),
            oh.make_node("ConstantOfShape", [f"{name}/shape"], [name],
                         value=oh.make_tensor(name, onnx.TensorProto.FLOAT, [1], [0.0]))])
        output = next(o for o in graph.output if o.name == name)
        # the shape stays known under the new name: onnx_passes.without needs it
        graph.value_info.append(onnx.ValueInfoProto())
        graph.value_info[-1].CopyFrom(output)
        graph.value_info[-1].name = f"{name}/unused"
        for dim in output.type.tensor_type.shape.dim[2:]:
            dim.Clear()
    model = onnx.ModelProto()
    model.CopyFrom(conv_only)
    model.graph.CopyFrom(graph)
    return model


def depth_order(layers: list[Layer]) -> list[str]:
    """The objective's targets in the order the forward pass computes them."""
    return [target for layer in layers
            for target in ([preactivation(layer.name)] if layer.kind != "output" else [])
            + [layer.name]]


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


class _Term(torch.autograd.Function):
    """One conv target's part of the objective. Its gradient, weights / (H*W) + 2 * energy * act / n,
    is one product and one sum over the activation; autograd's own backward of the same formula
    expands the weights to the activation's size and goes through the square twice, five passes
    over the activation where two do."""

    @staticmethod
    def forward(act, weights, energy):
        # Squares summed per channel first: float32 sums of a 512x512 map over all channels at
        # once lose four digits (0.06 % against float64), per channel and then across, one.
        squares = onnx_ops.sum_square(act, [2, 3]).sum(1)
        return ((act.sum((2, 3)) * weights).sum(1) * (1.0 / (act.shape[2] * act.shape[3]))
                + energy * squares * (1.0 / act[0].numel()))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad):
        act, weights, energy = ctx.saved_tensors
        scale = (grad * energy * (2.0 / act[0].numel())).view(-1, 1, 1, 1)
        shift = grad.unsqueeze(1) * weights * (1.0 / (act.shape[2] * act.shape[3]))
        return act * scale + shift.view(*shift.shape, 1, 1), None, None


def objective_by_terms(acts: dict[str, torch.Tensor], weights: dict[str, torch.Tensor],
                       energy: dict[str, torch.Tensor]) -> torch.Tensor:
    """`objective` for conv targets, each target's part computed by _Term."""
    terms = [_Term.apply(act, weights[name], energy[name]) for name, act in acts.items()]
    return sum(terms[1:], terms[0])


def gradient_function(model: nn.Module, layers: list[Layer], targets: list[str] | None = None,
                      objective=objective):
    """f(state, image, weights..., energies...) -> (objective, d/d image, d/d conv activations).
    `state` (parameters and buffers) is an explicit argument: make_fx must see no hidden tensors.
    The objective weighs `targets` (default: all of objective_targets(layers)); f takes the
    weights and energies of all, and ignores the others'."""
    keys = list(state_of(model))
    conv = [layer.name for layer in layers if layer.kind == "conv"]
    inputs = objective_targets(layers)
    weighed = set(inputs if targets is None else targets)

    def f(state: list[torch.Tensor], image: torch.Tensor, *weights_and_energy: torch.Tensor):
        weights = dict(zip(inputs, weights_and_energy[:len(inputs)]))
        energy = dict(zip(inputs, weights_and_energy[len(inputs):]))
        image = image.detach().requires_grad_(True)
        with torch.enable_grad():
            acts = capture(model, layers, dict(zip(keys, state)), image, preactivations=True)
            value = objective({name: act for name, act in acts.items() if name in weighed},
                              weights, energy)
            grads = torch.autograd.grad(value.sum(), [image] + [acts[name] for name in conv])
        return (value.detach(), *grads)

    return f


def _gradient_graph(model, layers, input_shape, dynamic_size: bool) -> onnx.ModelProto:
    """The graph at the training size, or the conv-only one for any size, built for speed (see
    the top of this module)."""
    n = 2
    state = [t.detach() for t in state_of(model).values()]
    channels = {layer.name: layer.channels for layer in layers}
    targets = objective_targets(layers)
    example = (torch.rand(n, *input_shape),
               *[torch.randn(n, channels[t.removesuffix(PREACTIVATION)]) for t in targets],
               *[torch.randn(n) for _ in targets])
    function = gradient_function(model, layers,
                                 objective=objective_by_terms if dynamic_size else objective)
    decompositions = _ANY_SIZE_DECOMPOSITIONS if dynamic_size else _BACKWARD_DECOMPOSITIONS
    traced = make_fx(function, tracing_mode="symbolic",
                     decomposition_table=decompositions)(state, *example)

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
    return _export(Traced().eval(), example, names["inputs"], names["outputs"], dynamic,
                   onnx_ops.TRANSLATIONS)


def _export(module, args, inputs, outputs, dynamic_shapes, translations=None) -> onnx.ModelProto:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(
            module, args, dynamo=True, opset_version=OPSET, input_names=inputs,
            output_names=outputs, dynamic_shapes=dynamic_shapes,
            custom_translation_table=translations, optimize=True, verbose=False)
    model = program.model_proto
    # The exporter's per-node debugging metadata names Python objects by address (torch's
    # sym_float, for one): without it, two exports of the same model are the same bytes.
    for node in [*model.graph.node, *(n for f in model.functions for n in f.node)]:
        del node.metadata_props[:]
    return model


def _join_on_size(full: onnx.ModelProto, conv_only: onnx.ModelProto, conv_targets: list[str],
                  size, names) -> onnx.ModelProto:
    """One graph: `full` when the image has the training size (the manifest says which layers
    need it), else `conv_only`, specialised by _by_first_weighed (the dense weights are ignored
    there)."""
    nodes = [
        oh.make_node("Shape", ["image"], ["image_size"], start=2),
        oh.make_node("Constant", [], ["training_size"],
                     value=oh.make_tensor("training_size", onnx.TensorProto.INT64, [2], list(size))),
        oh.make_node("Equal", ["image_size", "training_size"], ["size_matches"]),
        oh.make_node("Cast", ["size_matches"], ["size_matches_int"], to=onnx.TensorProto.INT64),
        oh.make_node("ReduceMin", ["size_matches_int"], ["all_match_int"], keepdims=0),
        oh.make_node("Cast", ["all_match_int"], ["at_training_size"], to=onnx.TensorProto.BOOL),
    ]
    any_size, initializers = _by_first_weighed(conv_only, conv_targets)
    nodes.append(oh.make_node("If", ["at_training_size"], names["outputs"],
                              then_branch=_branch(full.graph, "full/"), else_branch=any_size))
    # the image input and the outputs take the conv-only graph's dynamic height and width
    inputs = [conv_only.graph.input[0], *full.graph.input[1:]]
    graph = oh.make_graph(nodes, "gradient", inputs, list(conv_only.graph.output), initializers)
    opsets = {o.domain: o.version for o in list(full.opset_import) + list(conv_only.opset_import)}
    joined = oh.make_model(graph, opset_imports=[oh.make_opsetid(d, v) for d, v in opsets.items()],
                           producer_name="cnn-lens")
    joined.ir_version = full.ir_version
    onnx.checker.check_model(joined, full_check=True)
    return joined


def _by_first_weighed(conv_only: onnx.ModelProto, conv_targets: list[str]):
    """A branch graph that runs, for the first of `conv_targets` (in depth order) with a nonzero
    weight or energy, `conv_only` specialised as if every target before it had none, and as if
    no target had weights when none has (Deep Dream weighs energies alone); and the initializers
    its branches read from the outer graph (once for all of them)."""
    shared = onnx.compose.add_prefix_graph(conv_only.graph, "conv/", rename_inputs=False,
                                           rename_outputs=False)
    all_weights = {f"weights.{t}" for t in conv_targets}

    def specialised(zero: set[str], prefix: str) -> onnx.GraphProto:
        variant = onnx_passes.pool_by_phases(onnx_passes.mask_before_unpool(
            onnx_passes.without_redundant_relu_masks(onnx_passes.without(shared, zero))))
        del variant.initializer[:]
        return _branch(variant, prefix, rename_initializers=False, rename_value_infos=False)

    choice = None
    for i in reversed(range(len(conv_targets))):
        before = {f"{kind}.{t}" for kind in ("weights", "energy") for t in conv_targets[:i]}
        prefix = f"from_{conv_targets[i]}/"
        variant = _choose(conv_only, f"{prefix}weights/", _any_nonzero(sorted(all_weights),
                                                                        f"{prefix}weights/"),
                          specialised(before, prefix), specialised(before | all_weights,
                                                                   f"{prefix}energy_only/"))
        if choice is not None:
            # decided inside the any-size branch: a step at the training size never asks
            weighed = [f"{kind}.{conv_targets[i]}" for kind in ("weights", "energy")]
            variant = _choose(conv_only, f"{prefix}choice/",
                              _any_nonzero(weighed, f"{prefix}choice/"), variant, choice)
        choice = variant
    return choice, list(shared.initializer)


def _choose(conv_only: onnx.ModelProto, prefix: str, condition: list[onnx.NodeProto],
            then_branch: onnx.GraphProto, else_branch: onnx.GraphProto) -> onnx.GraphProto:
    """A branch graph with conv_only's outputs (prefixed) from `then_branch` where the last of
    the `condition` nodes gives true, else from `else_branch`."""
    outputs = []
    for output in conv_only.graph.output:
        outputs.append(onnx.ValueInfoProto())
        outputs[-1].CopyFrom(output)
        outputs[-1].name = f"{prefix}{output.name}"
    return oh.make_graph(
        condition + [oh.make_node("If", [condition[-1].output[0]], [o.name for o in outputs],
                                  then_branch=then_branch, else_branch=else_branch)],
        prefix.rstrip("/"), [], outputs)


def _branch(graph: onnx.GraphProto, prefix: str, **rename) -> onnx.GraphProto:
    """`graph` as a branch of an If: names prefixed, reading the outer graph's inputs by name."""
    graph = onnx.compose.add_prefix_graph(graph, prefix, rename_inputs=False, **rename)
    del graph.input[:]
    del graph.value_info[:]
    return graph


def _any_nonzero(inputs: list[str], prefix: str) -> list[onnx.NodeProto]:
    """Nodes computing whether any of `inputs` has a nonzero element (NaN counts as nonzero):
    the last node's output, a bool."""
    nodes = [oh.make_node("Constant", [], [f"{prefix}zero"],
                          value=oh.make_tensor("zero", onnx.TensorProto.FLOAT, [], [0.0]))]
    for name in inputs:
        at = f"{prefix}{name}"
        nodes += [oh.make_node("Equal", [name, f"{prefix}zero"], [f"{at}_is_zero"]),
                  oh.make_node("Not", [f"{at}_is_zero"], [f"{at}_nonzero"]),
                  oh.make_node("Cast", [f"{at}_nonzero"], [f"{at}_nonzero_float"],
                               to=onnx.TensorProto.FLOAT),
                  oh.make_node("ReduceMax", [f"{at}_nonzero_float"], [f"{at}_any"], keepdims=0)]
    return nodes + [
        oh.make_node("Max", [f"{prefix}{name}_any" for name in inputs], [f"{prefix}any"]),
        oh.make_node("Cast", [f"{prefix}any"], [f"{prefix}nonzero"], to=onnx.TensorProto.BOOL)]


def _conv_input_grad(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                     transposed, output_padding, groups, output_mask):
    """aten.convolution_backward has no ONNX translation; the input gradient of a convolution
    is a transposed convolution, padded where striding dropped rows and columns at the end.
    Gradients of weights and bias are never asked for."""
    grad = F.conv_transpose2d(grad_output, weight, None, stride, padding, 0, groups, dilation)
    if list(stride) != [1, 1]:   # with stride 1 the sizes match already, and a Pad is a copy
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


def _conv_input_grad_as_conv(grad_output, input, weight, bias_sizes, stride, padding, dilation,
                             transposed, output_padding, groups, output_mask):
    """The input gradient of a stride-1 convolution as a convolution with the flipped,
    transposed kernel, padded by (kernel - 1 - padding). onnxruntime runs it as one GEMM over
    cache-sized blocks of its im2col, where a transposed convolution writes and then scatters a
    column buffer of kernel x input size: 30.6 against 46.0 ms for conv2's 50 -> 25 channels at
    512x512, 29.0 against 41.4 for 32 -> 32 (1 thread). With few output channels the GEMM has
    too few rows to pay for the im2col: 21.4 against 9.0 ms for conv1's 25 -> 1, 16.5 against
    10.7 for 32 -> 8; there the transposed convolution stays."""
    kernel = weight.shape[2:]
    if (transposed or groups != 1 or list(stride) != [1, 1] or list(dilation) != [1, 1]
            or weight.shape[1] < 16 or any(p > k - 1 for p, k in zip(padding, kernel))):
        return _conv_input_grad(grad_output, input, weight, bias_sizes, stride, padding,
                                dilation, transposed, output_padding, groups, output_mask)
    grad = F.conv2d(grad_output, weight.flip(2, 3).transpose(0, 1), None, 1,
                    [k - 1 - p for p, k in zip(padding, kernel)])
    return grad, None, None


def _max_pool(x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    windows = onnx_ops.pool_windows(kernel_size, stride, padding, dilation, ceil_mode)
    if windows is None:
        return NotImplemented
    return onnx_ops.max_pool2d(x, *windows)


def _max_pool_input_grad(grad_output, x, kernel_size, stride, padding, dilation, ceil_mode,
                         indices):
    windows = onnx_ops.pool_windows(kernel_size, stride, padding, dilation, ceil_mode)
    if windows is None:   # the indices are torch's: _max_pool left this pooling to aten
        return _BACKWARD_DECOMPOSITIONS[torch.ops.aten.max_pool2d_with_indices_backward.default](
            grad_output, x, kernel_size, stride, padding, dilation, ceil_mode, indices)
    return onnx_ops.max_unpool2d(grad_output, indices, x, *windows)


_BACKWARD_DECOMPOSITIONS = get_decompositions([
    torch.ops.aten.max_pool2d_with_indices_backward,
    torch.ops.aten.native_batch_norm_backward,
    torch.ops.aten._native_batch_norm_legit_no_training,
])
_BACKWARD_DECOMPOSITIONS[torch.ops.aten.avg_pool2d_backward.default] = _avg_pool_input_grad
_BACKWARD_DECOMPOSITIONS[torch.ops.aten.threshold_backward.default] = _relu_input_grad
_BACKWARD_DECOMPOSITIONS[torch.ops.aten.convolution_backward.default] = _conv_input_grad

_ANY_SIZE_DECOMPOSITIONS = dict(_BACKWARD_DECOMPOSITIONS)
_ANY_SIZE_DECOMPOSITIONS[torch.ops.aten.convolution_backward.default] = _conv_input_grad_as_conv
_ANY_SIZE_DECOMPOSITIONS[torch.ops.aten.max_pool2d_with_indices.default] = _max_pool
_ANY_SIZE_DECOMPOSITIONS[torch.ops.aten.max_pool2d_with_indices_backward.default] = _max_pool_input_grad
