"""The ``taskgate`` command: run the server, manage keys, and use a server as a client.
Each module adds its commands to :data:`taskgate.cli.base.main`."""

from taskgate.cli import keys, live, ops, server, tasks
from taskgate.cli.base import main

__all__ = ["keys", "live", "main", "ops", "server", "tasks"]
