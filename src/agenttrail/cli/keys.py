"""`agenttrail key create|list|revoke`: virtual keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, UserError, console, engine_for, err_console, friendly
from agenttrail.clock import SystemClock
from agenttrail.query.output import FORMATS, render
from agenttrail.store import keys as keystore


def _parse_expiry(value: str | None, now: datetime) -> datetime | None:
    if not value:
        return None
    v = value.strip().lower()
    units = {"d": "days", "h": "hours", "w": "weeks"}
    try:
        if v[-1:] in units and v[:-1].isdigit():
            when = now + timedelta(**{units[v[-1]]: int(v[:-1])})
        else:
            when = datetime.fromisoformat(value)
            when = when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
    except (ValueError, OverflowError):
        raise UserError(
            f"--expires takes a date (2026-12-31), a time (2026-12-31T18:00) or a span (30d, 12h); got {value!r}"
        ) from None
    if when <= now:  # a key born expired is refused at its first call, with nothing said now
        raise UserError(f"--expires {value} is already past; give a later date or a span such as 30d")
    return when


CREATE_EXAMPLES = """[bold]Examples[/bold]

  agenttrail key create --team payments --engineer ana@acme.com --name "ana laptop"

  agenttrail key create --team payments --project checkout --name ci --models claude-haiku-4-5,gpt-5-mini --expires 90d

  [dim]# stdout holds the key alone; then use it as the client's API key, with the gateway as base URL[/dim]

  export ANTHROPIC_API_KEY=$(agenttrail key create --team payments) ANTHROPIC_BASE_URL=http://gateway:4100
"""


def register(app: typer.Typer) -> None:
    key_app = typer.Typer(
        help="Virtual keys (sk-at-…): what clients use instead of provider keys.", no_args_is_help=True
    )
    app.add_typer(key_app, name="key", rich_help_panel="Organisation")

    @key_app.command("create", epilog=CREATE_EXAMPLES)
    @friendly
    def create(
        team: str = typer.Option(..., "--team", help="Team the key's calls are billed to."),
        project: str | None = typer.Option(None, "--project", help="Project the calls are tagged with."),
        engineer: str | None = typer.Option(None, "--engineer", help="Engineer (email) the key belongs to."),
        name: str | None = typer.Option(None, "--name", help="A label, e.g. 'ci' or 'alice laptop'."),
        models: str | None = typer.Option(None, "--models", help="Comma-separated models this key may use."),
        expires: str | None = typer.Option(None, "--expires", help="Expiry: a date, or a span like 30d."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Create a virtual key and print it once. Only its hash is stored."""
        now = SystemClock().now().replace(tzinfo=None)
        allowed = [m.strip() for m in models.split(",") if m.strip()] if models else None
        key, info = keystore.create_key(
            engine_for(db, config),
            team_name=team,
            project_name=project,
            engineer_email=engineer,
            name=name,
            allowed_models=allowed,
            expires_at=_parse_expiry(expires, now),
            now=now,
        )
        print(key)
        scope = ", ".join(
            f"{k} {v}" for k, v in (("team", info.team), ("project", info.project), ("engineer", info.engineer)) if v
        )
        # On stderr: stdout holds the key alone, so `KEY=$(agenttrail key create …)` is the key.
        err_console.print(
            f"[dim]key {info.prefix}… for {scope}. It is shown only now: store it safely.[/]", highlight=False
        )

    @key_app.command("list")
    @friendly
    def list_(
        team: str | None = typer.Option(None, "--team", help="Only this team's keys."),
        fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """List keys by prefix (the keys themselves are not stored)."""
        if fmt not in FORMATS:
            raise UserError(f"--format must be one of {', '.join(FORMATS)}")
        now = SystemClock().now().replace(tzinfo=None)
        cols = ["prefix", "name", "team", "project", "engineer", "models", "expires", "status"]
        rows = []
        for k in keystore.list_keys(engine_for(db, config), team):
            status = ("revoked" if k.revoked_at else "expired") if k.refusal(now) else "active"
            rows.append(
                (
                    k.prefix,
                    k.name,
                    k.team,
                    k.project,
                    k.engineer,
                    ",".join(k.allowed_models or ()) or "any",
                    k.expires_at,
                    status,
                )
            )
        render(cols, rows, fmt, title="virtual keys")

    @key_app.command("revoke")
    @friendly
    def revoke(
        key: str = typer.Argument(..., help="The key, or its prefix as `key list` shows it."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Revoke a key (and the session keys made from it). Gateways stop taking it within seconds."""
        info = keystore.revoke_key(engine_for(db, config), key, SystemClock().now().replace(tzinfo=None))
        console.print(f"revoked {info.prefix}…", highlight=False)
