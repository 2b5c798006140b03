"""`agenttrail sessions` and `agenttrail session show ID`: traced sessions, from the server or the local store.

Logged in to a server (`agenttrail login`, or --server/--key), they ask its sessions API; when that
server cannot answer (down, or too old to have the API) they read the local store and say so.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import typer
from rich.table import Table

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, console, engine_for, err_console, fail, friendly, settings_for

SERVER_HELP = "Server to ask. Default: $AGENTTRAIL_SERVER or `agenttrail login`."
LOCAL_HELP = "Read the local store even when logged in to a server."


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=False) + "\n")


def _remote(server: str | None, key: str | None, config: str | None, local: bool) -> Any:
    """A SessionsClient when a server is configured (and not --local), else None."""
    from agenttrail.tracer.remote import RemoteError, SessionsClient, resolve_client_config

    if local:
        return None
    try:
        cfg = resolve_client_config(settings_for(None, config).home, os.environ, server=server, key=key)
    except RemoteError as e:
        fail(str(e))
    if not cfg.has_server:
        return None
    assert cfg.server and cfg.key
    return SessionsClient(cfg.server, cfg.key)


def _fallback(e: Exception) -> None:
    err_console.print(f"note: {e}; reading the local store instead", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    session_app = typer.Typer(help="One traced session.", no_args_is_help=True)
    app.add_typer(session_app, name="session", rich_help_panel="Sessions")

    @app.command("sessions", rich_help_panel="Sessions")
    @friendly
    def sessions(
        as_json: bool = typer.Option(False, "--json", help="A JSON list, newest first."),
        limit: int = typer.Option(50, "--limit", "-n", min=1, help="How many sessions."),
        local: bool = typer.Option(False, "--local", help=LOCAL_HELP),
        server: str | None = typer.Option(None, "--server", help=SERVER_HELP),
        key: str | None = typer.Option(None, "--key", help="Your virtual key (with --server)."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Traced sessions, newest first: agent, repo, exit code, files, commands, model calls and cost.

        Example: agenttrail sessions -n 10, then agenttrail session show 3f2a9c1e
        """
        from agenttrail.tracer.remote import NoSessionsApi, RemoteError, RemoteUnavailable
        from agenttrail.tracer.timeline import list_sessions, render_list

        rows: list[dict[str, Any]] | None = None
        client = _remote(server, key, config, local)
        if client is not None:
            with client:
                try:
                    rows = list(client.list(limit).get("sessions") or [])
                except (NoSessionsApi, RemoteUnavailable) as e:
                    _fallback(e)
                except RemoteError as e:
                    fail(str(e))
        if rows is None:
            rows = list_sessions(engine_for(db, config), limit=limit)
        if as_json:
            _print_json(rows)
            return
        if not rows:
            console.print("no sessions yet: record one with `agenttrail run -- <agent>`")
            return
        table = Table(show_edge=False, header_style="bold")
        for col in ("session", "started (UTC)", "agent", "repo", "exit", "files", "cmds", "calls", "cost"):
            table.add_column(col, justify="right" if col in ("exit", "files", "cmds", "calls", "cost") else "left")
        for r in render_list(rows):
            table.add_row(*r)
        console.print(table)

    @session_app.command("show")
    @friendly
    def show(
        session_id: str = typer.Argument(..., help="A session id, or a unique prefix of one."),
        as_json: bool = typer.Option(False, "--json", help="The whole record as JSON."),
        no_diff: bool = typer.Option(False, "--no-diff", help="Leave the diffs out of the text."),
        everything: bool = typer.Option(
            False, "--all", help="Every event: file reads, git's own files, files outside the project."
        ),
        local: bool = typer.Option(False, "--local", help=LOCAL_HELP),
        server: str | None = typer.Option(None, "--server", help=SERVER_HELP),
        key: str | None = typer.Option(None, "--key", help="Your virtual key (with --server)."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """One session's record as a timeline: model calls with cost, commands, files with diffs,
        packages, connections and commits.

        Example: agenttrail session show 3f2a9c1e --no-diff (or --json for the whole record)
        """
        from agenttrail.tracer.remote import NoSessionsApi, RemoteError, RemoteUnavailable
        from agenttrail.tracer.timeline import SessionIdError, render_timeline, session_record

        record: dict[str, Any] | None = None
        searched = "the local store"
        client = _remote(server, key, config, local)
        if client is not None:
            with client:
                try:
                    record = client.show(session_id)
                    searched = client.server_url
                except (NoSessionsApi, RemoteUnavailable) as e:
                    _fallback(e)
                except RemoteError as e:
                    if e.status != 404:
                        fail(str(e))
                    searched = client.server_url
                    record = {}
        if record is None:
            from agenttrail.clock import SystemClock
            from agenttrail.query.access import audit, local_principal

            engine = engine_for(db, config)
            try:
                record = session_record(engine, session_id)
            except SessionIdError as e:
                fail(str(e))
                return
            if record:  # content read from the store: audited like the query API's (agenttrail.query.access)
                audit(
                    engine, local_principal(), "session.read", {"session_id": record["session_id"]}, SystemClock().now()
                )
        if not record:
            fail(f"no session {session_id!r} in {searched} (`agenttrail sessions` lists them)")
            return
        if as_json:
            _print_json(record)
            return
        sys.stdout.write(render_timeline(record, diffs=not no_diff, everything=everything))
