"""The service kit: what every model service shares (app factory, batching, codec, errors, metrics)."""

from httpkit.errors import ERROR_RESPONSES, ServiceError
from services.kit.app import ServiceRuntime, ServiceSpec, create_service_app, get_runtime
from services.kit.batcher import MicroBatcher
from services.kit.runner import ModelInfo, ModelRunner

__all__ = [
    "ERROR_RESPONSES",
    "MicroBatcher",
    "ModelInfo",
    "ModelRunner",
    "ServiceError",
    "ServiceRuntime",
    "ServiceSpec",
    "create_service_app",
    "get_runtime",
]
