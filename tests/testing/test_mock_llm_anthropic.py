"""The mock's Anthropic Messages API, read back through the official `anthropic` SDK's own parsers."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import pytest
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from anthropic.types.model_info import ModelInfo

from agenttrail.testing import MockConfig, MockControl, parse_sse, run_in_thread
from agenttrail.testing.mock_config import DEFAULT_TEXT

USER = [{"role": "user", "content": "hi"}]
WRITE_TOOL = {
    "name": "Write",
    "description": "Write a file",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["file_path", "content"],
    },
}
WRITE_INPUT = {"file_path": "src/hello.py", "content": 'print("héllo")\n'}
EXPECTED_USAGE = {
    "input_tokens": 1200,
    "cache_read_input_tokens": 3000,
    "cache_creation_input_tokens": 500,
    "output_tokens": 250,
}


def _usage(u: Any) -> dict[str, int]:
    return {k: getattr(u, k) for k in EXPECTED_USAGE}


def test_non_streaming_text_and_usage(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(model="claude-sonnet-4-5", max_tokens=100, messages=USER)
    assert raw.headers["request-id"].startswith("req_")
    msg = raw.parse()
    assert msg.id.startswith("msg_") and msg.model == "claude-sonnet-4-5"
    assert [b.type for b in msg.content] == ["text"]
    assert msg.content[0].text == DEFAULT_TEXT  # type: ignore[union-attr]
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert _usage(msg.usage) == EXPECTED_USAGE
    assert msg.usage.cache_creation is not None
    assert msg.usage.cache_creation.ephemeral_5m_input_tokens == 500
    assert msg.usage.cache_creation.ephemeral_1h_input_tokens == 0
    Message.model_validate(raw.http_response.json())  # strict: every required field present


def test_streaming_helper_final_message(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="claude-x", max_tokens=100, messages=USER) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(texts) > 1, "the answer should arrive in several deltas"
    assert "".join(texts) == DEFAULT_TEXT
    assert final.content[0].text == DEFAULT_TEXT  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert _usage(final.usage) == EXPECTED_USAGE


def test_raw_event_sequence_is_the_documented_one(raw: httpx.Client, validate_event: Any) -> None:
    r = raw.post(
        "/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={"model": "claude-x", "max_tokens": 10, "messages": USER, "stream": True},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.content)
    names = [e for e, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    for name, data in events:
        obj = json.loads(data)
        assert obj["type"] == name, "the event: line and the payload's type must agree"
        if name != "ping":
            validate_event(RawMessageStreamEvent, obj)
    start = json.loads(events[0][1])["message"]
    assert start["stop_reason"] is None and start["content"] == []
    assert start["usage"]["input_tokens"] == 1200 and start["usage"]["output_tokens"] == 1
    delta = json.loads(events[-2][1])
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == 250


def test_tool_use_streamed_as_input_json_delta(mock_url: str, control: MockControl) -> None:
    control.set_scenario([{"text": "I'll write it.", "tool": "Write", "input": WRITE_INPUT}])
    client = anthropic.Anthropic(base_url=mock_url, api_key="k", max_retries=0)
    with client.messages.stream(model="claude-x", max_tokens=100, messages=USER, tools=[WRITE_TOOL]) as stream:
        deltas = [e.delta.type for e in stream if e.type == "content_block_delta"]
        final = stream.get_final_message()
    assert "input_json_delta" in deltas and "text_delta" in deltas
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use"
    assert tool.id.startswith("toolu_") and tool.name == "Write"
    assert tool.input == WRITE_INPUT
    assert final.stop_reason == "tool_use"


def test_raw_tool_events_strict(raw: httpx.Client, control: MockControl, validate_event: Any) -> None:
    control.set_scenario([{"text": "Two calls.", "calls": [{"tool": "Write", "input": WRITE_INPUT}, {"tool": "Bash"}]}])
    body = {"model": "claude-x", "max_tokens": 10, "messages": USER, "tools": [WRITE_TOOL], "stream": True}
    events = parse_sse(raw.post("/v1/messages", headers={"x-api-key": "k"}, json=body).content)
    objs = [json.loads(d) for name, d in events if name != "ping"]
    for o in objs:
        validate_event(RawMessageStreamEvent, o)
    starts = [o["content_block"] for o in objs if o["type"] == "content_block_start"]
    assert [b["type"] for b in starts] == ["text", "tool_use", "tool_use"]
    assert all(b["input"] == {} for b in starts[1:]), "tool input arrives only through input_json_delta"
    pieces = "".join(o["delta"]["partial_json"] for o in objs if o["type"] == "content_block_delta" and o["index"] == 1)
    assert json.loads(pieces) == WRITE_INPUT
    assert objs[-2]["delta"]["stop_reason"] == "tool_use"


def test_tool_use_non_streaming(claude: anthropic.Anthropic, control: MockControl) -> None:
    control.set_scenario([{"tool": "Bash", "input": {"command": "ls -la"}}])
    msg = claude.messages.create(model="claude-x", max_tokens=100, messages=USER, tools=[WRITE_TOOL])
    assert [b.type for b in msg.content] == ["tool_use"]
    assert msg.content[0].input == {"command": "ls -la"}  # type: ignore[union-attr]
    assert msg.stop_reason == "tool_use"


def test_beta_path_and_path_prefix(mock_url: str, control: MockControl) -> None:
    client = anthropic.Anthropic(base_url=mock_url + "/some/prefix", api_key="k", max_retries=0)
    # Claude Code (the TypeScript SDK) adds ?beta=true to beta calls; the Python SDK does not.
    msg = client.beta.messages.create(
        model="claude-x",
        max_tokens=10,
        messages=USER,
        betas=["interleaved-thinking-2025-05-14"],
        extra_query={"beta": "true"},
    )
    assert msg.content[0].text == DEFAULT_TEXT  # type: ignore[union-attr]
    seen = control.requests(endpoint="messages")[-1]
    assert seen["path"] == "/some/prefix/v1/messages"
    assert seen["query"] == {"beta": "true"}
    assert seen["headers"]["anthropic-beta"] == "interleaved-thinking-2025-05-14"


def test_count_tokens(claude: anthropic.Anthropic, raw: httpx.Client) -> None:
    counted = claude.messages.count_tokens(model="claude-x", messages=USER)
    assert counted.input_tokens == 1200 + 3000 + 500
    r = raw.post("/v1/messages/count_tokens", headers={"x-api-key": "k"}, json={"model": "m", "messages": USER})
    MessageTokensCount.model_validate(r.json())


def test_models_in_anthropic_shape(claude: anthropic.Anthropic, raw: httpx.Client) -> None:
    page = claude.models.list()
    ids = [m.id for m in page.data]
    assert "claude-sonnet-4-5-20250929" in ids
    assert page.has_more is False and page.first_id == ids[0] and page.last_id == ids[-1]
    assert claude.models.retrieve("claude-sonnet-4-5-20250929").type == "model"
    body = raw.get("/v1/models", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}).json()
    for item in body["data"]:
        ModelInfo.model_validate(item)


def test_missing_key_is_401_in_anthropic_shape(raw: httpx.Client) -> None:
    r = raw.post("/v1/messages", json={"model": "m", "max_tokens": 1, "messages": USER})
    assert r.status_code == 401
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error" and body["error"]["message"]
    empty = raw.post("/v1/messages", headers={"x-api-key": ""}, json={"model": "m", "max_tokens": 1, "messages": USER})
    assert empty.status_code == 401


def test_bearer_token_is_accepted(mock_url: str) -> None:
    # Claude Code sends ANTHROPIC_AUTH_TOKEN as a Bearer token.
    client = anthropic.Anthropic(base_url=mock_url, auth_token="tok", api_key=None, max_retries=0)
    assert client.messages.create(model="m", max_tokens=1, messages=USER).content


def test_expected_key() -> None:
    with run_in_thread(MockConfig(expected_key="sk-right")) as url:
        wrong = anthropic.Anthropic(base_url=url, api_key="sk-wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as err:
            wrong.messages.create(model="m", max_tokens=1, messages=USER)
        assert err.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
        right = anthropic.Anthropic(base_url=url, api_key="sk-right", max_retries=0)
        assert right.messages.create(model="m", max_tokens=1, messages=USER).content


def test_invalid_request_is_400(claude: anthropic.Anthropic, raw: httpx.Client) -> None:
    r = raw.post("/v1/messages", headers={"x-api-key": "k"}, json={"model": "m", "messages": USER})
    assert r.status_code == 400
    assert r.json()["error"] == {"type": "invalid_request_error", "message": "max_tokens: Field required"}
    bad = raw.post("/v1/messages", headers={"x-api-key": "k"}, content=b"{not json")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"
