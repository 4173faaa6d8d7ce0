import hashlib
from pathlib import Path

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
    store = ArtifactStore("memory://spotdiff-test/run")
    key = store.put_image(b"bytes")
    assert store.exists(key) and store.get_bytes(key) == b"bytes"
    store.append_line("samples.jsonl", "x")
    assert store.get_bytes("samples.jsonl") == b"x\n"
