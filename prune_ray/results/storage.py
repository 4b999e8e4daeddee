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
