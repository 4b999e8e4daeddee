"""Where results are: a storage root, one sweep's directory, or its trials/ directory (what a sweep
prints), local or a pyarrow.fs URI; opened once for the analysis, the export and load_pruned."""

from __future__ import annotations

import dataclasses

from .parquet import list_sweeps
from .storage import Storage, open_storage


class BadInput(Exception):
    """A problem with what the user asked for; its message is the one line printed on stderr."""


def open_results(location: str, sweep: str | None) -> tuple[Storage, str | None]:
    """(the storage root, the sweep or None for every sweep) that `location` and `sweep` name;
    BadInput (one line) when they name nothing."""
    try:
        storage = open_storage(location)
        exists = storage.exists(storage.root)
    except Exception as error:  # pyarrow raises several types for malformed or unreachable URIs
        raise BadInput(f"cannot open results {location!r}: {error}") from error
    if not exists:
        raise BadInput(f"results {location!r} do not exist; give the sweep's --storage root (default ./results), a sweep directory, or a URI")
    if sweep_name(storage) == "trials" and not list_sweeps(storage):  # the path a sweep prints at its end
        storage = parent(storage)
    if storage.exists(storage.path("trials")):  # a sweep's own directory
        if sweep not in (None, sweep_name(storage)):
            raise BadInput(f"--sweep {sweep!r} does not match the sweep directory {location!r}; leave --sweep out or give the results root")
        storage, sweep = parent(storage), sweep_name(storage)
    if sweep is not None and sweep not in (known := list_sweeps(storage)):
        raise BadInput(f"sweep {sweep!r} not found in {storage.uri}; available: {', '.join(known) or 'none'}")
    return storage, sweep


def sweep_name(storage: Storage) -> str:
    return storage.root.rstrip("/").rsplit("/", 1)[-1]


def parent(storage: Storage) -> Storage:
    return dataclasses.replace(storage, root=storage.root.rstrip("/").rsplit("/", 1)[0], uri=storage.uri.rstrip("/").rsplit("/", 1)[0])
