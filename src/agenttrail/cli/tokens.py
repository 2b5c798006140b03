"""`agenttrail token …`: API tokens for the query API, each with a role (admin, finance, security, lead)."""

from __future__ import annotations

import typer

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, console, engine_for, err_console, fail, friendly
from agenttrail.clock import SystemClock
from agenttrail.query.output import FORMATS, render
from agenttrail.query.tokens import ROLES, create_token, list_tokens, revoke_token

token_app = typer.Typer(help="API tokens for /api/v1 reports, SQL and exports.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token", rich_help_panel="Admin")


@token_app.command("create")
@friendly
def create(
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    team: str | None = typer.Option(None, "--team", help="The team a lead sees."),
    name: str | None = typer.Option(None, "--name", help="A label, e.g. who holds it."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Print a new API token once (only its hash is stored).

    finance: reports, spend, FOCUS and CSV/JSON exports, SQL over aggregate views; no prompts, diffs
    or commands. security: all of that plus content, every content read audited. lead: one team's
    reports and exports. admin: everything.
    """
    if role not in ROLES:
        fail(f"--role must be one of {', '.join(ROLES)}")
    token, info = create_token(engine_for(db, config), role=role, name=name, team_name=team, now=SystemClock().now())
    print(token)
    # On stderr: stdout holds the token alone, so `TOKEN=$(agenttrail token create …)` is the token.
    err_console.print(f"[dim]{info.role} token {info.prefix}… created; it is shown only this once[/]", highlight=False)


@token_app.command("list")
@friendly
def list_cmd(
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or csv."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """The tokens, by prefix (never the tokens themselves)."""
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    rows = [
        (t.prefix, t.name, t.role, t.team, t.created_at, "revoked" if t.revoked_at else "active")
        for t in list_tokens(engine_for(db, config))
    ]
    render(["prefix", "name", "role", "team", "created_at", "status"], rows, fmt)


@token_app.command("revoke")
@friendly
def revoke(
    token: str = typer.Argument(..., help="The token or its prefix (as `token list` shows it)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Revoke a token; requests with it are refused from then on."""
    info = revoke_token(engine_for(db, config), token, SystemClock().now())
    console.print(f"revoked {info.role} token {info.prefix}…")
