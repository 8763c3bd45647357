"""Find the layers worth explaining in any feed-forward nn.Module, and read their activations.

An explainable layer is a point in the forward pass whose output we show and optimise:
- `conv`: the output of the activation function after a Conv2d (after its BatchNorm, if any),
- `dense`: the output of the activation function after a hidden Linear,
- `output`: the module that produces the model's output (the logits).
They are found by running the model once with hooks on its leaf modules and reading the order
in which they fire, so a user's own module needs no annotations as long as its activations are
`nn.Module`s (nn.ReLU rather than F.relu) and the logits come out of a module.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.func import functional_call

from lens.optvis.objectives import preactivation

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ReLU6)
# Modules allowed between a Conv2d/Linear and its activation function.
PASS_THROUGH = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Identity)


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str                   # conv | dense | output
    module: str                 # dotted path of the module whose output is the activation
    channels: int               # channels (conv) or units (dense, output)
    kernel: list[int] | None    # kernel of the conv that feeds it
    stride: int | None          # distance in input pixels between neighbouring activations
    receptive_field: list[int]  # input pixels (h, w) that one activation sees
    shape: list[int]            # activation shape without the batch, at the model's input size

    def to_json(self) -> dict:
        return asdict(self)


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name: what functional_call and the traced graphs take."""
    return dict(model.named_parameters()) | dict(model.named_buffers())


class _Stop(Exception):
    """Raised from a hook once every wanted activation is captured: layers past the last one
    are never run, so a conv-only trace does not touch the size-bound dense layers."""


def capture(model: nn.Module, layers: list[Layer], state: dict[str, torch.Tensor],
            image: torch.Tensor, preactivations: bool = False) -> dict[str, torch.Tensor]:
    """Run `model` with the given parameters and buffers; return each layer's activation and,
    with `preactivations`, each conv and dense layer's input to its activation function under
    `preactivation(name)` (the logits have no activation function)."""
    modules = dict(model.named_modules())
    acts: dict[str, torch.Tensor] = {}
    done: set[str] = set()

    def hook(layer: Layer):
        def record(module, inputs, output):
            acts[layer.name] = output
            if preactivations and layer.kind != "output":
                # an in-place activation has overwritten its input by now: see record_input
                acts.setdefault(preactivation(layer.name), inputs[0])
            done.add(layer.name)
            if len(done) == len(layers):
                raise _Stop
        return record

    def record_input(layer: Layer):
        def record(module, inputs):
            if getattr(module, "inplace", False):
                acts[preactivation(layer.name)] = inputs[0].clone()
        return record

    handles = [modules[layer.module].register_forward_hook(hook(layer)) for layer in layers]
    if preactivations:
        handles += [modules[layer.module].register_forward_pre_hook(record_input(layer))
                    for layer in layers if layer.kind != "output"]
    try:
        functional_call(model, state, (image,))
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [layer.name for layer in layers if layer.name not in done]
    if missing:
        raise RuntimeError(f"layers {missing} did not run in the forward pass")
    return acts


def find_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[Layer]:
    """Discover the explainable layers of `model` (in eval mode) for inputs of `input_shape`."""
    calls: list[tuple[str, nn.Module, torch.Tensor]] = []
    names = {module: name for name, module in model.named_modules()}
    handles = [module.register_forward_hook(lambda m, _i, out: calls.append((names[m], m, out)))
               for module in model.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            logits = model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()

    layers: list[Layer] = []
    rf, jump = 1, 1              # receptive field and stride of the current point, in input pixels
    pending: tuple[str, nn.Module] | None = None   # a Conv2d/Linear waiting for its activation
    for name, module, out in calls:
        if isinstance(module, nn.Conv2d):
            k, s, d = module.kernel_size[0], module.stride[0], module.dilation[0]
            rf, jump = rf + (k - 1) * d * jump, jump * s
            pending = (name, module)
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
            rf, jump = rf + (k - 1) * jump, jump * s
        elif isinstance(module, nn.Linear):
            pending = (name, module)
        elif isinstance(module, ACTIVATIONS) and pending is not None:
            feeder = pending[1]
            conv = isinstance(feeder, nn.Conv2d)
            kind = "conv" if conv else "dense"
            index = sum(layer.kind == kind for layer in layers) + 1
            layers.append(Layer(
                name=f"{kind}{index}", kind=kind, module=name,
                channels=feeder.out_channels if conv else feeder.out_features,
                kernel=list(feeder.kernel_size) if conv else None,
                stride=jump if conv else None,
                receptive_field=[rf, rf] if conv else list(input_shape[1:]),
                shape=list(out.shape[1:])))
            pending = None
        elif not isinstance(module, PASS_THROUGH):
            pending = None

    last_name, last_module, last_out = calls[-1]
    if last_out is not logits or not isinstance(last_module, nn.Linear):
        raise ValueError("the model's output must be the output of its last module, an nn.Linear")
    layers.append(Layer(name="logits", kind="output", module=last_name,
                        channels=last_module.out_features, kernel=None, stride=None,
                        receptive_field=list(input_shape[1:]), shape=list(logits.shape[1:])))
    if not any(layer.kind == "conv" for layer in layers):
        raise ValueError("no Conv2d followed by an activation module was found")
    return layers


def smallest_side(model: nn.Module, layers: list[Layer], channels: int, largest: int) -> int:
    """The smallest square image on which every conv layer still has an activation: below it,
    objectives on conv layers have nothing to measure (and the graphs fail)."""
    conv = [layer for layer in layers if layer.kind == "conv"]
    state = state_of(model)
    for side in range(1, largest + 1):
        try:
            with torch.no_grad():
                capture(model, conv, state, torch.zeros(1, channels, side, side))
            return side
        except RuntimeError:   # too small for a kernel or a pooling window
            continue
    raise ValueError(f"the conv layers need images larger than {largest}x{largest}")


def _pair(value) -> int:
    """Square kernels and strides only: the receptive field is reported as one number."""
    return value if isinstance(value, int) else value[0]
