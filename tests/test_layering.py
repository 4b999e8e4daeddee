"""House rule: only sweep, search and trial import Ray or Optuna."""

import subprocess
import sys

RAY_FREE = [
    "spec", "data", "models", "train", "prune", "measure", "budget", "baseline", "results", "storage",
    "iterative", "analyze", "frontier", "netadapt", "summary", "schedule", "sensitivity",
]


def test_core_modules_import_neither_ray_nor_optuna():
    imports = "; ".join(f"import prune_ray.{name}" for name in RAY_FREE)
    check = "import sys; bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna')); print(bad)"
    out = subprocess.run([sys.executable, "-c", f"{imports}; {check}"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
