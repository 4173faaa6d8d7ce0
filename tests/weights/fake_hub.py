"""A hub on this machine with the Hugging Face hub's file layout: the metadata API that
``HfApi.model_info(files_metadata=True)`` reads and the ``resolve`` URLs that ``hf_hub_download`` reads, so the
fetch logic runs against huggingface_hub itself, offline."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.launch import free_port


def blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    sha: str
    files: dict[str, bytes]
    lfs: set[str] = field(default_factory=set)  # files stored in LFS (the hub reports their sha256)
    served: dict[str, bytes] = field(default_factory=dict)  # bytes served in place of the declared ones


@dataclass
class Repo:
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit | None:
        return self.commits.get(self.branches.get(revision, revision))


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    downloads: list[str] = field(default_factory=list)  # "repo/file" per GET of a file

    def publish(
        self, repo_id: str, files: dict[str, bytes], *, lfs: AbstractSet[str] = frozenset(), branch: str = "main"
    ) -> str:
        """A new commit of ``repo_id`` holding ``files``, which ``branch`` then points at; returns its sha."""
        repo = self.repos.setdefault(repo_id, Repo())
        sha = hashlib.sha1(f"{repo_id}:{len(repo.commits)}".encode()).hexdigest()
        repo.commits[sha] = Commit(sha, dict(files), set(lfs))
        repo.branches[branch] = sha
        return sha

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/models/{namespace}/{name}/revision/{revision}")
        def model_info(namespace: str, name: str, revision: str) -> Response:
            repo_id = f"{namespace}/{name}"
            commit = self.repos[repo_id].resolve(revision) if repo_id in self.repos else None
            if commit is None:
                return JSONResponse({"error": "Repository not found"}, status_code=404)
            siblings = []
            for filename, content in commit.files.items():
                sibling: dict[str, object] = {"rfilename": filename, "size": len(content), "blobId": blob_id(content)}
                if filename in commit.lfs:
                    sha256 = hashlib.sha256(content).hexdigest()
                    sibling["lfs"] = {"size": len(content), "sha256": sha256, "pointerSize": 134}
                siblings.append(sibling)
            return JSONResponse({"id": repo_id, "modelId": repo_id, "sha": commit.sha, "siblings": siblings})

        @app.api_route("/{namespace}/{name}/resolve/{revision}/{filename:path}", methods=["GET", "HEAD"])
        def resolve(namespace: str, name: str, revision: str, filename: str, request: Request) -> Response:
            repo_id = f"{namespace}/{name}"
            commit = self.repos[repo_id].resolve(revision) if repo_id in self.repos else None
            if commit is None or filename not in commit.files:
                return Response(status_code=404, headers={"X-Error-Code": "EntryNotFound"})
            content = commit.served.get(filename, commit.files[filename])
            declared = commit.files[filename]
            etag = hashlib.sha256(declared).hexdigest() if filename in commit.lfs else blob_id(declared)
            headers = {"X-Repo-Commit": commit.sha, "ETag": f'"{etag}"', "Content-Length": str(len(content))}
            if request.method == "HEAD":
                return Response(headers=headers)
            self.downloads.append(f"{repo_id}/{filename}")
            return Response(content, headers=headers, media_type="application/octet-stream")

        return app


@contextlib.contextmanager
def running(hub: FakeHub, host: str = "127.0.0.1") -> Iterator[str]:
    """The hub served on a free port for the duration (on ``host``: 0.0.0.0 for containers); yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(hub.app(), host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the fake hub did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
