"""`agenttrail run [options] -- CMD…`: run an agent as a traced session (docs/run.md)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, fail, friendly, settings_for


def register(app: typer.Typer) -> None:
    @app.command(
        rich_help_panel="Sessions",
        # Everything after the command's first word belongs to the agent, options included.
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )
    @friendly
    def run(
        command: list[str] = typer.Argument(..., help="The agent's command line (after --).", metavar="-- CMD..."),
        server: str | None = typer.Option(
            None, "--server", help="agenttrail server URL. Default: $AGENTTRAIL_SERVER or `agenttrail login`."
        ),
        key: str | None = typer.Option(
            None, "--key", help="Your virtual key (sk-at-…). Default: $AGENTTRAIL_KEY or `agenttrail login`."
        ),
        project: str | None = typer.Option(None, "--project", help="Project to tag the model calls with."),
        no_sandbox: bool = typer.Option(False, "--no-sandbox", help="Trace without the bubblewrap sandbox."),
        allow_write: list[str] = typer.Option(
            [], "--allow-write", help="Another path the agent may write (repeatable).", metavar="PATH"
        ),
        allow_env: list[str] = typer.Option(
            [], "--allow-env", help="A credential variable the agent may keep, by name (repeatable).", metavar="NAME"
        ),
        local: bool = typer.Option(False, "--local", help="Record into the local store even when logged in."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No agenttrail messages on stderr."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP + " Used when there is no server."),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Run an agent as one traced session: commands, files (with diffs), packages, connections,
        commits and model calls, in a sandbox, with no real credential in reach.

        The agent's exit code is agenttrail's. Example: agenttrail run -- claude
        """
        from agenttrail.tracer.remote import RemoteError, resolve_client_config
        from agenttrail.tracer.session import RunOptions, SessionError, TracedSession

        settings = settings_for(db, config)
        try:
            remote = resolve_client_config(settings.home, os.environ, server=server, key=key, project=project)
        except RemoteError as e:
            fail(str(e))
            return
        opts = RunOptions(
            command=tuple(command),
            cwd=os.getcwd(),
            home=Path(settings.home),
            env=dict(os.environ),
            sandbox=not no_sandbox,
            allow_write=tuple(os.path.abspath(p) for p in allow_write),
            allow_env=tuple(allow_env),
            server=None if local else remote.server,
            key=None if local else remote.key,
            project=remote.project,
            database_url=settings.database_url,
            quiet=quiet,
        )
        try:
            summary = TracedSession(opts).run()
        except SessionError as e:
            fail(str(e), e.exit_code)
            return
        raise typer.Exit(summary.exit_code)
