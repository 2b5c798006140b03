"""`POST /api/v1/ingest`: a client's bad batch is a 400 that says what is wrong, never a 500; a good one is
stored as sent. `parse_events` builds the usual event directly; the old rules (kept here) are its oracle."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from agenttrail.config import load_settings
from agenttrail.events import Event
from agenttrail.server import ingest as server_ingest
from agenttrail.server.app import build_services
from agenttrail.server.ingest import parse_events
from agenttrail.server.parts import create_server_app
from agenttrail.store import ingest as store_ingest
from agenttrail.store import keys, org
from agenttrail.store.database import open_engine
from agenttrail.store.tables import event

T0 = datetime(2026, 5, 12, 9, 0, tzinfo=UTC)


def _oracle(items: Any) -> list[Event]:
    """parse_events before its fast path (the rules it must keep)."""
    if not isinstance(items, list):
        raise ValueError("not a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ValueError(f"event {i} is not an object")
        if [k for k in ("event_id", "session_id", "kind", "ts") if not item.get(k)]:
            raise ValueError(f"event {i} lacks")
        if len(str(item["event_id"])) > 64 or len(str(item["session_id"])) > 64:
            raise ValueError(f"event {i}: at most 64")
        # Changed on purpose: a payload of "", 0 or [] was taken as {}; anything but an object is refused now.
        if item.get("payload") is not None and not isinstance(item["payload"], dict):
            raise ValueError(f"event {i}: payload")
        try:
            out.append(Event.from_dict(item))
        except (ValueError, TypeError, KeyError, AttributeError) as e:  # AttributeError: a number as ts, a 500
            raise ValueError(f"event {i}: {e}") from None
    return out


def _item(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "event_id": "e1",
        "session_id": "s1",
        "kind": "exec",
        "ts": "2026-05-12T09:00:00+00:00",
        "payload": {"argv": ["ls"]},
    }
    d.update(over)
    return {k: v for k, v in d.items() if v is not ...}


def _same(a: list[Event], b: list[Event]) -> None:
    assert [(e.event_id, e.session_id, e.kind, e.ts, e.ts.utcoffset(), e.payload) for e in a] == [
        (e.event_id, e.session_id, e.kind, e.ts, e.ts.utcoffset(), e.payload) for e in b
    ]


@pytest.mark.parametrize(
    "item",
    [
        _item(),
        _item(ts="2026-05-12T09:00:00Z"),
        _item(ts="2026-05-12T09:00:00.123456Z"),
        _item(ts="2026-05-12T11:00:00+02:00"),
        _item(ts="2026-05-12T09:00:00"),  # no offset: taken as UTC
        _item(event_id=12345),  # not a string: stored as its text
        _item(payload=...),  # no payload: an empty one
        _item(payload=None),
        _item(event_id="x" * 64, session_id="y" * 64),
    ],
    ids=["plain", "Z", "fraction-Z", "offset", "naive", "int-id", "no-payload", "null-payload", "64-chars"],
)
def test_a_good_event_is_read_as_the_old_rules_read_it(item: dict[str, Any]) -> None:
    got, want = parse_events([item]), _oracle([item])
    _same(got, want)
    assert got[0].ts.tzinfo is not None


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ([1, 2], "event 0 is not an object"),
        ("text", "event 0 is not an object"),
        (_item(kind=...), "lacks kind"),
        (_item(event_id="", ts=...), "lacks event_id, ts"),
        (_item(session_id="s" * 65), "at most 64 characters"),
        (_item(kind="exploded"), "unknown event kind 'exploded'"),
        (_item(ts="yesterday"), "Invalid isoformat string"),
        (_item(ts=17), "ts must be an ISO 8601 time"),
        (_item(payload=[1, 2]), "payload must be an object"),
        (_item(payload="x"), "payload must be an object"),
    ],
)
def test_a_bad_event_is_named_with_what_is_wrong(item: Any, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        parse_events([item])


def test_the_first_bad_event_is_the_one_named() -> None:
    with pytest.raises(ValueError, match="event 2 lacks kind"):
        parse_events([_item(), _item(event_id="e2"), _item(kind=...)])


_text = st.one_of(st.text(max_size=70), st.integers(), st.none(), st.booleans(), st.floats(allow_nan=False))
_times = st.one_of(
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)), None])).map(lambda d: d.isoformat()),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    _text,
)
_items = st.fixed_dictionaries(
    {},
    optional={
        "event_id": _text,
        "session_id": _text,
        "kind": st.one_of(st.sampled_from(["exec", "prompt", "llm_call", "nope"]), _text),
        "ts": _times,
        "payload": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), _text, max_size=3), _text),
    },
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_items, max_size=4))
def test_parse_events_accepts_and_refuses_what_the_old_rules_did(items: list[dict[str, Any]]) -> None:
    try:
        want = _oracle(items)
    except ValueError:
        want = None
    if want is None:
        with pytest.raises(ValueError):
            parse_events(items)
        return
    _same(parse_events(items), want)


@pytest.fixture
def client(db_url: str, home: str) -> Iterator[tuple[TestClient, str, Any]]:
    engine = open_engine(db_url)
    org.add_team(engine, "payments")
    key, _ = keys.create_key(engine, team_name="payments", now=T0.replace(tzinfo=None))
    settings_ = load_settings(env={"AGENTTRAIL_DATABASE_URL": db_url, "AGENTTRAIL_HOME": home})
    svc = build_services(settings_, engine=engine)
    with TestClient(create_server_app(settings_, svc)) as c:
        yield c, key, engine


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", 'must be {"events": [...]}'),
        (b'{"events": {"a": 1}}', 'must be {"events": [...]}'),
        (b'{"events": [{"event_id": "a"}]}', "event 0 lacks session_id, kind, ts"),
        (
            b'{"events": [{"event_id": "a", "session_id": "s", "kind": "exec", "ts": "2026-05-12T09:00:00Z", '
            b'"payload": 3}]}',
            "payload must be an object",
        ),
    ],
)
def test_the_endpoint_answers_a_bad_batch_with_a_400_and_stores_nothing(
    client: tuple[TestClient, str, Any], body: bytes, words: str
) -> None:
    c, key, engine = client
    r = c.post("/api/v1/ingest", content=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400, r.text
    assert words in r.json()["error"]["message"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event)).scalar() == 0


def test_the_endpoint_stores_a_good_batch_once(client: tuple[TestClient, str, Any]) -> None:
    c, key, engine = client
    times = [(T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z") for i in range(3)]
    events = [_item(event_id=f"e{i}", ts=t) for i, t in enumerate(times)]
    events.append(_item(event_id="secret", kind="prompt", payload={"text": "hi", "password": "hunter2-xyz"}))
    for expect in (4, 0):  # sent again: nothing new
        r = c.post("/api/v1/ingest", json={"events": events}, headers={"Authorization": f"Bearer {key}"})
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": expect, "duplicates": 4 - expect}
    with engine.connect() as conn:
        rows = dict(conn.execute(select(event.c.event_id, event.c.payload)).all())
    assert len(rows) == 4 and "hunter2" not in rows["secret"] and "[REDACTED:password]" in rows["secret"]


def test_a_store_that_refuses_is_a_503_that_says_send_again(
    client: tuple[TestClient, str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store's fault is not the client's: a 503 the outbox retries, not a bare 500; the next batch goes in."""
    c, key, engine = client
    real = store_ingest._store
    refused = 0

    def locked_once(*args: Any, **kw: Any) -> Any:
        nonlocal refused
        if refused == 0:
            refused += 1
            raise OperationalError("INSERT INTO event …", {}, sqlite3.OperationalError("database is locked"))
        return real(*args, **kw)

    monkeypatch.setattr(store_ingest, "_store", locked_once)
    body = {"events": [_item(event_id="e1")]}
    r = c.post("/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 503, r.text
    assert "database is locked" in r.json()["error"]["message"] and "send it again" in r.json()["error"]["message"]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(event)).scalar() == 0
    r = c.post("/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200 and r.json() == {"accepted": 1, "duplicates": 0}


def test_a_batch_is_parsed_off_the_event_loop(
    client: tuple[TestClient, str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large body parsed on the event loop would hold up every gateway call of the process meanwhile."""
    c, key, _engine = client
    on_loop: list[bool] = []
    real = server_ingest.parse_events

    def spy(items: Any) -> list[Event]:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:  # no loop runs in this thread: a worker thread
            on_loop.append(False)
        return real(items)

    monkeypatch.setattr(server_ingest, "parse_events", spy)
    r = c.post("/api/v1/ingest", json={"events": [_item(event_id="e1")]}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert on_loop == [False]


def test_metrics_count_batches_events_and_writer_turns(client: tuple[TestClient, str, Any]) -> None:
    c, key, engine = client
    auth = {"Authorization": f"Bearer {key}"}
    events = [_item(event_id=f"e{i}") for i in range(3)]
    for body in ({"events": events}, {"events": [*events[1:], _item(event_id="e9")]}):
        assert c.post("/api/v1/ingest", json=body, headers=auth).status_code == 200
    assert c.post("/api/v1/ingest", content=b"{bad", headers=auth).status_code == 400
    assert c.post("/api/v1/ingest", json={"events": events}).status_code == 401

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(c.get("/metrics").text)
        for s in family.samples
    }
    assert samples[("agenttrail_ingest_batches_total", (("status", "200"),))] == 2
    assert samples[("agenttrail_ingest_batches_total", (("status", "400"),))] == 1
    assert samples[("agenttrail_ingest_batches_total", (("status", "401"),))] == 1
    assert samples[("agenttrail_ingest_events_total", (("result", "accepted"),))] == 4
    assert samples[("agenttrail_ingest_events_total", (("result", "duplicate"),))] == 2
    # SQLite: the writer stored the two good batches (in turns one after another); PostgreSQL has no writer.
    turns = samples.get(("agenttrail_ingest_writer_turn_batches_sum", ()), 0)
    assert turns == (2 if engine.dialect.name == "sqlite" else 0)


def _session_start(**payload: Any) -> dict[str, Any]:
    return _item(kind="session_start", payload={"repo": "github.com/acme/api", **payload})


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (_item(ts="0001-01-01T00:00:00+05:00"), "outside the years UTC can hold"),
        (_session_start(repo=5), "payload.repo must be text"),
        (_session_start(agent=["x"], branch={}), "payload.branch must be text"),
        (_session_start(team_id=2**40), "payload.team_id must be a whole number below"),
        (_item(kind="session_end", payload={"exit_code": "boom"}), "payload.exit_code must be a whole number"),
        (
            _item(kind="llm_call", payload={"record": {"provider": "anthropic", "input_tokens": 2**64 - 1}}),
            "payload.record.input_tokens must be a whole number below",
        ),
        (
            _item(kind="llm_call", payload={"record": {"request_id": "r" * 201}}),
            "payload.record.request_id is longer than 200",
        ),
        (_item(kind="llm_call", payload={"record": {"tags": {"team": "x"}}}), "payload.record.tags must be text"),
        (_item(kind="llm_call", payload={"record": "gpt"}), "payload.record must be an object"),
        (
            _item(kind="file_write", payload={"source": "snapshot", "path": "a.py", "lines_added": "many"}),
            "payload.lines_added must be a whole number",
        ),
        (_item(kind="commit", payload={"sha": "a" * 65}), "payload.sha is longer than 64 characters"),
        (_item(kind="commit", payload={"sha": "abc", "author": {"name": "ana"}}), "payload.author must be text"),
        (_item(kind="exec", payload={"argv": "ls -la"}), "payload.argv must be a list of strings"),
    ],
)
def test_a_value_no_column_can_hold_is_a_400_naming_event_and_field(
    client: tuple[TestClient, str, Any], bad: dict[str, Any], words: str
) -> None:
    """Such a batch was a 503 (the store refused it), which an outbox retries for ever, or a 500."""
    c, key, engine = client
    good = _item(event_id="good")
    bad = {**bad, "event_id": "bad"}
    r = c.post("/api/v1/ingest", json={"events": [good, bad]}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert words in message and f"event 1 ({bad['kind']} bad)" in message
    with engine.connect() as conn:  # the batch is refused whole: its good event is not kept either
        assert conn.execute(select(func.count()).select_from(event)).scalar() == 0


def test_values_that_fit_their_columns_are_stored(client: tuple[TestClient, str, Any]) -> None:
    c, key, _engine = client
    events = [
        _session_start(event_id="a", branch="b" * 300, sandboxed=True, team_id=3),
        _item(event_id="b", kind="session_end", payload={"exit_code": 0, "status": "ok"}),
        _item(event_id="c", kind="llm_call", payload={"record": {"provider": "openai", "input_tokens": 2**63 - 1}}),
        _item(event_id="d", kind="file_write", payload={"source": "snapshot", "path": "a.py", "lines_added": "12"}),
        _item(event_id="e", ts="2026-05-12T11:00:00+02:00"),
    ]
    r = c.post("/api/v1/ingest", json={"events": events}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 5


def test_a_body_past_the_limit_is_refused_before_it_is_read_whole(
    client: tuple[TestClient, str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunked, so no Content-Length tells the size: the server stops reading at the limit."""
    c, key, _engine = client
    monkeypatch.setattr(server_ingest, "MAX_BODY", 10_000)

    def chunks() -> Iterator[bytes]:
        for _ in range(1000):  # 1 MB offered in 1 kB pieces
            yield b" " * 1024

    r = c.post("/api/v1/ingest", content=chunks(), headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 413, r.text
    assert "larger than 10000 bytes" in r.json()["error"]["message"]


def test_text_longer_than_its_column_is_cut_there_and_kept_whole_in_the_event(
    client: tuple[TestClient, str, Any],
) -> None:
    """PostgreSQL refused such a value and with it the batch (a 503); the column gets what fits."""
    c, key, engine = client
    branch, model = "feature/" + "b" * 400, "m" * 250
    events = [
        _session_start(event_id="start", session_id="s9", branch=branch, agent="claude-code"),
        _item(event_id="again", kind="session_start", session_id="s9", payload={"branch": branch + "-2"}),
        _item(event_id="call", session_id="s9", kind="llm_call", payload={"record": {"provider": "x", "model": model}}),
    ]
    r = c.post("/api/v1/ingest", json={"events": events[:1]}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    r = c.post("/api/v1/ingest", json={"events": events[1:]}, headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text  # the second start updates the row: the update is cut too
    with engine.connect() as conn:
        assert (
            conn.execute(text("SELECT branch FROM agent_session WHERE session_id = 's9'")).scalar()
            == ((branch + "-2")[:300])
        )
        assert conn.execute(text("SELECT model FROM llm_call")).scalar() == model[:200]
        payload = conn.execute(text("SELECT payload FROM event WHERE event_id = 'again'")).scalar()
    assert branch + "-2" in payload
