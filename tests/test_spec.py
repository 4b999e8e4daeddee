import dataclasses
import os

import pytest
import yaml
from fixtures import cli_cases, run_sweep_command

from prune_ray.smoke import smoke_twin
from prune_ray.spec import SpecError, SweepSpec, from_mapping, load_spec, spec_from_yaml, validate, with_overrides
from prune_ray.train import TrainRecipe

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_spec(tmp_path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def test_default_yaml_equals_builtin_default():
    assert load_spec(os.path.join(ROOT, "sweeps", "default.yaml")) == SweepSpec()


def test_yaml_values_become_typed_fields(tmp_path):
    spec = load_spec(write_spec(tmp_path, "budgets: [0.7, 0.3]\nfinetune: {epochs: 1, lr: 1}\nresources: {cpu: 2}\n"))
    assert spec.budgets == (0.7, 0.3)
    assert spec.finetune.epochs == 1 and spec.finetune.lr == 1.0 and isinstance(spec.finetune.lr, float)
    assert spec.resources.cpu == 2.0
    assert spec.baseline == SweepSpec().baseline  # untouched sections keep their defaults


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("modle: digits_cnn\n", ["unknown key 'modle'", "model"]),
        ("finetune: {epocs: 3}\n", ["finetune", "unknown key 'epocs'", "epochs"]),
        ("finetune: {epochs: three}\n", ["finetune.epochs", "expected int", "'three'"]),
        ("budgets: [0.5, yes]\n", ["budgets[1]", "expected float"]),
        ("budgets: [1.5]\n", ["budget 1.5", "(0, 1]"]),
        ("budgets: [0]\n", ["budget 0.0", "(0, 1]"]),
        ("budgets: [-0.2]\n", ["budget -0.2", "(0, 1]"]),
        ("model: resnet9000\n", ["model", "'resnet9000'", "digits_cnn"]),
        ("dataset: imagenet22k\n", ["dataset", "'imagenet22k'", "digits"]),
        ("methods: [magnitude, snip]\n", ["methods[1]", "'snip'", "l1_filter", "magnitude"]),
        ("budget_metric: flops\n", ["budget_metric", "'flops'", "macs", "params"]),
        ("methods: [magnitude]\nbudget_metric: macs\n", ["'macs'", "magnitude", "params"]),
        ("search: {sampler: grid}\n", ["search.sampler", "'grid'", "tpe", "cmaes"]),
        ("search: {prior: netadapt}\n", ["search.prior", "'netadapt'", "auto", "knapsack", "lamp"]),
        ("search: {curve_points: 1}\n", ["search.curve_points", "1", "[2, 64]"]),
        ("seeds: [0, 0]\n", ["seeds", "twice"]),
        ("search: {num_samples: 0}\n", ["search.num_samples", "> 0"]),
        ("finetune: {lr_schedule: linear}\n", ["finetune.lr_schedule", "'linear'", "cosine"]),
        ("name: ../escape\n", ["name", "'../escape'"]),
        ("- just\n- a list\n", ["expected a mapping"]),
        ("budgets: [0.5\n", ["not valid YAML", "line"]),
        ("budgets: []\nsearch: {sampler: cmaes}\n", ["budgets: []", "nsga2", "'cmaes'"]),
        ("budgets: []\nschedule: uniform\nsearch: {sampler: nsga2}\n", ["budgets: []", "'uniform'"]),
        ("budgets: []\nsearch: {sampler: nsga2, screen_epochs: 1}\n", ["budgets: []", "screen_epochs"]),
        ("search: {keep_range: [0.9, 0.2]}\n", ["search.keep_range", "[0.9, 0.2]", "0 < low < high <= 1"]),
        ("search: {early_stopping: hyperband}\n", ["search.early_stopping", "'hyperband'", "asha"]),
        ("search: {early_stopping: asha, grace_epochs: 3}\n", ["search.grace_epochs", "3", "finetune.epochs"]),
        ("search: {screen_epochs: 1, early_stopping: asha}\nfinetune: {epochs: 5}\n", ["search.grace_epochs", "search.screen_epochs is 1"]),
        ("schedule: netadapt\nmethods: [tucker]\n", ["netadapt", "'tucker'"]),
        ("schedule: netadapt\niterative: cycles\nprune_steps: [2]\n", ["netadapt", "oneshot"]),
        ("netadapt: {step_fraction: 1.5}\n", ["netadapt.step_fraction", "1.5", "(0, 1)"]),
        ("netadapt: {parallel: 0}\n", ["netadapt.parallel", "> 0"]),
        ("schedule: fixed\nmethods: [l1_filter]\nfixed_ratios: [0.99]\n",
         ["fixed_ratios[0]", "0.99", "[0, 0.95]", "'l1_filter'", "output channels removed"]),
        ("netadapt: {stepsize: 0.1}\n", ["netadapt", "unknown key 'stepsize'", "step_fraction"]),
        ("data: {train_limit: 0}\n", ["data.train_limit", "0", "positive", "null"]),
    ],
)
def test_bad_specs_give_one_line_errors_naming_the_value(tmp_path, text, fragments):
    with pytest.raises(SpecError) as caught:
        load_spec(write_spec(tmp_path, text))
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_spec_file_is_an_error(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_spec(str(tmp_path / "nope.yaml"))


def test_overrides_are_validated():
    spec = with_overrides(SweepSpec(), budgets=(0.7, 0.3), search__num_samples=2)
    assert spec.budgets == (0.7, 0.3) and spec.search.num_samples == 2
    with pytest.raises(SpecError, match="budget 2.0"):
        with_overrides(SweepSpec(), budgets=(2.0,))


def test_every_default_field_round_trips_through_yaml():
    data = yaml.safe_load(yaml.safe_dump(dataclasses.asdict(SweepSpec())))
    spec = from_mapping(SweepSpec, data)
    validate(spec)
    assert spec == SweepSpec()


@pytest.mark.parametrize(
    "args, fragment, real",
    cli_cases(
        (["--budget", "1.5"], "budget 1.5 is outside (0, 1]"),
        (["--budget", "0"], "budget 0.0 is outside (0, 1]"),
        (["BAD"], "unknown key 'epocs'"),
        (["--num-samples", "0"], "search.num_samples"),
    ),
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, args, fragment, real):
    (tmp_path / "BAD").write_text("finetune: {epocs: 1}\n")
    storage = tmp_path / "results"
    result = run_sweep_command([*args, "--storage", str(storage)], tmp_path, real)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], result.stderr
    assert not storage.exists()


def test_cli_help_explains_each_option(tmp_path):
    result = run_sweep_command(["--help"], tmp_path, real=True)
    assert result.returncode == 0
    for option in ["--budget", "--num-samples", "--max-concurrent", "--storage", "--name", "--address"]:
        assert option in result.stdout


@pytest.mark.parametrize("content, fragment, real", cli_cases(
    (None, "does not exist"),
    (b"not a safetensors file", "is unreadable"),
    ("lenet5", "does not fit the model"),
))
def test_cli_bad_baseline_checkpoint_exits_2_naming_it_before_ray_starts(tmp_path, content, fragment, real):
    """baseline.checkpoint missing, corrupt, or another model's weights: one line naming the file."""
    from safetensors.torch import save_file

    from prune_ray.models import create_model

    path = tmp_path / "base.safetensors"
    if content == "lenet5":
        save_file(create_model("lenet5", num_classes=10, in_channels=1, image_size=8).state_dict(), str(path))
    elif content is not None:
        path.write_bytes(content)
    (tmp_path / "spec.yaml").write_text(f"baseline: {{checkpoint: {path}}}\n")
    result = run_sweep_command(["spec.yaml", "--storage", str(tmp_path / "results")], tmp_path, real)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and str(path) in lines[0], result.stderr
    assert not (tmp_path / "results").exists()


def test_cli_missing_dataset_files_exit_2_with_where_to_put_them(tmp_path):
    (tmp_path / "spec.yaml").write_text(f"model: resnet20\ndataset: cifar10\ndata: {{root: {tmp_path / 'none'}}}\n")
    result = run_sweep_command(["spec.yaml", "--storage", str(tmp_path / "results")], tmp_path, real=True)
    assert result.returncode == 2
    assert "cifar10 files missing: put data_batch_1" in result.stderr and str(tmp_path / "none") in result.stderr
    assert not (tmp_path / "results").exists()



def test_smoke_twin_of_agp_with_asha_keeps_an_epoch_per_pruning_step():
    spec = with_overrides(SweepSpec(), methods=("magnitude",), iterative="agp", prune_steps=(3,), finetune=TrainRecipe(epochs=5),
                          search__early_stopping="asha", search__grace_epochs=1)
    twin = smoke_twin(spec)  # validated: agp needs 3 epochs, ASHA 2
    assert twin.finetune.epochs == 3 and twin.prune_steps == (3,)


def test_smoke_twins_shrink_recipes_to_a_cpu_minute():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sweeps")
    han = smoke_twin(load_spec(os.path.join(root, "han_iterative_alexnet.yaml")))
    assert han.prune_steps == (3,) and han.dataset == "digits" and han.finetune.epochs == 1  # [1, 3, 5, 7, 9] cycles: 9 capped at 3
    cifar = smoke_twin(load_spec(os.path.join(root, "cifar10_resnet20.yaml")))
    assert cifar.budgets == (min(load_spec(os.path.join(root, "cifar10_resnet20.yaml")).budgets),)  # the tightest only
    assert han.data.train_limit == 192 and han.data.val_fraction == 0.2  # a subset to train on, validation whole
    grid = smoke_twin(load_spec(os.path.join(root, "global_vgg11_noretrain.yaml")))
    assert len(grid.fixed_ratios) == 2 and grid.finetune.epochs == 0  # first and last ratio, still no retraining
    netadapt = smoke_twin(load_spec(os.path.join(root, "netadapt_resnet20.yaml")))
    assert netadapt.netadapt.step_fraction == 0.25 and netadapt.netadapt.short_epochs == 0
    assert netadapt.search.num_samples == 1 and netadapt.resources.cpu == 1.0


def test_a_renamed_spec_key_still_loads_with_a_one_line_deprecation_notice(capsys):
    spec = spec_from_yaml("search: {screen_epochs: 1, keep_best: 1}\n", "old.yaml")
    assert spec.search.finalists == 1
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "old.yaml: search.keep_best is deprecated" in notice and "search.finalists" in notice
    with pytest.raises(SpecError, match="give only search.finalists"):
        spec_from_yaml("search: {keep_best: 1, finalists: 2}\n", "both.yaml")


def test_the_old_name_of_the_layer_type_schedule_still_loads_with_a_one_line_deprecation_notice(capsys):
    """`conv_fc` named both a method and a schedule; the schedule is `layer_type` now."""
    spec = spec_from_yaml("schedule: conv_fc\nmethods: [conv_fc]\n", "old.yaml")
    assert spec.schedule == "layer_type" and spec.methods == ("conv_fc",)
    notice = capsys.readouterr().err
    assert notice.count("\n") == 1 and "old.yaml: schedule: conv_fc is deprecated; read as schedule: layer_type" in notice
