"""The GitHub webhook: a bad signature is refused and changes nothing; a good one links the merged PR."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from agenttrail.config import load_settings
from agenttrail.events import Event
from agenttrail.linking.github import signature
from agenttrail.server import webhooks
from agenttrail.server.app import build_services, create_app
from agenttrail.store.database import open_engine
from agenttrail.store.ingest import Attribution, ingest

SECRET = "It's a Secret to Everybody"
T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


def _payload(number: int = 42, merged: bool = True, action: str = "closed") -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "title": "Fix the flaky checkout test",
            "body": "Made with an agent.\n\nAgent-Session: s-trailer",
            "merged": merged,
            "merged_at": "2026-05-05T10:00:00Z" if merged else None,
            "merge_commit_sha": "m" * 40,
            "head": {"sha": "headsha0000000000000000000000000000000001", "ref": "fix-flaky"},
        },
        "repository": {"full_name": "acme/pay", "html_url": "https://github.com/acme/pay"},
    }


def _deliver(client: TestClient, payload: dict[str, Any], sig: str | None = "good", event: str = "pull_request") -> Any:
    body = orjson.dumps(payload)
    headers = {"x-github-event": event, "content-type": "application/json"}
    if sig == "good":
        headers["x-hub-signature-256"] = signature(SECRET, body)
    elif sig is not None:
        headers["x-hub-signature-256"] = sig
    return client.post("/api/v1/webhooks/github", content=body, headers=headers)


def _client(db_url: str, home: str) -> TestClient:
    settings = load_settings(env={"AGENTTRAIL_HOME": home}, db=db_url)
    svc = build_services(settings, engine=open_engine(db_url))
    return TestClient(create_app(settings, services=svc, extra_routes=webhooks.install(svc)))


@pytest.fixture
def client(db_url: str, home: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv(webhooks.SECRET_ENV, SECRET)
    engine = open_engine(db_url)
    for sid, sha in (("s-head", "headsha0000000000000000000000000000000001"), ("s-trailer", None)):
        evs = [Event(sid, "session_start", T0, {"repo": "github.com/acme/pay"})]
        if sha:
            evs.append(Event(sid, "commit", T0 + timedelta(minutes=5), {"sha": sha, "message": "fix"}))
        evs.append(Event(sid, "llm_call", T0, {"record": {"provider": "anthropic", "model": "m", "cost_usd": 1.0}}))
        ingest(engine, evs, Attribution(engineer="ana@acme.test"))
    with _client(db_url, home) as c:
        yield c


def _state(client: TestClient) -> tuple[list[Any], dict[str, int]]:
    engine = client.app.state.services.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        prs = [tuple(r) for r in conn.execute(text("SELECT repo, number, title, sessions, source FROM pull_requests"))]
        merged = dict(conn.execute(text("SELECT session_id, merged FROM sessions")).all())
    return prs, merged


def test_bad_signatures_are_refused_and_change_nothing(client: TestClient) -> None:
    for sig in ("sha256=" + "0" * 64, None, "sha1=deadbeef", signature("another secret", orjson.dumps(_payload()))):
        r = _deliver(client, _payload(), sig=sig)
        assert r.status_code == 401 and "X-Hub-Signature-256" in r.json()["error"]["message"]
    assert _state(client) == ([], {"s-head": 0, "s-trailer": 0})


def test_a_good_signature_links_by_head_sha_and_trailer(client: TestClient) -> None:
    r = _deliver(client, _payload())
    assert r.status_code == 200 and r.json()["new_pull_requests"] == 1
    prs, merged = _state(client)
    assert prs == [("github.com/acme/pay", 42, "Fix the flaky checkout test", 2, "webhook")]
    assert merged == {"s-head": 1, "s-trailer": 1}
    again = _deliver(client, _payload())  # GitHub redelivers
    assert again.json()["new_pull_requests"] == 0 and _state(client)[0] == prs


def test_unmerged_and_other_events_are_ignored(client: TestClient) -> None:
    assert _deliver(client, _payload(merged=False)).status_code == 202
    assert _deliver(client, _payload(action="opened")).status_code == 202
    assert _deliver(client, {"zen": "Keep it logically awesome."}, event="ping").json()["ok"] is True
    assert _state(client)[0] == []


def test_without_a_secret_every_delivery_is_refused(db_url: str, home: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(webhooks.SECRET_ENV, raising=False)
    with _client(db_url, home) as c:
        r = _deliver(c, _payload())
    assert r.status_code == 503 and webhooks.SECRET_ENV in r.json()["error"]["message"]


def test_a_malformed_payload_is_a_400_and_changes_nothing(client: TestClient) -> None:
    good = _payload()
    malformed = [
        {**good, "repository": "acme/pay"},
        {**good, "pull_request": {**good["pull_request"], "number": True}},
        {**good, "pull_request": {**good["pull_request"], "number": -3}},
        {**good, "pull_request": {**good["pull_request"], "merged_at": "0001-01-01T00:00:00+05:00"}},
        # Each of these was a 500 on PostgreSQL (the value does not fit its column):
        {**good, "pull_request": {**good["pull_request"], "number": 2**40}},
        {**good, "pull_request": {**good["pull_request"], "merge_commit_sha": "a" * 400}},
        {**good, "pull_request": {**good["pull_request"], "head": {"sha": "not a sha"}}},
        {**good, "repository": {"html_url": "https://github.com/acme/" + "x" * 600}},
        {**good, "pull_request": {**good["pull_request"], "merged_at": "9999-01-01T00:00:00Z"}},
    ]
    for payload in malformed:
        r = _deliver(client, payload)
        assert r.status_code == 400 and "cannot read the pull_request event" in r.json()["error"]["message"]
    assert _state(client) == ([], {"s-head": 0, "s-trailer": 0})
    # A head that is not an object only loses the head sha; the trailer still links.
    r = _deliver(client, {**good, "pull_request": {**good["pull_request"], "head": "fix-flaky"}})
    assert r.status_code == 200
    assert _state(client)[1] == {"s-head": 0, "s-trailer": 1}


def test_a_nul_in_the_title_is_dropped_not_a_500(client: TestClient) -> None:
    good = _payload()
    r = _deliver(client, {**good, "pull_request": {**good["pull_request"], "title": "Fix\x00 it"}})
    assert r.status_code == 200, r.text
    assert _state(client)[0][0][2] == "Fix it"
