"""Where a profile's weights come from (a manifest shipped as data) and the settings that point the services at
a directory holding them; ``fetch`` downloads and checks them.
"""

from __future__ import annotations

import fnmatch
import json
from importlib import resources
from pathlib import Path, PurePosixPath

from pydantic import BaseModel, Field

LOCK_FILE = "weights.lock.json"
MODELS_PLACEHOLDER = "{models}"


class WeightSource(BaseModel):
    """One hub repository's files that one service loads."""

    name: str
    service: str
    repo_id: str
    revision: str = Field(description="a branch, tag or commit; a lock pins the commit")
    path: str = Field(description="the folder under the models directory the files go to")
    include: list[str] = Field(description="glob patterns of the repository's files to fetch")
    settings: dict[str, str] = Field(description="the service's settings, {models} standing for the directory")

    def wants(self, filename: str) -> bool:
        return any(fnmatch.fnmatchcase(filename, pattern) for pattern in self.include)

    def target(self, filename: str) -> PurePosixPath:
        return PurePosixPath(self.path) / filename


class Manifest(BaseModel):
    profile: str
    sources: list[WeightSource]

    def source(self, name: str) -> WeightSource:
        return next(source for source in self.sources if source.name == name)


def _parse(text: str, where: str) -> Manifest:
    try:
        raw = json.loads(text)
        raw.pop("_about", None)
        return Manifest.model_validate(raw)
    except (ValueError, AttributeError) as exc:
        raise LookupError(f"{where}: not a weights manifest ({exc})") from exc


def load_manifest(profile: str) -> Manifest:
    """The manifest of a profile that has one (the tiny profile builds its weights instead)."""
    file = resources.files("spotdiff.weights").joinpath(f"{profile}.json")
    if not file.is_file():
        raise LookupError(f"profile {profile!r} has no weights manifest (only reference has; tiny builds its own)")
    return _parse(file.read_text(encoding="utf-8"), f"the {profile} manifest")


def load_manifest_file(file: Path) -> Manifest:
    if not file.is_file():
        raise LookupError(f"{file}: no such manifest")
    return _parse(file.read_text(encoding="utf-8"), str(file))


def service_environment(manifest: Manifest, models_dir: str) -> dict[str, str]:
    """The environment that points every service at the weights under ``models_dir``: what the Compose file and
    the Kubernetes ConfigMap say (a test holds them to it)."""
    environment: dict[str, str] = {}
    for source in manifest.sources:
        for field, value in source.settings.items():
            key = f"SPOTDIFF_{source.service.upper()}__{field.upper()}"
            environment[key] = value.replace(MODELS_PLACEHOLDER, models_dir.rstrip("/"))
    return environment
