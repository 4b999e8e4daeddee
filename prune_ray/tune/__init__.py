"""The Ray side: the only subpackage that imports Ray or Optuna (tests/test_layering.py checks).

sweep (the command), run (baselines, Tuner, stages, summary), search (one Optuna study per
operating point behind one Tune searcher), asha (early stopping per operating point), trainable
(the Ray side of a trial), cluster (starting Ray, local fitting, shared-storage check), console
(the live view). Importing this package imports no Ray: each module does, when it is imported.
"""
