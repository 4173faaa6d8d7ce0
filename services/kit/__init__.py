"""The service kit: what every model service shares (app factory, serving pipeline, batching, codec, errors,
metrics). A service implements `Serving` per operation and writes routes that call `ServiceRuntime.call`."""

from httpkit.errors import ERROR_RESPONSES, ServiceError
from services.kit.app import RuntimeDep, create_service_app, get_runtime
from services.kit.batcher import MicroBatcher
from services.kit.runner import ModelInfo, ModelRunner
from services.kit.runtime import ServiceRuntime, ServiceSpec
from services.kit.serving import Call, Serving

__all__ = [
    "ERROR_RESPONSES",
    "Call",
    "MicroBatcher",
    "ModelInfo",
    "ModelRunner",
    "RuntimeDep",
    "ServiceError",
    "ServiceRuntime",
    "ServiceSpec",
    "Serving",
    "create_service_app",
    "get_runtime",
]
