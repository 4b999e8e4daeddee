import dataclasses
import math

import pytest
import torch

from prune_ray.models import create_model
from prune_ray.train import DivergedError, TrainRecipe, evaluate, lr_factor, recalibrate_batchnorm, train


def test_step_schedule_divides_at_the_milestones():
    recipe = TrainRecipe(epochs=10, lr_schedule="step", step_milestones=(0.5, 0.75), step_gamma=0.1)
    factors = [lr_factor(recipe, step, 100, 0) for step in (0, 49, 50, 74, 75, 99)]
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_decays_to_zero_and_warmup_ramps_up():
    recipe = TrainRecipe(lr_schedule="cosine", warmup_epochs=1)
    assert lr_factor(recipe, 0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(recipe, 9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(recipe, 50, 100, 10) == pytest.approx(0.5)
    assert lr_factor(recipe, 100, 100, 0) == pytest.approx(0.0, abs=1e-12)


def test_training_learns_digits_and_reports_each_epoch(digits):
    torch.manual_seed(0)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8)
    before, _ = evaluate(model, digits.val_x, digits.val_y)
    seen = []
    history = train(model, digits, TrainRecipe(epochs=3), seed=0, on_epoch=seen.append)
    assert [s.epoch for s in seen] == [1, 2, 3] and seen == history
    assert history[-1].top1 > max(before, 0.8)
    assert all(0 <= s.top1 <= s.top5 <= 1 and s.seconds > 0 for s in history)
    assert all(math.isfinite(s.train_loss) for s in history)


def test_label_smoothing_and_augmentation_paths_run(digits):
    augmented = dataclasses.replace(digits, augment=True)
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8)
    history = train(model, augmented, TrainRecipe(epochs=1, label_smoothing=0.1, lr_schedule="step"), seed=0)
    assert history[0].train_loss > 0


def test_nan_loss_raises_diverged(digits):
    model = create_model("digits_cnn", num_classes=10, in_channels=1, image_size=8)
    with pytest.raises(DivergedError, match="diverged: loss nan"):
        train(model, digits, TrainRecipe(epochs=2, lr=1e12, momentum=0.0), seed=0)


def test_batchnorm_recalibration_re_estimates_the_running_statistics_on_the_given_examples():
    torch.manual_seed(0)
    conv, norm = torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)
    model = torch.nn.Sequential(conv, norm).eval()
    norm.running_mean.fill_(5.0)
    norm.running_var.fill_(9.0)  # stale statistics, as after pruning the layers before
    x = torch.randn(300, 1, 8, 8)
    assert recalibrate_batchnorm(model, x, batch_size=60)  # equal batches: the average of their means is the mean
    with torch.no_grad():
        features = conv(x)
    assert torch.allclose(norm.running_mean, features.mean(dim=(0, 2, 3)), atol=1e-4)
    assert torch.allclose(norm.running_var, features.var(dim=(0, 2, 3)), rtol=0.05)
    assert norm.momentum == 0.1 and not model.training  # settings restored
    assert not recalibrate_batchnorm(torch.nn.Sequential(torch.nn.Linear(2, 2)), torch.zeros(4, 2))


# ---------------------------------------------------------------------------------------------
# The fast step: compile, masks re-applied by one foreach multiply, bn_l1 through foreach ops


def _small(digits, examples: int):
    return dataclasses.replace(digits, train_x=digits.train_x[:examples], train_y=digits.train_y[:examples])


def _tiny() -> torch.nn.Module:
    """One conv, one BatchNorm, one linear layer on 8x8 digits: quick to trace and compile."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10))


def test_compile_auto_is_on_only_for_long_runs_on_a_cuda_device():
    from prune_ray.train import COMPILE_MIN_STEPS, compiles, steps_per_epoch

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert compiles(TrainRecipe(compile="auto"), cuda, COMPILE_MIN_STEPS + 1)
    assert not compiles(TrainRecipe(compile="auto"), cuda, COMPILE_MIN_STEPS)
    assert not compiles(TrainRecipe(compile="auto"), cpu, 10 * COMPILE_MIN_STEPS)
    assert compiles(TrainRecipe(compile="on"), cpu, 1) and not compiles(TrainRecipe(compile="off"), cuda, 10**6)
    with pytest.raises(ValueError, match="unknown compile 'yes'; allowed: auto, on, off"):
        compiles(TrainRecipe(compile="yes"), cpu, 1)
    # compiled: one batch shape, the partial last batch dropped (unless there is no full one)
    assert [steps_per_epoch(130, 64, c) for c in (False, True)] == [3, 2]
    assert steps_per_epoch(50, 64, True) == 1


def _eager_and_compiled(data, device: torch.device):
    """(histories, state dicts) of 5 steps of a tiny network, eager then compiled."""
    histories, states = [], []
    for mode in ("off", "on"):
        model = _tiny().to(device)
        histories.append(train(model, data, TrainRecipe(epochs=1, batch_size=64, compile=mode), seed=0))
        states.append(model.state_dict())
    return histories, states


def _assert_same_run(histories, states, tolerance: float) -> None:
    eager, compiled = histories
    assert compiled[0].train_loss == pytest.approx(eager[0].train_loss, rel=tolerance)
    assert compiled[0].top1 == pytest.approx(eager[0].top1, abs=0.02)
    for key, value in states[0].items():
        assert torch.allclose(states[1][key].float(), value.float(), atol=10 * tolerance), key


@pytest.mark.slow
def test_compiled_step_gives_the_eager_losses(digits, monkeypatch):
    """torch.compile of the step (Dynamo's graph capture and AOTAutograd's compiled backward, with
    the aot_eager backend: inductor's first compile takes minutes on this 2-core CPU, see
    docs/gpu.md): the same losses and weights as eager within float tolerance, 5 steps."""
    monkeypatch.setattr("prune_ray.train.COMPILE_BACKEND", "aot_eager")
    _assert_same_run(*_eager_and_compiled(_small(digits, 320), torch.device("cpu")), tolerance=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_step_on_the_gpu_gives_the_eager_losses():
    """The same with inductor on a GPU (bf16 autocast both ways: a looser tolerance); random
    digits-shaped data (a lent GPU machine has no scikit-learn)."""
    from prune_ray.data import Dataset

    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(330, 1, 8, 8, generator=generator), torch.randint(0, 10, (330,), generator=generator)
    data = Dataset("random", x[:320], y[:320], x[320:], y[320:], x[320:], y[320:], num_classes=10).to("cuda")
    _assert_same_run(*_eager_and_compiled(data, torch.device("cuda")), tolerance=1e-2)


def test_masked_weights_stay_exact_zeros_through_fine_tuning_with_the_foreach_path(cnn, digits):
    from prune_ray.prune import get_method
    from prune_ray.prune.unstructured import make_masks_permanent, plain_masked_weights

    method = get_method("magnitude")
    layers = method.layers(cnn, digits.example_inputs(1))
    model = method.prune(cnn, {layer.name: int(0.8 * layer.units) for layer in layers}, None)
    masked = {name: m for name, m in model.named_modules() if hasattr(m, "weight_mask")}
    names = [name for name, _ in model.named_parameters()]
    before = {name: (m.weight_orig.detach().clone(), m.weight_mask.clone()) for name, m in masked.items()}
    with plain_masked_weights(model) as reapply:  # inside: plain parameters, no hooks, masked entries zero
        for module in masked.values():
            assert not module._forward_pre_hooks and isinstance(module.weight, torch.nn.Parameter)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(digits.train_x[:64]), digits.train_y[:64]).backward()
            optimizer.step()
            reapply()
            for name, module in masked.items():
                assert bool((module.weight[before[name][1] == 0] == 0).all())
    # back as it was: parameter names, hooks, and the masked entries' values from pruning
    assert [name for name, _ in model.named_parameters()] == names
    history = train(model, _small(digits, 256), TrainRecipe(epochs=1, lr=0.05, batch_size=64), seed=0)
    assert len(history) == 1 and math.isfinite(history[0].train_loss)
    for name, module in masked.items():
        orig, mask = before[name]
        assert len(module._forward_pre_hooks) == 1
        assert torch.equal(module.weight_orig[mask == 0], orig[mask == 0])  # what magnitude_thresholds reads
        assert not torch.equal(module.weight_orig[mask == 1], orig[mask == 1])  # the kept weights trained
        assert int((module.weight[mask == 0] != 0).sum()) == 0
    make_masks_permanent(model)
    for name, module in masked.items():
        assert int(torch.count_nonzero(module.weight)) == int(before[name][1].sum())


def test_bn_l1_shrinks_the_batchnorm_scales(digits):
    scales = []
    for bn_l1 in (0.0, 1.0):
        model = _tiny()
        train(model, _small(digits, 256), TrainRecipe(epochs=1, batch_size=64, bn_l1=bn_l1), seed=0)
        norms = [m.weight.abs().sum() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        scales.append(float(sum(norms)))
    assert scales[1] < 0.9 * scales[0]
