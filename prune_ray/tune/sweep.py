"""The sweep command (`python -m prune_ray.sweep`): arguments -> validated spec -> tune.run.

The spec is validated completely, and checked against the model (preflight), before anything is
written or Ray starts; bad input exits with status 2 and one line naming the problem. Ray is
imported only once the sweep runs, so `--help` and bad input answer fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

from ..data import DatasetFilesMissingError
from ..models.external import absolute_model
from ..results.parquet import SAVED_SPEC  # the resolved spec, saved in the sweep directory for --resume
from ..results.storage import StorageError, checked_storage
from ..smoke import smoke_twin
from ..spec import NAME_PATTERN, SpecError, SweepSpec, load_spec, spec_from_yaml, validate, with_overrides
from ..trial_setup import preflight_checks, search_spaces
from .cluster import RayTempDirError, check_ray_temp_root

EXIT_BAD_INPUT = 2


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
    parser.add_argument(
        "--verbose", action="store_true",
        help="Tune's own output (its tables and notices) and the trials' output on the console too",
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
    storage = checked_storage(args.storage or SweepSpec().storage, args.name)
    saved = storage.path(args.name, SAVED_SPEC)
    if not storage.exists(saved):
        raise SpecError(f"nothing to resume: no sweep {args.name!r} in {storage.uri} ({SAVED_SPEC} missing)")
    spec = spec_from_yaml(storage.read_bytes(saved).decode(), where=storage.uri_of(args.name, SAVED_SPEC))
    return dataclasses.replace(spec, storage=storage.uri), args.name


def _absolute(path: str) -> str:
    return os.path.abspath(os.path.expanduser(path))


def absolute_paths(spec: SweepSpec) -> SweepSpec:
    """The spec's local paths made absolute: baseline.checkpoint, a model file, data.root (Ray's
    workers run in their own directories)."""
    spec = dataclasses.replace(spec, model=absolute_model(spec.model))
    if spec.baseline.checkpoint:
        spec = dataclasses.replace(spec, baseline=dataclasses.replace(spec.baseline, checkpoint=_absolute(spec.baseline.checkpoint)))
    if spec.data.root:
        spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, root=_absolute(spec.data.root)))
    return spec


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.resume:
            spec, sweep = resumed_spec(args)
        else:
            spec = resolve_spec(args)
            sweep = args.name or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}"
            spec = with_overrides(spec, name=args.name) if args.name and not args.smoke else spec  # a smoke run's name says so
            storage = checked_storage(spec.storage, sweep)  # a file, unwritable, a name too long: before Ray starts
            spec = dataclasses.replace(spec, storage=storage.uri)  # trials on other nodes need it absolute
            spec = absolute_paths(spec)  # and Ray's workers do not run in this directory
            if storage.exists(storage.path(sweep)):
                raise SpecError(
                    f"sweep {sweep!r} already exists in {storage.uri}: choose another --name, or --resume it"
                )
        spaces = search_spaces(spec, preflight_checks(spec))  # before Ray or Optuna is imported
        if args.address is None:  # last: the spec's own errors come first, whatever $TMPDIR is
            check_ray_temp_root()  # Ray's socket paths under a local session directory fit AF_UNIX's limit
    except (SpecError, StorageError, DatasetFilesMissingError, RayTempDirError) as error:
        print(f"prune-ray sweep: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from .cluster import StorageNotSharedError
    from .interrupt import INTERRUPTS, SweepInterrupted, resume_command
    from .run import run_sweep

    with INTERRUPTS.installed():  # SIGINT/SIGTERM: the sweep stops resumably (tune.interrupt)
        try:
            return run_sweep(spec, sweep, spaces, address=args.address, resume=args.resume, verbose=args.verbose)
        except StorageNotSharedError as error:
            print(f"prune-ray sweep: error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except SweepInterrupted as stop:
            print(f"[prune-ray] interrupted ({stop}); continue it with:\n{resume_command(sweep, spec.storage, args.address)}",
                  flush=True)
            return stop.exit_code


if __name__ == "__main__":
    sys.exit(main())
