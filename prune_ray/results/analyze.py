"""python -m prune_ray.analyze: frontier tables (Markdown or CSV) and plots of a results root.

Reads the Parquet (results.parquet), renders a table (results.tables) and optionally draws the
plot (results.plot). It imports neither Ray nor Optuna nor torch, so it starts fast on a laptop
holding a copy of a cluster's results.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import pyarrow as pa
import yaml

from .frontier import usable_rows
from .location import BadInput, open_results
from .parquet import SAVED_SPEC, list_sweeps, read_results
from .plot import plot_frontiers, plot_layers
from .storage import Storage
from .tables import FORMATS, TABLES, render

PLOT_SUFFIXES = (".png", ".pdf", ".svg")
SMOKE_SUFFIX = "-smoke"  # the name of a --smoke run's spec (prune_ray.smoke)


@dataclass(frozen=True)
class Loaded:
    results: pd.DataFrame
    sweeps: list[str]  # the sweeps read, in order
    smoke_left_out: list[str]  # smoke sweeps under the root that were not read


def is_smoke(storage: Storage, sweep: str) -> bool:
    """A `--smoke` run: its saved spec's name (or its directory's) ends in -smoke."""
    path = storage.path(sweep, SAVED_SPEC)
    try:
        saved = yaml.safe_load(storage.read_bytes(path)) if storage.exists(path) else None
    except (OSError, yaml.YAMLError):
        saved = None
    name = saved.get("name") if isinstance(saved, dict) else None
    return sweep.endswith(SMOKE_SUFFIX) or (isinstance(name, str) and name.endswith(SMOKE_SUFFIX))


def read_sweeps(location: str, sweeps: Sequence[str] | None = None, include_screen: bool = False,
                include_smoke: bool = False) -> Loaded:
    """The rows of RESULTS: the named sweeps, or every sweep there (smoke sweeps only when
    `include_smoke`); BadInput when a name is unknown or there is nothing to analyse."""
    names = list(sweeps or [])
    storage, own = open_results(location, names[0] if len(names) == 1 else None)
    if own is not None:  # a sweep's own directory, or one --sweep
        names = [own]
    known = list_sweeps(storage)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise BadInput(f"sweep {unknown[0]!r} not found in {storage.uri}; available: {', '.join(known) or 'none'}")
    smoke: list[str] = []
    if not names:
        smoke = [] if include_smoke else [name for name in known if is_smoke(storage, name)]
        names = [name for name in known if name not in smoke]
    try:
        frames = [read_results(storage, name) for name in names]
    except (OSError, pa.ArrowException) as error:  # a truncated or foreign Parquet file
        raise BadInput(f"cannot read results in {storage.uri}: {error}") from error
    results = pd.concat(frames, ignore_index=True) if frames else read_results(storage, "__none__")
    if usable_rows(results, include_screen).empty:
        where = f"sweep {names[0]!r} in {storage.uri}" if len(names) == 1 else storage.uri
        left = smoke_left_out(smoke)
        raise BadInput(f"no trials with status 'ok' in {where} ({len(results)} rows read{left}); "
                       "expected <sweep>/trials/*.parquet written by python -m prune_ray.sweep")
    return Loaded(results, names, smoke)


def load_results(location: str, sweep: str | None = None, include_screen: bool = False) -> pd.DataFrame:
    """The rows of one sweep of RESULTS, or of every sweep there, smoke sweeps included (the export
    picks among them); BadInput when there is nothing to analyse."""
    return read_sweeps(location, [sweep] if sweep else None, include_screen, include_smoke=True).results


def smoke_left_out(smoke: Sequence[str]) -> str:
    """The clause naming the smoke sweeps an analysis left out (empty when none were)."""
    return f"; smoke sweeps left out: {', '.join(smoke)} (--include-smoke reads them)" if smoke else ""


def describe_read(loaded: Loaded) -> str:
    """The line naming what the analysis merged."""
    counts = loaded.results.groupby("sweep").size() if len(loaded.results) else {}
    read = ", ".join(f"{name} ({counts.get(name, 0)} rows)" for name in loaded.sweeps)
    left = smoke_left_out(loaded.smoke_left_out)
    return f"[prune-ray] read {len(loaded.sweeps)} sweep{'' if len(loaded.sweeps) == 1 else 's'}: {read}{left}"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block: the house style for bad input
        print(f"prune-ray analyze: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m prune_ray.analyze",
        description="Frontier tables and plots of prune-ray results. Only trials with status 'ok' count; "
        "trials of one setting are aggregated over seeds (each search contributes its best trial), and a "
        "method's frontier is its settings that no other setting beats on both kept resource and top-1.",
        epilog="example: python -m prune_ray.analyze results --table methods --plot frontier.png. "
        "Exit codes: 0 success; 2 bad input (one line on stderr names it).",
    )
    parser.add_argument("results", metavar="RESULTS", help="results root (the sweep's --storage: local path or s3://, gs:// URI), "
                        "or one sweep's directory or trials/ directory")
    parser.add_argument("--sweep", metavar="NAME", nargs="+", help="only these sweeps under RESULTS (default: every sweep "
                        "but --smoke runs); the sweeps read are named on stderr")
    parser.add_argument("--include-smoke", action="store_true", help="with no --sweep: read --smoke runs too (left out by "
                        "default: their 1-epoch rows at near-chance accuracy would sit beside real ones)")
    parser.add_argument("--table", choices=TABLES, default="frontier", help="frontier: the non-dominated settings per method "
                        "(default); ratio-grid: accuracy and thresholds per pruning ratio, like the source documents; methods: "
                        "method / network / dataset / accuracy / sparsity / MACs removed, with a baseline row per network; "
                        "strategies: per method and budget, each schedule (and sampler, +screen) side by side: mean ± std "
                        "of val and test top-1 over seeds, trials, fine-tuning epochs and seconds per run")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="markdown (default) or csv (numbers unformatted, "
                        "accuracies in %%, std in *_std columns; the ratio grid in long form)")
    parser.add_argument("--plot", metavar="OUT.png", help="also write a plot: top-1 vs compression and vs MACs kept, "
                        "per model and dataset, with published points from the bundled literature.csv")
    parser.add_argument("--plot-layers", metavar="OUT.png", help="also write the kept fraction of every layer under each "
                        "schedule's picked trial at one budget (the one most schedules share, the tightest on a tie)")
    parser.add_argument("--include-screen", action="store_true", help="keep stage 'screen' rows (short first-stage "
                        "fine-tunes of a two-stage search), which are left out by default")
    return parser


def _check_plot_path(path: str) -> None:
    """Fail before the (possibly remote) read rather than after it."""
    folder, suffix = os.path.dirname(os.path.abspath(path)), os.path.splitext(path)[1].lower()
    if suffix not in PLOT_SUFFIXES:
        raise BadInput(f"--plot {path!r}: unknown image type {suffix or '(none)'!r}; allowed: {', '.join(PLOT_SUFFIXES)}")
    if not os.path.isdir(folder):
        raise BadInput(f"--plot {path!r}: folder {folder!r} does not exist; create it or pick an existing one")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        for path in (args.plot, args.plot_layers):
            if path:
                _check_plot_path(path)
        loaded = read_sweeps(args.results, args.sweep, args.include_screen, args.include_smoke)
    except BadInput as error:
        print(f"prune-ray analyze: error: {error}", file=sys.stderr)
        return 2
    results = loaded.results
    print(describe_read(loaded), file=sys.stderr)
    sys.stdout.write(render(results, args.table, args.format, args.include_screen))
    if args.plot:
        plot_frontiers(results, args.plot, include_screen=args.include_screen)
        print(f"[prune-ray] plot: {args.plot}", file=sys.stderr)
    if args.plot_layers:
        plot_layers(results, args.plot_layers, include_screen=args.include_screen)
        print(f"[prune-ray] layers plot: {args.plot_layers}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
