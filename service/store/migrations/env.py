"""Alembic environment: runs on the connection that `service.store.engine.migrate` hands over.

There is no alembic.ini and no offline mode: migrations run only through `migrate(engine)`, which
owns the transaction (and, on PostgreSQL, the advisory lock around it).
"""

from __future__ import annotations

from alembic import context

from service.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through service.store.engine.migrate(engine), not the alembic CLI")

context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
