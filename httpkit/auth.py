"""Bearer tokens, compared in constant time: the services' internal token and the gateway's metrics token."""

from __future__ import annotations

import hmac

from fastapi import Request
from pydantic import SecretStr

from httpkit.errors import ServiceError


def require_bearer(request: Request, token: SecretStr | None, message: str) -> None:
    """Refuse the request (401) unless it carries ``token``; no token configured lets everything through."""
    if token is None:
        return
    sent = request.headers.get("authorization", "")
    if not hmac.compare_digest(sent.encode(), f"Bearer {token.get_secret_value()}".encode()):
        raise ServiceError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})
