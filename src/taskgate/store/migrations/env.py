"""Alembic environment: taskgate runs migrations itself, on a connection it passes in
(``config.attributes["connection"]``), from :meth:`taskgate.store.database.Database.open`."""

from alembic import context

from taskgate.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
