"""`agenttrail sync`: send what the outbox still holds (a session that ended offline, or was killed)."""

from __future__ import annotations

import os

import typer

from agenttrail.cli.common import CONFIG_HELP, console, fail, friendly, progress_bar, settings_for

BAR_FROM = 2_000  # more than one batch: long enough to show how far it is


def register(app: typer.Typer) -> None:
    @app.command(rich_help_panel="Sessions")
    @friendly
    def sync(
        server: str | None = typer.Option(None, "--server", help="Default: $AGENTTRAIL_SERVER or `agenttrail login`."),
        key: str | None = typer.Option(None, "--key", help="Default: $AGENTTRAIL_KEY or `agenttrail login`."),
        deadline: float = typer.Option(60.0, "--deadline", help="Give up retrying after this many seconds."),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Upload the events waiting in the outbox to the server, exactly once.

        Example: agenttrail sync --deadline 300 (after a session that ran offline)
        """
        from agenttrail.outbox import Outbox, Uploader, UploadError
        from agenttrail.tracer.remote import RemoteError, resolve_client_config

        home = settings_for(None, config).home
        try:
            cfg = resolve_client_config(home, os.environ, server=server, key=key)
        except RemoteError as e:
            fail(str(e))
            return
        path = home / "outbox.db"
        if not path.exists():
            console.print("nothing to send: the outbox is empty", highlight=False)
            return
        with Outbox(path) as outbox:
            waiting = outbox.count()
            if waiting == 0:
                console.print("nothing to send: the outbox is empty", highlight=False)
                return
            if not cfg.server:
                fail(f"{waiting} events wait in {path}, but no server is set: run `agenttrail login` first")
            if not cfg.key:
                fail(f"{waiting} events wait in {path}, but there is no key for {cfg.server}: pass --key")
            assert cfg.server and cfg.key
            uploader = Uploader(outbox, cfg.server, cfg.key)
            try:
                with progress_bar("sending", waiting, "events", show=waiting > BAR_FROM) as advance:
                    left = uploader.flush(deadline, on_sent=advance)
            except UploadError as e:
                fail(f"{e} ({outbox.count()} events still queued)")
                return
            finally:
                uploader.close()
            sent = waiting - left
            extra = f", {uploader.duplicates} of them already there" if uploader.duplicates else ""
            if left:
                reason = f" ({uploader.last_failure})" if uploader.last_failure else ""
                fail(f"sent {sent} events to {cfg.server}{extra}; {left} still queued{reason}: try again later")
            console.print(f"sent {sent} events to {cfg.server}{extra}; the outbox is empty", highlight=False)
