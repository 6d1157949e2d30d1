"""Providers: the plugin interface and the registry. Importing this package registers the
built-in providers."""

from taskgate.providers import ark as _ark  # noqa: F401  (registers "ark")
from taskgate.providers import gemini as _gemini  # noqa: F401  (registers "gemini")
from taskgate.providers import http as _http  # noqa: F401  (registers "http")
from taskgate.providers import jimeng as _jimeng  # noqa: F401  (registers "jimeng")
from taskgate.providers import mock as _mock  # noqa: F401  (registers "mock")
from taskgate.providers import ollama as _ollama  # noqa: F401  (registers "ollama")
from taskgate.providers import openai as _openai  # noqa: F401  (registers "openai")
from taskgate.providers.base import Call, Emit, Job, OutputFile, Pending, Provider, Result
from taskgate.providers.registry import (
    build,
    load_plugins,
    lookup,
    register_inference_function,
    register_provider,
)

__all__ = [
    "Call",
    "Emit",
    "Job",
    "OutputFile",
    "Pending",
    "Provider",
    "Result",
    "build",
    "load_plugins",
    "lookup",
    "register_inference_function",
    "register_provider",
]
