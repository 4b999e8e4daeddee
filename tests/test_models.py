import pytest
import torch

from prune_ray.measure import count_macs, count_params
from prune_ray.models import classifier_layer, create_model, list_models

# (params, MACs) published for CIFAR-10 (32x32x3 input, 10 classes); MACs count conv + linear only.
PUBLISHED = {
    "resnet20": (0.27e6, 40.6e6),  # He et al. 2016
    "resnet56": (0.85e6, 125.5e6),  # He et al. 2016; Li et al. 2017
    "vgg16": (15.0e6, 313e6),  # Li et al. 2017, CIFAR VGG-16
    "resnet18": (11.2e6, 556e6),  # CIFAR ResNet-18 (3x3 stem)
    "lenet5": (61_706, None),  # LeCun et al. 1998 on 28x28 MNIST
}
# exact parameter counts (weights and biases) on 28x28 MNIST: the networks of Han et al. 2015 and Deep Compression
EXACT_MNIST_PARAMS = {
    "lenet_300_100": 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10,  # 266,610
    "lenet5_caffe": 20 * 25 + 20 + 50 * 20 * 25 + 50 + 800 * 500 + 500 + 500 * 10 + 10,  # 431,080
}
MODELS = list_models()


def natural_input(name: str) -> tuple[int, int]:
    """(channels, size) of the dataset the model is meant for."""
    if name in ("lenet5", "lenet_300_100", "lenet5_caffe"):
        return 1, 28
    if name == "digits_cnn":
        return 1, 8
    return 3, 32


def test_the_literature_zoo_is_registered():
    expected = {"lenet5", "lenet_300_100", "lenet5_caffe", "alexnet", "densenet", "mobilenetv2", "digits_cnn", "resnet18", "resnet34"}
    expected |= {f"resnet{d}" for d in (20, 32, 44, 56, 110)}
    expected |= {f"vgg{d}{bn}" for d in (11, 13, 16, 19) for bn in ("", "_bn")}
    assert expected <= set(MODELS)


@pytest.mark.parametrize("name", MODELS)
def test_forward_and_backward_on_cpu(name):
    channels, size = natural_input(name)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size)
    logits = model(torch.randn(2, channels, size, size))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert classifier_layer(model).out_features == 10


@pytest.mark.parametrize("name", MODELS)
def test_every_model_runs_on_digits_for_smoke_runs(name):
    model = create_model(name, num_classes=10, in_channels=1, image_size=8)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_counts_match_the_literature_within_2_percent(name):
    channels, size = natural_input(name)
    model = create_model(name, num_classes=10, in_channels=channels, image_size=size)
    params, _ = count_params(model)
    macs = count_macs(model, torch.randn(1, channels, size, size))
    published_params, published_macs = PUBLISHED[name]
    assert abs(params / published_params - 1) <= 0.02, params
    if published_macs:
        assert abs(macs / published_macs - 1) <= 0.02, macs


@pytest.mark.parametrize("name", sorted(EXACT_MNIST_PARAMS))
def test_paper_networks_have_the_papers_parameter_counts(name):
    assert EXACT_MNIST_PARAMS == {"lenet_300_100": 266_610, "lenet5_caffe": 431_080}  # the papers' figures
    model = create_model(name, num_classes=10, in_channels=1, image_size=28)
    assert count_params(model)[0] == sum(p.numel() for p in model.parameters()) == EXACT_MNIST_PARAMS[name]
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    shapes = [tuple(m.weight.shape) for m in layers]
    assert shapes == {"lenet_300_100": [(300, 784), (100, 300), (10, 100)],
                      "lenet5_caffe": [(20, 1, 5, 5), (50, 20, 5, 5), (500, 800), (10, 500)]}[name]


def test_class_count_follows_the_dataset():
    assert create_model("resnet20", num_classes=100, in_channels=3, image_size=32)(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_unknown_model_lists_the_registry():
    with pytest.raises(ValueError, match="unknown model 'resnet9'; allowed: .*resnet20"):
        create_model("resnet9")
