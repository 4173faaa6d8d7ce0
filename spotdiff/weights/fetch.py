"""Download a manifest's weights from a Hugging Face hub (or any server with its layout: ``endpoint``), check
every file against the hub's own content hash, and write a lock that ``verify`` checks a directory against.

huggingface_hub is imported inside the functions: the rest of the kernel never needs it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from spotdiff.weights import LOCK_FILE, Manifest, WeightSource

CHUNK = 8 * 2**20


class WeightsError(Exception):
    """A source, file or hash that is not what the manifest, the hub or the lock says."""


class LockedFile(BaseModel):
    size: int
    sha256: str


class LockedSource(BaseModel):
    name: str
    repo_id: str
    revision: str
    commit: str
    files: dict[str, LockedFile]


class Lock(BaseModel):
    profile: str
    sources: list[LockedSource]

    def source(self, name: str) -> LockedSource | None:
        return next((source for source in self.sources if source.name == name), None)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_id(path: Path) -> str:
    """The id git (and so the hub) gives a file that is not in LFS: sha1 over a header and the bytes."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_lock(file: Path) -> Lock:
    if not file.is_file():
        raise WeightsError(f"{file}: no lock (`spotdiff models fetch` writes one beside the weights)")
    try:
        return Lock.model_validate_json(file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise WeightsError(f"{file}: not a weights lock ({exc})") from exc


def read_lock(models_dir: Path) -> Lock:
    return load_lock(models_dir / LOCK_FILE)


def _write_lock(models_dir: Path, lock: Lock) -> None:
    partial = models_dir / f".{LOCK_FILE}.partial"
    partial.write_text(lock.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(partial, models_dir / LOCK_FILE)


def _check_file(path: Path, sibling: Any, pinned: LockedFile | None) -> LockedFile:
    """The file's size and sha256, once it matches the hub's hash (and the lock's, when fetching a lock)."""
    sha256 = sha256_of(path)
    lfs = getattr(sibling, "lfs", None)
    if lfs is not None:
        if sha256 != lfs.sha256:
            raise WeightsError(f"{path}: sha256 {sha256} is not the hub's {lfs.sha256}")
    elif sibling.blob_id is not None and git_blob_id(path) != sibling.blob_id:
        raise WeightsError(f"{path}: git blob id is not the hub's {sibling.blob_id}")
    if pinned is not None and pinned.sha256 != sha256:
        raise WeightsError(f"{path}: sha256 {sha256} is not the lock's {pinned.sha256}")
    return LockedFile(size=path.stat().st_size, sha256=sha256)


def _already_there(path: Path, sibling: Any, pinned: LockedFile | None) -> LockedFile | None:
    if not path.is_file() or (sibling.size is not None and path.stat().st_size != sibling.size):
        return None
    try:
        return _check_file(path, sibling, pinned)
    except WeightsError:
        return None


def fetch_source(
    source: WeightSource,
    models_dir: Path,
    *,
    endpoint: str | None,
    token: str | None,
    pinned: LockedSource | None,
    say: Callable[[str], None],
) -> LockedSource:
    from huggingface_hub import HfApi, hf_hub_download

    revision = pinned.commit if pinned is not None else source.revision
    info = HfApi(endpoint=endpoint, token=token).model_info(source.repo_id, revision=revision, files_metadata=True)
    if info.sha is None:
        raise WeightsError(f"{source.repo_id}@{revision}: the hub named no commit")
    siblings = [sibling for sibling in info.siblings or [] if source.wants(sibling.rfilename)]
    for pattern in source.include:
        if not any(fnmatch.fnmatchcase(s.rfilename, pattern) for s in siblings):
            raise WeightsError(
                f"{source.repo_id}@{info.sha}: no file matches {pattern!r} (manifest source {source.name})"
            )
    if pinned is not None and sorted(pinned.files) != sorted(s.rfilename for s in siblings):
        raise WeightsError(f"{source.repo_id}@{info.sha}: the files differ from the lock's")
    folder = models_dir / source.path
    files: dict[str, LockedFile] = {}
    for sibling in sorted(siblings, key=lambda s: s.rfilename):
        name = sibling.rfilename
        expected = pinned.files[name] if pinned is not None else None
        path = folder / name
        found = _already_there(path, sibling, expected)
        if found is None:
            say(f"{source.name}: {name}")
            path.unlink(missing_ok=True)  # absent, or not what the hub says: the hub's copy replaces it
            hf_hub_download(
                source.repo_id,
                name,
                revision=info.sha,
                local_dir=folder,
                endpoint=endpoint,
                token=token,
                force_download=True,
            )
            try:
                found = _check_file(path, sibling, expected)
            except WeightsError:
                path.unlink(missing_ok=True)
                raise
        files[name] = found
    return LockedSource(
        name=source.name, repo_id=source.repo_id, revision=source.revision, commit=info.sha, files=files
    )


def fetch(
    manifest: Manifest,
    models_dir: Path,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    lock: Lock | None = None,
    say: Callable[[str], None] = print,
) -> Lock:
    """Fetch every source (files already there and matching are kept), then write the lock. With ``lock``, the
    commits and sha256s it names are fetched and nothing else is accepted."""
    models_dir.mkdir(parents=True, exist_ok=True)
    locked: list[LockedSource] = []
    for source in manifest.sources:
        pinned = lock.source(source.name) if lock is not None else None
        if lock is not None and pinned is None:
            raise WeightsError(f"the lock has no source {source.name!r}")
        locked.append(fetch_source(source, models_dir, endpoint=endpoint, token=token, pinned=pinned, say=say))
    result = Lock(profile=manifest.profile, sources=locked)
    _write_lock(models_dir, result)
    return result


def verify(manifest: Manifest, models_dir: Path) -> list[str]:
    """What is wrong with a models directory, one line per problem: sources never fetched, files missing or
    changed since the lock was written. Empty when every service's weights are there and intact."""
    lock = read_lock(models_dir)
    problems: list[str] = []
    for source in manifest.sources:
        locked = lock.source(source.name)
        if locked is None:
            problems.append(f"{source.name}: not in {LOCK_FILE} (fetch it)")
            continue
        for name, expected in sorted(locked.files.items()):
            path = models_dir / source.path / name
            if not path.is_file():
                problems.append(f"{path}: missing")
            elif path.stat().st_size != expected.size:
                problems.append(f"{path}: {path.stat().st_size} bytes, the lock says {expected.size}")
            elif sha256_of(path) != expected.sha256:
                problems.append(f"{path}: sha256 differs from the lock's")
    return problems
