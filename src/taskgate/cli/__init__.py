"""The ``taskgate`` command: run the server, manage keys, and use a server as a client.
Each module adds its commands to :data:`taskgate.cli.base.main`."""

from taskgate.cli import admin, keys, ops, retention, server, tasks, top, usage
from taskgate.cli.base import main

__all__ = ["admin", "keys", "main", "ops", "retention", "server", "tasks", "top", "usage"]
from taskgate.cli import live

__all__ = ["keys", "live", "main", "ops", "server", "tasks"]
