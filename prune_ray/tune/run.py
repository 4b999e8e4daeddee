"""A sweep on Ray: baselines first (as Ray tasks), then Tune trials (one searcher over every
operating point), an optional second stage, and the end-of-sweep summary."""

from __future__ import annotations

import time

from ..artifacts.retention import MODELS_DIR, delete_unkept_models
from ..points import TrialConfig, operating_points
from ..results.parquet import SAVED_SPEC, read_results
from ..results.storage import Storage, open_storage
from ..results.summary import summarize
from ..spec import SweepSpec, spec_to_yaml, stage_epochs
from ..trial import TrialContext
from ..trial_row import git_sha
from ..trial_setup import obtain_baseline, trial_data
from .cluster import check_storage_shared, fit_to_local_machine, start_ray
from .console import Console, header
from .interrupt import INTERRUPTS, TrialTracker


def prepare_baselines(spec: SweepSpec, storage: Storage, seeds: list[int]) -> dict[int, float]:
    """Train (or find) each distinct baseline once, as parallel Ray tasks, before any trial runs,
    so trials never race to train the same one. Returns the seconds spent training per seed."""
    import ray

    @ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu, max_retries=spec.max_failures)
    def prepare(seed: int) -> tuple[str, float, bool, float]:
        data = trial_data(spec)
        baseline = obtain_baseline(spec, data, seed, storage)
        return baseline.key, baseline.top1, baseline.trained_now, baseline.train_seconds

    seconds = {}
    for seed, (key, top1, trained_now, train_seconds) in zip(seeds, ray.get([prepare.remote(s) for s in seeds])):
        how = f"trained in {train_seconds:.1f} s" if trained_now else "loaded from the store"
        print(f"[prune-ray] baseline {key}: {how}, val top-1 {top1:.4f}", flush=True)
        seconds[seed] = train_seconds if trained_now else 0.0
    return seconds


def choose_finalists(screened: list[tuple[float, TrialConfig]], finalists: int) -> list[TrialConfig]:
    """Per operating point, its `finalists` best (score, config) pairs by score, then its first
    proposal (the prior) if it ranked lower; as final-stage configs, in the screen's order."""
    by_point: dict[str, list[tuple[float, TrialConfig]]] = {}
    for score, config in screened:
        by_point.setdefault(config.group_key, []).append((score, config))
    chosen = []
    for pairs in by_point.values():
        ranked = [config for _, config in sorted(pairs, key=lambda pair: -pair[0])]
        chosen += ranked[:finalists] + [config for config in ranked[finalists:] if config.proposal.first]
    return [config.in_stage("final") for config in chosen]


def final_stage(spec: SweepSpec, storage, sweep: str, trainable, screened, resume: bool, context: TrialContext) -> None:
    """Second stage of a two-stage search: the best `finalists` screened proposals of every
    operating point (from the first stage's Tune results), and the study's first proposal (the
    prior) when it is not among them, fine-tuned for the full finetune.epochs; their rows are stage
    'final'. Carrying the prior means a search never reports less than its prior on validation."""
    from ray import tune

    finalists = choose_finalists(
        [(result.metrics["search_score"], result.config["trial"]) for result in screened
         if result.error is None and (result.metrics or {}).get("status") == "ok"],
        spec.search.finalists)
    print(f"[prune-ray] final stage: {len(finalists)} screened proposals fine-tuned for {spec.finetune.epochs} epochs",
          flush=True)
    final_dir = storage.uri_of(sweep, "tune-final")
    if resume and tune.Tuner.can_restore(final_dir):
        tuner = tune.Tuner.restore(final_dir, trainable, resume_unfinished=True, restart_errored=True)
    elif finalists:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(finalists)},
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.search.max_concurrent, reuse_actors=True),
            run_config=_run_config(spec, storage, sweep, "tune-final", len(finalists)),
        )
    else:
        return
    with INTERRUPTS.fitting():
        results = tuner.fit()
    INTERRUPTS.settle(storage, sweep, results, context)


def _run_config(spec: SweepSpec, storage, sweep: str, name: str, total: int):
    from ray import tune

    return tune.RunConfig(
        name=name, storage_path=storage.uri_of(sweep), verbose=0,  # Tune's tables give way to the console
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        callbacks=[Console(total, label=name), TrialTracker()],
    )


def first_stage(spec: SweepSpec, storage: Storage, sweep: str, trainable, spaces: dict[str, dict] | None, resume: bool):
    """The (first) stage's Tuner: restored on --resume (Tune restores its searcher and scheduler),
    otherwise one GroupedSearcher over every operating point."""
    from ray import tune

    from .asha import GroupedASHA
    from .search import GroupedSearcher, StudyJournal

    tune_dir = storage.uri_of(sweep, "tune")
    if resume and tune.Tuner.can_restore(tune_dir):
        print(f"[prune-ray] resuming {tune_dir}: finished trials are kept, unfinished ones rerun", flush=True)
        return tune.Tuner.restore(tune_dir, trainable, resume_unfinished=True, restart_errored=True)
    if resume:
        print(f"[prune-ray] {tune_dir} holds no Tune state yet: starting the sweep from the beginning", flush=True)
    searcher = GroupedSearcher(
        operating_points(spec), spec.search.num_samples, spaces, spec.search.sampler,
        stage=spec.search.first_stage,
        journal=StudyJournal(storage, sweep), keep_range=tuple(spec.search.keep_range),
    )
    scheduler = None
    if spec.search.early_stopping == "asha":
        scheduler = GroupedASHA(stage_epochs(spec, spec.search.first_stage), spec.search.grace_epochs,
                                per_prune_step=spec.iterative == "cycles")
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=searcher.total,
                                    max_concurrent_trials=spec.search.max_concurrent, reuse_actors=True),
        run_config=_run_config(spec, storage, sweep, "tune", searcher.total),
    )


def run_sweep(spec: SweepSpec, sweep: str, spaces: dict[str, dict] | None, *, address: str | None = None,
              resume: bool = False, verbose: bool = False) -> int:
    import ray
    from ray import tune

    from .trainable import trial_resources, tune_trial

    storage = open_storage(spec.storage)
    began = time.perf_counter()
    print(header(sweep, len(operating_points(spec)) * (spec.search.num_samples if spaces is not None else 1),
                 storage.uri), flush=True)
    start_ray(address, verbose=verbose)
    if address is None:
        spec = fit_to_local_machine(spec, ray.cluster_resources())
    check_storage_shared(storage)
    if not resume:
        storage.write_bytes_atomic(storage.path(sweep, SAVED_SPEC), spec_to_yaml(spec).encode())
    seeds = sorted({point.seed for point in operating_points(spec)})
    context = TrialContext(spec, sweep, prepare_baselines(spec, storage, seeds), git_sha(), storage)
    trainable = tune.with_resources(tune.with_parameters(tune_trial, context=context), trial_resources(spec))
    with INTERRUPTS.fitting():  # a signal: Tune saves its state and stops; settle raises SweepInterrupted
        screened = first_stage(spec, storage, sweep, trainable, spaces, resume).fit()
    INTERRUPTS.settle(storage, sweep, screened, context)
    if spec.search.two_stage:
        final_stage(spec, storage, sweep, trainable, screened, resume, context)
    if spec.artifacts.save == "best":
        kept, deleted = delete_unkept_models(storage, sweep)
        print(f"[prune-ray] models: {kept} kept, {deleted} deleted, in {sweep}/{MODELS_DIR}/", flush=True)
    return summarize(read_results(storage, sweep), storage.uri_of(sweep, "trials"), time.perf_counter() - began)
