import copy

import pytest
import torch
import torch.nn.utils.prune as torch_prune

from prune_ray.measure import count_params, measure
from prune_ray.prune import Calibration, apply_pruning, get_method, list_methods
from prune_ray.prune.unstructured import make_masks_permanent, mask_smallest
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
    pruned = apply_pruning(cnn, method, 0.0, x, digits.val_y[:16]).eval()
    assert torch.equal(pruned(x), before)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_achieved_pruning_matches_the_ratio(method, ratio, cnn, digits):
    spec = get_method(method)
    x = digits.example_inputs(1)
    layers = spec.layers(cnn, x)
    base = measure(cnn, x, latency=False)
    original = dict(copy.deepcopy(cnn).named_modules())
    pruned = apply_pruning(cnn, method, ratio, digits.train_x[:64], digits.train_y[:64])
    after = measure(make_masks_permanent(pruned), x, latency=False)
    for layer in layers:
        if spec.granularity == "lowrank":  # ranks are whole numbers: at least the ratio, a little more
            kept = sum(p.numel() for p in pruned.get_submodule(layer.name).parameters())
            removed = 1 - kept / sum(p.numel() for p in original[layer.name].parameters())
            assert ratio <= removed < ratio + 0.15, (layer.name, removed)
        else:
            assert units_removed(pruned, spec.granularity, layer) == round(ratio * layer.units), layer.name
    if spec.granularity != "unstructured":
        assert after.params < base.params and after.macs < base.macs
    else:
        assert after.params == base.params and after.macs == base.macs
        assert after.params_nonzero < base.params_nonzero
        assert after.bytes_sparse < base.bytes_sparse or ratio <= 0.5


def units_removed(model, granularity: str, layer) -> int:
    """Measured on the pruned model: zero weights (of a layer or pseudo-layer) or channels gone."""
    kinds = {"global": (torch.nn.Conv2d, torch.nn.Linear), "conv": (torch.nn.Conv2d,), "fc": (torch.nn.Linear,)}
    if granularity == "unstructured" and layer.name in kinds:
        weights = [m.weight for m in model.modules() if isinstance(m, kinds[layer.name])]
    else:
        weights = [dict(model.named_modules())[layer.name].weight]
    if granularity == "unstructured":
        return sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)
    return layer.units - weights[0].shape[0]  # output channels physically gone


@pytest.mark.parametrize("method", [m for m in METHODS if get_method(m).shape_prune is not None])
def test_the_shape_stand_in_gives_the_methods_own_shapes(method, cnn, digits):
    """Budget projection and latency plans measure a plan on shape_prune's copy (structured: channels
    removed by position; low-rank: random factors), so its shapes must be the method's."""
    spec = get_method(method)
    example = digits.train_x[:64]
    counts = {layer.name: layer.units // 2 for layer in spec.layers(cnn, example)}
    calibration = Calibration(example, digits.train_y[:64])
    real = spec.prune(copy.deepcopy(cnn), counts, calibration)
    stand_in = spec.shape_prune(copy.deepcopy(cnn), counts, calibration)
    assert {n: tuple(p.shape) for n, p in stand_in.named_parameters()} == {n: tuple(p.shape) for n, p in real.named_parameters()}
    assert measure(stand_in, example, latency=False).macs == measure(real, example, latency=False).macs < measure(cnn, example, latency=False).macs


@pytest.mark.parametrize("method", METHODS)
def test_pruned_model_trains_a_step_and_evaluates(method, cnn, digits):
    pruned = apply_pruning(cnn, method, 0.5, digits.train_x[:64], digits.train_y[:64])
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


def test_global_masks_equal_torch_global_prune(cnn, digits):
    reference = copy.deepcopy(cnn)
    pruned = apply_pruning(cnn, "magnitude_global", 0.6, digits.example_inputs(1))
    layers = [m for m in reference.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    torch_prune.global_unstructured([(m, "weight") for m in layers], pruning_method=torch_prune.L1Unstructured, amount=0.6)
    ours = [m for m in pruned.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for mine, theirs in zip(ours, layers):
        assert torch.equal(mine.weight_mask, theirs.weight_mask)
    # one threshold: no kept weight is smaller than any masked one
    kept = torch.cat([m.weight_orig[m.weight_mask == 1].abs() for m in ours])
    masked = torch.cat([m.weight_orig[m.weight_mask == 0].abs() for m in ours])
    assert kept.min() >= masked.max()


def test_conv_fc_prunes_each_type_at_its_own_ratio_and_reports_thresholds(cnn, digits):
    from prune_ray.prune.unstructured import magnitude_thresholds

    pruned = apply_pruning(cnn, "conv_fc", {"conv": 0.5, "fc": 0.9}, digits.example_inputs(1))
    for kind, ratio in ((torch.nn.Conv2d, 0.5), (torch.nn.Linear, 0.9)):
        weights = [m.weight for m in pruned.modules() if isinstance(m, kind)]
        zeros = sum(w.numel() - int(torch.count_nonzero(w)) for w in weights)
        assert zeros == round(ratio * sum(w.numel() for w in weights))
    conv_threshold, fc_threshold = magnitude_thresholds(pruned)
    conv_kept = torch.cat([m.weight_orig[m.weight_mask == 1].abs() for m in pruned.modules() if isinstance(m, torch.nn.Conv2d)])
    assert 0 < conv_threshold <= conv_kept.min() and fc_threshold > 0


def test_taylor_needs_labels(cnn, digits):
    with pytest.raises(ValueError, match="taylor needs labelled calibration data"):
        apply_pruning(cnn, "taylor", 0.5, digits.train_x[:8])


def test_unknown_layer_and_bad_ratio_are_errors(cnn, digits):
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        apply_pruning(cnn, "magnitude", {"conv9": 0.5}, digits.example_inputs(1))
    with pytest.raises(ValueError, match=r"ratio 1.5 for layer 'conv1' is outside \[0, 0.99\]"):
        apply_pruning(cnn, "magnitude", {"conv1": 1.5}, digits.example_inputs(1))


def test_magnitude_masks_equal_torchs_l1_unstructured_over_two_cycles():
    """mask_smallest (one k-th-value selection) masks what torch.nn.utils.prune's L1Unstructured
    masks, on a fresh layer and on the next cycle over its remaining weights (distinct magnitudes:
    no ties), and with exact zeros in the layer masks exactly the asked count, zeros first."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32)
    ours, theirs = copy.deepcopy(layer), copy.deepcopy(layer)
    for amount in (1024, 512):  # of 2048 weights: half, then half of what is left
        mask_smallest([ours], amount)
        torch_prune.l1_unstructured(theirs, "weight", amount=amount)
        assert torch.equal(ours.weight_mask, theirs.weight_mask)
        assert torch.equal(ours.weight, theirs.weight)
    zeros = copy.deepcopy(layer)
    with torch.no_grad():
        zeros.weight[:4] = 0.0  # 256 exact zeros: ties at the threshold
    mask_smallest([zeros], 300)
    assert int((zeros.weight_mask == 0).sum()) == 300
    assert (zeros.weight_mask[:4] == 0).all()
    with pytest.raises(ValueError, match="only 1748 are unmasked"):
        mask_smallest([zeros], 1749)
