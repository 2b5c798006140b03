"""`agenttrail serve`: gateway + ingest + query + UI in one process."""

from __future__ import annotations

import logging

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, console, friendly, settings_for


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel="Server")
    @friendly
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
        port: int = typer.Option(4100, help="Port to listen on."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
        log_level: str = typer.Option("info", help="debug, info, warning or error."),
    ) -> None:
        """Run the gateway, ingest, query API and dashboard in one process.

        Point clients at it: ANTHROPIC_BASE_URL=http://HOST:PORT, OPENAI_BASE_URL=http://HOST:PORT/v1,
        with a virtual key from `agenttrail key create` as their API key. The server's own
        ANTHROPIC_API_KEY / OPENAI_API_KEY are the real credentials it sends upstream.
        """
        import uvicorn

        from agenttrail.server.parts import create_server_app

        settings = settings_for(db, config)
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        app = create_server_app(settings)
        console.print(
            f"agenttrail serving on http://{host}:{port}  (database: {settings.database_url.split('@')[-1]})",
            highlight=False,
        )
        # uvicorn's defaults pick uvloop and httptools (both come with uvicorn[standard]): measured the
        # cheapest per gateway call here; h11 and granian cost 1.2x more (docs/performance.md, "Gateway").
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level=log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=10,
        )
