"""`agenttrail team|project|engineer add|list`: the organisation directory."""

from __future__ import annotations

import typer
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from agenttrail.cli.common import CONFIG_HELP, DB_HELP, console, engine_for, friendly
from agenttrail.store import org
from agenttrail.store.tables import engineer, project, team


def register(app: typer.Typer) -> None:
    team_app = typer.Typer(help="Teams: the unit budgets and reports roll up to.", no_args_is_help=True)
    project_app = typer.Typer(help="Projects, each owned by a team, optionally tied to a repo.", no_args_is_help=True)
    eng_app = typer.Typer(help="Engineers, each in one team.", no_args_is_help=True)
    app.add_typer(team_app, name="team", rich_help_panel="Organisation")
    app.add_typer(project_app, name="project", rich_help_panel="Organisation")
    app.add_typer(eng_app, name="engineer", rich_help_panel="Organisation")

    @team_app.command("add")
    @friendly
    def team_add(
        name: str = typer.Argument(..., help="Team name, e.g. payments."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Add a team."""
        ref = org.add_team(engine_for(db, config), name)
        console.print(f'added team "{ref.name}" (id {ref.id})', highlight=False, markup=False)

    @team_app.command("list")
    @friendly
    def team_list(
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """List teams."""
        with engine_for(db, config).connect() as conn:
            rows = conn.execute(select(team.c.id, team.c.name).order_by(team.c.name)).all()
        _table(["id", "team"], [(r.id, r.name) for r in rows])

    @project_app.command("add")
    @friendly
    def project_add(
        name: str = typer.Argument(..., help="Project name."),
        team_name: str = typer.Option(..., "--team", help="The team that owns it."),
        repo: str | None = typer.Option(None, "--repo", help="Repository URL, e.g. github.com/acme/api."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Add a project owned by a team."""
        ref = org.add_project(engine_for(db, config), name, team_name, repo)
        console.print(f'added project "{ref.name}" to team "{team_name}" (id {ref.id})', highlight=False, markup=False)

    @project_app.command("list")
    @friendly
    def project_list(
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """List projects."""
        q = (
            select(project.c.name, team.c.name.label("team"), project.c.repo_url)
            .join(team, team.c.id == project.c.team_id)
            .order_by(project.c.name)
        )
        with engine_for(db, config).connect() as conn:
            rows = conn.execute(q).all()
        _table(["project", "team", "repo"], [(r.name, r.team, r.repo_url or "") for r in rows])

    @eng_app.command("add")
    @friendly
    def engineer_add(
        email: str = typer.Argument(..., help="The engineer's email (as in `git config user.email`)."),
        team_name: str = typer.Option(..., "--team", help="Their team."),
        name: str | None = typer.Option(None, "--name", help="Display name."),
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """Add an engineer to a team."""
        ref = org.add_engineer(engine_for(db, config), email, team_name, name)
        console.print(f'added engineer {ref.name} to team "{team_name}" (id {ref.id})', highlight=False, markup=False)

    @eng_app.command("list")
    @friendly
    def engineer_list(
        db: str | None = typer.Option(None, "--db", help=DB_HELP),
        config: str | None = typer.Option(None, "--config", help=CONFIG_HELP),
    ) -> None:
        """List engineers."""
        q = (
            select(engineer.c.email, engineer.c.name, team.c.name.label("team"))
            .join(team, team.c.id == engineer.c.team_id)
            .order_by(engineer.c.email)
        )
        with engine_for(db, config).connect() as conn:
            rows = conn.execute(q).all()
        _table(["engineer", "name", "team"], [(r.email, r.name or "", r.team) for r in rows])


def _table(headers: list[str], rows: list[tuple[object, ...]]) -> None:
    t = Table(*headers)
    for r in rows:
        t.add_row(*(Text(str(c)) for c in r))  # names are data, never markup
    console.print(t)
