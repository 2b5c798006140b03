"""Rate limits: requests and tokens per minute, concurrent requests; shared counters, 429 with
retry-after."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from agenttrail.clock import FixedClock
from agenttrail.config import ConfigError
from agenttrail.governance.ledger import Ledger, Refused
from agenttrail.governance.limits import Limit, Limiter, LimitSettings
from agenttrail.store import keys, org
from agenttrail.store.database import open_engine
from conftest import A_HEADERS, utc

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def _call(gov, key: str | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    h = {**A_HEADERS, "x-api-key": key or gov.key}
    return httpx.post(gov.url + "/v1/messages", json=BODY, headers=h, timeout=30)


def test_request_n_plus_one_in_the_minute_is_refused_with_retry_after(make_gov) -> None:
    clock = FixedClock(utc(2026, 11, 20, 12, 0, 10))
    gov = make_gov(raw={"limits": {"key": {"rpm": 3}}}, clock=clock)
    assert [_call(gov).status_code for _ in range(3)] == [200, 200, 200]
    r = _call(gov)
    assert r.status_code == 429
    assert r.headers["retry-after"] == "50"
    assert "x-should-retry" not in r.headers  # retrying after the wait does help
    msg = r.json()["error"]["message"]
    assert msg.startswith('rate limit: key "sk-at-') and "3 requests per minute" in msg and "50 s" in msg
    other = gov.make_key()  # another key has its own limit
    assert _call(gov, other).status_code == 200
    clock.set(utc(2026, 11, 20, 12, 1))
    assert _call(gov).status_code == 200
    assert len(gov.upstream_requests()) == 5


def test_tokens_per_minute_count_what_the_provider_reported(make_gov) -> None:
    gov = make_gov(raw={"limits": {"team": {"tpm": 10_000}}}, clock=FixedClock(utc(2026, 11, 20, 12)))
    # mock-llm reports 4,950 tokens per call: 0, 4,950 and 9,900 are under 10,000; 14,850 is not.
    statuses = [_call(gov).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    r = _call(gov)
    assert 'team "payments" may use 10000 tokens per minute (14850 used' in r.json()["error"]["message"]


def test_overrides_apply_to_one_team(make_gov) -> None:
    raw = {"limits": {"team": {"rpm": 100}, "overrides": {"team:search": {"rpm": 1}}}}
    gov = make_gov(raw=raw, clock=FixedClock(utc(2026, 11, 20, 12)))
    search = gov.make_key(team_name="search")
    assert [_call(gov, search).status_code for _ in range(2)] == [200, 429]
    assert [_call(gov).status_code for _ in range(2)] == [200, 200]


async def test_concurrency_holds_one_slot_per_call_in_flight(db_url: str) -> None:
    engine = open_engine(db_url)
    org.add_team(engine, "payments")
    _, key = keys.create_key(engine, team_name="payments", now=datetime(2026, 1, 1))
    limiter = Limiter(LimitSettings({"team": Limit(concurrency=2)}))
    a = Ledger(engine, FixedClock(datetime(2026, 11, 20, tzinfo=UTC)))
    b = Ledger(engine, FixedClock(datetime(2026, 11, 20, tzinfo=UTC)))  # another process
    now = datetime(2026, 11, 20, tzinfo=UTC)
    (lc,) = limiter.claims(key, now, 0)
    first = await a.reserve([lc.claim])
    second = await b.reserve([lc.claim])
    with pytest.raises(Refused) as e:
        await a.reserve([lc.claim])
    assert e.value.reserved == 2
    b.settle(second, {lc.claim.cid: 0})
    await b.flush()
    third = await a.reserve([lc.claim])
    a.settle(first, {})
    a.settle(third, {})
    await a.flush()
    assert a.store.read([lc.claim.cid])[lc.claim.cid] == (0, 0)


def test_bad_limit_settings_say_what_is_expected() -> None:
    from dataclasses import replace

    from agenttrail.config import load_settings

    s = load_settings(env={"AGENTTRAIL_HOME": "/nonexistent"})
    with pytest.raises(ConfigError, match="rpm, tpm, concurrency"):
        LimitSettings.from_settings(replace(s, raw={"limits": {"key": {"rps": 1}}}))
    with pytest.raises(ConfigError, match="team:payments"):
        LimitSettings.from_settings(replace(s, raw={"limits": {"overrides": {"payments": {"rpm": 1}}}}))
