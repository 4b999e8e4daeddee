"""House rule: only prune_ray.tune imports Ray or Optuna. The package is walked, so a new module is
checked without editing a list: statically (every import statement, lazy ones inside functions
included) and at run time (importing every module outside tune/ loads neither)."""

import ast
import pathlib
import subprocess
import sys

import prune_ray

PACKAGE = pathlib.Path(prune_ray.__file__).parent
BOUNDARY = ("ray", "optuna")


def modules_outside_tune() -> dict[str, pathlib.Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[0] == "tune":
            continue
        name = ".".join(("prune_ray", *parts)).removesuffix(".__init__")
        found[name] = path
    return found


def imported_roots(path: pathlib.Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_walk_finds_the_pipeline():
    names = set(modules_outside_tune())
    assert {"prune_ray.trial", "prune_ray.plan", "prune_ray.plan.netadapt", "prune_ray.results.parquet"} <= names
    assert not any(name.startswith("prune_ray.tune") for name in names)


def test_no_module_outside_tune_imports_ray_or_optuna():
    offenders = {name: sorted(imported_roots(path) & set(BOUNDARY)) for name, path in modules_outside_tune().items()}
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_importing_every_module_outside_tune_loads_neither():
    imports = "; ".join(f"import {name}" for name in modules_outside_tune())
    check = "import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna')))"
    out = subprocess.run([sys.executable, "-c", f"{imports}; {check}"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_sweep_command_runs_its_preflight_checks_before_importing_ray_or_optuna(tmp_path):
    """A spec its model cannot take (here an unreadable baseline checkpoint) is exit 2 from the
    preflight checks, with neither Ray nor Optuna loaded."""
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    (tmp_path / "spec.yaml").write_text(f"baseline: {{checkpoint: {tmp_path / 'bad.pt'}}}\nstorage: {tmp_path / 'results'}\n")
    check = ("import sys; from prune_ray.tune.sweep import main; rc = main([sys.argv[1]]); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'))); sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", check, str(tmp_path / "spec.yaml")], capture_output=True, text=True)
    assert out.returncode == 2 and "bad.pt" in out.stderr, out.stderr
    assert out.stdout.strip() == "[]"
