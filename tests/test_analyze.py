"""prune_ray.analyze and prune_ray.frontier on constructed results whose answers are known by construction."""

import io
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from prune_ray.results.analyze import main
from prune_ray.results.plot import load_literature
from prune_ray.results.tables import frontier_table, render, strategies_table
from prune_ray.results.frontier import literature_points, non_dominated, point_summary, pareto_front
from results_rows import arrow_backed, frame, the_point, write_rows

# ---------------------------------------------------------------- operating points


def test_each_seed_contributes_its_best_trial_and_seeds_are_averaged():
    results = arrow_backed(frame(
        {"seed": 0, "top1": 0.80, "params_keep": 0.50},
        {"seed": 0, "top1": 0.90, "params_keep": 0.49},  # seed 0's search picks this one
        {"seed": 1, "top1": 0.70, "params_keep": 0.50},
        {"seed": 1, "top1": 0.94, "params_keep": 0.48},  # and this one for seed 1
        {"seed": 2, "top1": 0.92, "params_keep": 0.50},
        {"seed": 2, "top1": 0.99, "status": "failed"},  # failed rows never count
        {"seed": 0, "top1": 0.60, "budget": 0.3, "params_keep": 0.3},
    ))
    points = point_summary(results)
    assert list(points["budget"]) == [0.3, 0.5]  # sorted by keep
    half = the_point(points, budget=0.5)
    assert half["n"] == 3 and half["trials"] == 5
    assert half["top1_mean"] == pytest.approx(0.92)
    assert half["top1_std"] == pytest.approx(0.02)  # sample std of 0.90, 0.94, 0.92
    assert half["keep"] == pytest.approx((0.49 + 0.48 + 0.50) / 3)
    assert math.isnan(the_point(points, budget=0.3)["top1_std"])  # one seed: no spread to report


def test_keep_is_the_budgeted_resource():
    points = point_summary(frame(
        {"method": "l1_filter", "granularity": "structured", "budget_metric": "macs", "params_keep": 0.7, "macs_keep": 0.5},
        {"method": "magnitude", "budget_metric": "params", "params_keep": 0.4, "macs_keep": 1.0},
        # no metric recorded (fixed ratio): structured rows are measured on MACs, as budget_metric: auto does
        {"method": "fpgm", "granularity": "structured", "budget_metric": None, "budget": None, "params_keep": 0.6, "macs_keep": 0.45},
    ))
    assert the_point(points, method="l1_filter")["keep"] == 0.5
    assert the_point(points, method="magnitude")["keep"] == 0.4
    assert the_point(points, method="fpgm")["keep"] == 0.45


def test_screen_rows_are_left_out_unless_asked_for():
    results = arrow_backed(frame(
        {"top1": 0.90, "stage": "final"},
        {"top1": 0.99, "stage": "screen", "finetune_epochs": 1},
        {"top1": 0.85, "stage": "final", "seed": 1},
    ))
    assert the_point(point_summary(results), budget=0.5)["top1_mean"] == pytest.approx(0.875)
    with_screen = the_point(point_summary(results, include_screen=True), budget=0.5)
    assert with_screen["top1_mean"] == pytest.approx((0.99 + 0.85) / 2) and with_screen["trials"] == 3


def test_fixed_ratios_and_iterative_variants_are_separate_points():
    fixed = {"budget": None, "budget_metric": None, "schedule": "fixed"}
    results = arrow_backed(frame(
        {**fixed, "ratio": 0.3, "iterative": "oneshot", "prune_steps": 1, "params_keep": 0.7, "top1": 0.91},
        {**fixed, "ratio": 0.5, "iterative": "oneshot", "prune_steps": 1, "params_keep": 0.5, "top1": 0.88},
        {**fixed, "ratio": 0.5, "iterative": "agp", "prune_steps": 4, "params_keep": 0.5, "top1": 0.90},
        {**fixed, "ratio": 0.5, "iterative": "agp", "prune_steps": 4, "params_keep": 0.5, "top1": 0.92, "seed": 1},
    ))
    points = point_summary(results)
    assert len(points) == 3
    agp = the_point(points, iterative="agp")
    assert (agp["ratio"], agp["prune_steps"], agp["n"]) == (0.5, 4, 2)
    assert agp["top1_mean"] == pytest.approx(0.91)


# ---------------------------------------------------------------- frontier


def test_non_dominated_points():
    keep = [0.3, 0.5, 0.5, 0.7, 0.9, 0.9]
    accuracy = [0.80, 0.90, 0.85, 0.88, 0.95, 0.95]
    # (0.5, 0.85) loses to (0.5, 0.90); (0.7, 0.88) to (0.5, 0.90); equal points do not dominate each other
    assert list(non_dominated(np.array(keep), np.array(accuracy))) == [True, True, False, False, True, True]


def test_pareto_front_is_per_method_and_sorted_by_keep():
    points = pd.DataFrame({
        "model": "m", "dataset": "d", "budget_metric": "params",
        "method": ["a", "a", "a", "a", "b"],
        "keep": [0.7, 0.3, 0.5, 0.6, 0.2],
        "top1_mean": [0.95, 0.80, 0.90, 0.85, 0.99],  # b's point would dominate all of a's, but fronts are per method
    })
    front = pareto_front(points)
    assert list(zip(front["method"], front["keep"])) == [("a", 0.3), ("a", 0.5), ("a", 0.7), ("b", 0.2)]
    # along another axis the same points give another front
    points["macs_keep"] = [0.1, 0.9, 0.9, 0.9, 0.5]
    assert list(pareto_front(points, keep_column="macs_keep", by=("method",))["keep"]) == [0.7, 0.2]


# ---------------------------------------------------------------- tables

# vgg16_bn on CIFAR-10 from reference/seeds/weight-prune-vgg-resnet-ratio-grid.md, as fixed-ratio rows
SEED_GRID = [  # ratio, top1 without fine-tune, top1, conv threshold, fc threshold
    (0.3, 0.9383, 0.9390, 1.44e-03, 6.76e-02),
    (0.5, 0.9390, 0.9395, 3.19e-03, 9.41e-02),
    (0.7, 0.8904, 0.9301, 6.53e-03, 1.26e-01),
]


def test_ratio_grid_reproduces_the_seed_layout():
    results = frame(*(
        {"model": "vgg16_bn", "budget": None, "budget_metric": None, "schedule": "uniform", "ratio": ratio,
         "params_keep": 1 - ratio, "top1_pruned": pruned, "top1": tuned, "conv_threshold": conv, "fc_threshold": fc,
         "baseline_top1": 0.9384}
        for ratio, pruned, tuned, conv, fc in reversed(SEED_GRID)
    ))
    assert render(results, "ratio-grid", "markdown").splitlines() == [
        "### vgg16_bn on cifar10: magnitude (uniform)",
        "",
        "| ratio | Baseline | 0.3 | 0.5 | 0.7 |",
        "| :-: | :-: | :-: | :-: | :-: |",
        "| top1 (without fine-tune) | 93.84 | 93.83 | 93.90 | 89.04 |",
        "| top1 | 93.84 | 93.90 | 93.95 | 93.01 |",
        "| conv threshold | 0 | 1.44e-03 | 3.19e-03 | 6.53e-03 |",
        "| fc threshold | 0 | 6.76e-02 | 9.41e-02 | 1.26e-01 |",
    ]
    csv = pd.read_csv(io.StringIO(render(results, "ratio-grid", "csv")))
    assert list(csv["ratio"]) == [0.0, 0.3, 0.5, 0.7] and list(csv["baseline"]) == [True, False, False, False]
    assert list(csv["conv_threshold"]) == [0.0, 1.44e-03, 3.19e-03, 6.53e-03]


def test_ratio_grid_without_a_ratio_column_uses_the_removed_fraction():
    results = frame(
        {"method": "l1_filter", "granularity": "structured", "budget_metric": "macs", "macs_keep": 0.25, "budget": 0.25, "top1": 0.88},
        {"method": "l1_filter", "granularity": "structured", "budget_metric": "macs", "macs_keep": 0.5, "top1": 0.91},
    )
    lines = render(results, "ratio-grid", "markdown").splitlines()
    assert lines[0] == "### resnet56 on cifar10: l1_filter (macs, searched)"
    assert lines[2] == "| ratio | Baseline | 0.5 | 0.75 |"
    assert lines[5] == "| top1 | 93.00 | 91.00 | 88.00 |"
    assert len(lines) == 6  # a method without thresholds gets no threshold rows


def test_methods_table_lists_baselines_and_frontier_points_only():
    structured = {"method": "l1_filter", "granularity": "structured", "budget_metric": "macs"}
    results = arrow_backed(frame(
        {**structured, "seed": 0, "top1": 0.9310, "baseline_top1": 0.9304, "params_keep": 0.863, "macs_keep": 0.724},
        {**structured, "seed": 1, "top1": 0.9290, "baseline_top1": 0.9300, "params_keep": 0.863, "macs_keep": 0.724},
        # keeps more MACs and is less accurate: dominated, so not listed
        {**structured, "seed": 0, "budget": 0.8, "top1": 0.92, "params_keep": 0.9, "macs_keep": 0.8},
    ))
    assert render(results, "methods", "markdown").splitlines() == [
        "| Method | Network | Dataset | Acc | Sparsity | MACs removed | Notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        "| Baseline | resnet56 | cifar10 | 93.02 ± 0.03% | 0.00% | 0.00% | 2 seeds |",
        "| l1_filter | resnet56 | cifar10 | 93.00 ± 0.14% | 13.70% | 27.60% | budget 0.5 macs, searched; 2 seeds |",
    ]
    csv = pd.read_csv(io.StringIO(render(results, "methods", "csv")))
    assert list(csv["method"]) == ["Baseline", "l1_filter"]
    assert csv["top1_pct"].tolist() == pytest.approx([93.02, 93.00])
    assert csv["macs_removed_pct"].tolist() == pytest.approx([0.0, 27.6])


# ---------------------------------------------------------------- CLI on real Parquet


def test_cli_prints_the_frontier_as_csv(tmp_path, capsys):
    write_rows(
        tmp_path,
        {"budget": 0.5, "top1": 0.91, "test_top1": 0.90, "params_keep": 0.5},
        {"budget": 0.5, "top1": 0.93, "test_top1": 0.92, "params_keep": 0.5, "seed": 1},
        {"budget": 0.3, "top1": 0.95, "params_keep": 0.3},  # dominates the 0.5 point
        {"budget": 0.2, "top1": 0.10, "status": "failed", "error": "ValueError: boom"},
        {"sweep": "other", "budget": 0.1, "top1": 0.5, "params_keep": 0.1},
    )
    assert main([str(tmp_path), "--sweep", "s1", "--format", "csv"]) == 0
    printed = capsys.readouterr()
    table = pd.read_csv(io.StringIO(printed.out))
    assert list(table["budget"]) == [0.3, 0.5] and list(table["dominated"]) == [False, True]  # flagged, not dropped
    assert list(table["top1_pct"]) == [95.0, 92.0] and table["compression"][0] == pytest.approx(1 / 0.3, rel=1e-5)
    assert "[prune-ray] read 1 sweep: s1 (4 rows)" in printed.err
    # all sweeps, named on stderr; the frontier now has the other sweep's 0.1 point first
    assert main([str(tmp_path), "--format", "csv"]) == 0
    printed = capsys.readouterr()
    assert list(pd.read_csv(io.StringIO(printed.out))["budget"]) == [0.1, 0.3, 0.5]
    assert "[prune-ray] read 2 sweeps: other (1 rows), s1 (4 rows)" in printed.err


def test_cli_reads_several_named_sweeps_and_leaves_smoke_runs_out_unless_asked(tmp_path, capsys):
    write_rows(tmp_path, {"top1": 0.9}, {"sweep": "b", "budget": 0.3, "params_keep": 0.3, "top1": 0.8},
               {"sweep": "c", "budget": 0.2, "params_keep": 0.2, "top1": 0.5}, {"sweep": "recipe-smoke", "budget": 0.1, "top1": 0.1})
    (tmp_path / "c" / "spec.yaml").write_text("name: mnist-smoke\n")  # --smoke --name c: the spec's name says smoke
    assert main([str(tmp_path), "--sweep", "s1", "b", "--format", "csv"]) == 0
    printed = capsys.readouterr()
    assert sorted(pd.read_csv(io.StringIO(printed.out))["budget"]) == [0.3, 0.5] and "read 2 sweeps: s1 (1 rows), b (1 rows)" in printed.err
    assert main([str(tmp_path), "--format", "csv"]) == 0
    printed = capsys.readouterr()
    assert sorted(pd.read_csv(io.StringIO(printed.out))["budget"]) == [0.3, 0.5]
    assert "smoke sweeps left out: c, recipe-smoke (--include-smoke reads them)" in printed.err
    assert main([str(tmp_path), "--include-smoke", "--format", "csv"]) == 0
    assert sorted(pd.read_csv(io.StringIO(capsys.readouterr().out))["budget"]) == [0.1, 0.2, 0.3, 0.5]
    assert main([str(tmp_path), "--sweep", "s1", "nope"]) == 2
    assert "sweep 'nope' not found" in capsys.readouterr().err


def test_the_markdown_frontier_flags_dominated_points_with_a_note(tmp_path, capsys):
    write_rows(tmp_path, {"top1": 0.9}, {"budget": 0.3, "params_keep": 0.3, "top1": 0.95})
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| dominated |" in out.splitlines()[0] and out.count("| yes |") == 1
    assert out.strip().endswith("it is not on the frontier.")


def test_cli_on_schema_v3_parquet_skips_screen_rows_and_uses_ratios(tmp_path, capsys):
    fixed = {"budget": None, "budget_metric": None, "schedule": "fixed", "iterative": "oneshot", "prune_steps": 1}
    write_rows(
        tmp_path,
        {**fixed, "ratio": 0.3, "params_keep": 0.7, "top1": 0.92, "stage": "final"},
        {**fixed, "ratio": 0.3, "params_keep": 0.7, "top1": 0.99, "stage": "screen"},
        {**fixed, "ratio": 0.6, "params_keep": 0.4, "top1": 0.90, "stage": "single"},
    )
    assert main([str(tmp_path), "--table", "ratio-grid", "--format", "csv"]) == 0
    grid = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(grid["ratio"]) == [0.0, 0.3, 0.6] and list(grid["top1_pct"]) == [93.0, 92.0, 90.0]
    assert list(grid["iterative"]) == ["oneshot"] * 3 and list(grid["prune_steps"]) == [1] * 3


def test_cli_accepts_a_sweep_directory_or_its_trials_directory(tmp_path, capsys):
    write_rows(tmp_path, {"top1": 0.9}, {"sweep": "other", "top1": 0.5})
    for location in (tmp_path / "s1", tmp_path / "s1" / "trials"):
        assert main([str(location), "--format", "csv"]) == 0
        assert list(pd.read_csv(io.StringIO(capsys.readouterr().out))["top1_pct"]) == [90.0]


def test_cli_sweep_directory_and_a_different_sweep_name_conflict(tmp_path, capsys):
    write_rows(tmp_path, {"top1": 0.9})
    assert main([str(tmp_path / "s1"), "--sweep", "s2"]) == 2
    assert "'s2' does not match" in capsys.readouterr().err
    assert main([str(tmp_path / "s1"), "--sweep", "s1", "--format", "csv"]) == 0


def test_cli_markdown_and_plot(tmp_path, capsys):
    write_rows(tmp_path, {"top1": 0.9})
    out = tmp_path / "frontier.png"
    assert main([str(tmp_path), "--plot", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("| model | dataset | method | metric | budget | schedule | kept |")
    assert "| resnet56 | cifar10 | magnitude | params | 0.5 | searched | 0.5000 | 2.00 | 90.00 |" in printed.out
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(out) in printed.err


@pytest.mark.parametrize(
    "setup, args, expected",
    [
        (None, ["{root}/nope"], ["nope", "--storage"]),
        ("ok", ["{root}", "--sweep", "s9"], ["'s9'", "available: s1"]),
        (None, ["{root}"], ["no trials with status 'ok'", "0 rows read"]),
        ("failed", ["{root}"], ["no trials with status 'ok'", "1 rows read"]),
        ("ok", ["{root}", "--plot", "{root}/missing/out.png"], ["missing", "does not exist"]),
        ("ok", ["{root}", "--plot", "{root}/out.jpgx"], ["'.jpgx'", ".png, .pdf, .svg"]),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, setup, args, expected):
    if setup:
        write_rows(tmp_path, {"status": setup, "top1": 0.9 if setup == "ok" else None})
    assert main([arg.format(root=tmp_path) for arg in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and all(part in err for part in expected), err


def test_cli_unknown_format_is_one_line_and_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main([str(tmp_path), "--format", "xml"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "'xml'" in err and "markdown" in err and "csv" in err


def test_module_entry_point_runs_without_ray_optuna_or_torch(tmp_path):
    check = (
        "import sys; from prune_ray.results.analyze import main; rc = main(sys.argv[1:]); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'optuna', 'torch'})); sys.exit(rc)"
    )
    run = subprocess.run([sys.executable, "-c", check, str(tmp_path / "nope")], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout.strip() == "[]" and "nope" in run.stderr
    helped = subprocess.run([sys.executable, "-m", "prune_ray.analyze", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "--table {frontier,ratio-grid,methods,strategies}" in helped.stdout


# ---------------------------------------------------------------- literature and plot


def test_literature_points_match_model_and_dataset_and_derive_keeps():
    literature = pd.DataFrame({
        "model": ["resnet56", "resnet56", "resnet56", "vgg16"],
        "dataset": ["cifar10", "cifar10", "cifar100", "cifar10"],
        "method": ["a", "b", "c", "d"],
        "pruned_top1": [93.0, 92.0, 70.0, 93.5],
        "params_removed": [0.4, np.nan, 0.5, 0.6],
        "macs_removed": [0.5, np.nan, 0.5, 0.3],
        "speedup": [np.nan, 2.0, np.nan, np.nan],
    })
    points = literature_points(literature, "resnet56", "cifar10")
    assert list(points["method"]) == ["a", "b"]
    assert points["params_keep"].tolist() == pytest.approx([0.6, np.nan], nan_ok=True)
    assert points["macs_keep"].tolist() == pytest.approx([0.5, 0.5])  # b: 1 / speedup


def test_packaged_literature_is_the_reference_table():
    literature = load_literature()
    assert list(literature.columns) == [
        "model", "dataset", "method", "granularity", "baseline_top1", "pruned_top1",
        "params_removed", "macs_removed", "speedup", "source",
    ]
    assert len(literature_points(literature, "resnet56", "cifar10")) == 11
    assert list(literature_points(literature, "vgg16_bn", "cifar10")["pruned_top1"]) == [93.90, 89.04, 48.60]


def test_per_layer_fixed_ratios_and_frontier_trials_are_points_of_their_own():
    conv_only, fc_only = [0.5, 0.5, 0.0], [0.0, 0.0, 0.9]  # fixed_ratios [{conv: 0.5}, {fc: 0.9}]
    fixed = {"schedule": "fixed", "budget": None, "ratio": None, "method": "conv_fc"}
    results = arrow_backed(frame(
        {**fixed, "seed": 0, "top1": 0.90, "params_keep": 0.8, "layer_ratios": conv_only, "trial_id": "a"},
        {**fixed, "seed": 1, "top1": 0.92, "params_keep": 0.8, "layer_ratios": conv_only, "trial_id": "b"},
        {**fixed, "seed": 0, "top1": 0.80, "params_keep": 0.3, "layer_ratios": fc_only, "trial_id": "c"},
        {"budget": None, "seed": 0, "top1": 0.85, "params_keep": 0.4, "layer_ratios": [0.6, 0.2, 0.7], "trial_id": "d",
         "sampler": "nsga2"},
        {"budget": None, "seed": 0, "top1": 0.88, "params_keep": 0.6, "layer_ratios": [0.3, 0.2, 0.5], "trial_id": "e",
         "sampler": "nsga2"},
    ))
    points = point_summary(results)
    mapped = points[points["schedule"] == "fixed"]
    assert sorted(mapped["n"]) == [1, 2]  # the two seeds of {conv: 0.5} are one point, {fc: 0.9} another
    assert the_point(mapped, n=2)["top1_mean"] == pytest.approx(0.91)
    shown = set(frontier_table(mapped)["point_detail"])  # the tables say which mapping a row is
    assert shown == {"layer ratios 0.500 0.500 0.000", "layer ratios 0.000 0.000 0.900"}
    searched = points[points["schedule"] == "searched"]
    assert sorted(searched["point_detail"]) == ["d", "e"]  # a frontier search's trials, one point each
    assert len(pareto_front(searched)) == 2


def test_strategies_table_compares_schedules_at_equal_budgets_with_their_cost():
    one_shot = {"schedule": "global", "sampler": None, "finetune_epochs": 3, "time_finetune_s": 2.0}
    search = {"schedule": "searched", "sampler": "tpe", "finetune_epochs": 3, "time_finetune_s": 2.0}
    screen = {**search, "stage": "screen", "finetune_epochs": 0, "time_finetune_s": 0.0}
    results = arrow_backed(frame(
        {**one_shot, "seed": 0, "top1": 0.90, "test_top1": 0.89},
        {**one_shot, "seed": 1, "top1": 0.92, "test_top1": 0.91},
        {**search, "seed": 0, "top1": 0.93, "test_top1": 0.90},
        {**search, "seed": 0, "top1": 0.95, "test_top1": 0.92},  # seed 0's pick (best val)
        {**search, "seed": 1, "top1": 0.94, "test_top1": 0.93},
        {**screen, "seed": 0, "top1": 0.50}, {**screen, "seed": 0, "top1": 0.40},
        {**search, "stage": "final", "seed": 0, "top1": 0.96, "test_top1": 0.95},
        # another sweep screens by one epoch of fine-tuning: a strategy of its own
        {**screen, "sweep": "s2", "finetune_epochs": 1, "top1": 0.70}, {**screen, "sweep": "s2", "finetune_epochs": 1, "top1": 0.60},
        {**search, "sweep": "s2", "stage": "final", "seed": 0, "top1": 0.94, "test_top1": 0.94},
    ))
    table = strategies_table(results).set_index("strategy")
    assert list(table.index) == ["searched/tpe +screen", "searched/tpe +screen 1 ep", "searched/tpe", "global"]  # by test top-1
    assert table.loc["searched/tpe +screen 1 ep", "epochs"] == 5 and table.loc["searched/tpe +screen 1 ep", "n"] == 1
    assert table.loc["global", "test_top1_mean_pct"] == pytest.approx(90.0)
    assert table.loc["searched/tpe", "top1_mean_pct"] == pytest.approx(94.5)  # (95 + 94) / 2: best per seed
    assert table.loc["searched/tpe", "epochs"] == pytest.approx(4.5)  # seed 0 ran 2 trials, seed 1 one
    assert table.loc["searched/tpe +screen", "epochs"] == 3 and table.loc["searched/tpe +screen", "trials"] == 3
    text = render(results, "strategies", "markdown")
    assert "resnet56 on cifar10, magnitude, budget 0.5 params:" in text and "| global | 91.00 ± 1.41 | 90.00 ± 1.41 |" in text


def test_frontier_and_methods_tables_name_each_points_saved_models():
    """model_uri: the picked trial of each seed (space-separated), none for a point without a saved model."""
    results = arrow_backed(frame(
        {"seed": 0, "top1": 0.90, "params_keep": 0.49, "trial_id": "a", "model_uri": "/r/s1/models/a"},
        {"seed": 0, "top1": 0.80, "params_keep": 0.50, "trial_id": "b", "model_uri": None},  # not picked
        {"seed": 1, "top1": 0.91, "params_keep": 0.49, "trial_id": "c", "model_uri": "/r/s1/models/c"},
        {"seed": 0, "top1": 0.85, "budget": 0.3, "params_keep": 0.3, "trial_id": "d", "model_uri": None},
    ))
    table = frontier_table(point_summary(results)).set_index("budget")
    assert table.loc[0.5, "model_uri"] == "/r/s1/models/a /r/s1/models/c"
    assert pd.isna(table.loc[0.3, "model_uri"])
    methods = render(results, "methods", "markdown")
    assert "| Model |" in methods and "/r/s1/models/a /r/s1/models/c" in methods


# ---------------------------------------------------------------- what the plots' channels mean


