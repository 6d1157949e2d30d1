"""The SQL store on SQLite (embedded default) and PostgreSQL, through SQLAlchemy Core: one
:class:`~taskgate.store.database.Database` and a repository per kind of record over it.

Callers name the repository: ``store.tasks.insert(...)``, ``store.claims.finish(...)``.
"""

from __future__ import annotations

from taskgate.store.batches import Batches
from taskgate.store.claims import Claims
from taskgate.store.control import Control
from taskgate.store.conversations import Conversations
from taskgate.store.database import Database
from taskgate.store.file_records import FileRecords
from taskgate.store.instances import Instances
from taskgate.store.keys import Keys
from taskgate.store.outbox import Outbox
from taskgate.store.retention import Retention
from taskgate.store.server_secrets import ServerSecrets
from taskgate.store.sessions import Sessions
from taskgate.store.stats import QueueStats
from taskgate.store.task_logs import TaskLogs
from taskgate.store.tasks import Tasks
from taskgate.store.usage import Usage


class SqlStore:
    def __init__(self, url: str) -> None:
        self.db = Database(url)
        self.url, self.dialect = url, self.db.dialect
        # told of the tasks each write of this process ended (see Database.tell_ended)
        self.ended_listeners = self.db.ended_listeners
        self.tasks = Tasks(self.db)  # accepting, reading and cancelling tasks
        self.claims = Claims(self.db)  # workers' claims, leases and endings; the sweep
        self.batches = Batches(self.db)
        self.conversations = Conversations(self.db)
        self.file_records = FileRecords(self.db)
        self.keys = Keys(self.db)
        self.outbox = Outbox(self.db)  # webhook deliveries, tenants' secrets
        self.stats = QueueStats(self.db)  # the queue in numbers: metrics, /v1/stats
        self.task_logs = TaskLogs(self.db)  # each task's timeline
        self.sessions = Sessions(self.db)  # the dashboard's logins
        self.control = Control(self.db)  # admins' actions: retry, bulk cancel, pause; workers
        self.retention = Retention(self.db)  # purging what is kept no longer
        self.usage = Usage(self.db)  # tokens and cost by tenant, key, model or day
        self.instances = Instances(self.db)  # backend instances registered at run time
        self.server_secrets = ServerSecrets(self.db)  # made once, shared by every process

    async def open(self) -> None:
        """Connect, and migrate the database to the current schema."""
        await self.db.open()

    async def close(self) -> None:
        """Write what the batchers still hold, then let the connections go."""
        await self.tasks.drain()
        await self.claims.drain()
        await self.db.close()
