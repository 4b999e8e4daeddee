"""`python -m prune_ray.sweep`: run a pruning sweep on Ray Tune and write Parquet results.

This is the only module that starts Ray or builds a Tuner. The spec is validated completely before
anything is written or started; bad input exits with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import uuid

from .spec import (
    NAME_PATTERN, SpecError, SweepSpec, load_spec, smoke_twin, spec_from_yaml, spec_to_yaml, stage_epochs, validate, with_overrides,
)
from .data import DatasetFilesMissingError
from .schedule import SEARCHED
from .storage import open_storage
from .summary import settle_unfinished, summarize

EXIT_BAD_INPUT = 2
SAVED_SPEC = "spec.yaml"  # the resolved spec, saved in the sweep directory for --resume
LOCAL_NODE_ADDRESS = "127.0.0.2"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prune_ray.sweep",
        description="Run a pruning sweep: baseline, per-layer schedules searched by Optuna under each "
        "budget, pruning, fine-tuning, one Parquet row per trial.",
    )
    parser.add_argument(
        "spec", nargs="?", help="YAML sweep spec; omitted: the built-in default (sweeps/default.yaml)"
    )
    parser.add_argument(
        "--budget", type=float, nargs="+", metavar="B",
        help="fraction of the baseline's resource the pruned model may keep, each in (0, 1]; "
        "several budgets give a frontier (overrides the spec's budgets)",
    )
    parser.add_argument("--num-samples", type=int, metavar="N", help="trials per (budget, method) group")
    parser.add_argument("--max-concurrent", type=int, metavar="K", help="trials running at once")
    parser.add_argument(
        "--storage", metavar="URI",
        help="results root: a local path (relative paths become absolute) or s3://, gs:// URI; default ./results",
    )
    parser.add_argument(
        "--name", metavar="NAME",
        help="sweep directory under the storage root; default <spec name>-<UTC timestamp>",
    )
    parser.add_argument(
        "--address", metavar="ADDR", help="Ray cluster to join ('auto' on a cluster node); default: start Ray locally"
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue the interrupted sweep --name NAME in --storage: finished trials are kept, unfinished "
        "ones rerun, the Optuna studies continue (the spec saved at its start is used)",
    )
    parser.add_argument(
        "--smoke", action="store_true",
        help="run the spec's smoke twin: same model, methods and budgets on the bundled digits data, "
        "1 training epoch, 1 trial per group (checks a recipe end to end on a CPU in about a minute)",
    )
    return parser


def resolve_spec(args: argparse.Namespace) -> SweepSpec:
    spec = load_spec(args.spec) if args.spec else SweepSpec()
    validate(spec)
    if args.smoke:
        spec = smoke_twin(spec)
    return with_overrides(
        spec,
        budgets=tuple(args.budget) if args.budget else None,
        storage=args.storage,
        search__num_samples=args.num_samples,
        search__max_concurrent=args.max_concurrent,
    )


def resumed_spec(args: argparse.Namespace) -> tuple[SweepSpec, str]:
    """The spec a sweep saved when it started: --resume continues exactly that sweep."""
    changed = [flag for flag, value in (("SPEC", args.spec), ("--budget", args.budget), ("--num-samples", args.num_samples),
                                        ("--max-concurrent", args.max_concurrent), ("--smoke", args.smoke)) if value]
    if not args.name:
        raise SpecError("--resume needs --name NAME: the sweep directory to continue")
    if not NAME_PATTERN.match(args.name):
        raise SpecError(f"--name {args.name!r} must be letters, digits, '_', '.', '-' (a directory name)")
    if changed:
        raise SpecError(f"--resume continues the saved spec; drop {', '.join(changed)}")
    storage = open_storage(args.storage or SweepSpec().storage)
    saved = storage.path(args.name, SAVED_SPEC)
    if not storage.exists(saved):
        raise SpecError(f"nothing to resume: no sweep {args.name!r} in {storage.uri} ({SAVED_SPEC} missing)")
    spec = spec_from_yaml(storage.read_bytes(saved).decode(), where=storage.uri_of(args.name, SAVED_SPEC))
    return dataclasses.replace(spec, storage=storage.uri), args.name


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.resume:
            spec, sweep = resumed_spec(args)
        else:
            spec = resolve_spec(args)
            sweep = args.name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
            spec = with_overrides(spec, name=args.name) if args.name else spec
            storage = open_storage(spec.storage)
            spec = dataclasses.replace(spec, storage=storage.uri)  # trials on other nodes need it absolute
            if storage.exists(storage.path(sweep)):
                raise SpecError(
                    f"sweep {sweep!r} already exists in {storage.uri}: choose another --name, or --resume it"
                )
        from .search import search_spaces

        spaces = search_spaces(spec)
    except (SpecError, DatasetFilesMissingError) as error:
        print(f"prune_ray.sweep: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return run_sweep(spec, sweep, spaces, address=args.address, resume=args.resume)
    except StorageNotSharedError as error:
        print(f"prune_ray.sweep: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


class StorageNotSharedError(RuntimeError):
    """A local storage path that some nodes of the cluster cannot see."""


def check_storage_shared(storage) -> None:
    """With several nodes, a local path must be one filesystem they all see (NFS); otherwise each
    node would keep its own results and baselines. Checked for real: the driver writes a marker
    file and a task pinned to every node looks for it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [node["NodeID"] for node in ray.nodes() if node["Alive"]]
    if not storage.is_local or len(nodes) < 2:
        return
    marker = storage.path(f".node-check-{uuid.uuid4().hex}")
    storage.write_bytes_atomic(marker, b"prune-ray")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return os.path.exists(path)

    try:
        pinned = [sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)) for n in nodes]
        blind = sum(not seen for seen in ray.get([task.remote(marker) for task in pinned]))
    finally:
        storage.fs.delete_file(marker)
    if blind:
        raise StorageNotSharedError(
            f"storage {storage.uri} is a local path that {blind} of {len(nodes)} cluster nodes cannot see, so "
            "results and baselines would scatter over their disks; pass --storage s3://BUCKET/PREFIX, "
            "gs://BUCKET/PREFIX, or a shared filesystem path mounted on every node"
        )


def prepare_baselines(spec: SweepSpec, seeds: list[int]) -> dict[int, float]:
    """Train (or find) each distinct baseline once, as parallel Ray tasks, before any trial runs,
    so trials never race to train the same one. Returns the seconds spent training per seed."""
    import ray

    from .trial import obtain_baseline, trial_data

    @ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu, max_retries=spec.max_failures)
    def prepare(seed: int) -> tuple[str, float, bool, float]:
        data = trial_data(spec)
        baseline = obtain_baseline(spec, data, seed)
        return baseline.key, baseline.top1, baseline.trained_now, baseline.train_seconds

    seconds = {}
    for seed, (key, top1, trained_now, train_seconds) in zip(seeds, ray.get([prepare.remote(s) for s in seeds])):
        how = f"trained in {train_seconds:.1f} s" if trained_now else "loaded from the store"
        print(f"[prune-ray] baseline {key}: {how}, val top-1 {top1:.4f}", flush=True)
        seconds[seed] = train_seconds if trained_now else 0.0
    return seconds


def sensitivity_shapes(spec: SweepSpec, sweep: str) -> dict[str, dict[str, float]]:
    """Per method, the shape weights of a sensitivity scan of the first seed's baseline (one Ray
    task per method, cached in the storage); the scan's plot goes to <sweep>/sensitivity-<method>.png."""
    import ray

    @ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu, max_retries=spec.max_failures)
    def scan_method(name: str) -> dict[str, float]:
        import tempfile

        from .prune import get_method
        from .schedule import shape_key
        from .sensitivity import cached_scan, plot, shape_from_scan
        from .trial import calibration_of, obtain_baseline, trial_data

        method, storage = get_method(name), open_storage(spec.storage)
        data = trial_data(spec)
        baseline = obtain_baseline(spec, data, spec.seeds[0])
        calibration = calibration_of(data)
        frame = cached_scan(storage, baseline.key, baseline.model, method, data, calibration)
        with tempfile.TemporaryDirectory() as scratch:
            plot(frame, f"{scratch}/plot.png", f"{spec.model} on {spec.dataset}: {name}, one layer at a time")
            with open(f"{scratch}/plot.png", "rb") as handle:
                storage.write_bytes_atomic(storage.path(sweep, f"sensitivity-{name}.png"), handle.read())
        weights = shape_from_scan(frame, spec.search.min_shape_weight)
        layers = method.layers(baseline.model, data.example_inputs(1))
        return {shape_key(i): weights[layer.name] for i, layer in enumerate(layers)}

    shapes = dict(zip(spec.methods, ray.get([scan_method.remote(m) for m in spec.methods])))
    print(f"[prune-ray] sensitivity scans: {open_storage(spec.storage).uri_of(sweep)}/sensitivity-*.png", flush=True)
    return shapes


def final_stage(spec: SweepSpec, storage, sweep: str, trainable, screened, resume: bool) -> None:
    """Second stage of a two-stage search: the best `keep_best` screened proposals of every
    operating point (from the first stage's Tune results), fine-tuned for the full
    finetune.epochs; their rows are stage 'final'."""
    from ray import tune

    from .search import group_key

    by_point: dict[str, list[tuple[float, dict]]] = {}
    for result in screened:
        metrics = result.metrics or {}
        if result.error is None and metrics.get("status") == "ok":
            by_point.setdefault(group_key(result.config), []).append((metrics["top1"], result.config))
    configs = [
        {**config, "stage": "final"}
        for candidates in by_point.values()
        for _, config in sorted(candidates, key=lambda pair: -pair[0])[: spec.search.keep_best]
    ]
    print(f"[prune-ray] final stage: {len(configs)} screened proposals fine-tuned for {spec.finetune.epochs} epochs",
          flush=True)
    final_dir = storage.uri_of(sweep, "tune-final")
    if resume and tune.Tuner.can_restore(final_dir):
        results = tune.Tuner.restore(final_dir, trainable, resume_unfinished=True, restart_errored=True).fit()
    elif configs:
        results = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.search.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name="tune-final", storage_path=storage.uri_of(sweep),
                                      failure_config=tune.FailureConfig(max_failures=spec.max_failures), verbose=1),
        ).fit()
    else:
        return
    settle_unfinished(storage, sweep, results)


def run_sweep(
    spec: SweepSpec, sweep: str, spaces: dict[str, dict], *, address: str | None = None, resume: bool = False
) -> int:
    import ray
    from ray import tune

    from .results import read_results
    from .search import GroupedASHA, GroupedSearcher, StudyJournal
    from .trial import TrialContext, git_sha, trial_resources, tune_trial

    storage = open_storage(spec.storage)
    began = time.perf_counter()
    if not ray.is_initialized():
        # Locally, Ray's node address stays on loopback (Ray rewrites 127.0.0.1 itself to the
        # external interface, 127.0.0.2 it keeps) and no dashboard is started.
        local = {"_node_ip_address": LOCAL_NODE_ADDRESS} if address is None else {}
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=True, **local)
    if address is None:
        spec = fit_to_local_machine(spec, ray.cluster_resources())
    check_storage_shared(storage)
    if not resume:
        storage.write_bytes_atomic(storage.path(sweep, SAVED_SPEC), spec_to_yaml(spec).encode())

    groups = operating_points(spec)
    baseline_seconds = prepare_baselines(spec, sorted({group.seed for group in groups}))
    two_stage = spec.search.screen_epochs > 0
    context = TrialContext(spec, sweep, baseline_seconds, git_sha())
    trainable = tune.with_resources(tune.with_parameters(tune_trial, context=context), trial_resources(spec))
    tune_dir = storage.uri_of(sweep, "tune")
    if resume and tune.Tuner.can_restore(tune_dir):  # Tune restores the searcher and scheduler too
        print(f"[prune-ray] resuming {tune_dir}: finished trials are kept, unfinished ones rerun", flush=True)
        tuner = tune.Tuner.restore(tune_dir, trainable, resume_unfinished=True, restart_errored=True)
    else:
        if resume:
            print(f"[prune-ray] {tune_dir} holds no Tune state yet: starting the sweep from the beginning", flush=True)
        searcher = GroupedSearcher(
            groups,
            spec.search.num_samples,
            spaces if spec.schedule in SEARCHED else None,
            spec.search.sampler,
            # the sensitivity scan's shapes: the sensitivity schedule, or first proposals of searches
            shapes=sensitivity_shapes(spec, sweep) if spec.schedule == "sensitivity" or (
                spec.schedule == "searched" and spec.search.seed_with_sensitivity) else None,
            stage="screen" if two_stage else "single",
            journal=StudyJournal(spec.storage, sweep),
            keep_range=tuple(spec.search.keep_range),
        )
        scheduler = None
        if spec.search.early_stopping == "asha":
            scheduler = GroupedASHA(stage_epochs(spec, 1), spec.search.grace_epochs, per_prune_step=spec.iterative == "cycles")
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=searcher.total,
                max_concurrent_trials=spec.search.max_concurrent,
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name="tune",
                storage_path=storage.uri_of(sweep),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                verbose=1,
            ),
        )
    screened = tuner.fit()
    settle_unfinished(storage, sweep, screened)
    if two_stage:
        final_stage(spec, storage, sweep, trainable, screened, resume)
    return summarize(read_results(storage, sweep), storage.uri_of(sweep, "trials"), time.perf_counter() - began)


def operating_points(spec: SweepSpec) -> list:
    """One group per (budget or fixed ratio) x method x prune_steps x seed; a frontier search
    (no budgets) has one group per method x prune_steps x seed."""
    from .search import Group

    if spec.schedule == "fixed":
        points = [(None, ratio) for ratio in spec.fixed_ratios]
    else:
        points = [(b, None) for b in spec.budgets] or [(None, None)]
    return [
        Group(budget, method, seed, ratio, steps)
        for budget, ratio in points
        for method in spec.methods
        for steps in spec.prune_steps
        for seed in spec.seeds
    ]


def fit_to_local_machine(spec: SweepSpec, available: dict[str, float]) -> SweepSpec:
    """On a local Ray instance, a trial asking for more than the machine has would wait forever:
    GPU trials run on the CPU when there is no GPU, and CPU requests shrink to the cores there are.
    (On a cluster the autoscaler may still add such nodes, so requests are left alone there.)"""
    resources = spec.resources
    if resources.gpu > 0 and available.get("GPU", 0) == 0:
        print(f"[prune-ray] no GPU here: trials asking for {resources.gpu} GPU run on the CPU", flush=True)
        resources = dataclasses.replace(resources, gpu=0.0)
    if resources.cpu > available.get("CPU", 1):
        print(f"[prune-ray] {resources.cpu} CPUs per trial asked, {available.get('CPU')} here: using all", flush=True)
        resources = dataclasses.replace(resources, cpu=float(available.get("CPU", 1)))
    netadapt = spec.netadapt
    if spec.schedule == "netadapt":  # the trial holds 1 + parallel bundles of its resources
        cpus, gpus = available.get("CPU", 1), available.get("GPU", 0)

        def bundles(res) -> int:
            return min(int(cpus // res.cpu), int(gpus // res.gpu) if res.gpu else 1 << 30)

        if bundles(resources) < 2:  # the trial and one candidate at least: halve the bundle
            resources = dataclasses.replace(resources, cpu=min(resources.cpu, cpus / 2), gpu=min(resources.gpu, gpus / 2))
        parallel = max(1, min(netadapt.parallel, bundles(resources) - 1))
        if parallel != netadapt.parallel:
            print(f"[prune-ray] netadapt: {parallel} candidate(s) at once here, not {netadapt.parallel}", flush=True)
            netadapt = dataclasses.replace(netadapt, parallel=parallel)
    return dataclasses.replace(spec, resources=resources, netadapt=netadapt)


if __name__ == "__main__":
    sys.exit(main())
