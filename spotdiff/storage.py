"""The artifact store: images and records under one root, local or remote (fsspec).

Images are content-addressed (``images/<sha256>.png``): writing the same bytes twice is free and a key
says exactly what it holds, which is what lets a retried stage find its own earlier output.

Every key is checked before it touches the filesystem: relative, ``/``-separated segments of letters, digits,
``.``, ``_`` and ``-`` only, none of them ``.`` or ``..``. So no key, whatever a client sent, can name a path
outside the store's root, and a recursive delete can only remove a folder strictly inside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem

MAX_KEY_CHARS = 1024
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")


class InvalidKey(ValueError):
    """A key that could leave the store's root (or is not a key at all)."""


def check_key(key: object) -> str:
    """``key`` when it names a path strictly inside a store; else `InvalidKey` saying why."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise InvalidKey(f"a store key is a non-empty string of at most {MAX_KEY_CHARS} characters, not {key!r}")
    for segment in key.split("/"):
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):  # an empty one matches nothing
            raise InvalidKey(
                f"store key {key!r}: each '/'-separated part is letters, digits, '.', '_' or '-', "
                "and never empty, '.' or '..'"
            )
    return key


class ArtifactStore:
    """A directory (``out/run``) or a bucket prefix (``s3://bucket/prefix``, with the ``s3`` extra)."""

    def __init__(self, url: str, *, fs: fsspec.AbstractFileSystem | None = None) -> None:
        self.url = url
        if fs is None:
            fs, url = fsspec.core.url_to_fs(url)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = url.rstrip("/")
        if self.is_local:
            fs.makedirs(self.root, exist_ok=True)

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

    def child(self, prefix: str) -> ArtifactStore:
        """The store of a folder inside this one (a job's folder), on the same filesystem."""
        check_key(prefix)
        child = ArtifactStore.__new__(ArtifactStore)
        child.url, child.fs, child.root = f"{self.url.rstrip('/')}/{prefix}", self.fs, f"{self.root}/{prefix}"
        return child

    def path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def put_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key``; locally through a temporary name, so a reader never sees half a file."""
        target = self.path(key)
        if self.is_local:
            temporary = self._local_temporary(target, data)
            os.replace(temporary, target)
        else:
            self.fs.pipe_file(target, data)
        return key

    def create_bytes(self, key: str, data: bytes) -> bool:
        """Write ``data`` at ``key`` only if nothing is there; True when this call created it.

        Exclusive on a local disk (the complete file is linked into place, which fails if the name exists);
        elsewhere a check then a write, so callers that race there must hold a lock of their own (the job
        store takes a Redis claim)."""
        target = self.path(key)
        if not self.is_local:
            if self.fs.exists(target):
                return False
            self.fs.pipe_file(target, data)
            return True
        temporary = self._local_temporary(target, data)
        try:
            os.link(temporary, target)
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)
        return True

    def _local_temporary(self, target: str, data: bytes) -> str:
        parent = target.rsplit("/", 1)[0]
        os.makedirs(parent, exist_ok=True)
        temporary = f"{parent}/.{uuid.uuid4().hex}.part"
        with open(temporary, "wb") as handle:
            handle.write(data)
        return temporary

    def put_image(self, data: bytes, extension: str = "png") -> str:
        """Store encoded image bytes under their content hash and return the key."""
        key = f"images/{hashlib.sha256(data).hexdigest()}.{extension}"
        if not self.exists(key):
            self.put_bytes(key, data)
        return key

    def get_bytes(self, key: str) -> bytes:
        data: bytes = self.fs.cat_file(self.path(key))
        return data

    def put_text(self, key: str, text: str) -> str:
        return self.put_bytes(key, text.encode())  # UTF-8

    def append_line(self, key: str, line: str) -> None:
        """Append one line (a JSONL record) and flush it, so a crash loses at most the line being written."""
        with self.fs.open(self.path(key), "ab") as handle:  # bytes: UTF-8 whatever the locale
            handle.write((line.rstrip("\n") + "\n").encode())

    def names(self, folder: str) -> list[str]:
        """The names of the files and folders directly in ``folder`` (none when it does not exist)."""
        try:
            # names only: a detailed listing stats every file, on a local disk one call each
            entries = self.fs.ls(self.path(folder), detail=False)  # pragma: no mutate (detail=None is as falsy)
        except FileNotFoundError:
            return []
        return [posixpath.basename(str(entry).rstrip("/")) for entry in entries]  # some stores end folders in /

    def remove_tree(self, folder: str) -> None:
        """Delete ``folder`` and everything in it: a folder strictly inside this store, never its root."""
        path = self.path(folder)
        with contextlib.suppress(FileNotFoundError):  # nothing there, or it went meanwhile
            self.fs.rm(path, recursive=True)
