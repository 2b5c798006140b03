"""`GET /metrics`: requests, spend and tokens by team, model and status; budget remaining; latency."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import A_HEADERS

BODY = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}


def _samples(gov) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    r = httpx.get(gov.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_count_calls_spend_tokens_and_budgets(make_gov) -> None:
    gov = make_gov()
    b = gov.budget("team", "payments", 0.05)
    h = {**A_HEADERS, "x-api-key": gov.key}
    for _ in range(6):
        httpx.post(gov.url + "/v1/messages", json=BODY, headers=h)
    gov.calls(expect=6)
    gov.settle_all()
    m = _samples(gov)
    labels = (("model", "claude-sonnet-4-5"), ("status", "ok"), ("team", "payments"))
    assert m[("agenttrail_requests_total", labels)] == 5
    assert (
        m[("agenttrail_requests_total", (("model", "claude-sonnet-4-5"), ("status", "refused"), ("team", "payments")))]
        == 1
    )
    spend = m[("agenttrail_spend_usd_total", (("model", "claude-sonnet-4-5"), ("team", "payments")))]
    assert abs(spend - 5 * 0.010125) < 1e-9
    out = (("kind", "output"), ("model", "claude-sonnet-4-5"), ("team", "payments"))
    assert m[("agenttrail_tokens_total", out)] == 5 * 250
    budget = (("budget_id", str(b.id)), ("name", "payments"), ("period", "month"), ("scope", "team"))
    assert m[("agenttrail_budget_limit_usd", budget)] == 0.05
    assert abs(m[("agenttrail_budget_spent_usd", budget)] - 0.050625) < 1e-9
    assert m[("agenttrail_budget_remaining_usd", budget)] == 0
    count = m[("agenttrail_gateway_latency_seconds_count", (("provider", "anthropic"), ("stream", "false")))]
    assert count == 6
