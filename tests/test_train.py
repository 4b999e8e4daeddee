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
