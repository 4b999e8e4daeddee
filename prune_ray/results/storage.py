"""One storage root for results and baselines: a local path or a pyarrow.fs URI (s3://, gs://, ...).

Every write is atomic: the bytes go to a temporary name beside the target, which is then renamed,
so a reader never sees half a file and a crashed writer leaves the old file intact.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import pyarrow.fs as pafs


@dataclass(frozen=True)
class Storage:
    fs: pafs.FileSystem
    root: str  # path inside `fs` (absolute for local storage)
    uri: str  # what the user can paste into pandas/DuckDB/Tune: absolute path or URI

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *_checked(parts)])

    def uri_of(self, *parts: str) -> str:
        return "/".join([self.uri.rstrip("/"), *_checked(parts)])

    def exists(self, path: str) -> bool:
        return self.fs.get_file_info(path).type != pafs.FileType.NotFound

    def read_bytes(self, path: str) -> bytes:
        with self.fs.open_input_stream(path) as stream:
            return stream.read()

    def write_bytes_atomic(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{path.rsplit('/', 1)[1]}"
        with self.fs.open_output_stream(tmp) as out:
            out.write(data)
        self.fs.move(tmp, path)


def _checked(parts: tuple[str, ...]) -> tuple[str, ...]:
    """Path parts are single names: nothing is ever written outside the storage root."""
    for part in parts:
        if "/" in part or "\\" in part or part in ("..", "."):
            raise ValueError(f"path part {part!r} would leave the storage root; names may not contain '/' or be '..'")
    return parts


def open_storage(location: str) -> Storage:
    """Resolve a local path (relative paths become absolute) or a URI understood by pyarrow.fs."""
    if "://" in location and not location.startswith("file://"):
        fs, root = pafs.FileSystem.from_uri(location)
        return Storage(fs=fs, root=root, uri=location.rstrip("/"))
    local = location[len("file://"):] if location.startswith("file://") else location
    root = os.path.abspath(os.path.expanduser(local))
    return Storage(fs=pafs.LocalFileSystem(), root=root, uri=root)


class StorageError(ValueError):
    """A storage root that cannot hold a sweep; the one-line message names the path and the problem."""


def _local_problem(root: str, sweep: str) -> str | None:
    """Why a local root cannot hold sweep `sweep` (None: it can), checked without writing anything."""
    existing = root
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"{existing} is a file" if existing == root else f"it lies under {existing}, which is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable" if existing == root else f"its folder {existing} is not writable"
    limit = os.pathconf(existing, "PC_NAME_MAX")
    for part in [*os.path.relpath(root, existing).split(os.sep), sweep]:
        if len(part.encode()) > limit:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-8:]} ({len(part)} characters)"
            what = "--name" if part == sweep else "the folder name"
            return f"{what} {shown!r} is longer than this file system allows ({limit} bytes)"
    return None


def checked_storage(location: str, sweep: str) -> Storage:
    """open_storage, and for a local root a check that sweep `sweep` can be written there: not a
    file or under one, a writable folder, names the file system allows. StorageError otherwise
    (before anything is written or Ray starts). A URI is checked for a scheme pyarrow.fs knows."""
    try:
        storage = open_storage(location)
    except Exception as error:  # pyarrow raises several types for unknown schemes and malformed URIs
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise StorageError(f"--storage {location!r} cannot be opened: {first}") from None
    problem = _local_problem(storage.root, sweep) if storage.is_local else None
    if problem:
        raise StorageError(f"--storage {storage.uri!r} cannot hold sweep results: {problem}")
    return storage
