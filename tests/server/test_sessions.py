"""`/api/v1/sessions`: session-scoped keys (start, end, expiry), and who may read which sessions.

The real server app (every part installed), in process, on SQLite and PostgreSQL; time from a
FixedClock, so the 24 h expiry is checked without waiting.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from agenttrail.clock import FixedClock
from agenttrail.config import load_settings
from agenttrail.events import Event
from agenttrail.server.app import build_services
from agenttrail.server.parts import create_server_app
from agenttrail.store import keys, org
from agenttrail.store.database import open_engine
from agenttrail.store.tables import audit_log, llm_call, virtual_key
from agenttrail.testing import MockConfig, run_in_thread

T0 = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)


@dataclass
class Api:
    client: TestClient
    engine: Engine
    clock: FixedClock
    alice: str  # payments, engineer alice, no project
    bob: str  # payments, engineer bob
    ops: str  # ops team key, no engineer

    def post(self, path: str, key: str, body: Any = None) -> Any:
        return self.client.post(path, json=body, headers={"Authorization": f"Bearer {key}"})

    def get(self, path: str, key: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers={"x-api-key": key})

    def start(self, key: str, **body: Any) -> dict[str, Any]:
        r = self.post("/api/v1/sessions", key, body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def ingest(self, key: str, events: list[Event]) -> None:
        r = self.post("/api/v1/ingest", key, {"events": [e.to_dict() for e in events]})
        assert r.status_code == 200, r.text


@pytest.fixture
def mock_url() -> Iterator[str]:
    with run_in_thread(MockConfig()) as url:
        yield url


@pytest.fixture
def api(db_url: str, home: str, mock_url: str) -> Iterator[Api]:
    engine = open_engine(db_url)
    for team in ("payments", "ops"):
        org.add_team(engine, team)
    org.add_project(engine, "checkout", "payments")
    org.add_project(engine, "pager", "ops")
    org.add_engineer(engine, "alice@example.com", "payments")
    org.add_engineer(engine, "bob@example.com", "payments")
    now = T0.replace(tzinfo=None)
    alice, _ = keys.create_key(engine, team_name="payments", engineer_email="alice@example.com", now=now)
    bob, _ = keys.create_key(engine, team_name="payments", engineer_email="bob@example.com", now=now)
    ops, _ = keys.create_key(engine, team_name="ops", now=now)
    settings = load_settings(
        env={
            "AGENTTRAIL_DATABASE_URL": db_url,
            "AGENTTRAIL_HOME": home,
            "AGENTTRAIL_ANTHROPIC_BASE_URL": mock_url,
            "AGENTTRAIL_OPENAI_BASE_URL": mock_url + "/v1",
            "ANTHROPIC_API_KEY": "sk-ant-real",
            "OPENAI_API_KEY": "sk-real",
        }
    )
    clock = FixedClock(T0)
    svc = build_services(settings, engine=engine, clock=clock)
    with TestClient(create_server_app(settings, svc)) as client:
        yield Api(client, engine, clock, alice, bob, ops)


def _session_events(sid: str, ts: datetime) -> list[Event]:
    return [
        Event(sid, "session_start", ts, {"agent": "claude-code", "command": ["claude"], "repo": "github.com/a/b"}),
        Event(sid, "exec", ts + timedelta(seconds=1), {"argv": ["git", "status"], "cwd": "/p", "pid": 2}),
        Event(
            sid,
            "file_create",
            ts + timedelta(seconds=2),
            {"source": "snapshot", "path": "a.txt", "change": "created", "lines_added": 1, "diff": "+x\n"},
        ),
        Event(sid, "session_end", ts + timedelta(seconds=3), {"exit_code": 0, "status": "ok"}),
    ]


def test_a_session_key_carries_the_engineer_and_tags_calls(api: Api) -> None:
    started = api.start(api.alice, session_id="sess-0001-alice", repo="github.com/a/b", agent="claude-code")
    assert started["session_id"] == "sess-0001-alice"
    assert (started["team"], started["engineer"], started["project"]) == ("payments", "alice@example.com", None)
    assert started["key"].startswith("sk-at-") and started["key"] != api.alice
    info = keys.lookup_key(api.engine, started["key"])
    assert info is not None and info.session_id == "sess-0001-alice" and info.engineer == "alice@example.com"
    # Valid for at most a day: a session whose end never comes does not leave a key behind for ever.
    assert info.expires_at == T0.replace(tzinfo=None) + timedelta(hours=24)
    assert started["expires_at"].startswith("2026-05-13T09:00")
    # The gateway takes it and tags the call with the session, whatever header the client sends.
    r = api.client.post(
        "/v1/messages",
        json={"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": started["key"], "anthropic-version": "2023-06-01", "x-agenttrail-session": "other"},
    )
    assert r.status_code == 200, r.text
    svc = api.client.app.state.services  # type: ignore[attr-defined]
    api.client.portal.call(svc.recorder.flush)  # type: ignore[union-attr]
    with api.engine.connect() as conn:
        calls = conn.execute(select(llm_call.c.session_id, llm_call.c.engineer_id, llm_call.c.cost_usd)).all()
    assert len(calls) == 1 and calls[0].session_id == "sess-0001-alice" and calls[0].cost_usd > 0
    assert calls[0].engineer_id == info.engineer_id


def test_a_server_chosen_id_when_none_is_given(api: Api) -> None:
    started = api.start(api.alice)
    assert len(started["session_id"]) == 32


def test_end_revokes_the_session_key(api: Api) -> None:
    started = api.start(api.alice, session_id="sess-0002-alice")
    r = api.post("/api/v1/sessions/sess-0002-alice/end", api.alice)
    assert r.status_code == 200 and r.json() == {"session_id": "sess-0002-alice", "revoked": 1}
    refused = api.client.get("/v1/models", headers={"Authorization": f"Bearer {started['key']}"})
    assert refused.status_code == 401 and "revoked" in refused.text
    # Idempotent: ending twice revokes nothing more.
    assert api.post("/api/v1/sessions/sess-0002-alice/end", api.alice).json()["revoked"] == 0
    # The engineer's own key is untouched.
    assert api.client.get("/v1/models", headers={"Authorization": f"Bearer {api.alice}"}).status_code == 200


def test_a_session_key_expires_on_its_own(api: Api) -> None:
    started = api.start(api.alice, session_id="sess-0003-alice")
    api.clock.advance(hours=24, seconds=1)
    api.client.app.state.services.keys.invalidate()  # type: ignore[attr-defined]
    refused = api.client.get("/v1/models", headers={"Authorization": f"Bearer {started['key']}"})
    assert refused.status_code == 401 and "expired" in refused.text


def test_a_session_key_never_outlives_the_engineers_key(api: Api, db_url: str) -> None:
    short, _ = keys.create_key(
        api.engine,
        team_name="payments",
        engineer_email="alice@example.com",
        expires_at=T0.replace(tzinfo=None) + timedelta(hours=2),
        now=T0.replace(tzinfo=None),
    )
    started = api.start(short, session_id="sess-0004-alice")
    assert started["expires_at"].startswith("2026-05-12T11:00")


def test_refusals(api: Api) -> None:
    api.start(api.alice, session_id="sess-0005-alice")
    session_key = api.start(api.alice, session_id="sess-0006-alice")["key"]
    cases = [
        (api.post("/api/v1/sessions", "sk-at-nope"), 401),
        (api.client.post("/api/v1/sessions", json={}), 401),
        (api.post("/api/v1/sessions", api.bob, {"session_id": "sess-0005-alice"}), 409),  # someone else's id
        (api.post("/api/v1/sessions", session_key, {}), 403),  # a session key cannot start sessions
        (api.post("/api/v1/sessions", api.alice, {"session_id": "bad id!"}), 400),
        (api.post("/api/v1/sessions", api.alice, [1, 2]), 400),
        (api.post("/api/v1/sessions", api.alice, {"project": "pager"}), 404),  # another team's project
        (api.post("/api/v1/sessions/sess-0005-alice/end", api.bob), 403),  # not bob's session
        (api.post("/api/v1/sessions/no-such-session/end", api.alice), 404),
        # Each a 500 on PostgreSQL, which refuses NUL in a text parameter:
        (api.post("/api/v1/sessions", api.alice, {"project": "check\x00out"}), 400),
        (api.post("/api/v1/sessions/sess%00/end", api.alice), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["message"]
    assert api.post("/api/v1/sessions/no-such-session/end", api.alice).json()["error"]["code"] == "session_not_found"


def test_a_project_scopes_the_session_key(api: Api) -> None:
    started = api.start(api.alice, session_id="sess-0007-alice", project="checkout")
    assert started["project"] == "checkout"
    info = keys.lookup_key(api.engine, started["key"])
    assert info is not None and info.project == "checkout"


def test_the_session_key_itself_may_end_its_session(api: Api) -> None:
    started = api.start(api.alice, session_id="sess-0008-alice")
    r = api.post("/api/v1/sessions/sess-0008-alice/end", started["key"])
    assert r.status_code == 200 and r.json()["revoked"] == 1


def test_reads_are_scoped_to_the_keys_engineer_and_audited(api: Api) -> None:
    api.ingest(api.alice, _session_events("sess-a1", T0))
    api.ingest(api.alice, _session_events("sess-a2", T0 + timedelta(hours=1)))
    api.ingest(api.bob, _session_events("sess-b1", T0 + timedelta(hours=2)))

    listed = api.get("/api/v1/sessions", api.alice).json()
    assert [s["session_id"] for s in listed["sessions"]] == ["sess-a2", "sess-a1"]  # newest first
    assert listed["key"]["engineer"] == "alice@example.com"
    assert [s["session_id"] for s in api.get("/api/v1/sessions", api.bob).json()["sessions"]] == ["sess-b1"]
    assert api.get("/api/v1/sessions", api.ops).json()["sessions"] == []  # another team
    assert len(api.get("/api/v1/sessions", api.alice, limit=1).json()["sessions"]) == 1

    shown = api.get("/api/v1/sessions/sess-a1", api.alice)
    assert shown.status_code == 200
    rec = shown.json()
    assert rec["session_id"] == "sess-a1" and rec["start"]["agent"] == "claude-code"
    assert [f["path"] for f in rec["file_changes"]] == ["a.txt"] and rec["file_changes"][0]["diff"] == "+x\n"
    assert [e["kind"] for e in rec["events"]] == ["session_start", "exec", "file_create", "session_end"]
    assert api.get("/api/v1/sessions/sess-a1", api.bob).status_code == 404  # not bob's
    ambiguous = api.get("/api/v1/sessions/sess-a", api.alice)  # alice's two: say so, not "no session"
    assert ambiguous.status_code == 400 and "more than one session" in ambiguous.json()["error"]["message"]
    assert api.get("/api/v1/sessions/sess-a", api.bob).status_code == 404  # none of them bob's
    assert api.get("/api/v1/sessions/se", api.alice).status_code == 400  # too short to look for
    assert api.get("/api/v1/sessions/sess-a1%00", api.alice).status_code == 404  # not a 500 on PostgreSQL
    assert api.get("/api/v1/sessions/sess-b", api.bob).json()["session_id"] == "sess-b1"  # unique prefix
    with api.engine.connect() as conn:
        audit = conn.execute(select(audit_log.c.actor, audit_log.c.action, audit_log.c.detail)).all()
    assert [(a.actor, a.action) for a in audit] == [
        ("alice@example.com", "session.read"),
        ("bob@example.com", "session.read"),
    ]
    assert "sess-a1" in audit[0].detail


def test_a_session_key_reads_only_its_own_session(api: Api) -> None:
    started = api.start(api.alice, session_id="sess-0009-alice")
    api.ingest(api.alice, _session_events("sess-0009-alice", T0))
    api.ingest(api.alice, _session_events("sess-other", T0))
    listed = api.get("/api/v1/sessions", started["key"]).json()["sessions"]
    assert [s["session_id"] for s in listed] == ["sess-0009-alice"]
    assert api.get("/api/v1/sessions/sess-other", started["key"]).status_code == 404


def test_only_session_keys_are_ended(api: Api) -> None:
    """Ending a session never revokes the engineer's key, whatever id is asked for."""
    api.start(api.alice, session_id="sess-0010-alice")
    api.post("/api/v1/sessions/sess-0010-alice/end", api.alice)
    with api.engine.connect() as conn:
        revoked = conn.execute(select(virtual_key.c.session_id).where(virtual_key.c.revoked_at.is_not(None))).all()
    assert [r.session_id for r in revoked] == ["sess-0010-alice"]


@pytest.mark.parametrize(("value", "message"), [('"abc"', "must be a positive number"), ("1e308", "must be at most")])
def test_a_bad_key_lifetime_is_a_config_error(
    sqlite_url: str, home: str, tmp_path: Any, value: str, message: str
) -> None:
    from agenttrail.config import ConfigError
    from agenttrail.server import sessions

    cfg = tmp_path / "agenttrail.toml"
    cfg.write_text(f"[sessions]\nkey_max_hours = {value}\n")
    settings = load_settings(config_file=cfg, env={"AGENTTRAIL_HOME": home}, db=sqlite_url)
    with pytest.raises(ConfigError, match=rf"\[sessions\] key_max_hours {message}"):
        sessions.install(build_services(settings))
