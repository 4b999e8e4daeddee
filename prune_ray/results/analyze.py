"""python -m prune_ray.analyze: frontier tables (Markdown or CSV) and plots of a results root.

Reads the Parquet (results.parquet), renders a table (results.tables) and optionally draws the
plot (results.plot). It imports neither Ray nor Optuna nor torch, so it starts fast on a laptop
holding a copy of a cluster's results.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

import pandas as pd
import pyarrow as pa

from .frontier import usable_rows
from .location import BadInput, open_results
from .parquet import read_results
from .plot import plot_frontiers
from .tables import FORMATS, TABLES, render

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


def load_results(location: str, sweep: str | None = None, include_screen: bool = False) -> pd.DataFrame:
    """The rows of RESULTS (all sweeps, or one); BadInput when there is nothing to analyse."""
    storage, sweep = open_results(location, sweep)
    try:
        results = read_results(storage, sweep)
    except (OSError, pa.ArrowException) as error:  # a truncated or foreign Parquet file
        raise BadInput(f"cannot read results in {storage.uri}: {error}") from error
    if usable_rows(results, include_screen).empty:
        where = f"sweep {sweep!r} in {storage.uri}" if sweep else storage.uri
        raise BadInput(f"no trials with status 'ok' in {where} ({len(results)} rows read); "
                       "expected <sweep>/trials/*.parquet written by python -m prune_ray.sweep")
    return results


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block: the house style for bad input
        print(f"prune-ray analyze: {message}", file=sys.stderr)
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
    parser.add_argument("--sweep", metavar="NAME", help="only this sweep under RESULTS (default: every sweep)")
    parser.add_argument("--table", choices=TABLES, default="frontier", help="frontier: the non-dominated settings per method "
                        "(default); ratio-grid: accuracy and thresholds per pruning ratio, like the source documents; methods: "
                        "method / network / dataset / accuracy / sparsity / MACs removed, with a baseline row per network; "
                        "strategies: per method and budget, each schedule (and sampler, +screen) side by side: mean ± std "
                        "of val and test top-1 over seeds, trials, fine-tuning epochs and seconds per run")
    parser.add_argument("--format", choices=FORMATS, default="markdown", help="markdown (default) or csv (numbers unformatted, "
                        "accuracies in %%, std in *_std columns; the ratio grid in long form)")
    parser.add_argument("--plot", metavar="OUT.png", help="also write a plot: top-1 vs compression and vs MACs kept, "
                        "per model and dataset, with published points from the bundled literature.csv")
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
        if args.plot:
            _check_plot_path(args.plot)
        results = load_results(args.results, args.sweep, args.include_screen)
    except BadInput as error:
        print(f"prune-ray analyze: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(render(results, args.table, args.format, args.include_screen))
    if args.plot:
        plot_frontiers(results, args.plot, include_screen=args.include_screen)
        print(f"[prune-ray] plot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
