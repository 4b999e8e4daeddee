"""Sweep specs: YAML -> typed, validated dataclasses.

Every key is checked against the dataclass fields (an unknown key is an error), every value against
the field's type, and every name against the registries. Errors are one line that names the bad
key or value and what is allowed. The built-in default sweep is `SweepSpec()`;
`sweeps/default.yaml` spells the same values out.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing

import yaml

from .plan import get_schedule, list_schedules
from .plan.proxy import PROXIES
from .prune import get_method, list_methods
from .prune.iterative import ITERATIVE
from .spec_inputs import check_inputs
from .spec_quantize import check_quantize, expand_bits
from .spec_types import (  # noqa: F401  (the spec's types, re-exported: `from prune_ray.spec import SweepSpec`)
    ArtifactOptions,
    BaselineOptions,
    MeasureOptions,
    NetAdaptOptions,
    PlanOptions,
    PruneOptions,
    Resources,
    SearchOptions,
    SweepSpec,
)
from .train import COMPILE, LR_SCHEDULES, TrainRecipe
from .typed import SpecError, from_mapping

# auto: macs for structured, params for unstructured; latency: measured on the trial's device
BUDGET_METRICS = ("auto", "macs", "params", "latency")
SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc", "nsga2")
MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "tpe", "random")  # can search accuracy against resource kept
EARLY_STOPPING = ("none", "asha")
# which ok trials' pruned models stay saved once the sweep ends: best = the trial each operating
# point picks (best validation top-1, per seed) and a frontier search's non-dominated trials
SAVE_POLICIES = ("best", "all", "none")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# (section, old key) -> its name now: spec files that use the old key still load, with a notice
RENAMED_KEYS = {("search", "keep_best"): "finalists"}
# old values of top-level keys: the schedule `conv_fc` shared its name with the method `conv_fc`
# schedule sensitivity (an accuracy scan of seed 0's baseline, a 1-point threshold per layer) was
# retired on 2026-12-06 in favour of knapsack, which reads the same one-layer-at-a-time sensitivity
# from each seed's own baseline and allocates it under the budget by optimisation
RENAMED_VALUES = {("schedule", "conv_fc"): "layer_type", ("schedule", "sensitivity"): "knapsack"}


# ---------------------------------------------------------------------------------------------
# YAML -> dataclasses


def spec_from_yaml(text: str, where: str) -> SweepSpec:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"spec file {where} is not valid YAML{at}: {problem}") from None
    spec = from_mapping(SweepSpec, expand_bits(renamed_keys({} if data is None else data, where)), where=where)
    validate(spec)
    return spec


def renamed_keys(data: object, where: str) -> object:
    """The spec's mapping with each old key of RENAMED_KEYS under its new name and each old value
    of RENAMED_VALUES replaced by its new one, and a one-line deprecation notice on stderr per old
    name (both keys given: SpecError)."""
    for (section, old), new in RENAMED_KEYS.items():
        inner = data.get(section) if isinstance(data, dict) else None
        if not isinstance(inner, dict) or old not in inner:
            continue
        if new in inner:
            raise SpecError(f"{where}: {section}.{old} is the old name of {section}.{new}; give only {section}.{new}")
        print(f"prune-ray: warning: {where}: {section}.{old} is deprecated; read as {section}.{new} (rename it)", file=sys.stderr)
        data = {**data, section: {new if key == old else key: value for key, value in inner.items()}}
    for (key, old), new in RENAMED_VALUES.items():
        if isinstance(data, dict) and data.get(key) == old:
            print(f"prune-ray: warning: {where}: {key}: {old} is deprecated; read as {key}: {new} (rename it)", file=sys.stderr)
            data = {**data, key: new}
    return data


def load_spec(path: str) -> SweepSpec:
    try:
        with open(path) as handle:
            text = handle.read()
    except FileNotFoundError:
        raise SpecError(f"spec file {path} does not exist") from None
    return spec_from_yaml(text, where=path)


def spec_to_yaml(spec: SweepSpec) -> str:
    """YAML that load_spec reads back to an equal spec (tuples become lists)."""

    def plain(value: object) -> object:
        if isinstance(value, (tuple, list)):
            return [plain(item) for item in value]
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        return value

    return yaml.safe_dump(plain(dataclasses.asdict(spec)), sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Validation of values (types are already right)


def _choice(value: str, allowed: typing.Sequence[str], where: str) -> None:
    if value not in allowed:
        raise SpecError(f"{where}: unknown value {value!r}; allowed: {', '.join(allowed)}")


def _positive(value: float, where: str, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise SpecError(f"{where}: {value!r} must be {'>= 0' if allow_zero else '> 0'}")


def resolved_metric(spec: SweepSpec, method: str) -> str:
    return get_method(method).default_metric if spec.budget_metric == "auto" else spec.budget_metric


def validate_recipe(recipe: TrainRecipe, where: str) -> None:
    _positive(recipe.epochs, f"{where}.epochs", allow_zero=True)
    _positive(recipe.batch_size, f"{where}.batch_size")
    _positive(recipe.lr, f"{where}.lr")
    _positive(recipe.weight_decay, f"{where}.weight_decay", allow_zero=True)
    _choice(recipe.lr_schedule, LR_SCHEDULES, f"{where}.lr_schedule")
    _choice(recipe.compile, COMPILE, f"{where}.compile")
    if not 0 < recipe.step_gamma <= 1:
        raise SpecError(f"{where}.step_gamma: {recipe.step_gamma!r} must be in (0, 1]")
    for milestone in recipe.step_milestones:
        if not 0 < milestone < 1:
            raise SpecError(f"{where}.step_milestones: {milestone!r} must be a fraction of training in (0, 1)")
    if not 0 <= recipe.warmup_epochs <= recipe.epochs:
        raise SpecError(f"{where}.warmup_epochs: {recipe.warmup_epochs!r} must be in [0, epochs]")
    if not 0 <= recipe.label_smoothing < 1:
        raise SpecError(f"{where}.label_smoothing: {recipe.label_smoothing!r} must be in [0, 1)")
    if not 0 <= recipe.distill <= 1:
        raise SpecError(f"{where}.distill: {recipe.distill!r} must be in [0, 1]")
    _positive(recipe.distill_temperature, f"{where}.distill_temperature")


def stage_epochs(spec: SweepSpec, stage: str) -> int:
    """Fine-tuning epochs per pruning step of a trial of `stage`: a screening trial's
    search.screen_epochs, every other trial's finetune.epochs."""
    return spec.search.screen_epochs if stage == "screen" else spec.finetune.epochs


def finetune_epochs(epochs: int, prune_steps: int, cycling: bool) -> int:
    """A trial's fine-tuning epochs (ASHA's last rung): its stage's epochs, once per pruning step
    when cycling (iterative 'cycles' fine-tunes after every step)."""
    return epochs * prune_steps if cycling else epochs


def _validate_search(spec: SweepSpec) -> None:
    search = spec.search
    _choice(search.sampler, SAMPLERS, "search.sampler")
    _choice(spec.schedule, list_schedules(), "schedule")
    schedule = get_schedule(spec.schedule)
    _choice(search.early_stopping, EARLY_STOPPING, "search.early_stopping")
    _choice(search.proxy, PROXIES, "search.proxy")
    if not 2 <= search.curve_points <= 64:
        raise SpecError(f"search.curve_points: {search.curve_points} must be in [2, 64] (kept fractions per sensitivity curve)")
    if len(search.keep_range) != 2 or not 0 < search.keep_range[0] < search.keep_range[1] <= 1:
        raise SpecError(f"search.keep_range: {list(search.keep_range)} must be [low, high] with 0 < low < high <= 1")
    if not spec.budgets and schedule.takes == "budget":
        if not schedule.has_search_space or search.sampler not in MULTI_OBJECTIVE_SAMPLERS:
            with_space = " or ".join(name for name in list_schedules() if get_schedule(name).has_search_space)
            raise SpecError(
                f"budgets: [] searches accuracy against resource kept, which needs schedule {with_space} "
                f"and search.sampler {' or '.join(MULTI_OBJECTIVE_SAMPLERS)}; got schedule {spec.schedule!r}, "
                f"sampler {search.sampler!r} (or give budgets, e.g. --budget 0.5)"
            )
        if search.two_stage or search.early_stopping != "none":
            raise SpecError("budgets: [] (a frontier search) works without search.screen_epochs, screen_bn and early_stopping")
    if search.early_stopping == "asha" and not 1 <= search.grace_epochs < stage_epochs(spec, search.first_stage):
        stage = "search.screen_epochs" if search.two_stage else "finetune.epochs"
        raise SpecError(
            f"search.grace_epochs: {search.grace_epochs!r} must be in [1, {stage}) for ASHA to have a rung to "
            f"stop at ({stage} is {stage_epochs(spec, search.first_stage)})"
        )


def _validate_schedule(spec: SweepSpec) -> None:
    options = spec.netadapt
    if not 0 < options.step_fraction < 1:
        raise SpecError(f"netadapt.step_fraction: {options.step_fraction!r} must be in (0, 1)")
    _positive(options.short_epochs, "netadapt.short_epochs", allow_zero=True)
    _positive(options.parallel, "netadapt.parallel")
    schedule = get_schedule(spec.schedule)
    if schedule.takes == "ratios" and not spec.fixed_ratios:
        raise SpecError(f"fixed_ratios: schedule {spec.schedule!r} needs at least one ratio (e.g. fixed_ratios: [0.5])")
    if schedule.takes != "ratios" and spec.fixed_ratios:
        takes = " or ".join(repr(name) for name in list_schedules() if get_schedule(name).takes == "ratios")
        raise SpecError(f"fixed_ratios: only used by schedule {takes}, not {spec.schedule!r}")
    try:
        schedule.validate(spec)
    except ValueError as error:
        raise SpecError(str(error)) from None


def _validate_round_to(spec: SweepSpec) -> None:
    _positive(spec.prune.round_to, "prune.round_to")
    if spec.prune.round_to > 1:
        for method in spec.methods:
            granularity = get_method(method).granularity
            if granularity != "structured":
                raise SpecError(f"prune.round_to: {spec.prune.round_to} rounds channel counts, and {method!r} is "
                                f"{granularity}: use structured methods only, or round_to 1")


def validate(spec: SweepSpec) -> None:
    if not NAME_PATTERN.match(spec.name):
        raise SpecError(f"name: {spec.name!r} must be letters, digits, '_', '.', '-' (a directory name)")
    try:
        check_inputs(spec)  # model, model_args, dataset and data options
    except ValueError as error:
        raise SpecError(str(error)) from None
    for field_name in ("methods", "prune_steps", "seeds"):
        if not getattr(spec, field_name):
            raise SpecError(f"{field_name}: must list at least one value, got []")
    try:
        check_quantize(spec)
    except ValueError as error:
        raise SpecError(str(error)) from None
    for i, method in enumerate(spec.methods):
        _choice(method, list_methods(), f"methods[{i}]")
    if len(set(spec.methods)) != len(spec.methods):
        raise SpecError(f"methods: {list(spec.methods)} lists a method twice")
    if len(set(spec.seeds)) != len(spec.seeds):
        raise SpecError(f"seeds: {list(spec.seeds)} lists a seed twice")
    for budget in spec.budgets:
        if not 0 < budget <= 1:
            raise SpecError(f"budget {budget!r} is outside (0, 1]: it is the fraction of the resource kept")
    _choice(spec.budget_metric, BUDGET_METRICS, "budget_metric")
    _validate_search(spec)
    for method in spec.methods:
        if get_method(method).granularity == "unstructured" and resolved_metric(spec, method) == "macs":
            raise SpecError(
                f"budget_metric 'macs' cannot be met by unstructured method {method!r}: masks keep the "
                "dense MACs; use 'params' or 'auto'"
            )
        granularity = get_method(method).granularity
        if spec.budget_metric == "latency" and granularity != "structured":
            raise SpecError(
                f"budget_metric 'latency' cannot be met by {granularity} method {method!r}: its latency table times "
                "channel counts, and masks keep the dense compute; use structured methods (l1_filter, fpgm, ...)"
            )
    _validate_schedule(spec)
    _validate_round_to(spec)
    for i, entry in enumerate(spec.fixed_ratios):
        for ratio in entry.values() if isinstance(entry, dict) else [entry]:
            for method in spec.methods:
                if not 0 <= ratio <= get_method(method).max_ratio:
                    raise SpecError(
                        f"fixed_ratios[{i}]: ratio {ratio!r} is outside [0, {get_method(method).max_ratio}] for {method!r} "
                        f"(its ratio is the {get_method(method).ratio_meaning})"
                    )
    _choice(spec.iterative, ITERATIVE, "iterative")
    _choice(spec.artifacts.save, SAVE_POLICIES, "artifacts.save")
    for steps in spec.prune_steps:
        if steps < 1:
            raise SpecError(f"prune_steps: {steps!r} must be >= 1")
    if spec.iterative == "oneshot" and spec.prune_steps != (1,):
        raise SpecError(f"prune_steps: {list(spec.prune_steps)} needs iterative 'cycles' or 'agp' ('oneshot' is 1 step)")
    for method in spec.methods:
        granularity = get_method(method).granularity
        if spec.iterative == "agp" and granularity != "unstructured":
            raise SpecError(f"iterative 'agp' prunes masks during training; {method!r} is {granularity}: use 'cycles'")
        if spec.iterative == "cycles" and granularity == "lowrank":
            raise SpecError(f"iterative 'cycles' cannot re-factorise the low-rank layers of {method!r}: use 'oneshot'")
    if spec.iterative == "agp" and max(spec.prune_steps) > spec.finetune.epochs:
        raise SpecError(f"prune_steps: agp prunes once per epoch, so {max(spec.prune_steps)} steps need as many finetune.epochs")
    _positive(spec.search.num_samples, "search.num_samples")
    _positive(spec.search.max_concurrent, "search.max_concurrent")
    _positive(spec.search.screen_epochs, "search.screen_epochs", allow_zero=True)
    _positive(spec.search.finalists, "search.finalists")
    screen_key = "search.screen_epochs" if spec.search.screen_epochs else "search.screen_bn"
    if spec.search.two_stage and not get_schedule(spec.schedule).has_search_space:
        raise SpecError(f"{screen_key}: a two-stage search needs a searched schedule, not {spec.schedule!r}")
    if spec.search.two_stage and spec.iterative != "oneshot":
        raise SpecError(f"{screen_key}: two-stage search works with iterative 'oneshot' only")
    if not 0 < spec.search.min_shape_weight <= 1:
        raise SpecError(f"search.min_shape_weight: {spec.search.min_shape_weight!r} must be in (0, 1]")
    if not 0 < spec.data.val_fraction < 1:
        raise SpecError(f"data.val_fraction: {spec.data.val_fraction!r} must be in (0, 1)")
    if spec.data.train_limit is not None and spec.data.train_limit < 1:
        raise SpecError(f"data.train_limit: {spec.data.train_limit!r} must be a positive number of examples, or null for all")
    validate_recipe(spec.baseline.train, "baseline.train")
    if spec.baseline.train.distill != 0:
        raise SpecError(f"baseline.train.distill: {spec.baseline.train.distill!r}: a baseline has no teacher; allowed: 0")
    validate_recipe(spec.finetune, "finetune")
    _positive(spec.measure.latency_batch_size, "measure.latency_batch_size")
    _positive(spec.measure.latency_repeats, "measure.latency_repeats")
    _positive(spec.measure.latency_min_time_ms, "measure.latency_min_time_ms", allow_zero=True)
    _positive(spec.measure.latency_warmup, "measure.latency_warmup", allow_zero=True)
    _positive(spec.resources.cpu, "resources.cpu")
    _positive(spec.resources.gpu, "resources.gpu", allow_zero=True)
    _positive(spec.max_failures, "max_failures", allow_zero=True)
    if not spec.storage:
        raise SpecError("storage: must be a path or URI, got ''")


def with_overrides(spec: SweepSpec, **changes: object) -> SweepSpec:
    """Apply CLI overrides (None = keep), nested with '__' (search__num_samples), and re-validate."""
    top: dict[str, object] = {}
    nested: dict[str, dict[str, object]] = {}
    for key, value in changes.items():
        if value is None:
            continue
        if "__" in key:
            outer, inner = key.split("__", 1)
            nested.setdefault(outer, {})[inner] = value
        else:
            top[key] = value
    for outer, inner in nested.items():
        top[outer] = dataclasses.replace(getattr(spec, outer), **inner)
    spec = dataclasses.replace(spec, **top)
    validate(spec)
    return spec
