"""taskgate: a self-hosted gateway and scheduler for AI model tasks."""

__version__ = "0.1.0"

from taskgate.providers import (
    Call,
    Provider,
    Result,
    register_inference_function,
    register_provider,
)

__all__ = [
    "Call",
    "Provider",
    "Result",
    "__version__",
    "register_inference_function",
    "register_provider",
]
