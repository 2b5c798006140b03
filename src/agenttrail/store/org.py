"""The organisation directory: teams, projects, engineers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from agenttrail.store.tables import engineer, project, team


class DirectoryError(Exception):
    """A directory change cannot be made; the message says why."""


@dataclass(frozen=True, slots=True)
class Ref:
    id: int
    name: str


def _now() -> datetime:
    from agenttrail.clock import SystemClock

    return SystemClock().now().replace(tzinfo=None)


def team_by_name(conn: Connection, name: str) -> Ref:
    row = conn.execute(select(team.c.id, team.c.name).where(team.c.name == name)).first()
    if row is None:
        known = [r.name for r in conn.execute(select(team.c.name).order_by(team.c.name).limit(20))]
        hint = f" Known teams: {', '.join(known)}." if known else " Create it with `agenttrail team add NAME`."
        raise DirectoryError(f'no team named "{name}".{hint}')
    return Ref(row.id, row.name)


def project_by_name(conn: Connection, name: str) -> Ref:
    row = conn.execute(select(project.c.id, project.c.name).where(project.c.name == name)).first()
    if row is None:
        raise DirectoryError(f'no project named "{name}". Create it with `agenttrail project add NAME --team T`.')
    return Ref(row.id, row.name)


def engineer_by_email(conn: Connection, email: str) -> Ref:
    row = conn.execute(select(engineer.c.id, engineer.c.email).where(engineer.c.email == email)).first()
    if row is None:
        raise DirectoryError(f'no engineer "{email}". Add them with `agenttrail engineer add EMAIL --team T`.')
    return Ref(row.id, row.email)


def add_team(engine: Engine, name: str) -> Ref:
    name = _clean(name, "team name")
    with engine.begin() as conn:
        try:
            tid = conn.execute(team.insert().values(name=name, created_at=_now())).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:
            raise DirectoryError(f'team "{name}" already exists') from None
    return Ref(int(tid), name)


def add_project(engine: Engine, name: str, team_name: str, repo_url: str | None = None) -> Ref:
    name = _clean(name, "project name")
    with engine.begin() as conn:
        t = team_by_name(conn, team_name)
        try:
            pid = conn.execute(
                project.insert().values(name=name, team_id=t.id, repo_url=repo_url, created_at=_now())
            ).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:
            raise DirectoryError(f'project "{name}" already exists') from None
    return Ref(int(pid), name)


def add_engineer(engine: Engine, email: str, team_name: str, name: str | None = None) -> Ref:
    email = _clean(email, "email").lower()
    if "@" not in email:
        raise DirectoryError(f"{email!r} is not an email address")
    with engine.begin() as conn:
        t = team_by_name(conn, team_name)
        try:
            eid = conn.execute(
                engineer.insert().values(email=email, name=name, team_id=t.id, created_at=_now())
            ).inserted_primary_key[0]  # type: ignore[index]
        except IntegrityError:
            raise DirectoryError(f'engineer "{email}" already exists') from None
    return Ref(int(eid), email)


def _clean(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise DirectoryError(f"the {what} must not be empty")
    if len(value) > 200 and what != "email":
        raise DirectoryError(f"the {what} is too long (200 characters at most)")
    return value
