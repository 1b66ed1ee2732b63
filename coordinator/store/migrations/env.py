"""Alembic environment: runs on the connection coordinator.store.migrate passes in cfg.attributes."""

from __future__ import annotations

from alembic import context

from coordinator.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    # No alembic.ini and no URL here on purpose: the store owns engine setup (pragmas, pools).
    raise RuntimeError(
        "coordinator migrations run through coordinator.store.migrate.upgrade(connection)"
    )

context.configure(connection=connection, target_metadata=metadata)
with context.begin_transaction():
    context.run_migrations()
