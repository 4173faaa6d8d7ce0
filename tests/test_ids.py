"""A hostile client's ids and keys: whatever string comes in, nothing outside the store's root is ever named.

Property tests (hypothesis) over arbitrary strings, on the local filesystem and on fsspec's in-memory one (the
stand-in for object stores), for store keys, job ids and pair ids."""

from __future__ import annotations

import os
import posixpath
import re
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from spotdiff.protocol import CaptionPair
from spotdiff.protocol.ids import (
    ID_RULE,
    MAX_ID_CHARS,
    MAX_SUBMITTED_ID_CHARS,
    check_id,
    check_submitted_pair_id,
    is_valid_id,
)
from spotdiff.storage import MAX_KEY_CHARS, ArtifactStore, InvalidKey, check_key

# Strings a path attack is made of, mixed with anything at all
PATHY = st.sampled_from(["..", ".", "/", "\\", "%2e", "%2f", "%00", "\x00", "~", ":", "//", "./", "../", "a", "-"])
HOSTILE = st.one_of(st.text(), st.lists(st.one_of(PATHY, st.text(max_size=4)), max_size=12).map("".join))
LOUD = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


def inside(root: str, path: str, local: bool) -> bool:
    if local:
        real_root, real = os.path.realpath(root), os.path.realpath(path)
        return real.startswith(real_root + os.sep)
    return posixpath.normpath(path).startswith(posixpath.normpath(root) + "/")


@pytest.fixture(scope="module", params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(str(tmp_path_factory.mktemp("store") / "root"))
    return ArtifactStore(f"memory://hostile-{uuid.uuid4().hex}/root")


@LOUD
@given(key=HOSTILE)
def test_no_key_resolves_outside_the_root(store: ArtifactStore, key: str) -> None:
    try:
        path = store.path(key)
    except InvalidKey:
        return
    assert inside(store.root, path, store.is_local), (key, path)


@LOUD
@given(job_id=HOSTILE, pair_id=HOSTILE)
def test_a_jobs_folder_and_its_pairs_files_stay_inside(store: ArtifactStore, job_id: str, pair_id: str) -> None:
    try:
        job = store.child(f"jobs/{check_id(job_id, 'job id')}")
        path = job.path(f"steps/{check_id(pair_id, 'pair id')}/generate.json")
    except ValueError:  # InvalidKey is one
        assert not (is_valid_id(job_id) and is_valid_id(pair_id))
        return
    jobs_root = store.path("jobs")
    assert inside(jobs_root, job.root, store.is_local) and inside(job.root, path, store.is_local)


@LOUD
@given(pair_id=HOSTILE)
def test_a_pair_id_is_valid_exactly_when_the_grammar_says(pair_id: str) -> None:
    try:
        pair = CaptionPair(id=pair_id, source="A dog on the grass", target="A cat on the grass")
    except ValidationError as error:
        assert not is_valid_id(pair_id)
        assert "pair id" in str(error)  # the 422 says which id is wrong
        return
    assert pair.id == pair_id and is_valid_id(pair_id)
    assert pair_id not in (".", "..") and not pair_id.startswith(".") and len(pair_id) <= MAX_ID_CHARS


@pytest.mark.parametrize("key", ["", ".", "..", "../x", "a/../b", "/etc/passwd", "a//b", "a\\b", "%2e%2e", "a\x00b"])
def test_path_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = ArtifactStore(str(tmp_path / "root"))
    with pytest.raises(InvalidKey):
        store.path(key)
    with pytest.raises(InvalidKey):
        store.remove_tree(key)


def test_a_recursive_delete_removes_only_the_folder_it_names(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = ArtifactStore(str(root))
    job = store.child("jobs/a")
    job.put_text("steps/p/generate.json", "{}")
    job.put_text("records/p.json", "{}")
    store.child("jobs/b").put_text("manifest.json", "{}")
    job.remove_tree("steps/p")
    assert not (root / "jobs/a/steps/p").exists()
    assert (root / "jobs/a/records/p.json").is_file() and (root / "jobs/b/manifest.json").is_file()


def test_create_is_exclusive(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "root"))
    assert store.create_bytes("manifest.json", b"first")
    assert not store.create_bytes("manifest.json", b"second")
    assert store.get_bytes("manifest.json") == b"first"
    assert [path.name for path in (tmp_path / "root").iterdir()] == ["manifest.json"]  # no temporary left


def test_an_id_is_at_most_its_length_and_the_error_names_it() -> None:
    longest = "a" * MAX_ID_CHARS
    assert is_valid_id(longest) and check_id(longest, "job id") == longest
    assert not is_valid_id(longest + "a")
    rule = f"an id is {ID_RULE}"
    with pytest.raises(
        ValueError, match=f"^job id {re.escape(repr(longest + 'a'))} is not allowed: {re.escape(rule)}$"
    ):
        check_id(longest + "a", "job id")
    with pytest.raises(ValueError, match=f"^pair id None is not allowed: {re.escape(rule)}$"):
        check_id(None, "pair id")
    # a long value is shown cut, so that an error never echoes a client's megabyte back
    edge = "/" * (2 * MAX_ID_CHARS)
    with pytest.raises(ValueError, match=f"^pair id {re.escape(repr(edge))} is not"):
        check_id(edge, "pair id")
    with pytest.raises(ValueError, match=f"^pair id {re.escape(repr('/' * MAX_ID_CHARS + '…'))} is not"):
        check_id(edge + "/", "pair id")


def test_a_submitted_pair_id_leaves_room_for_its_variations() -> None:
    longest = "p" * MAX_SUBMITTED_ID_CHARS
    assert check_submitted_pair_id(longest) == longest
    with pytest.raises(
        ValueError, match=r"^pair id 'p{101}' is not allowed in a job: at most 100 characters, and no '--v'"
    ):
        check_submitted_pair_id(longest + "p")
    with pytest.raises(ValueError, match=r"^pair id 'a--v1' is not allowed in a job: "):
        check_submitted_pair_id("a--v1")
    with pytest.raises(ValueError, match=r"^pair id '\.\.' is not allowed: an id is "):
        check_submitted_pair_id("..")


@pytest.mark.parametrize("key", [None, 7, b"a", ""])
def test_a_key_that_is_no_string_or_empty_is_refused_with_the_rule(key: object) -> None:
    with pytest.raises(
        InvalidKey, match=f"^a store key is a non-empty string of at most 1024 characters, not {re.escape(repr(key))}$"
    ):
        check_key(key)


def test_a_key_is_at_most_its_length_and_each_part_is_named_in_the_error() -> None:
    longest = "k" * MAX_KEY_CHARS
    assert check_key(longest) == longest
    with pytest.raises(InvalidKey, match=r"^a store key is a non-empty string of at most 1024 characters"):
        check_key(longest + "k")
    rule = "each '/'-separated part is letters, digits, '.', '_' or '-', and never empty, '.' or '..'"
    for key in ("a//b", "a/./b", "a/../b", "a/b c"):
        with pytest.raises(InvalidKey, match=f"^store key {re.escape(repr(key))}: {re.escape(rule)}$"):
            check_key(key)
