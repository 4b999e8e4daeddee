"""One trial as named phases, Ray-free: start the row -> baseline -> plan -> prune and fine-tune ->
quantise -> measure -> check the budget -> save the model -> finish the row (one Parquet row, status
'ok' or 'failed'). What a phase hands on to later ones is in one record, `TrialState`.

`run_trial` is plain Python (the tests call it without Ray). What it needs from the Ray side it
receives as arguments: a reporter (Tune's `report`) and a `Runtime` (the node's name, Ray's version,
and an executor that fine-tunes netadapt's candidates as Ray tasks); `tune.trainable` adapts it.
"""

from __future__ import annotations

import copy
import dataclasses
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from . import __version__
from .artifacts import ModelRecipe
from .artifacts.deployment import deployment_of
from .artifacts.store import model_files, write_model
from .measure import Measurement, Speedup, measure, time_paired
from .data import Dataset
from .models import classifier_layer
from .plan import Adapted, Subject, get_schedule, plan_removal
from .plan.budget import BudgetUnreachableError
from .plan.latency import LatencyTable, cached_table, predict_ms, table_key
from .plan.netadapt import ShortTune, local_short_tune
from .plan.proxy import Scorer, storage_cache
from .points import TrialConfig
from .prune import Calibration, get_method
from .prune.iterative import Cadence, FineTune, evaluate_pruned, prune_and_finetune
from .prune.unstructured import magnitude_thresholds, make_masks_permanent
from .quantize import get_quantizer
from .results.frontier import row_resource_keep
from .results.parquet import model_location, write_epochs, write_steps, write_trial
from .results.storage import Storage, open_storage
from .spec import SweepSpec, finetune_epochs, resolved_metric
from .train import RECALIBRATION_EXAMPLES, TrainRecipe, evaluate, train
from .trial_row import (
    config_hash,
    derived,
    finetune_recipe,
    layer_ratios,
    now,
    speed_columns,
    timing_options,
    within_budget,
)
from .trial_setup import calibration_of, obtain_baseline, trial_data, trial_device

Reporter = Callable[[dict[str, Any]], None]
LATENCY_PLANS = 5  # a latency budget: plans made from the table and verified by timing, at most
LATENCY_HEADROOM = 0.95  # a latency plan is accepted when its measured median keeps this x the budget, at most
LATENCY_TIMINGS = 3  # a latency budget: paired timings of the final model until one meets it, at most
# (method name, recipe, seed) -> candidates fine-tuned elsewhere (Ray tasks), or None: in this process
CandidateExecutor = Callable[[str, TrainRecipe, int], "ShortTune | None"]


@dataclass(frozen=True)
class TrialContext:
    spec: SweepSpec
    sweep: str  # directory name of the sweep under the storage root
    baseline_seconds: dict[int, float]  # per seed: spent training the baseline in this sweep (0: loaded)
    git_sha: str | None
    storage: Storage | None = None  # the sweep's storage, opened once by the sweep; None: opened here from spec.storage

    def __post_init__(self) -> None:
        if self.storage is None:
            object.__setattr__(self, "storage", open_storage(self.spec.storage))


@dataclass(frozen=True)
class Runtime:
    """What the Ray side tells a trial; the default is a plain process on this machine."""

    node: str = field(default_factory=socket.gethostname)
    ray_version: str | None = None
    candidates: CandidateExecutor | None = None  # netadapt's candidates in parallel; None: one by one here


@dataclass
class TrialState:
    """What the phases of one trial hand on to later ones, declared in one place: each field is
    None until the phase named beside it has run (a phase run out of order fails on its None)."""

    data: Dataset | None = None  # start_from_baseline: the spec's data on the trial's device
    reference: torch.nn.Module | None = None  # start_from_baseline: the baseline, timed beside the pruned model
    base: Measurement | None = None  # start_from_baseline: the baseline's counts
    timing_batch: torch.Tensor | None = None  # start_from_baseline: the examples of a timed pass
    table: LatencyTable | None = None  # start_from_baseline: latency budgets only
    subject: Subject | None = None  # start_from_baseline: what the plan is made for
    calibration: Calibration | None = None  # start_from_baseline
    adapted: Adapted | None = None  # plan_pruning: an adapting schedule's pruned model (netadapt)
    removed: dict[str, int] | None = None  # plan_pruning: units removed per layer
    model: torch.nn.Module | None = None  # make_pruned_model: the pruned, fine-tuned (then quantised) model
    codes: Any = None  # fold_and_quantize: the quantised weights' codes, saved with the model


class TrialRun:
    """One trial as phases; each fills part of the row, and hands what later phases need on in
    `state` (a TrialState)."""

    def __init__(self, config: TrialConfig, context: TrialContext, trial_id: str, report: Reporter, runtime: Runtime):
        self.config, self.context, self.trial_id, self.report, self.runtime = config, context, trial_id, report, runtime
        self.spec = context.spec
        self.method = get_method(config.point.method)
        self.metric = resolved_metric(self.spec, self.method.name)
        self.recipe = finetune_recipe(self.spec, config.stage)
        self.storage = context.storage
        self.epochs: list[dict[str, Any]] = []
        self.state = TrialState()
        self.row = self.start_row()

    @property
    def data(self) -> Dataset:
        return self.state.data

    @property
    def model(self) -> torch.nn.Module:
        return self.state.model

    @property
    def codes(self) -> Any:
        return self.state.codes

    def start_row(self) -> dict[str, Any]:
        """Phase 1: the row's identity, known before anything runs."""
        spec, point = self.spec, self.config.point
        schedule = get_schedule(spec.schedule)
        return {
            "sweep": self.context.sweep, "trial_id": self.trial_id, "config_hash": config_hash(spec, self.config),
            "seed": point.seed, "started_at": now(), "model": spec.model, "dataset": spec.dataset,
            "method": self.method.name, "granularity": self.method.granularity, "schedule": spec.schedule,
            "sampler": spec.search.sampler if schedule.has_search_space else None, "budget_metric": self.metric,
            "budget": point.budget, "ratio": point.ratio if isinstance(point.ratio, float) else None,
            "iterative": spec.iterative, "prune_steps": point.prune_steps, "stage": self.config.stage,
            "first_proposal": self.config.proposal.first if schedule.has_search_space else None,
            "finetune_epochs": finetune_epochs(self.recipe.epochs, point.prune_steps, spec.iterative == "cycles"),
            "node": self.runtime.node, "torch_version": torch.__version__, "ray_version": self.runtime.ray_version,
            "prune_ray_version": __version__, "git_sha": self.context.git_sha,
        }

    def start_from_baseline(self) -> None:
        """Phase 2: the baseline (loaded, or trained into the store), counted, and what planning
        starts from (the subject; a latency budget's table)."""
        torch.manual_seed(self.config.point.seed)  # random methods and fine-tuning are reproducible per seed
        device = trial_device(self.spec)
        self.row["device"] = str(device) if device.type == "cpu" else f"cuda:{torch.cuda.get_device_name(device)}"
        data = trial_data(self.spec)
        self.row["data_loader"] = data.loader
        began = time.perf_counter()
        baseline = obtain_baseline(self.spec, data, self.config.point.seed, self.storage)
        model = baseline.model.to(device)
        seconds_in_sweep = self.context.baseline_seconds.get(self.config.point.seed, 0.0)
        self.row["time_baseline_s"] = seconds_in_sweep + (time.perf_counter() - began)
        timing_batch = data.val_x[: self.spec.measure.latency_batch_size]
        base = measure(model, timing_batch, latency=False)
        self.row.update(baseline_top1=baseline.top1, baseline_top5=baseline.top5, baseline_test_top1=baseline.test_top1,
                        baseline_params=base.params, baseline_macs=base.macs)
        example = data.example_inputs(1)
        table = self.latency_table(model, device, timing_batch) if self.metric == "latency" else None
        counted = {"params": base.params, "macs": base.macs}
        resource = predict_ms(table, model) if table is not None else counted[self.metric]
        scorer = Scorer.of(model, data, self.spec.search.proxy, storage_cache(self.storage, baseline.key))
        subject = Subject(model, self.method, self.method.layers(model, example), example, self.metric, resource,
                          self.spec.prune.round_to, table, scorer)
        self.state = dataclasses.replace(self.state, data=data, reference=copy.deepcopy(model), base=base,
                                         timing_batch=timing_batch, table=table, subject=subject,
                                         calibration=calibration_of(data))

    def latency_table(self, model: torch.nn.Module, device: torch.device, timing_batch: torch.Tensor) -> LatencyTable:
        """The model's per-layer latency table on this device and batch size (timed once, then cached)."""
        spec = self.spec
        names = {module: name for name, module in model.named_modules()}
        key = table_key(spec.model, spec.dataset, device, spec.measure.latency_batch_size)
        return cached_table(self.storage, key, model, timing_batch, names[classifier_layer(model)])

    def plan_pruning(self) -> None:
        """Phase 3: units removed per layer (one-shot schedules), or the pruned model (netadapt)."""
        began, state = time.perf_counter(), self.state
        schedule, config = get_schedule(self.spec.schedule), self.config
        adapted = None
        if schedule.adapt is not None:
            adapted = schedule.adapt(state.subject, config.target_keep, self.spec, self.short_tunes)
            removed = adapted.removed
            write_steps(self.storage, self.context.sweep, schedule.name, self.trial_id, adapted.trace)
        elif schedule.takes == "budget" and state.table is not None:
            removed = self.plan_latency(schedule.name, config.target_keep)
        else:
            point = config.point.ratio if schedule.takes == "ratios" else config.target_keep
            removed = plan_removal(schedule.name, state.subject, point, config.proposal, self.spec.search)
        self.state = dataclasses.replace(state, adapted=adapted, removed=removed)
        self.row["search_epochs"] = adapted.search_epochs if adapted is not None else 0
        self.record_proxy()
        self.row["time_prune_s"] = time.perf_counter() - began

    def record_proxy(self) -> None:
        """The plan's proxy (plan.proxy): the baseline pruned as planned, in one step, not fine-tuned."""
        subject, state = self.state.subject, self.state
        pruned = self.method.prune(copy.deepcopy(subject.model), state.removed, state.calibration)
        self.row["proxy"], self.row["proxy_score"] = subject.scorer.proxy, subject.scorer.damage(pruned)

    def plan_latency(self, schedule: str, budget: float) -> dict[str, int]:
        """A latency budget: the table's plan, verified on a pruned copy timed beside the baseline;
        while the copy's measured latency (median of the pairs) misses LATENCY_HEADROOM x the budget
        (the final model is timed again later, under whatever load the machine has then), plan again
        for the budget scaled by that target / measured, at most LATENCY_PLANS times (the table adds layer
        times, and what it leaves out, or a loaded machine, does not stay constant). When the
        scaled budget is past what the table can reach, the last reachable plan stands (and the
        measured model's check decides)."""
        state, options, prune = self.state, self.spec.search, self.method.shape_prune or self.method.prune
        asked = budget
        removed = plan_removal(schedule, state.subject, asked, self.config.proposal, options)
        for _ in range(LATENCY_PLANS):
            shaped = prune(copy.deepcopy(state.subject.model), removed, state.calibration)
            speed = time_paired(state.reference, shaped, state.timing_batch, timing_options(self.spec))
            kept = speed_columns(speed)["latency_keep"]
            if kept <= LATENCY_HEADROOM * budget:
                break
            asked *= LATENCY_HEADROOM * budget / kept
            try:
                removed = plan_removal(schedule, state.subject, asked, self.config.proposal, options)
            except BudgetUnreachableError:
                break
        return removed

    def short_tunes(self, recipe: TrainRecipe) -> ShortTune:
        """netadapt's candidates: as Ray tasks when the runtime has an executor, else one by one here."""
        seed = self.config.point.seed
        remote = self.runtime.candidates(self.method.name, recipe, seed) if self.runtime.candidates else None
        return remote or local_short_tune(self.method, self.state.data, recipe, self.state.calibration, seed)

    def make_pruned_model(self) -> None:
        """Phase 4: prune the baseline as planned (once, or in cycles/agp steps) and fine-tune."""
        began, state = time.perf_counter(), self.state
        tuning = FineTune(state.data, self.recipe, self.config.point.seed, on_epoch=self.on_epoch, on_pruned=self.on_pruned,
                          recalibration=state.data.train_head(RECALIBRATION_EXAMPLES)[0])
        if state.adapted is not None and state.adapted.finetuned:  # a race's winner, fine-tuned in its final round
            model = state.adapted.model
        elif state.adapted is not None:  # already pruned, step by step: NetAdapt's long fine-tune
            model = state.adapted.model
            evaluate_pruned(model, tuning)
            train(model, state.data, self.recipe, seed=tuning.seed, on_epoch=self.on_epoch)
        else:
            cadence = Cadence(self.spec.iterative, self.config.point.prune_steps)
            model = prune_and_finetune(state.subject.model, self.method, state.removed, cadence, tuning,
                                       state.calibration).model
        self.state = dataclasses.replace(state, model=model)
        self.row["time_finetune_s"] = time.perf_counter() - began

    def on_pruned(self, top1: float, top5: float, top1_bn: float | None) -> None:
        self.row["top1_pruned"], self.row["top5_pruned"], self.row["top1_pruned_bn"] = top1, top5, top1_bn
        # epoch 0 of the curve is top1_pruned: after the last pruning step so far (cycles and agp
        # prune more than once; agp calls this only after some epochs have run)
        pruned_point = {"epoch": 0, "top1": top1, "top5": top5}
        if self.epochs and self.epochs[0]["epoch"] == 0:
            self.epochs[0] = pruned_point
        else:
            self.epochs.insert(0, pruned_point)
        # the trial's row while it fine-tunes: what remains if early stopping ends it here
        write_trial(self.storage, {**self.row, "status": "running"})

    def on_epoch(self, stats) -> None:
        self.epochs.append(dataclasses.asdict(stats))
        write_epochs(self.storage, self.context.sweep, self.trial_id, self.epochs)  # a stopped trial keeps its curve
        # while it fine-tunes, a trial's search score is its epoch's validation top-1 (what ASHA compares)
        self.report({"search_score": stats.top1, "top1": stats.top1, "top5": stats.top5, "epoch": stats.epoch,
                     "status": "running"})

    def fold_and_quantize(self) -> None:
        """Phase 5: fold the masks into the weights, then quantise them with the operating point's
        quantiser (none keeps float32): top1_quantized right after, then quantize_epochs of
        fine-tuning what the quantiser trains (k-means centroids, binary latent weights). The
        weights end as plain tensors holding the quantised values; their codes are kept to save."""
        began, state, row, point = time.perf_counter(), self.state, self.row, self.config.point
        model = state.model
        if self.method.records_thresholds:
            row["conv_threshold"], row["fc_threshold"] = magnitude_thresholds(model)
        make_masks_permanent(model)
        row["layer_names"], row["layer_ratios"] = layer_ratios(model, self.method, state.removed, state.subject.layers)
        quantizer = get_quantizer(point.quantizer)
        widths = quantizer.widths(point.quantize_bits)
        quantization = quantizer.quantize(model, widths)
        row.update(quantizer=quantizer.name, quantize_bits_conv=None if widths is None else widths.conv,
                   quantize_bits_fc=None if widths is None else widths.fc)
        row["top1_quantized"], _ = evaluate(model, state.data.val_x, state.data.val_y)
        if quantizer.trains and self.spec.quantize_epochs > 0:
            recipe = dataclasses.replace(self.spec.finetune, epochs=self.spec.quantize_epochs, lr=self.spec.quantize_lr,
                                         warmup_epochs=0)
            train(model, state.data, recipe, seed=point.seed)
        self.state = dataclasses.replace(state, codes=quantization.freeze())
        row["time_quantize_s"] = time.perf_counter() - began

    def measure_accuracy_and_resources(self) -> None:
        """Phase 6: accuracy and the achieved resources of the (quantised) model itself."""
        began, state, row = time.perf_counter(), self.state, self.row
        model, data = state.model, state.data
        row["top1"], row["top5"] = evaluate(model, data.val_x, data.val_y)
        row["test_top1"], row["test_top5"] = evaluate(model, data.test_x, data.test_y)
        pruned = measure(model, state.timing_batch, latency=False)
        row.update(dataclasses.asdict(pruned), **derived(state.base, pruned))
        row.update(speed_columns(self.timed_against_budget(model)))
        if state.table is not None:
            # the table's prediction at this moment's machine speed: its ratio to the table's own
            # prediction for the baseline, times the baseline as timed here (the cached table may
            # have been timed under another load)
            row["latency_predicted_ms"] = (predict_ms(state.table, model) / state.subject.baseline_resource
                                           * row["baseline_latency_ms"])
        row["time_eval_s"] = time.perf_counter() - began

    def check_budget(self) -> None:
        """Phase 7: the measured model keeps at most its budget of the resource, and the row is
        'ok' (AssertionError if not: the trial fails). params_keep counts nonzero parameters; a latency
        is met within its interval (the lowest latency kept that one paired comparison on this
        machine supports)."""
        target = self.config.target_keep
        achieved = row_resource_keep(self.row, lowest_supported=True)
        if not within_budget(achieved, target):
            raise AssertionError(f"pruned model keeps {achieved:.4f} of {self.metric}, over budget {target}")
        self.row["status"] = "ok"

    def timed_against_budget(self, model: torch.nn.Module) -> Speedup:
        """The final model timed in interleaved pairs with the baseline. Under a latency budget, a
        timing whose fastest end misses the budget is repeated, up to LATENCY_TIMINGS in all, and the
        fastest of them (by its median) is the row's: load that changes over seconds (a neighbouring
        trial starting its training, say) shifts a whole timing, and the least disturbed timing is
        the best estimate (timeit's rule). A frontier search (no budget) is timed once."""
        options, target, state = timing_options(self.spec), self.config.target_keep, self.state
        timings = [time_paired(state.reference, model, state.timing_batch, options)]
        while (self.metric == "latency" and len(timings) < LATENCY_TIMINGS and not within_budget(
                row_resource_keep({"budget_metric": "latency", **speed_columns(timings[-1])}, lowest_supported=True), target)):
            timings.append(time_paired(state.reference, model, state.timing_batch, options))
        return max(timings, key=lambda speed: speed.median)

    def save_model_files(self) -> None:
        """Phase 8: the model's files (encoded by their codes when quantised), whose size is
        bytes_encoded, written under <sweep>/models/<trial_id>/ unless artifacts.save is none; a
        model that cannot be saved makes the trial fail."""
        state = self.state
        data = state.data
        recipe = ModelRecipe(self.spec.model, data.num_classes, data.in_channels, data.image_size, dict(self.spec.model_args))
        files = model_files(state.model, recipe, self.method.name, data.example_inputs(1), state.codes,
                            deployment_of(self.spec.dataset, self.spec.model, data))
        self.row.update(bytes_encoded=files.size, compression_ratio_total=state.base.bytes_dense / files.size)
        if self.spec.artifacts.save == "none":
            return
        saved = write_model(self.storage, (self.context.sweep, "models", self.trial_id), files)
        self.row.update(model_uri=model_location(self.trial_id), file_bytes=saved.file_bytes)  # relative to the sweep

    def run_phases(self) -> None:
        """Phases 2 to 8 in order; an exception ends the trial where it is raised (run_trial makes
        it the row's error)."""
        for phase in self.phases():
            phase()

    def phases(self) -> tuple[Callable[[], None], ...]:
        """Phases 2 to 8, in the order they run."""
        return (self.start_from_baseline, self.plan_pruning, self.make_pruned_model, self.fold_and_quantize,
                self.measure_accuracy_and_resources, self.check_budget, self.save_model_files)

    def fail(self, error: Exception) -> None:
        """A failed trial is a row, never a crashed sweep; what was measured before stays in it."""
        self.row["status"] = "failed"
        self.row["error"] = f"{type(error).__name__}: {error}"
        if not isinstance(error, (ValueError, RuntimeError)):
            self.row["error"] += "\n" + traceback.format_exc(limit=5)

    def finish_row(self) -> dict[str, Any]:
        """Phase 9: the final row and curve, written (a retried trial overwrites its own files)."""
        self.row["finished_at"] = now()
        write_epochs(self.storage, self.context.sweep, self.trial_id, self.epochs)
        write_trial(self.storage, self.row)
        return self.row


def run_trial(config: TrialConfig, context: TrialContext, trial_id: str, report: Reporter = lambda metrics: None,
              runtime: Runtime = Runtime()) -> dict[str, Any]:
    """Run one trial and write its row (status 'ok' or 'failed'); returns the row."""
    run = TrialRun(config, context, trial_id, report, runtime)
    try:
        run.run_phases()
    except Exception as error:  # noqa: BLE001  (every failure becomes the row's error)
        run.fail(error)
    return run.finish_row()
