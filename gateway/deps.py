"""Typed dependencies of the gateway's routes (the full-stack-fastapi-template way)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from celery import Celery
from fastapi import Depends, Request

from httpkit.errors import ServiceError
from spotdiff.jobs.store import JobStore
from spotdiff.protocol.jobs import LOCAL_OWNER
from spotdiff.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.store
    return store


def get_celery(request: Request) -> Celery:
    celery: Celery = request.app.state.celery
    return celery


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[JobStore, Depends(get_store)]
CeleryDep = Annotated[Celery, Depends(get_celery)]


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def get_owner(request: Request, settings: SettingsDep) -> str:
    """The caller's identity: the sha256 of its API key. With no keys configured, everyone is ``local``."""
    accepted = settings.gateway.api_keys
    if not accepted:
        return LOCAL_OWNER
    header = request.headers.get("authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise ServiceError(
            401,
            "unauthorized",
            "send an API key as 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    digest = hash_key(key)
    if not any(hmac.compare_digest(digest, known) for known in accepted):
        raise ServiceError(401, "unauthorized", "unknown API key", headers={"WWW-Authenticate": "Bearer"})
    return digest


OwnerDep = Annotated[str, Depends(get_owner)]
