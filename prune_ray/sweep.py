"""`python -m prune_ray.sweep`: run a pruning sweep on Ray Tune and write Parquet results.

This is the only module that starts Ray or builds a Tuner. The spec is validated completely before
anything is written or started; bad input exits with status 2 and one line naming the problem.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import time

from .spec import SpecError, SweepSpec, load_spec, smoke_twin, validate, with_overrides
from .data import DatasetFilesMissingError, load_dataset
from .storage import open_storage

EXIT_BAD_INPUT = 2
EXIT_ALL_FAILED = 3


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


def git_sha() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec = resolve_spec(args)
        sweep = args.name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
        spec = with_overrides(spec, name=args.name) if args.name else spec
        storage = open_storage(spec.storage)
        spec = dataclasses.replace(spec, storage=storage.uri)  # trials on other nodes need it absolute
        if storage.exists(storage.path(sweep, "trials")):
            raise SpecError(f"sweep {sweep!r} already has results in {storage.uri_of(sweep)}; choose another --name")
        spaces = search_spaces(spec)
    except (SpecError, DatasetFilesMissingError) as error:
        print(f"prune_ray.sweep: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_sweep(spec, sweep, spaces, address=args.address)


def search_spaces(spec: SweepSpec) -> dict[str, dict]:
    """Per method, one shape weight per prunable layer of the spec's model on the spec's data.
    Building the model here also rejects a model that cannot take the dataset, before Ray starts."""
    from .baseline import build_model
    from .prune import get_method
    from .search import shape_space
    from .trial import baseline_config

    data = load_dataset(spec.dataset, spec.data)
    try:
        probe = build_model(baseline_config(spec, spec.seed), data)
        example = data.example_inputs(1)
        layers = {method: get_method(method).layers(probe, example) for method in spec.methods}
    except (ValueError, RuntimeError) as error:
        raise SpecError(f"model {spec.model!r} cannot run on dataset {spec.dataset!r}: {error}") from None
    return {method: shape_space(len(found), spec.search.min_shape_weight) for method, found in layers.items()}


def run_sweep(spec: SweepSpec, sweep: str, spaces: dict[str, dict], *, address: str | None = None) -> int:
    import ray
    from ray import tune

    from .results import read_results
    from .search import Group, GroupedSearcher
    from .trial import TrialContext, baseline_config, obtain_baseline, tune_trial

    storage = open_storage(spec.storage)
    began = time.perf_counter()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=True)
    if address is None:
        spec = fit_to_local_machine(spec, ray.cluster_resources())

    # Train each distinct baseline once, before any trial, so trials only ever load it.
    print(f"[prune-ray] baseline {baseline_config(spec, spec.seed).key}: preparing", flush=True)

    @ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)
    def prepare_baseline(seed: int) -> tuple[str, float, bool, float]:
        from .trial import trial_device

        data = load_dataset(spec.dataset, spec.data).to(trial_device(spec))
        baseline = obtain_baseline(spec, data, seed)
        return baseline.key, baseline.top1, baseline.trained_now, baseline.train_seconds

    key, top1, trained_now, train_seconds = ray.get(prepare_baseline.remote(spec.seed))
    print(
        f"[prune-ray] baseline {key}: {'trained in %.1f s' % train_seconds if trained_now else 'loaded from the store'},"
        f" val top-1 {top1:.4f}",
        flush=True,
    )

    groups = [Group(budget, method, spec.seed) for budget in spec.budgets for method in spec.methods]
    searcher = GroupedSearcher(
        groups,
        spec.search.num_samples,
        spaces if spec.schedule == "searched" else None,
        spec.search.sampler,
        spec.seed,
    )
    context = TrialContext(spec, sweep, train_seconds if trained_now else 0.0, git_sha())
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, context=context), {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu}
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            num_samples=len(groups) * spec.search.num_samples,
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
    tuner.fit()
    return summarize(read_results(storage, sweep), storage.uri_of(sweep, "trials"), time.perf_counter() - began)


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
    return dataclasses.replace(spec, resources=resources)


def summarize(frame, trials_uri: str, seconds: float) -> int:
    """Print where the rows are and the best row per (budget, method); 3 if every trial failed."""
    ok = frame[frame["status"] == "ok"]
    failed = frame[frame["status"] == "failed"]
    print(f"\n[prune-ray] {len(frame)} trials ({len(ok)} ok, {len(failed)} failed) in {seconds:.1f} s")
    print(f"[prune-ray] results: {trials_uri}")
    if len(ok):
        best = ok.sort_values("top1", ascending=False).groupby(["budget", "method"], sort=True).head(1)
        columns = ["budget", "method", "budget_metric", "top1", "top1_pruned", "baseline_top1",
                   "params_keep", "macs_keep", "speedup_measured", "trial_id"]
        print("[prune-ray] best row per budget and method:")
        print(best.sort_values(["budget", "method"])[columns].to_string(index=False, float_format=lambda value: f"{value:.4f}"))
    for _, row in failed.iterrows():
        print(f"[prune-ray] failed {row['trial_id']} ({row['method']}, budget {row['budget']}): "
              f"{str(row['error']).splitlines()[0]}")
    if len(ok) == 0:
        print("[prune-ray] error: every trial failed", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main())
