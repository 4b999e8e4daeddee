"""What a trial starts from: the spec's data on the trial's device (read once per process), the
baseline (a checkpoint file or the store's), `preflight_checks` (the spec checked against the built
model before Ray or Optuna is imported) and the search space of each method."""

from __future__ import annotations

import functools

import torch

from .baseline import (
    Baseline,
    BaselineConfig,
    BaselineStore,
    CorruptCheckpointError,
    build_model,
    load_checkpoint_file,
)
from .data import BadDatasetError, Dataset, load_dataset
from .data.loaders import resolve_loader
from .measure import resource
from .models import ModelSourceError
from .plan import Dimension, Subject, get_schedule
from .prune import Calibration, UnsupportedModelError, check_prunable, get_method
from .results.storage import Storage, open_storage
from .spec import SpecError, SweepSpec, resolved_metric
from .train import evaluate

CALIBRATION_EXAMPLES = 256  # labelled training examples shown to gradient-based importance (taylor)


def baseline_config(spec: SweepSpec, seed: int) -> BaselineConfig:
    return BaselineConfig(spec.model, spec.dataset, spec.data, spec.baseline.train, seed, dict(spec.model_args))


def obtain_baseline(spec: SweepSpec, data: Dataset, seed: int, storage: Storage | None = None) -> Baseline:
    """The spec's checkpoint file if it names one, else the store's baseline (trained if absent) in
    `storage` (the sweep's; None: opened from spec.storage)."""
    config = baseline_config(spec, seed)
    if spec.baseline.checkpoint:
        model = load_checkpoint_file(build_model(config, data), spec.baseline.checkpoint).to(data.device)
        top1, top5 = evaluate(model, data.val_x, data.val_y)
        test_top1, _ = evaluate(model, data.test_x, data.test_y)
        return Baseline(model, f"file:{spec.baseline.checkpoint}", top1, top5, test_top1, 0.0, trained_now=False)
    store = BaselineStore(storage or open_storage(spec.storage))
    return store.get_or_train(config, data, retrain_corrupt=spec.baseline.retrain_corrupt)


def preflight_checks(spec: SweepSpec) -> dict[str, Subject]:
    """The checks a spec passes before Ray or Optuna is imported: build the spec's model on its data
    (and load baseline.checkpoint into it, if named), and check every method and the schedule
    against it (SpecError, one line). Returns per method the subject it probed: the untrained model,
    with its counted baseline resource (None under a latency budget: the table is the trial's)."""
    try:
        data = load_dataset(spec.dataset, spec.data)
    except BadDatasetError as error:  # an unreadable image, say: one line naming it
        raise SpecError(str(error)) from None
    schedule = get_schedule(spec.schedule)
    try:
        probe = build_model(baseline_config(spec, spec.seeds[0]), data)
        if spec.baseline.checkpoint:  # missing, unreadable or not this model's: one line naming the file
            load_checkpoint_file(probe, spec.baseline.checkpoint)
        example = data.example_inputs(1)
        methods = {name: get_method(name) for name in spec.methods}
        metrics = {name: resolved_metric(spec, name) for name in spec.methods}
        subjects = {name: Subject(probe, m, m.layers(probe, example), example, metrics[name],
                                  None if metrics[name] == "latency" else resource(probe, example, metrics[name]),
                                  spec.prune.round_to) for name, m in methods.items()}
        for name, subject in subjects.items():  # one layer it cannot prune: one line naming both
            check_prunable(methods[name], probe, subject.layers, example)
    except (UnsupportedModelError, CorruptCheckpointError, ModelSourceError) as error:
        raise SpecError(str(error)) from None
    except (ValueError, RuntimeError) as error:
        raise SpecError(f"model {spec.model!r} cannot run on dataset {spec.dataset!r}: {error}") from None
    for subject in subjects.values():
        try:
            schedule.check(spec, subject)
        except ValueError as error:
            raise SpecError(str(error)) from None
    return subjects


def search_spaces(spec: SweepSpec, subjects: dict[str, Subject]) -> dict[str, dict[str, Dimension]] | None:
    """Per method, the values a search proposes per trial on its subject (from preflight_checks);
    None when the spec's schedule is not searched."""
    schedule = get_schedule(spec.schedule)
    if not schedule.has_search_space:
        return None
    return {name: schedule.space(subject, spec.search) for name, subject in subjects.items()}


def trial_device(spec: SweepSpec) -> torch.device:
    return torch.device("cuda") if spec.resources.gpu > 0 and torch.cuda.is_available() else torch.device("cpu")


@functools.lru_cache(maxsize=2)
def _dataset_on(name: str, options, device: str, gpu_share: float) -> Dataset:
    data = load_dataset(name, options)
    loader = resolve_loader(options.loader, data, torch.device(device), gpu_share)
    return data.placed(torch.device(device), loader, options.workers)


def trial_data(spec: SweepSpec) -> Dataset:
    """The spec's dataset on the trial's device, read once per process: Ray reuses its workers for
    trials and netadapt's candidate tasks, and nothing writes into these tensors."""
    return _dataset_on(spec.dataset, spec.data, str(trial_device(spec)), spec.resources.gpu)


def calibration_of(data: Dataset) -> Calibration:
    return Calibration(*data.train_head(CALIBRATION_EXAMPLES))
