"""`agenttrail serve`: gateway + ingest + query APIs, in one process or several (`--workers`)."""

from __future__ import annotations

import errno
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, UserError, console, friendly, settings_for

if TYPE_CHECKING:
    from starlette.applications import Starlette

LOG_LEVEL_ENV = "AGENTTRAIL_SERVE_LOG_LEVEL"
LOG_LEVELS = ("debug", "info", "warning", "error")


def port_taken(host: str, port: int) -> str | None:
    """Why `host:port` cannot be listened on (another process holds it), or None. Checked before
    anything starts: uvicorn found out only after the banner (and a new database's migration), with
    an `[Errno 98]` line and exit status 3."""
    if port == 0:
        return None
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except OSError:
        return None  # an address uvicorn will refuse with its own message
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(addr)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                return f"{host}:{port} is in use (another agenttrail serve or mock-llm?); pick another with --port"
            return f"cannot listen on {host}:{port}: {e.strerror}"
    return None


def quiet_migrations(log_level: str) -> None:
    """Alembic's INFO lines (a dozen on a new database: "Context impl SQLiteImpl.", one per migration)
    were the first screen of README's first command; they show with --log-level debug."""
    if log_level.lower() != "debug":
        logging.getLogger("alembic").setLevel(logging.WARNING)


def worker_app() -> Starlette:
    """The app of one worker process (`--workers N`, N > 1): uvicorn starts each worker afresh and calls
    this, so its settings come from the environment `serve` set up for them (the same database and
    config file as the flags named), and each worker has its own engine, recorder and key cache."""
    from agenttrail.config import load_settings
    from agenttrail.server.parts import create_server_app

    level = os.environ.get(LOG_LEVEL_ENV, "info").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
    quiet_migrations(level)
    return create_server_app(load_settings())


SERVE_EXAMPLES = """[bold]Examples[/bold]

  agenttrail serve   [dim]# 127.0.0.1:4100, SQLite in ~/.agenttrail[/dim]

  agenttrail serve --host 0.0.0.0 --db postgresql://agenttrail@db.internal/agenttrail --workers 4

  [dim]# against the fake provider (agenttrail mock-llm --port 4200): no real credential needed[/dim]

  AGENTTRAIL_ANTHROPIC_BASE_URL=http://127.0.0.1:4200 ANTHROPIC_API_KEY=x agenttrail serve

Settings (upstreams, limits, routing, cache): agenttrail.toml, see docs/configuration.md.
"""


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel="Server", epilog=SERVE_EXAMPLES)
    @friendly
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
        port: int = typer.Option(4100, min=0, max=65535, help="Port to listen on."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
        log_level: str = typer.Option("info", help="debug, info, warning or error."),
        workers: int = typer.Option(
            1,
            min=1,
            help="Processes serving requests. Ingest is CPU-bound Python: on PostgreSQL it scales with "
            "processes (one process runs one ingest's Python at a time); SQLite has one writer.",
        ),
    ) -> None:
        """Run the gateway, ingest, OTLP, session and query APIs in one process (or --workers N of them).

        Point clients at it: ANTHROPIC_BASE_URL=http://HOST:PORT, OPENAI_BASE_URL=http://HOST:PORT/v1,
        with a virtual key from `agenttrail key create` as their API key. The server's own
        ANTHROPIC_API_KEY / OPENAI_API_KEY are the real credentials it sends upstream.
        """
        if log_level.lower() not in LOG_LEVELS:
            raise UserError(f"--log-level must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
        if taken := port_taken(host, port):
            raise UserError(taken)
        import uvicorn

        from agenttrail.server.parts import create_server_app

        settings = settings_for(db, config)
        where = settings.database_url.split("@")[-1]
        # uvicorn's defaults pick uvloop and httptools (both come with uvicorn[standard]): measured the
        # cheapest per gateway call here; h11 and granian cost 1.2x more (docs/performance.md, "Gateway").
        options: dict[str, Any] = dict(host=host, port=port, log_level=log_level.lower(), access_log=False)
        options.update(timeout_graceful_shutdown=10)
        if workers > 1:
            # Each worker is a fresh process (uvicorn spawns them, all accepting on one socket): it reads
            # its settings as this process resolved them. The schema is migrated here first, once.
            from agenttrail.store.database import open_engine

            open_engine(settings.database_url).dispose()
            os.environ["AGENTTRAIL_DATABASE_URL"] = settings.database_url
            if config:
                os.environ["AGENTTRAIL_CONFIG"] = str(Path(config).expanduser().resolve())
            os.environ[LOG_LEVEL_ENV] = log_level
            console.print(
                f"agenttrail serving on http://{host}:{port}  ({workers} workers; database: {where})",
                highlight=False,
                soft_wrap=True,
            )
            uvicorn.run("agenttrail.cli.serve:worker_app", factory=True, workers=workers, **options)
            return
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        quiet_migrations(log_level)
        app = create_server_app(settings)
        console.print(
            f"agenttrail serving on http://{host}:{port}  (database: {where})", highlight=False, soft_wrap=True
        )
        uvicorn.run(app, **options)
