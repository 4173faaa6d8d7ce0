"""The artifact store: images and records under one root, local or remote (fsspec).

Images are content-addressed (``images/<sha256>.png``): writing the same bytes twice is free and a key
says exactly what it holds, which is what lets a retried stage find its own earlier output.
"""

from __future__ import annotations

import hashlib
import uuid

import fsspec
from fsspec.implementations.local import LocalFileSystem


class ArtifactStore:
    """A directory (``out/run``) or a bucket prefix (``s3://bucket/prefix``, with the ``s3`` extra)."""

    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
        self.fs: fsspec.AbstractFileSystem = fs
        self.root = root.rstrip("/")
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(self.root, exist_ok=True)

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self.path(key)))

    def put_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key``; locally through a temporary name, so a reader never sees half a file."""
        target = self.path(key)
        parent = target.rsplit("/", 1)[0]
        if isinstance(self.fs, LocalFileSystem):
            self.fs.makedirs(parent, exist_ok=True)
            temporary = f"{parent}/.{uuid.uuid4().hex}.part"
            self.fs.pipe_file(temporary, data)
            self.fs.mv(temporary, target)
        else:
            self.fs.pipe_file(target, data)
        return key

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
        return self.put_bytes(key, text.encode("utf-8"))

    def append_line(self, key: str, line: str) -> None:
        """Append one line (a JSONL record) and flush it, so a crash loses at most the line being written."""
        path = self.path(key)
        with self.fs.open(path, "a", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n")
