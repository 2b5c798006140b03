"""Routing: aliases, fallbacks on 529 / 500 / timeouts within the retry budget, and the soft-budget
downgrade; each call records the model requested, the model served and why they differ."""

from __future__ import annotations

import anthropic
import httpx
import openai

from agenttrail.testing.mock_config import DEFAULT_TEXT
from conftest import A_HEADERS

MSG = [{"role": "user", "content": "hi"}]


def _models(gov) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["body"]["model"] for r in gov.upstream_requests()]


def test_an_alias_names_a_configured_model(make_gov) -> None:
    gov = make_gov(raw={"routing": {"aliases": {"fast": "claude-haiku-4-5"}}})
    a = anthropic.Anthropic(base_url=gov.url, api_key=gov.key, max_retries=0)
    assert a.messages.create(model="fast", max_tokens=50, messages=MSG).content[0].text == DEFAULT_TEXT
    assert _models(gov) == ["claude-haiku-4-5"]
    (row,) = gov.calls(expect=1)
    assert (row["model_requested"], row["model"], row["route_reason"]) == ("fast", "claude-haiku-4-5", "alias fast")
    assert row["cost_usd"] > 0  # priced as the model that served it


def test_fallback_on_529_and_on_500_succeeds_on_the_next_model(make_gov) -> None:
    raw = {
        "routing": {
            "fallbacks": {"claude-opus-4-1": ["claude-sonnet-4-5", "claude-haiku-4-5"], "gpt-5": ["gpt-5-mini"]}
        }
    }
    gov = make_gov(raw=raw)
    gov.mock("fail", {"status": 529, "model": "claude-opus-4-1", "count": -1, "type": "overloaded_error"})
    gov.mock("fail", {"status": 500, "model": "gpt-5", "count": -1})
    a = anthropic.Anthropic(base_url=gov.url, api_key=gov.key, max_retries=0)
    assert a.messages.create(model="claude-opus-4-1", max_tokens=50, messages=MSG).content[0].text == DEFAULT_TEXT
    with a.messages.stream(model="claude-opus-4-1", max_tokens=50, messages=MSG) as s:
        assert "".join(s.text_stream) == DEFAULT_TEXT
    o = openai.OpenAI(base_url=gov.url + "/v1", api_key=gov.key, max_retries=0)
    assert o.chat.completions.create(model="gpt-5", messages=MSG).choices[0].message.content == DEFAULT_TEXT
    stream = o.chat.completions.create(model="gpt-5", messages=MSG, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == DEFAULT_TEXT
    assert _models(gov) == ["claude-opus-4-1", "claude-sonnet-4-5"] * 2 + ["gpt-5", "gpt-5-mini"] * 2
    rows = gov.calls(expect=4)
    got = sorted((r["model_requested"], r["model"], r["route_reason"], r["status"]) for r in rows)
    assert got == [
        ("claude-opus-4-1", "claude-sonnet-4-5", "fallback: claude-opus-4-1 answered 529", "ok"),
        ("claude-opus-4-1", "claude-sonnet-4-5", "fallback: claude-opus-4-1 answered 529", "ok"),
        ("gpt-5", "gpt-5-mini", "fallback: gpt-5 answered 500", "ok"),
        ("gpt-5", "gpt-5-mini", "fallback: gpt-5 answered 500", "ok"),
    ]
    # The streamed chat still reports usage (the gateway's include_usage survives the model change).
    assert all(r["output_tokens"] > 0 for r in rows)


def test_the_retry_budget_ends_with_the_last_answer(make_gov) -> None:
    gov = make_gov(
        raw={
            "routing": {"fallbacks": {"claude-opus-4-1": ["claude-sonnet-4-5", "claude-haiku-4-5"]}, "max_attempts": 2}
        }
    )
    gov.mock("fail", {"status": 529, "count": -1, "type": "overloaded_error", "message": "busy"})
    r = httpx.post(
        gov.url + "/v1/messages",
        json={"model": "claude-opus-4-1", "max_tokens": 50, "messages": MSG},
        headers={**A_HEADERS, "x-api-key": gov.key},
    )
    assert r.status_code == 529 and "busy" in r.text
    assert _models(gov) == ["claude-opus-4-1", "claude-sonnet-4-5"]  # two attempts, not three
    (row,) = gov.calls(expect=1)
    assert row["status"] == "upstream_error" and row["model"] == "claude-sonnet-4-5"


def test_fallback_on_a_timeout(make_gov) -> None:
    gov = make_gov(
        raw={"routing": {"fallbacks": {"claude-opus-4-1": ["claude-haiku-4-5"]}}}, upstream_read_timeout_s=0.5
    )
    gov.mock("fail", {"mode": "hang", "model": "claude-opus-4-1", "count": 1})
    r = httpx.post(
        gov.url + "/v1/messages",
        json={"model": "claude-opus-4-1", "max_tokens": 50, "messages": MSG},
        headers={**A_HEADERS, "x-api-key": gov.key},
        timeout=30,
    )
    assert r.status_code == 200
    (row,) = gov.calls(expect=1)
    assert row["model"] == "claude-haiku-4-5" and row["route_reason"] == "fallback: claude-opus-4-1 timeout"


def test_past_a_soft_threshold_a_cheaper_model_serves(make_gov) -> None:
    raw = {"routing": {"downgrade": {"at_pct": 50, "models": {"claude-sonnet-*": "claude-haiku-4-5"}}}}
    gov = make_gov(raw=raw)
    gov.budget("team", "payments", 0.02)
    a = anthropic.Anthropic(base_url=gov.url, api_key=gov.key, max_retries=0)
    a.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=MSG)  # $0.010125: 51% of $0.02
    gov.calls(expect=1)
    a.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=MSG)
    a.messages.create(model="claude-opus-4-1", max_tokens=50, messages=MSG)  # not a downgraded class
    assert _models(gov) == ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"]
    rows = gov.calls(expect=3)
    assert rows[1]["model_requested"] == "claude-sonnet-4-5" and rows[1]["model"] == "claude-haiku-4-5"
    assert rows[1]["route_reason"] == 'downgrade: team "payments" monthly budget at 51%'
