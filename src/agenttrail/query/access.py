"""Who may read what through the query API, and the audit trail of content reads.

Content is what people wrote or ran: prompts, responses, tool calls, commands, diffs, commit
messages (the `events`, `file_changes` and `commits` views, and the security export). Finance and
team leads see aggregates only; admin and security see content, and every content read is written
to `audit_log` with who read it and what.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine

from agenttrail.query.readonly_sql import AGGREGATE_VIEWS
from agenttrail.reports.base import Filters
from agenttrail.store.tables import audit_log

CONTENT_ROLES = frozenset({"admin", "security"})


class AccessDenied(Exception):
    """The caller's role does not allow this; the message says which role would."""


@dataclass(frozen=True, slots=True)
class Principal:
    role: str
    actor: str  # who, for the audit trail
    team: str | None = None  # a lead's team

    @property
    def sees_content(self) -> bool:
        return self.role in CONTENT_ROLES

    def sql_views(self) -> frozenset[str] | None:
        """The views this caller's SQL may read (None: all of them)."""
        if self.role == "lead":
            raise AccessDenied("a lead token cannot run SQL (it could read other teams); use the reports")
        return None if self.sees_content else AGGREGATE_VIEWS

    def scope(self, f: Filters) -> Filters:
        """A lead sees one team: its filter is forced, and asking for another team is refused."""
        if self.role != "lead":
            return f
        if f.team is not None and f.team != self.team:
            raise AccessDenied(f"this lead token sees team {self.team!r} only")
        return replace(f, team=self.team)

    def require_content(self, what: str) -> None:
        if not self.sees_content:
            raise AccessDenied(f"{what} holds content (prompts, commands, diffs); it needs a security or admin token")


def local_principal() -> Principal:
    """The person at the CLI: they hold the database, so they are admin; their reads are still audited."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Principal("admin", f"cli:{user}")


def audit(engine: Engine, who: Principal, action: str, detail: dict[str, Any], now: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            audit_log.insert().values(
                ts=now.replace(tzinfo=None),
                actor=who.actor,
                action=action,
                detail=orjson.dumps({"role": who.role, **detail}, default=str).decode(),
            )
        )
