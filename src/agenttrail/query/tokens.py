"""API tokens for the query API: a role, optionally a team, stored only as a SHA-256 hash.

Roles: `admin` (everything), `finance` (aggregates: reports, spend, FOCUS and CSV/JSON exports, SQL
over the aggregate views; never prompts, diffs or commands), `security` (everything read-only,
including content, every content read audited), `lead` (reports and exports of one team).
A plain hash is right (as for virtual keys): tokens are 240 random bits.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, select, update

from agenttrail.store.org import DirectoryError, team_by_name
from agenttrail.store.tables import api_token, team

TOKEN_PREFIX = "at-api-"
CLEAR_PREFIX_LEN = 13
ROLES = ("admin", "finance", "security", "lead")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    prefix: str
    name: str | None
    role: str
    team: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def label(self) -> str:
        """Who, for the audit trail: never the token itself."""
        return f"token:{self.prefix}…" + (f" ({self.name})" if self.name else "")


def _select() -> Select[Any]:
    return select(api_token, team.c.name.label("team_name")).outerjoin(team, team.c.id == api_token.c.team_id)


def _info(r: Any) -> TokenInfo:
    return TokenInfo(r.id, r.prefix, r.name, r.role, r.team_name, r.created_at, r.revoked_at)


def create_token(
    engine: Engine, *, role: str, now: datetime, name: str | None = None, team_name: str | None = None
) -> tuple[str, TokenInfo]:
    """Returns the clear token (shown once, never stored) and its record."""
    if role not in ROLES:
        raise DirectoryError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if role == "lead" and not team_name:
        raise DirectoryError("a lead token needs --team: a lead sees one team's figures")
    token = TOKEN_PREFIX + secrets.token_urlsafe(30)
    with engine.begin() as conn:
        t = team_by_name(conn, team_name) if team_name else None
        tid = conn.execute(
            api_token.insert().values(
                token_hash=hash_token(token),
                prefix=token[:CLEAR_PREFIX_LEN],
                name=name,
                role=role,
                team_id=t.id if t else None,
                created_at=now.replace(tzinfo=None),
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        row = conn.execute(_select().where(api_token.c.id == tid)).one()
    return token, _info(row)


def lookup_token(engine: Engine, token: str) -> TokenInfo | None:
    """The live token's record, or None (unknown or revoked)."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with engine.connect() as conn:
        row = conn.execute(_select().where(api_token.c.token_hash == hash_token(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    return _info(row)


def list_tokens(engine: Engine) -> list[TokenInfo]:
    with engine.connect() as conn:
        return [_info(r) for r in conn.execute(_select().order_by(api_token.c.id))]


def revoke_token(engine: Engine, prefix_or_token: str, now: datetime) -> TokenInfo:
    with engine.begin() as conn:
        if len(prefix_or_token) > CLEAR_PREFIX_LEN:
            cond = api_token.c.token_hash == hash_token(prefix_or_token)
        else:
            cond = api_token.c.prefix == prefix_or_token.rstrip("….")
        rows = conn.execute(_select().where(cond)).all()
        if not rows:
            raise DirectoryError(f"no API token matches {prefix_or_token!r}; `agenttrail token list` shows them")
        if len(rows) > 1:
            raise DirectoryError(f"{len(rows)} tokens share the prefix {prefix_or_token!r}; give the whole token")
        conn.execute(
            update(api_token)
            .where(api_token.c.id == rows[0].id)
            .where(api_token.c.revoked_at.is_(None))
            .values(revoked_at=now.replace(tzinfo=None))
        )
        return _info(conn.execute(_select().where(api_token.c.id == rows[0].id)).one())
