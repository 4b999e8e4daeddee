import copy

import pytest
import torch
import torch.nn.utils.prune as torch_prune

from prune_ray.measure import count_params, measure
from prune_ray.prune import apply_pruning, get_method, list_methods
from prune_ray.prune.unstructured import make_masks_permanent
from prune_ray.train import TrainRecipe, evaluate, train

METHODS = list_methods()


def test_registry_has_the_required_methods():
    assert {"magnitude", "l1_filter"} <= set(METHODS)
    with pytest.raises(ValueError, match="unknown pruning method 'snip'; allowed: .*magnitude"):
        get_method("snip")


@pytest.mark.parametrize("method", METHODS)
def test_ratio_zero_leaves_outputs_unchanged(method, cnn, digits):
    x = digits.val_x[:16]
    cnn.eval()
    before = cnn(x)
    pruned = apply_pruning(cnn, method, 0.0, x[:1]).eval()
    assert torch.equal(pruned(x), before)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_achieved_pruning_matches_the_ratio(method, ratio, cnn, digits):
    spec = get_method(method)
    x = digits.example_inputs(1)
    layers = spec.layers(cnn, x)
    base = measure(cnn, x, latency=False)
    pruned = apply_pruning(cnn, method, ratio, x)
    after = measure(make_masks_permanent(pruned), x, latency=False)
    modules = dict(pruned.named_modules())
    for layer in layers:
        weight = modules[layer.name].weight
        if spec.granularity == "unstructured":
            removed = weight.numel() - int(torch.count_nonzero(weight))
        else:
            removed = layer.units - weight.shape[0]  # output channels physically gone
        assert removed == round(ratio * layer.units), layer.name
    if spec.granularity == "structured":
        assert after.params < base.params and after.macs < base.macs
    else:
        assert after.params == base.params and after.macs == base.macs
        assert after.params_nonzero < base.params_nonzero
        assert after.bytes_sparse < base.bytes_sparse or ratio <= 0.5


@pytest.mark.parametrize("method", METHODS)
def test_pruned_model_trains_a_step_and_evaluates(method, cnn, digits):
    pruned = apply_pruning(cnn, method, 0.5, digits.example_inputs(1))
    history = train(pruned, digits, TrainRecipe(epochs=1, batch_size=256), seed=0)
    assert len(history) == 1 and history[0].train_loss > 0
    top1, top5 = evaluate(pruned, digits.val_x, digits.val_y)
    assert 0 <= top1 <= top5 <= 1


def test_unstructured_masks_stay_zero_through_finetuning(cnn, digits):
    pruned = apply_pruning(cnn, "magnitude", 0.6, digits.example_inputs(1))
    _, nonzero_before = count_params(pruned)
    train(pruned, digits, TrainRecipe(epochs=1), seed=0)
    _, nonzero_after = count_params(make_masks_permanent(pruned))
    assert nonzero_after <= nonzero_before


def test_magnitude_masks_equal_torch_prune(cnn, digits):
    reference = copy.deepcopy(cnn)
    pruned = apply_pruning(cnn, "magnitude", 0.4, digits.example_inputs(1))
    for (name, ours), (_, theirs) in zip(pruned.named_modules(), reference.named_modules()):
        if hasattr(ours, "weight_mask"):
            torch_prune.l1_unstructured(theirs, "weight", amount=0.4)
            assert torch.equal(ours.weight_mask, theirs.weight_mask), name


def test_unknown_layer_and_bad_ratio_are_errors(cnn, digits):
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        apply_pruning(cnn, "magnitude", {"conv9": 0.5}, digits.example_inputs(1))
    with pytest.raises(ValueError, match=r"ratio 1.5 for layer 'conv1' is outside \[0, 0.99\]"):
        apply_pruning(cnn, "magnitude", {"conv1": 1.5}, digits.example_inputs(1))
