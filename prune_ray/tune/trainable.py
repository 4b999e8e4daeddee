"""The Ray side of a trial: Tune's trainable around the Ray-free `trial.run_trial`, the resources
a trial holds, and netadapt's candidates fine-tuned as Ray tasks inside the trial's placement group."""

from __future__ import annotations

import copy
import os
from typing import Any

import ray
import torch
from ray import tune
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ..plan import get_schedule
from ..plan.netadapt import Candidate, CandidateOutcome, ShortTune, short_tune_candidate
from ..prune import get_method
from ..results.frontier import row_resource_keep
from ..spec import SweepSpec
from ..train import TrainRecipe
from ..trial import Runtime, TrialContext, run_trial
from ..trial_row import search_score
from ..trial_setup import calibration_of, trial_data, trial_device


def trial_resources(spec: SweepSpec) -> tune.PlacementGroupFactory:
    """What one trial holds: its cores and GPU share, plus the extra bundles its schedule asks for
    (netadapt runs its candidates' tasks there, so trials never starve each other)."""
    bundle = {"CPU": spec.resources.cpu, **({"GPU": spec.resources.gpu} if spec.resources.gpu else {})}
    return tune.PlacementGroupFactory([bundle] * (1 + get_schedule(spec.schedule).extra_bundles(spec)))


def candidate_executor(spec: SweepSpec):
    """netadapt's candidates short-fine-tuned in parallel as Ray tasks in the trial's extra bundles;
    the executor answers None when the trial holds none (then the trial tunes them itself)."""

    @ray.remote(num_returns=3, num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu, max_retries=spec.max_failures)
    def tune_candidate(model: torch.nn.Module, method_name: str, candidate: Candidate, recipe: TrainRecipe,
                       seed: int) -> tuple[float, int, torch.nn.Module]:
        torch.set_num_threads(max(1, int(spec.resources.cpu)))
        data = trial_data(spec)
        top1, tuned = short_tune_candidate(model.to(trial_device(spec)), get_method(method_name), candidate, data, recipe,
                                           calibration_of(data), seed)
        return top1, os.getpid(), tuned.cpu()

    def executor(method_name: str, recipe: TrainRecipe, seed: int) -> ShortTune | None:
        placement = ray.util.get_current_placement_group() if ray.is_initialized() else None
        if placement is None or len(placement.bundle_specs) < 2:
            return None
        strategy = PlacementGroupSchedulingStrategy(placement, placement_group_capture_child_tasks=True)

        def short_tune(model: torch.nn.Module, candidates: list[Candidate]) -> list[CandidateOutcome]:
            device = next(model.parameters()).device
            shared = ray.put(copy.deepcopy(model).cpu())
            refs = [tune_candidate.options(scheduling_strategy=strategy).remote(shared, method_name, c, recipe, seed)
                    for c in candidates]
            top1s, pids = ray.get([top1 for top1, _, _ in refs]), ray.get([pid for _, pid, _ in refs])
            return [CandidateOutcome(top1, lambda ref=ref: ray.get(ref).to(device), pid)
                    for top1, pid, (_, _, ref) in zip(top1s, pids, refs)]

        return short_tune

    return executor


def tune_trial(config: dict[str, Any], context: TrialContext) -> None:
    """Ray Tune entry point: runs the trial (config["trial"], a TrialConfig) and reports the final
    row's key figures."""
    torch.set_num_threads(max(1, int(context.spec.resources.cpu)))
    trial_id = tune.get_context().get_trial_id()
    spec = context.spec
    executor = candidate_executor(spec) if get_schedule(spec.schedule).extra_bundles(spec) else None
    runtime = Runtime(ray.util.get_node_ip_address(), ray.__version__, executor)
    row = run_trial(config["trial"], context, trial_id, report=tune.report, runtime=runtime)
    tune.report(
        {
            "search_score": search_score(spec, config["trial"], row),  # what the search and the final stage rank by
            "top1": row.get("top1"),  # the row's validation top-1 (the console prints it)
            "top1_pruned": row.get("top1_pruned"),
            "params_keep": row.get("params_keep"),
            "macs_keep": row.get("macs_keep"),
            # the budgeted resource kept: a frontier search's second objective
            "resource_keep": row_resource_keep(row),
            "status": row["status"],
            "error": row.get("error") or "",
        }
    )
