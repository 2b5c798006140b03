"""Virtual keys (`sk-at-…`): created once, stored only as a SHA-256 hash plus a short clear prefix.

A plain hash is right here (not a slow password hash): keys are 240 random bits, so there is
nothing to brute-force, and the gateway must check one on every call.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, select, update

from agenttrail.store.org import DirectoryError, engineer_by_email, project_by_name, team_by_name
from agenttrail.store.tables import engineer, project, team, virtual_key

KEY_PREFIX = "sk-at-"
CLEAR_PREFIX_LEN = 12  # "sk-at-" plus 6 characters: enough to tell keys apart in a list


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(30)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    prefix: str
    name: str | None
    team_id: int
    team: str
    project_id: int | None
    project: str | None
    engineer_id: int | None
    engineer: str | None
    allowed_models: tuple[str, ...] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime
    session_id: str | None = None

    def refusal(self, now: datetime) -> str | None:
        """Why this key cannot be used now, or None."""
        if self.revoked_at is not None:
            return f"the virtual key {self.prefix}… was revoked on {self.revoked_at:%Y-%m-%d %H:%M} UTC"
        if self.expires_at is not None and now >= self.expires_at:
            return f"the virtual key {self.prefix}… expired on {self.expires_at:%Y-%m-%d %H:%M} UTC"
        return None


def _select_keys() -> Select[Any]:
    return (
        select(
            virtual_key,
            team.c.name.label("team_name"),
            project.c.name.label("project_name"),
            engineer.c.email.label("engineer_email"),
        )
        .join(team, team.c.id == virtual_key.c.team_id)
        .outerjoin(project, project.c.id == virtual_key.c.project_id)
        .outerjoin(engineer, engineer.c.id == virtual_key.c.engineer_id)
    )


def _info(row: Any) -> KeyInfo:
    allowed = tuple(json.loads(row.allowed_models)) if row.allowed_models else None
    return KeyInfo(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        team_id=row.team_id,
        team=row.team_name,
        project_id=row.project_id,
        project=row.project_name,
        engineer_id=row.engineer_id,
        engineer=row.engineer_email,
        allowed_models=allowed,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
        session_id=row.session_id,
    )


def create_key(
    engine: Engine,
    *,
    team_name: str,
    project_name: str | None = None,
    engineer_email: str | None = None,
    name: str | None = None,
    allowed_models: list[str] | None = None,
    expires_at: datetime | None = None,
    now: datetime,
) -> tuple[str, KeyInfo]:
    """Returns the clear key (shown once, never stored) and its record."""
    key = new_key()
    with engine.begin() as conn:
        t = team_by_name(conn, team_name)
        p = project_by_name(conn, project_name) if project_name else None
        e = engineer_by_email(conn, engineer_email.lower()) if engineer_email else None
        kid = conn.execute(
            virtual_key.insert().values(
                key_hash=hash_key(key),
                prefix=key[:CLEAR_PREFIX_LEN],
                name=name,
                team_id=t.id,
                project_id=p.id if p else None,
                engineer_id=e.id if e else None,
                allowed_models=json.dumps(allowed_models) if allowed_models else None,
                expires_at=expires_at,
                created_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        row = conn.execute(_select_keys().where(virtual_key.c.id == kid)).one()
    return key, _info(row)


def create_session_key(engine: Engine, parent: KeyInfo, session_id: str, now: datetime) -> tuple[str, KeyInfo]:
    """A key that carries the parent's team, project and engineer and tags calls with the session."""
    key = new_key()
    with engine.begin() as conn:
        kid = conn.execute(
            virtual_key.insert().values(
                key_hash=hash_key(key),
                prefix=key[:CLEAR_PREFIX_LEN],
                name=f"session {session_id}",
                team_id=parent.team_id,
                project_id=parent.project_id,
                engineer_id=parent.engineer_id,
                allowed_models=json.dumps(list(parent.allowed_models)) if parent.allowed_models else None,
                expires_at=parent.expires_at,
                created_at=now,
                session_id=session_id,
                parent_key_id=parent.id,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        row = conn.execute(_select_keys().where(virtual_key.c.id == kid)).one()
    return key, _info(row)


def lookup_key(engine: Engine, key: str) -> KeyInfo | None:
    with engine.connect() as conn:
        row = conn.execute(_select_keys().where(virtual_key.c.key_hash == hash_key(key))).first()
    return _info(row) if row is not None else None


def list_keys(engine: Engine, team_name: str | None = None, include_session_keys: bool = False) -> list[KeyInfo]:
    q = _select_keys().order_by(virtual_key.c.id)
    if team_name:
        q = q.where(team.c.name == team_name)
    if not include_session_keys:
        q = q.where(virtual_key.c.session_id.is_(None))
    with engine.connect() as conn:
        return [_info(r) for r in conn.execute(q)]


def revoke_key(engine: Engine, prefix_or_key: str, now: datetime) -> KeyInfo:
    """Revoke by the full key or by its clear prefix (as `key list` shows it)."""
    with engine.begin() as conn:
        if prefix_or_key.startswith(KEY_PREFIX) and len(prefix_or_key) > CLEAR_PREFIX_LEN:
            rows = conn.execute(_select_keys().where(virtual_key.c.key_hash == hash_key(prefix_or_key))).all()
        else:
            rows = conn.execute(_select_keys().where(virtual_key.c.prefix == prefix_or_key.rstrip("…."))).all()
        if not rows:
            raise DirectoryError(f"no key matches {prefix_or_key!r}; `agenttrail key list` shows the prefixes")
        if len(rows) > 1:
            raise DirectoryError(f"{len(rows)} keys share the prefix {prefix_or_key!r}; give the whole key")
        row = rows[0]
        conn.execute(
            update(virtual_key)
            .where((virtual_key.c.id == row.id) | (virtual_key.c.parent_key_id == row.id))
            .where(virtual_key.c.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        return _info(conn.execute(_select_keys().where(virtual_key.c.id == row.id)).one())
