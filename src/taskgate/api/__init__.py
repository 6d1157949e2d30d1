"""The HTTP API: ``create_app`` builds one app with every API's routes (native, OpenAI and
the compatible APIs)."""

from taskgate.api.app import create_app

__all__ = ["create_app"]
