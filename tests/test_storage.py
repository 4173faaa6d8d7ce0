import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from spotdiff.storage import ArtifactStore


def test_images_are_content_addressed_and_written_once(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "out"))
    data = b"\x89PNG fake bytes"
    key = store.put_image(data)
    assert key == f"images/{hashlib.sha256(data).hexdigest()}.png"
    assert store.put_image(data) == key
    assert store.get_bytes(key) == data
    assert not list((tmp_path / "out" / "images").glob(".*.part"))  # no temporary file left behind


def test_lines_append_and_text_round_trips(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    store.append_line("samples.jsonl", '{"a": 1}')
    store.append_line("samples.jsonl", '{"a": 2}\n')
    assert (tmp_path / "samples.jsonl").read_text() == '{"a": 1}\n{"a": 2}\n'
    store.put_text("gallery.html", "<p>é</p>")
    assert store.get_bytes("gallery.html").decode() == "<p>é</p>"


def test_any_fsspec_url_works(tmp_path: Path) -> None:
    """The same store over a non-local filesystem (fsspec's in-memory one stands in for s3:// here)."""
    store = ArtifactStore(f"memory://spotdiff-test/{uuid.uuid4().hex}")  # fsspec's memory lasts the process
    key = store.put_image(b"bytes")
    assert store.exists(key) and store.get_bytes(key) == b"bytes"
    store.append_line("samples.jsonl", "x")
    assert store.get_bytes("samples.jsonl") == b"x\n"


@pytest.fixture(params=["local", "memory"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path / "root"))
    return ArtifactStore(f"memory://spotdiff-test/{uuid.uuid4().hex}")


@pytest.mark.parametrize("given_fs", [False, True])
def test_a_root_named_with_a_trailing_slash_is_the_same_root(tmp_path: Path, given_fs: bool) -> None:
    """Whether fsspec parses the URL or the caller hands over the filesystem (names ending in X: only the slash
    goes)."""
    root = f"{tmp_path}/runX"
    store = ArtifactStore(f"{root}/", fs=MemoryFileSystem() if given_fs else None)
    assert store.root == root and store.path("a/b.json") == f"{root}/a/b.json"
    child = store.child("jobs/j1")
    assert (child.url, child.root) == (f"{root}/jobs/j1", f"{root}/jobs/j1")
    assert child.path("manifest.json") == f"{root}/jobs/j1/manifest.json"


def test_create_is_exclusive_on_any_filesystem(any_store: ArtifactStore) -> None:
    assert any_store.create_bytes("records/p.json", b"first")
    assert not any_store.create_bytes("records/p.json", b"second")
    assert any_store.get_bytes("records/p.json") == b"first"
    assert any_store.names("records") == ["p.json"]


def test_a_line_keeps_everything_but_its_newline(any_store: ArtifactStore) -> None:
    for line in ("ends in a space ", "ends in X", "café\n"):
        any_store.append_line("lines.jsonl", line)
    assert any_store.get_bytes("lines.jsonl") == "ends in a space \nends in X\ncafé\n".encode()


def test_names_are_the_entries_of_a_folder(any_store: ArtifactStore) -> None:
    any_store.put_text("records/a.json", "{}")
    any_store.put_text("records/sub/b.json", "{}")
    assert sorted(any_store.names("records")) == ["a.json", "sub"]
    assert any_store.names("missing") == []


class SlashedFolders(MemoryFileSystem):
    """An object store that names each folder with a trailing slash, as some do."""

    protocol = "slashed"

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        entries = super().ls(path, detail=True, **kwargs)
        for entry in entries:
            if entry["type"] == "directory":
                entry["name"] += "/"
        return entries if detail else [entry["name"] for entry in entries]


def test_names_drop_a_folders_trailing_slash() -> None:
    store = ArtifactStore(f"/{uuid.uuid4().hex}", fs=SlashedFolders())
    store.put_text("jobs/j1/manifest.json", "{}")
    store.put_text("jobs/jobX/manifest.json", "{}")
    assert sorted(store.names("jobs")) == ["j1", "jobX"]


def test_removing_a_folder_that_is_not_there_is_no_error(any_store: ArtifactStore) -> None:
    any_store.remove_tree("steps/never")
    any_store.put_text("steps/p/a.json", "{}")
    any_store.remove_tree("steps/p")
    assert not any_store.exists("steps/p/a.json") and any_store.names("steps") == []
