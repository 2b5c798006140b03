"""Alembic environment: migrations run on the connection `migrate.upgrade` hands in."""

from alembic import context

from agenttrail.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` CLI use by developers: build from the configured URL
    from agenttrail.store.engine import make_engine

    connection = make_engine(context.config.get_main_option("sqlalchemy.url") or "").connect()

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
