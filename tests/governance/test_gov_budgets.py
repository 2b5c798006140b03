"""Budgets at the gateway, end to end through mock-llm: the exact cap, refusals people and SDKs can
act on, period resets with an injected clock, every scope, and concurrent streaming clients."""

from __future__ import annotations

import threading
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import text

from agenttrail.clock import FixedClock
from agenttrail.governance.budgets import NANOS, remove_budget, worst_case
from agenttrail.store import keys, org
from conftest import A_HEADERS, utc

MSG = [{"role": "user", "content": "hi"}]
BODY = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": MSG}
CALL_COST = Decimal("0.010125")  # mock-llm's fixed usage at claude-sonnet-4-5's public prices


def _post(gov, key: str, body: dict | None = None) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(gov.url + "/v1/messages", json=body or BODY, headers={**A_HEADERS, "x-api-key": key}, timeout=30)


def test_exact_cap_refusal_and_monthly_reset(make_gov) -> None:
    clock = FixedClock(utc(2026, 11, 20, 12))
    gov = make_gov(clock=clock)
    b = gov.budget("team", "payments", 0.05, owner="lead@example.com")
    statuses = [_post(gov, gov.key).status_code for _ in range(6)]
    # 4 calls: 0.0405 < 0.05 admits the 5th; 5 calls: 0.050625 >= 0.05 refuses the 6th.
    assert statuses == [200] * 5 + [429]
    r = _post(gov, gov.key)
    assert r.status_code == 429
    assert r.headers["x-should-retry"] == "false"
    assert r.headers["retry-after"] == str(int((utc(2026, 12, 1) - clock.now()).total_seconds()))
    err = r.json()
    assert err["type"] == "error" and err["error"]["type"] == "rate_limit_error"
    assert err["error"]["message"] == (
        'team "payments" monthly budget is spent: $0.050625 of $0.05; resets 2026-12-01 00:00 UTC. '
        "Ask lead@example.com to raise it"
    )
    assert len(gov.upstream_requests()) == 5  # refused calls never reach the provider
    rows = gov.calls(expect=7)
    assert [row["status"] for row in rows].count("refused") == 2
    assert gov.spend(b.id) == (int(CALL_COST * 5 * NANOS), 0)
    clock.set(utc(2026, 11, 30, 23, 59, 59))
    assert _post(gov, gov.key).status_code == 429
    clock.set(utc(2026, 12, 1))  # a new month: the same budget, a fresh period
    assert _post(gov, gov.key).status_code == 200


def test_a_daily_budget_resets_at_midnight_in_its_time_zone(make_gov) -> None:
    clock = FixedClock(utc(2026, 11, 20, 4, 0))  # 23:00 on Nov 19 in New York (EST, UTC-5)
    gov = make_gov(clock=clock, budget_timezone="America/New_York")
    gov.budget("team", "payments", 0.02, period="day")
    assert [_post(gov, gov.key).status_code for _ in range(3)] == [200, 200, 429]
    clock.set(utc(2026, 11, 20, 4, 59, 59))
    r = _post(gov, gov.key)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert "daily budget is spent: $0.02025 of $0.02; resets 2026-11-20 00:00 America/New_York" in r.text
    clock.set(utc(2026, 11, 20, 5, 0))  # midnight in New York, though not in UTC
    assert _post(gov, gov.key).status_code == 200


def test_every_scope_that_covers_a_key_stops_it(make_gov) -> None:
    gov = make_gov()
    engine = gov.engine
    org.add_project(engine, "checkout", "payments")
    org.add_engineer(engine, "ana@example.com", "payments")
    team_key = gov.make_key()
    eng_key = gov.make_key(engineer_email="ana@example.com")
    proj_key = gov.make_key(project_name="checkout")
    other_team = gov.make_key(team_name="search")
    all_keys = {"team key": team_key, "engineer key": eng_key, "project key": proj_key, "other team": other_team}
    prefix = {k: v[: keys.CLEAR_PREFIX_LEN] for k, v in all_keys.items()}
    cases = [
        ("org", None, {"team key", "engineer key", "project key", "other team"}, "organisation"),
        ("team", "payments", {"team key", "engineer key", "project key"}, 'team "payments"'),
        ("project", "checkout", {"project key"}, 'project "checkout"'),
        ("engineer", "ana@example.com", {"engineer key"}, 'engineer "ana@example.com"'),
        ("key", prefix["team key"], {"team key"}, "key "),
        ("key", prefix["engineer key"], {"engineer key"}, "key "),
        ("key", prefix["project key"], {"project key"}, "key "),
    ]
    for scope, target, covered, label in cases:
        b = gov.budget(scope, target, 0.01)
        spender = next(iter(sorted(covered)))
        assert _post(gov, all_keys[spender]).status_code == 200  # 0 < $0.01: admitted, costs $0.010125
        for name, k in all_keys.items():
            r = _post(gov, k)
            if name in covered:
                assert r.status_code == 429, (scope, name)
                assert f"{label}" in r.json()["error"]["message"] and "budget is spent" in r.text
            else:
                assert r.status_code == 200, (scope, name, r.text)
        remove_budget(engine, b.id)
        gov.policy.book.invalidate()


def test_sdks_show_the_refusal_and_do_not_retry(make_gov) -> None:
    gov = make_gov()
    gov.budget("team", "payments", 0.01)
    a = anthropic.Anthropic(base_url=gov.url, api_key=gov.key)  # default retries: 2
    a.messages.create(**BODY)
    with pytest.raises(anthropic.RateLimitError) as ea:
        a.messages.create(**BODY)
    assert 'team "payments" monthly budget is spent: $0.010125 of $0.01' in str(ea.value)
    o = openai.OpenAI(base_url=gov.url + "/v1", api_key=gov.key)  # default retries: 2
    with pytest.raises(openai.RateLimitError) as eo:
        o.chat.completions.create(model="gpt-4o", messages=MSG)
    assert 'team "payments" monthly budget is spent' in str(eo.value)
    rows = gov.calls(expect=3)
    assert [r["status"] for r in rows] == ["ok", "refused", "refused"]  # one request each: no retries
    assert len(gov.upstream_requests()) == 1


@pytest.mark.parametrize("clients", [50])
def test_concurrent_streaming_clients_end_within_the_bound(make_gov, clients: int) -> None:
    """50 streaming clients call until refused. The reservation (input estimate + max_tokens at the
    output price) covers each call's cost, so spend ends at most one reservation past the limit."""
    gov = make_gov()
    limit = Decimal("0.25")
    b = gov.budget("team", "payments", float(limit))
    body = {**BODY, "max_tokens": 1000, "stream": True}
    reservation = worst_case(gov.services.pricer, "anthropic", "claude-sonnet-4-5", "messages", body, 16_384)[0]
    assert reservation >= CALL_COST * NANOS
    results: list[tuple[int, int]] = []
    lock = threading.Lock()

    def client() -> None:
        ok = 0
        with httpx.Client(timeout=60) as c:
            while True:
                with c.stream(
                    "POST", gov.url + "/v1/messages", json=body, headers={**A_HEADERS, "x-api-key": gov.key}
                ) as r:
                    data = r.read()
                    if r.status_code != 200:
                        assert r.status_code == 429 and b"budget is spent" in data
                        break
                    assert b"message_stop" in data
                    ok += 1
        with lock:
            results.append((ok, 1))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == clients
    admitted = sum(ok for ok, _ in results)
    spent, reserved = gov.spend(b.id)
    assert reserved == 0
    assert spent == int(CALL_COST * NANOS) * admitted
    assert spent <= limit * NANOS + reservation, f"overshoot {spent / 1e9 - float(limit)} past one reservation"
    assert spent >= limit * NANOS / 2
    rows = gov.calls(expect=admitted + clients)
    recorded = sum(Decimal(str(r["cost_usd"])) for r in rows if r["status"] == "ok")
    assert abs(recorded * NANOS - spent) < 1000  # the ledger and the record agree
    with gov.engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM llm_calls WHERE status = 'refused'")).scalar() == clients


def test_a_refusal_quoted_after_the_calls_holding_the_rest_finished_does_not_contradict_itself() -> None:
    # Under concurrent streams a call is refused while others hold the last headroom; by the time the
    # refusal reads the figures back, those calls may have settled. It said "is spent: $0.497 of
    # $0.50, and $0.00 more is held by calls in progress".
    from datetime import UTC, datetime

    from agenttrail.governance.budgets import Budget, refusal_message
    from agenttrail.governance.periods import period_window

    b = Budget(1, "team", 1, "payments", "day", NANOS // 2, (100,), None, datetime(2026, 11, 1))
    w = period_window("day", utc(2026, 11, 23, 12), UTC)
    msg = refusal_message(b, w, spent=497 * NANOS // 1000, reserved=0)
    assert "$0.00" not in msg and "$0.497 of $0.50" in msg
    assert "calls in progress held the rest" in msg
    held = refusal_message(b, w, spent=497 * NANOS // 1000, reserved=15 * NANOS // 1000)
    assert "$0.497 of $0.50, and $0.015 more is held by calls in progress" in held
    assert "is spent: $0.52 of $0.50; resets" in refusal_message(b, w, spent=52 * NANOS // 100, reserved=0)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/messages", dict(BODY, max_tokens=2**63 - 1)),
        ("/v1/chat/completions", {"model": "gpt-4o", "messages": MSG, "max_tokens": 2**40, "n": 2**40}),
    ],
)
def test_an_absurd_output_allowance_is_not_a_database_outage(make_gov, path: str, body: dict) -> None:  # type: ignore[type-arg]
    # max_tokens 2**63-1 made a reservation of ~1e23 nano-dollars: the counter update overflowed its
    # 64-bit column, and the client was told "the gateway cannot check budgets … (its database is
    # unavailable); try again shortly" with a 503 and x-should-retry: true, for ever.
    gov = make_gov(raw={"limits": {"key": {"tpm": 10**15}}})
    b = gov.budget("team", "payments", 5.0)
    headers = {**A_HEADERS, "x-api-key": gov.key, "authorization": f"Bearer {gov.key}"}
    r = httpx.post(gov.url + path, json=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    spent, reserved = gov.spend(b.id)
    assert spent > 0 and reserved == 0


def test_a_model_without_a_price_is_refused_under_a_budget_not_let_through_free(make_gov) -> None:
    # A model genai-prices does not know cost $0 by agenttrail's books: under a $0.05 budget, any
    # number of calls went through (the provider billed them all), and the budget never moved.
    gov = make_gov()
    gov.budget("team", "payments", 0.05)
    body = dict(BODY, model="claude-brand-new-9")
    r = _post(gov, gov.key, body)
    assert r.status_code == 403 and r.headers["x-should-retry"] == "false"
    msg = r.json()["error"]["message"]
    assert 'no price for model "claude-brand-new-9"' in msg and 'team "payments" monthly budget' in msg
    assert '[prices."claude-brand-new-9"]' in msg
    assert gov.upstream_requests() == []
    assert _post(gov, gov.key).status_code == 200  # a priced model under the same budget goes through


def test_without_a_budget_an_unpriced_model_goes_through(make_gov) -> None:
    gov = make_gov()
    assert _post(gov, gov.key, dict(BODY, model="claude-brand-new-9")).status_code == 200


def test_an_upstream_reporting_absurd_usage_does_not_stop_recording_or_budgets(make_gov) -> None:
    # One answer claiming 9e18 output tokens priced to ~1e23 nano-dollars: its record overflowed the
    # 64-bit column and the recorder retried that batch for ever, so no later call was recorded either
    # ("could not write 2 call records yet: Python int too large to convert to SQLite INTEGER").
    gov = make_gov()
    b = gov.budget("team", "payments", 5.0)
    gov.run.mock("scenario", {"turns": [{"text": "big", "usage": {"output_tokens": 9 * 10**18}}]})
    assert _post(gov, gov.key).status_code == 200
    gov.run.mock("scenario", None)
    r = _post(gov, gov.key)
    assert r.status_code == 429 and "budget is spent" in r.text  # what the upstream claimed is charged
    rows = gov.calls(expect=2)
    assert [row["status"] for row in rows] == ["ok", "refused"]
    assert 0 < rows[0]["output_tokens"] < 2**63 and rows[0]["cost_usd"] > 5
    spent, _ = gov.spend(b.id)
    assert 5 * NANOS < spent < 2**63
