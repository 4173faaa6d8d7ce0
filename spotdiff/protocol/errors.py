"""The one error envelope of every spotdiff answer that is not a 2xx, gateway and services alike:
``{"error": {"code", "message", "details"}}``. Clients parse it with these models; servers write it with
`httpkit.errors`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    code: str  # stable, for programs: "invalid_request", "not_ready", "queue_full" ...
    message: str  # for people
    details: Any = None


class ErrorResponse(BaseModel):
    """The body of every non-2xx answer (and of a stream's ``error`` event)."""

    error: ErrorBody


#: The error answers every route may give, for its OpenAPI description.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 413, 415, 422, 429, 500, 503)
}
