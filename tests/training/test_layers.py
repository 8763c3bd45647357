"""Explainable layers found by hooks, against the lecture's architecture worked out by hand."""
import pytest
import torch
from torch import nn

from training import architectures
from training.layers import capture, find_layers, smallest_side, state_of


def test_lecture_layers_match_the_lecture():
    layers = find_layers(architectures.lecture().eval(), (1, 28, 28))
    # conv 3x3 -> 26; pool -> 13; conv -> 11; pool -> 5; 50*5*5 = 1250 -> 100 -> 10
    assert [(l.name, l.kind, l.channels, l.shape) for l in layers] == [
        ("conv1", "conv", 25, [25, 26, 26]),
        ("conv2", "conv", 50, [50, 11, 11]),
        ("dense1", "dense", 100, [100]),
        ("logits", "output", 10, [10]),
    ]
    # receptive field: 3 after conv1; the pool makes it 4 with stride 2; conv2 adds 2*2 -> 8
    assert [(l.receptive_field, l.stride) for l in layers[:2]] == [([3, 3], 1), ([8, 8], 2)]
    assert layers[2].receptive_field == [28, 28]


def test_lecture_parameter_count_matches_keras_summary():
    # The lecture's Keras summary: 250 + 11,300 + 125,100 + 1,010 parameters
    assert sum(p.numel() for p in architectures.lecture().parameters()) == 137_660


def test_batchnorm_sits_between_conv_and_activation():
    layers = find_layers(architectures.small_vgg().eval(), (3, 32, 32))
    assert [l.name for l in layers] == [f"conv{i}" for i in range(1, 7)] + ["dense1", "logits"]
    assert layers[0].module.endswith("2")   # conv, batchnorm, relu: the relu's output


def test_custom_module_by_import_path():
    model = architectures.build("tests.training.custom_net:TinyNet", 1, 10).eval()
    layers = find_layers(model, (1, 28, 28))
    assert [(l.name, l.module) for l in layers] == [("conv1", "act1"), ("conv2", "act2"),
                                                  ("logits", "head")]
    # 5x5 conv: 5; avg pool 2: 6, stride 2; 3x3 conv stride 2: 6 + 2*2 = 10, stride 4
    assert (layers[1].receptive_field, layers[1].stride) == ([10, 10], 4)


def test_capture_returns_what_hooks_see_and_stops_early():
    model = architectures.lecture().eval()
    layers = find_layers(model, (1, 28, 28))
    image = torch.rand(2, 1, 28, 28)
    acts = capture(model, layers[:1], state_of(model), image)
    assert torch.equal(acts["conv1"], torch.relu(model[0](image)))
    # a conv-only capture never reaches the dense layers, so any image size works
    assert capture(model, layers[:2], state_of(model), torch.rand(1, 1, 64, 40))["conv2"].shape == (1, 50, 29, 17)


def test_unknown_architecture_and_non_module_factories_are_refused():
    with pytest.raises(ValueError, match="unknown architecture"):
        architectures.build("resnet", 1, 10)
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        architectures.build("builtins:dict", 1, 10)


def test_model_whose_output_is_not_a_linear_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10),
                          nn.LogSoftmax(1)).eval()
    with pytest.raises(ValueError, match="last module, an nn.Linear"):
        find_layers(model, (1, 28, 28))


def test_smallest_side_where_conv_layers_still_see_something():
    lecture = architectures.lecture().eval()
    # 8: conv 3x3 -> 6, pool -> 3, conv -> 1; at 7: 5 -> 2 -> nothing
    assert smallest_side(lecture, find_layers(lecture, (1, 28, 28)), 1, 4096) == 8
    tiny = architectures.build("tests.training.custom_net:TinyNet", 1, 10).eval()
    # 6: padded 5x5 conv -> 6, avg pool -> 3, 3x3 conv stride 2 -> 1
    assert smallest_side(tiny, find_layers(tiny, (1, 28, 28)), 1, 4096) == 6
