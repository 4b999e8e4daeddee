"""Knowledge distillation in fine-tuning (TrainRecipe.distill): the loss, train()'s teacher, and
prune_and_finetune's teacher (the model as it entered, before pruning)."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from prune_ray.prune import Calibration, get_method, ratios_to_counts
from prune_ray.prune.iterative import Cadence, FineTune, prune_and_finetune
from prune_ray.spec import SpecError, SweepSpec, validate
from prune_ray.train import TrainRecipe, distillation_loss, train


def _batch(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(16, 10, generator=generator), torch.randint(0, 10, (16,), generator=generator)


def test_weight_zero_is_plain_cross_entropy_and_a_student_equal_to_its_teacher_adds_no_kl():
    logits, targets = _batch()
    plain = F.cross_entropy(logits, targets)
    assert distillation_loss(logits, torch.randn(16, 10), targets, 0.0, 4.0) == pytest.approx(float(plain))
    assert distillation_loss(logits, logits, targets, 1.0, 4.0) == pytest.approx(0.0, abs=1e-6)
    assert distillation_loss(logits, logits, targets, 0.5, 4.0) == pytest.approx(0.5 * float(plain), rel=1e-6)


def test_the_kl_term_is_scaled_by_t_squared_and_pulls_the_student_toward_the_teacher():
    logits, targets = _batch()
    teacher = torch.randn(16, 10, generator=torch.Generator().manual_seed(1))
    soft = F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(teacher / 2, 1), reduction="batchmean")
    assert distillation_loss(logits, teacher, targets, 1.0, 2.0) == pytest.approx(4 * float(soft), rel=1e-5)
    assert distillation_loss(logits, teacher, targets, 0.5, 4.0) != pytest.approx(float(F.cross_entropy(logits, targets)))
    student = logits.clone().requires_grad_(True)
    distillation_loss(student, teacher, targets, 1.0, 4.0).backward()
    moved = student - 0.5 * student.grad  # one gradient step lowers the KL to the teacher
    assert distillation_loss(moved, teacher, targets, 1.0, 4.0) < distillation_loss(logits, teacher, targets, 1.0, 4.0)


def test_train_with_a_teacher_differs_from_train_without_and_leaves_the_teacher_alone(cnn, digits):
    recipe = TrainRecipe(epochs=1, distill=0.9, distill_temperature=4.0)
    teacher = copy.deepcopy(cnn).requires_grad_(False)
    frozen = copy.deepcopy(teacher.state_dict())
    plain, taught = copy.deepcopy(cnn), copy.deepcopy(cnn)
    plain_loss = train(plain, digits, recipe, seed=0)[0].train_loss  # no teacher: distill unused
    crossentropy = train(copy.deepcopy(cnn), digits, dataclasses.replace(recipe, distill=0.0), seed=0)[0].train_loss
    taught_loss = train(taught, digits, recipe, seed=0, teacher=teacher)[0].train_loss
    assert plain_loss == pytest.approx(crossentropy)
    assert taught_loss != pytest.approx(plain_loss)
    assert all(torch.equal(frozen[k], v) for k, v in teacher.state_dict().items())


def test_prune_and_finetune_distils_from_the_model_before_pruning(cnn, digits, monkeypatch):
    from prune_ray.prune import iterative

    teachers = []  # what each cycle's train() was given as its teacher: a snapshot of its weights

    def recording(model, data, recipe, teacher=None, **kwargs):
        teachers.append(None if teacher is None else copy.deepcopy(teacher.state_dict()))
        return train(model, data, recipe, teacher=teacher, **kwargs)

    monkeypatch.setattr(iterative, "train", recording)
    method = get_method("magnitude")
    final = ratios_to_counts(0.6, method.layers(cnn, digits.example_inputs(1)), method.max_ratio)
    dense = copy.deepcopy(cnn.state_dict())
    losses = {}
    for distill in (0.0, 0.7):
        history = []
        tuning = FineTune(digits, TrainRecipe(epochs=1, distill=distill), seed=0, on_epoch=history.append)
        outcome = prune_and_finetune(copy.deepcopy(cnn), method, final, Cadence("cycles", 2), tuning,
                                     Calibration(digits.example_inputs(1)))
        assert {n: int((m.weight == 0).sum()) for n, m in outcome.model.named_modules() if n in final} == final
        losses[distill] = [stats.train_loss for stats in history]
    assert len(losses[0.7]) == 2 and losses[0.7] != pytest.approx(losses[0.0])
    assert teachers[:2] == [None, None]  # distill 0: no teacher
    for taught in teachers[2:]:  # both cycles of distill 0.7: the dense model as it entered, unpruned
        assert taught.keys() == dense.keys() and all(torch.equal(taught[k], dense[k]) for k in dense)
    assert len(teachers) == 4


@pytest.mark.parametrize("section, values, message", [
    ("finetune", {"distill": 1.5}, "finetune.distill: 1.5 must be in"),
    ("finetune", {"distill_temperature": 0.0}, "finetune.distill_temperature: 0.0 must be > 0"),
])
def test_bad_distillation_options_are_rejected(section, values, message):
    spec = SweepSpec()
    spec = dataclasses.replace(spec, finetune=dataclasses.replace(spec.finetune, **values))
    with pytest.raises(SpecError, match=message):
        validate(spec)


def test_a_baseline_cannot_distil():
    spec = SweepSpec()
    train_recipe = dataclasses.replace(spec.baseline.train, distill=0.5)
    spec = dataclasses.replace(spec, baseline=dataclasses.replace(spec.baseline, train=train_recipe))
    with pytest.raises(SpecError, match="baseline.train.distill: 0.5: a baseline has no teacher; allowed: 0"):
        validate(spec)


@pytest.mark.slow  # about 20 s: the compile
def test_distillation_runs_in_the_gpus_settings_compiled_on_the_cpu(cnn, digits, monkeypatch):
    """bf16 autocast, channels_last and the compiled step (aot_eager here; inductor on a GPU) with a
    teacher: the teacher's forward sits inside the compiled loss, under no_grad."""
    from prune_ray.train import GPU_SETTINGS_ON_CPU

    monkeypatch.setenv(GPU_SETTINGS_ON_CPU, "1")
    monkeypatch.setattr("prune_ray.train.COMPILE_BACKEND", "aot_eager")
    teacher = copy.deepcopy(cnn).requires_grad_(False)
    recipe = TrainRecipe(epochs=1, compile="on", distill=0.5)
    history = train(copy.deepcopy(cnn), digits, recipe, seed=0, teacher=teacher)
    assert history[0].train_loss > 0 and history[0].top1 > 0.5
    assert all(p.grad is None for p in teacher.parameters())
