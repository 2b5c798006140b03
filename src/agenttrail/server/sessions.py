"""`/api/v1/sessions`: session-scoped keys for `agenttrail run`, and the sessions a key may read.

- `POST /api/v1/sessions` (the engineer's key) registers a traced session and answers with a new key
  that carries the engineer key's team, project and engineer and tags every gateway call made with it
  with the session id (`gateway/app.py` `_identify`). The agent gets that key, never the engineer's.
- `POST /api/v1/sessions/{id}/end` revokes it: the key is valid only while the session lives. A
  session whose end never comes (the laptop died) loses its key after `[sessions] key_max_hours`
  (24 by default): it is created with that expiry.
- `GET /api/v1/sessions` and `GET /api/v1/sessions/{id}` read the record: a key sees its engineer's
  sessions (a key without an engineer, its team's; a session key, its own session): their own work.
  Each read of one session's content (commands, diffs) is written to the audit log, as the query
  API's content reads are (agenttrail.query.access).
"""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta
from typing import Any

import orjson
from anyio import to_thread
from sqlalchemy import Engine, select, update
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from agenttrail.config import ConfigError, positive_setting
from agenttrail.events import new_id
from agenttrail.gateway.errors import GatewayError
from agenttrail.query.access import Principal, audit
from agenttrail.server.app import Services
from agenttrail.server.body import BodyTooLarge, read_body
from agenttrail.store.keys import KeyInfo, create_session_key
from agenttrail.store.tables import project, virtual_key
from agenttrail.tracer.timeline import Scope, SessionIdError, list_sessions, session_record

DEFAULT_KEY_MAX_HOURS = 24.0
MAX_KEY_HOURS = 24 * 366
MAX_START_BODY = 64 * 1024
MAX_LIST = 500
# What a session id may be: it travels in URLs, trailers and file names.
SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{7,63}")


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _problem(status: int, message: str, code: str | None = None) -> Response:
    err: dict[str, Any] = {"message": message, "status": status}
    if code:
        err["code"] = code
    return JSONResponse({"error": err}, status_code=status)


def _naive(now: datetime) -> datetime:
    return now.replace(tzinfo=None) if now.tzinfo else now


def _iso(d: datetime | None) -> str | None:
    return d.isoformat() + "Z" if d is not None else None


def scope_for(key: KeyInfo) -> Scope:
    if key.session_id is not None:
        return Scope(session_id=key.session_id)
    if key.engineer_id is not None:
        return Scope(engineer_id=key.engineer_id)
    return Scope(team_id=key.team_id)


def start_session(
    engine: Engine,
    key: KeyInfo,
    session_id: str,
    project_name: str | None,
    now: datetime,
    max_lifetime: timedelta,
) -> dict[str, Any]:
    """Create the session-scoped key; the answer `agenttrail run` gives the agent."""
    if key.session_id is not None:
        raise _Refused(403, "a session key cannot start another session; use your own key")
    with engine.connect() as conn:
        owners = {
            r.parent_key_id
            for r in conn.execute(select(virtual_key.c.parent_key_id).where(virtual_key.c.session_id == session_id))
        }
        if owners - {key.id}:
            raise _Refused(409, f"session id {session_id} is already in use by another key", "session_id_in_use")
        parent = key
        if project_name:
            row = conn.execute(
                select(project.c.id, project.c.name, project.c.team_id).where(project.c.name == project_name)
            ).first()
            if row is None or row.team_id != key.team_id:
                raise _Refused(404, f'no project "{project_name}" in team "{key.team}"', "project_not_found")
            if key.project_id is not None and key.project_id != row.id:
                raise _Refused(403, f'this key is for project "{key.project}", not "{project_name}"')
            parent = dataclasses.replace(key, project_id=row.id, project=row.name)
    clear, info = create_session_key(engine, parent, session_id, now)
    # Never beyond the engineer's own key, and never beyond the lifetime of a session whose end is lost.
    expires = now + max_lifetime
    if key.expires_at is not None and key.expires_at < expires:
        expires = key.expires_at
    with engine.begin() as conn:
        conn.execute(update(virtual_key).where(virtual_key.c.id == info.id).values(expires_at=expires))
    return {
        "session_id": session_id,
        "key": clear,
        "key_prefix": info.prefix,
        "team": info.team,
        "project": info.project,
        "engineer": info.engineer,
        "expires_at": _iso(expires),
    }


def end_session(engine: Engine, key: KeyInfo, session_id: str, now: datetime) -> dict[str, Any]:
    """Revoke the session's key(s). The engineer's key that started it, or the session key itself, may."""
    if not SESSION_ID.fullmatch(session_id):  # no session has such an id (and PostgreSQL refuses a NUL)
        raise _Refused(404, f"no session {session_id[:80]!r} on this server", "session_not_found")
    with engine.begin() as conn:
        rows = conn.execute(
            select(virtual_key.c.id, virtual_key.c.parent_key_id).where(virtual_key.c.session_id == session_id)
        ).all()
        if not rows:
            raise _Refused(404, f"no session {session_id} on this server", "session_not_found")
        mine = [r.id for r in rows if r.parent_key_id == key.id or (key.session_id == session_id and r.id == key.id)]
        if not mine:
            raise _Refused(403, f"session {session_id} was not started with this key")
        revoked = conn.execute(
            update(virtual_key)
            .where(virtual_key.c.id.in_(mine))
            .where(virtual_key.c.revoked_at.is_(None))
            .values(revoked_at=now)
        ).rowcount
    return {"session_id": session_id, "revoked": revoked}


def _audit(engine: Engine, key: KeyInfo, session_id: str, now: datetime) -> None:
    # The same trail as the query API's content reads (agenttrail.query.access): who, as what, read what.
    who = Principal("engineer" if key.session_id is None else "session", key.engineer or f"key:{key.prefix}", key.team)
    audit(engine, who, "session.read", {"session_id": session_id, "key_prefix": key.prefix}, now)


def install(svc: Services) -> list[BaseRoute]:
    hours = svc.settings.section("sessions").get("key_max_hours", DEFAULT_KEY_MAX_HOURS)
    if positive_setting(hours, "[sessions] key_max_hours") > MAX_KEY_HOURS:
        raise ConfigError(f"[sessions] key_max_hours must be at most {MAX_KEY_HOURS:,} (a year), got {hours!r}")
    max_lifetime = timedelta(hours=float(hours))

    async def authenticate(request: Request) -> KeyInfo:
        try:
            return await svc.keys.authenticate(request.headers)
        except GatewayError as e:
            raise _Refused(401, e.message) from None

    async def start_route(request: Request) -> Response:
        try:
            key = await authenticate(request)
            try:
                raw = await read_body(request, MAX_START_BODY)
            except BodyTooLarge as e:
                raise _Refused(413, f'{e}; send {{"session_id": "…", "project": "…"}}') from None
            try:
                body = orjson.loads(raw) if raw.strip() else {}
            except orjson.JSONDecodeError as e:
                raise _Refused(400, f"the body is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise _Refused(400, 'the body must be a JSON object, e.g. {"session_id": "…"}')
            sid = body.get("session_id") or new_id()
            if not isinstance(sid, str) or not SESSION_ID.fullmatch(sid):
                raise _Refused(400, "session_id must be 8 to 64 letters, digits or _.:- (or left out)")
            project_name = body.get("project")
            if project_name is not None and (not isinstance(project_name, str) or "\x00" in project_name):
                raise _Refused(400, "project must be a project name")
            now = _naive(svc.clock.now())
            answer = await to_thread.run_sync(start_session, svc.engine, key, sid, project_name, now, max_lifetime)
        except _Refused as r:
            return _problem(r.status, r.message, r.code)
        return JSONResponse(answer, status_code=201)

    async def end_route(request: Request) -> Response:
        try:
            key = await authenticate(request)
            sid = request.path_params["session_id"]
            answer = await to_thread.run_sync(end_session, svc.engine, key, sid, _naive(svc.clock.now()))
        except _Refused as r:
            return _problem(r.status, r.message, r.code)
        svc.keys.invalidate()  # this process stops taking the key now, not when its cache entry ages out
        return JSONResponse(answer)

    async def list_route(request: Request) -> Response:
        try:
            key = await authenticate(request)
            try:
                limit = min(max(int(request.query_params.get("limit", "50")), 0), MAX_LIST)
            except ValueError:
                raise _Refused(400, "limit must be a number") from None
        except _Refused as r:
            return _problem(r.status, r.message, r.code)
        rows = await to_thread.run_sync(lambda: list_sessions(svc.engine, limit=limit, scope=scope_for(key)))
        who = {"team": key.team, "project": key.project, "engineer": key.engineer, "key_prefix": key.prefix}
        return JSONResponse({"sessions": rows, "key": who})

    async def show_route(request: Request) -> Response:
        try:
            key = await authenticate(request)
        except _Refused as r:
            return _problem(r.status, r.message, r.code)
        sid = request.path_params["session_id"]
        try:
            record = await to_thread.run_sync(lambda: session_record(svc.engine, sid, scope=scope_for(key)))
        except SessionIdError as e:
            return _problem(400, str(e), "session_id_ambiguous")
        if record is None:
            return _problem(404, f"no session {sid} that this key may read", "session_not_found")
        await to_thread.run_sync(_audit, svc.engine, key, record["session_id"], _naive(svc.clock.now()))
        return Response(orjson.dumps(record, default=str), media_type="application/json")

    return [
        Route("/api/v1/sessions", start_route, methods=["POST"]),
        Route("/api/v1/sessions", list_route, methods=["GET"]),
        Route("/api/v1/sessions/{session_id}/end", end_route, methods=["POST"]),
        Route("/api/v1/sessions/{session_id}", show_route, methods=["GET"]),
    ]
