"""taskgate: a self-hosted gateway and scheduler for AI model tasks.

The plugin interface is importable from here (``from taskgate import Provider``); it is
loaded on first use, so that commands which need no provider (``taskgate keys``) start fast."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for type checkers: the names as they are in taskgate.providers
    from taskgate.providers import (
        Call,
        Provider,
        Result,
        register_inference_function,
        register_provider,
    )

__version__ = "0.1.0"

__all__ = [
    "Call",
    "Provider",
    "Result",
    "__version__",
    "register_inference_function",
    "register_provider",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("taskgate.providers"), name)
    raise AttributeError(f"module 'taskgate' has no attribute {name!r}")
