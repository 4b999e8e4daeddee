"""Results: the Parquet schema and its writer/reader (parquet), the storage layer and its checks
(storage), where a results root or sweep is (location), frontier maths (frontier), analysis tables and plots (tables, plot, analyze) and the end-of-sweep
summary (summary). Plain pandas/pyarrow: no Ray, no Optuna, no torch."""

from .parquet import SCHEMA_VERSION, read_epochs, read_results, read_steps  # noqa: F401
