"""The response cache: an identical second request never reaches mock-llm, and the client gets the
same content, streamed or not, through the official SDKs; hits cost 0 and record what they saved."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import httpx
import openai

from agenttrail.clock import FixedClock
from agenttrail.testing.mock_config import DEFAULT_TEXT
from conftest import A_HEADERS, utc

MSG = [{"role": "user", "content": "what is 2+2?"}]
CACHE = {"cache": {"enabled": True, "teams": ["payments"], "ttl_s": 600}}


def _upstream(gov) -> int:  # type: ignore[no-untyped-def]
    return len(gov.upstream_requests())


def test_anthropic_plain_then_streamed_then_plain(make_gov) -> None:
    gov = make_gov(raw=CACHE)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": MSG}
    h = {**A_HEADERS, "x-api-key": gov.key}
    first = httpx.post(gov.url + "/v1/messages", json=body, headers=h)
    gov.calls(expect=1)
    second = httpx.post(gov.url + "/v1/messages", json=body, headers=h)
    assert second.status_code == 200 and second.headers["x-agenttrail-cache"] == "hit"
    assert second.content == first.content  # byte for byte
    a = anthropic.Anthropic(base_url=gov.url, api_key=gov.key, max_retries=0)
    with a.messages.stream(**body) as s:  # the stream flag is not part of the key
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == DEFAULT_TEXT
    assert final.model_dump() == anthropic.types.Message.model_validate_json(first.content).model_dump()
    assert _upstream(gov) == 1
    rows = gov.calls(expect=3)
    cost = Decimal(str(rows[0]["cost_usd"]))
    assert cost > 0 and not rows[0]["cache_hit"]
    for hit in rows[1:]:
        assert hit["cache_hit"] and hit["cost_usd"] == 0 and hit["status"] == "ok"
        assert Decimal(str(hit["saved_usd"])) == cost


def test_anthropic_streamed_then_streamed_and_plain(make_gov) -> None:
    gov = make_gov(raw=CACHE)
    a = anthropic.Anthropic(base_url=gov.url, api_key=gov.key, max_retries=0)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": MSG}
    with a.messages.stream(**body) as s:
        first_text = "".join(s.text_stream)
        first = s.get_final_message()
    gov.calls(expect=1)
    with a.messages.stream(**body) as s:
        assert "".join(s.text_stream) == first_text == DEFAULT_TEXT
        assert s.get_final_message().model_dump() == first.model_dump()
    plain = a.messages.create(**body)
    assert plain.model_dump() == first.model_dump()
    assert _upstream(gov) == 1


def test_openai_chat_and_responses(make_gov) -> None:
    gov = make_gov(raw=CACHE)
    o = openai.OpenAI(base_url=gov.url + "/v1", api_key=gov.key, max_retries=0)
    chunks = list(o.chat.completions.create(model="gpt-5", messages=MSG, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    gov.calls(expect=1)
    again = list(o.chat.completions.create(model="gpt-5", messages=MSG, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in again if c.choices) == text == DEFAULT_TEXT
    assert all(c.usage is None for c in again)  # the client did not ask for usage, so none is sent
    with_usage = list(
        o.chat.completions.create(model="gpt-5", messages=MSG, stream=True, stream_options={"include_usage": True})
    )
    assert with_usage[-1].usage is not None and with_usage[-1].usage.prompt_tokens == 1500
    plain = o.chat.completions.create(model="gpt-5", messages=MSG)
    assert plain.choices[0].message.content == DEFAULT_TEXT and plain.choices[0].finish_reason == "stop"
    r1 = o.responses.create(model="gpt-5", input="hello")
    gov.calls(expect=5)
    with o.responses.stream(model="gpt-5", input="hello") as s:
        streamed = "".join(e.delta for e in s if e.type == "response.output_text.delta")
        final = s.get_final_response()
    assert streamed == r1.output_text == final.output_text == DEFAULT_TEXT
    assert _upstream(gov) == 2  # one chat, one responses


def test_only_opted_in_teams_and_only_until_the_ttl(make_gov) -> None:
    clock = FixedClock(utc(2026, 11, 20, 12))
    gov = make_gov(raw=CACHE, clock=clock)
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": MSG}
    search = gov.make_key(team_name="search")
    for key in (search, search):
        httpx.post(gov.url + "/v1/messages", json=body, headers={**A_HEADERS, "x-api-key": key})
    assert _upstream(gov) == 2  # team "search" did not opt in
    h = {**A_HEADERS, "x-api-key": gov.key}
    httpx.post(gov.url + "/v1/messages", json=body, headers=h)
    gov.calls(expect=3)
    httpx.post(gov.url + "/v1/messages", json=body, headers=h)
    assert _upstream(gov) == 3
    different = {**body, "max_tokens": 101}
    httpx.post(gov.url + "/v1/messages", json=different, headers=h)
    assert _upstream(gov) == 4
    clock.advance(seconds=601)
    httpx.post(gov.url + "/v1/messages", json=body, headers=h)
    assert _upstream(gov) == 5


def test_errors_are_not_kept(make_gov) -> None:
    gov = make_gov(raw=CACHE)
    gov.mock("fail", {"status": 500, "count": 1})
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": MSG}
    h = {**A_HEADERS, "x-api-key": gov.key}
    assert httpx.post(gov.url + "/v1/messages", json=body, headers=h).status_code == 500
    gov.calls(expect=1)
    assert httpx.post(gov.url + "/v1/messages", json=body, headers=h).status_code == 200
    assert _upstream(gov) == 2
