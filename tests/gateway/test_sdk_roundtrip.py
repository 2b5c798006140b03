"""The official SDKs through the gateway get exactly what mock-llm sent; every call is recorded
with the provider's tokens and genai-prices' cost, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import openai
import pytest
from gateway_harness import REAL_ANTHROPIC, REAL_OPENAI
from genai_prices import Usage as GPUsage
from genai_prices import calc_price

from agenttrail.testing.mock_config import DEFAULT_TEXT

MSG = [{"role": "user", "content": "hi"}]


def _price(model: str, provider: str, **u: int) -> Decimal:
    return calc_price(GPUsage(**u), model, provider_id=provider).total_price


def test_anthropic_messages_plain_and_streamed(gw) -> None:
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    r = a.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=MSG)
    assert r.content[0].text == DEFAULT_TEXT
    with a.messages.stream(model="claude-sonnet-4-5", max_tokens=100, messages=MSG) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == DEFAULT_TEXT
    assert final.usage.cache_read_input_tokens == 3000
    rows = gw.calls(expect=2)
    assert [r["stream"] for r in rows] in ([0, 1], [False, True])
    expected = _price(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=4700,
        cache_read_tokens=3000,
        cache_write_tokens=500,
        output_tokens=250,
    )
    for row in rows:
        tokens = (
            row["input_tokens"],
            row["cache_read_tokens"],
            row["cache_write_tokens"],
            row["output_tokens"],
        )
        assert tokens == (1200, 3000, 500, 250)
        assert abs(Decimal(str(row["cost_usd"])) - expected) < Decimal("1e-9")
        assert row["status"] == "ok" and row["team"] == "payments" and row["provider"] == "anthropic"
        assert row["price_source"].startswith("genai-prices")
        assert row["ttft_ms"] is not None and row["latency_ms"] >= row["ttft_ms"]


def test_openai_chat_hides_the_usage_chunk_it_asked_for(gw) -> None:
    o = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
    c = o.chat.completions.create(model="gpt-4o", messages=MSG)
    assert c.choices[0].message.content == DEFAULT_TEXT
    chunks = list(o.chat.completions.create(model="gpt-4o", messages=MSG, stream=True))
    assert not any(ch.usage for ch in chunks)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == DEFAULT_TEXT
    asked = list(
        o.chat.completions.create(model="gpt-4o", messages=MSG, stream=True, stream_options={"include_usage": True})
    )
    assert asked[-1].usage is not None and asked[-1].usage.prompt_tokens == 1500
    # The gateway asked upstream for usage even when the client did not.
    streamed = [r for r in gw.upstream_requests() if r["body"].get("stream")]
    assert all(r["body"]["stream_options"]["include_usage"] is True for r in streamed)
    rows = gw.calls(expect=3)
    assert len(rows) == 3
    expected = _price("gpt-4o", "openai", input_tokens=1500, cache_read_tokens=1000, output_tokens=300)
    for row in rows:
        assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (500, 1000, 300)
        assert abs(Decimal(str(row["cost_usd"])) - expected) < Decimal("1e-9")


def test_openai_responses_embeddings_models(gw) -> None:
    o = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
    plain = o.responses.create(model="gpt-4o", input="hi")
    assert plain.output_text == DEFAULT_TEXT
    stream = o.responses.create(model="gpt-4o", input="hi", stream=True)
    done = [ev for ev in stream if ev.type == "response.completed"]
    assert done and done[0].response.usage.input_tokens == 1500
    emb = o.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(emb.data) == 2
    assert any(m.id for m in o.models.list())
    rows = gw.calls(expect=3)
    assert sorted(r["endpoint"] for r in rows) == ["embeddings", "responses", "responses"]
    for row in (r for r in rows if r["endpoint"] == "responses"):
        assert (row["input_tokens"], row["cache_read_tokens"], row["output_tokens"]) == (500, 1000, 300)
    # The response id is the call's request id: the key Codex rollouts carry, to join them to these rows.
    assert sorted(r["request_id"] for r in rows if r["endpoint"] == "responses") == sorted(
        [plain.id, done[0].response.id]
    )
    emb_row = next(r for r in rows if r["endpoint"] == "embeddings")
    assert emb_row["input_tokens"] == emb.usage.prompt_tokens and emb_row["input_tokens"] > 0


def test_only_the_real_credential_goes_upstream(gw) -> None:
    anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=10, messages=MSG
    )
    openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0).chat.completions.create(
        model="gpt-4o", messages=MSG
    )
    # Nothing the client receives, headers or body, streaming or not, carries a real credential.
    import httpx

    for stream in (False, True):
        r = httpx.post(
            gw.url + "/v1/messages",
            headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"},
            json={"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": stream, "messages": MSG},
        )
        blob = r.text + repr(dict(r.headers))
        assert r.status_code == 200 and REAL_ANTHROPIC not in blob and REAL_OPENAI not in blob
    seen = gw.upstream_requests()
    assert len(seen) == 4
    for r in seen:
        h = {k.lower(): v for k, v in r["headers"].items()}
        blob = repr(r)
        assert gw.key not in blob
        if r["endpoint"] == "messages":
            assert h["x-api-key"] == REAL_ANTHROPIC and "authorization" not in h
        else:
            assert h["authorization"] == f"Bearer {REAL_OPENAI}" and "x-api-key" not in h


@pytest.mark.parametrize("how", ["missing", "wrong", "provider-key", "revoked", "expired"])
def test_bad_keys_get_401_in_each_providers_shape(gw, how) -> None:
    from datetime import datetime

    from gateway_harness import expired

    from agenttrail.store.keys import revoke_key

    key = {"missing": "", "wrong": "sk-at-not-a-real-key", "provider-key": "sk-ant-api03-abc"}.get(how)
    if how == "revoked":
        key = gw.new_key(name="to-revoke")
        revoke_key(gw.engine, key, datetime.utcnow())
    if how == "expired":
        key = gw.new_key(expires_at=expired())
    if how == "missing":
        import httpx

        r = httpx.post(gw.url + "/v1/messages", json={"model": "m", "max_tokens": 1, "messages": MSG})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        assert r.headers["x-should-retry"] == "false"
        r = httpx.post(gw.url + "/v1/chat/completions", json={"model": "m", "messages": MSG})
        assert r.status_code == 401 and "virtual key" in r.json()["error"]["message"]
        assert gw.upstream_requests() == []
        return
    a = anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as ea:
        a.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=MSG)
    assert ea.value.body["error"]["type"] == "authentication_error"
    o = openai.OpenAI(base_url=gw.url + "/v1", api_key=key or "", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as eo:
        o.chat.completions.create(model="gpt-4o", messages=MSG)
    assert eo.value.body["message"]
    assert gw.upstream_requests() == []


def test_each_sdk_lists_its_own_providers_models(gw) -> None:
    # GET /v1/models is one path for both providers. The Anthropic SDK's models.list() went to the
    # OpenAI upstream with the OpenAI credential: OpenAI's list, in OpenAI's shape, for an Anthropic
    # client (and a 502 on a server with only ANTHROPIC_API_KEY).
    a = anthropic.Anthropic(base_url=gw.url, api_key=gw.key, max_retries=0)
    page = a.models.list()
    assert page.data and all(m.type == "model" for m in page.data)
    o = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.key, max_retries=0)
    assert all(m.object == "model" for m in o.models.list())
    sent = [{k.lower(): v for k, v in r["headers"].items()} for r in gw.upstream_requests()]
    assert [(h.get("x-api-key"), h.get("authorization")) for h in sent] == [
        (REAL_ANTHROPIC, None),
        (None, f"Bearer {REAL_OPENAI}"),
    ]
